/** The ChatStore contract: direct and group chats, their members, and the paged device walk. */
import { describe, expect, it } from 'vitest';
import { type ChatEvent } from '@parley/client-sdk';
import { newClientMsgId, newId } from '@parley/client-sdk/protocol';
import { StoreError, receives, type ChatStore, type GroupChange, type MessageStore, type ProgressStore } from '../../services/src/store/types.js';
import { DIRECT_DEFAULTS, MEMBER_DEFAULTS, cmp, devicesOnly, errorOf, newDevice, newGroup, newMessage, seqsOf, newPair, newPhone, newUser, sortIds, useStore, type StoreFactory } from './helpers.js';

/** Every device of a chat, walked a page at a time; checks each page on the way. */
async function walkChatDevices(store: ChatStore, chatId: string, limit: number) {
  const all: Array<{ deviceId: string; userId: string }> = [];
  let after = '';
  let pages = 0;
  // Bounded, so an adapter whose paging does not advance fails instead of hanging.
  while (pages < 10_000) {
    const page = devicesOnly(await store.chatDevices(chatId, after, limit));
    expect(page.length).toBeLessThanOrEqual(limit);
    for (const d of page) {
      expect(cmp(d.deviceId, after)).toBe(1);
      after = d.deviceId;
    }
    all.push(...page);
    pages++;
    if (page.length < limit) return { all, pages };
  }
  throw new Error(`chatDevices(${chatId}) did not end`);
}

export function chatStoreContract(factory: StoreFactory): void {
  describe('ChatStore', () => {
    const ctx = useStore(factory);

    describe('direct chats', () => {
      it('is the same chat for (a, b) and (b, a), with both members', async () => {
        const { store } = ctx;
        const a = await newUser(store);
        const b = await newUser(store);
        const chatId = newId('chat');
        const chat = await store.getOrCreateDirectChat(a, b, chatId, 3_000);
        expect(chat).toEqual({ chatId, kind: 'direct', createdAt: 3_000, lastSeq: 0, ...DIRECT_DEFAULTS });

        const again = await store.getOrCreateDirectChat(b, a, newId('chat'), 4_000);
        expect(again).toEqual(chat);
        expect(await store.getChat(chatId)).toEqual(chat);
        expect(await store.getChat(newId('chat'))).toBeNull();

        const members = await store.getMembers(chatId);
        expect(sortIds(members.map((m) => m.userId))).toEqual(sortIds([a, b]));
        for (const m of members) {
          expect(m).toEqual({ chatId, userId: m.userId, role: 'member', joinedAt: 3_000, deliveredSeq: 0, readSeq: 0, ...MEMBER_DEFAULTS });
        }
        expect(await store.getMember(chatId, a)).toEqual({
          chatId, userId: a, role: 'member', joinedAt: 3_000, deliveredSeq: 0, readSeq: 0, ...MEMBER_DEFAULTS,
        });
        expect(await store.getMember(chatId, await newUser(store))).toBeNull();
        expect(await store.getMembers(newId('chat'))).toEqual([]);

        // A third user gets a different chat with each of them.
        const c = await newUser(store);
        const ac = await store.getOrCreateDirectChat(a, c, newId('chat'), 5_000);
        expect(ac.chatId).not.toBe(chatId);
      });

      it('a self chat has one member', async () => {
        const { store } = ctx;
        const a = await newUser(store);
        const chat = await store.getOrCreateDirectChat(a, a, newId('chat'), 1);
        expect(chat.kind).toBe('direct');
        expect((await store.getOrCreateDirectChat(a, a, newId('chat'), 2)).chatId).toBe(chat.chatId);
        const members = await store.getMembers(chat.chatId);
        expect(members.map((m) => m.userId)).toEqual([a]);
      });

      it('concurrent calls agree on one chat', async () => {
        const { store } = ctx;
        const a = await newUser(store);
        const b = await newUser(store);
        const chats = await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            i % 2 ? store.getOrCreateDirectChat(a, b, newId('chat'), i) : store.getOrCreateDirectChat(b, a, newId('chat'), i),
          ),
        );
        expect(new Set(chats.map((c) => c.chatId)).size).toBe(1);
        expect(await store.getMembers(chats[0]!.chatId)).toHaveLength(2);
      });

      it("takes in both users' active devices at seq 0", async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const all = devicesOnly(await store.chatDevices(p.chatId, '', 100));
        expect(all).toEqual(
          [{ deviceId: p.da, userId: p.a }, { deviceId: p.db1, userId: p.b }, { deviceId: p.db2, userId: p.b }]
            .sort((x, y) => cmp(x.deviceId, y.deviceId)),
        );
        for (const [deviceId, userId] of [[p.da, p.a], [p.db1, p.b], [p.db2, p.b]] as const) {
          expect(await store.progress(deviceId, p.chatId)).toEqual({ deviceId, chatId: p.chatId, userId, sinceSeq: 0, deliveredSeq: 0, untilSeq: null });
        }
      });
    });

    describe('group chats', () => {
      it('createGroupChat stores the chat and its members with their roles', async () => {
        const { store } = ctx;
        const owner = await newUser(store);
        const m1 = await newUser(store);
        const m2 = await newUser(store);
        const chatId = newId('chat');
        const chat = await newGroup(store, 
          chatId, [{ userId: owner, role: 'admin' }, { userId: m1, role: 'member' }, { userId: m2, role: 'member' }], 7_000,
        );
        expect(chat).toEqual({ chatId, kind: 'group', createdAt: 7_000, lastSeq: 1, ...DIRECT_DEFAULTS, name: 'group', version: 1 });
        expect(await store.getChat(chatId)).toEqual(chat);

        const members = [...(await store.getMembers(chatId))].sort((x, y) => cmp(x.userId, y.userId));
        expect(members).toEqual([
          { chatId, userId: owner, role: 'admin', joinedAt: 7_000, deliveredSeq: 0, readSeq: 0, ...MEMBER_DEFAULTS },
          { chatId, userId: m1, role: 'member', joinedAt: 7_000, deliveredSeq: 0, readSeq: 0, ...MEMBER_DEFAULTS },
          { chatId, userId: m2, role: 'member', joinedAt: 7_000, deliveredSeq: 0, readSeq: 0, ...MEMBER_DEFAULTS },
        ].sort((x, y) => cmp(x.userId, y.userId)));
        expect((await store.getMember(chatId, owner))?.role).toBe('admin');
        expect(await store.getMember(chatId, await newUser(store))).toBeNull();
      });

      it('throws DUPLICATE when the id is taken, and leaves that chat as it was', async () => {
        const { store } = ctx;
        const a = await newUser(store);
        const b = await newUser(store);
        const intruder = await newUser(store);
        const chatId = newId('chat');
        const chat = await newGroup(store, chatId, [{ userId: a, role: 'admin' }], 1);

        const err = await errorOf(newGroup(store, chatId, [{ userId: intruder, role: 'admin' }], 2));
        expect(err).toBeInstanceOf(StoreError);
        expect((err as StoreError).code).toBe('DUPLICATE');
        expect(await store.getChat(chatId)).toEqual(chat);
        expect((await store.getMembers(chatId)).map((m) => m.userId)).toEqual([a]);

        // A direct chat's id is taken too.
        const direct = await store.getOrCreateDirectChat(a, b, newId('chat'), 3);
        const err2 = await errorOf(newGroup(store, direct.chatId, [{ userId: intruder, role: 'member' }], 4));
        expect((err2 as StoreError).code).toBe('DUPLICATE');
        expect(await store.getChat(direct.chatId)).toEqual(direct);
        expect(await store.getMember(direct.chatId, intruder)).toBeNull();
      });

      it('every active device of every member starts at seq 0; revoked ones stay out', async () => {
        const { store } = ctx;
        const u1 = await newUser(store);
        const u2 = await newUser(store);
        const noDevices = await newUser(store);
        const d1 = await newDevice(store, u1);
        const d2a = await newDevice(store, u2);
        const d2b = await newDevice(store, u2);
        const revoked = await newDevice(store, u2);
        await store.revokeDevice(revoked, 1_500);
        const outsider = await newDevice(store, await newUser(store));

        const chatId = newId('chat');
        await newGroup(store, chatId, [
          { userId: u1, role: 'admin' }, { userId: u2, role: 'member' }, { userId: noDevices, role: 'member' },
        ], 2_000);
        expect(devicesOnly(await store.chatDevices(chatId, '', 100))).toEqual(
          [{ deviceId: d1, userId: u1 }, { deviceId: d2a, userId: u2 }, { deviceId: d2b, userId: u2 }]
            .sort((x, y) => cmp(x.deviceId, y.deviceId)),
        );
        for (const [deviceId, userId] of [[d1, u1], [d2a, u2], [d2b, u2]] as const) {
          expect(await store.progress(deviceId, chatId)).toEqual({ deviceId, chatId, userId, sinceSeq: 0, deliveredSeq: 0, untilSeq: null });
        }
        expect(await store.progress(revoked, chatId)).toBeNull();
        expect(await store.progress(outsider, chatId)).toBeNull();
        expect(await store.getMember(chatId, noDevices)).not.toBeNull();
      });
    });

    describe('chatDevices', () => {
      it('pages by deviceId, each page bounded, every active device once', async () => {
        const { store } = ctx;
        const users = [await newUser(store), await newUser(store), await newUser(store)];
        const devices: Array<{ deviceId: string; userId: string }> = [];
        for (const [i, userId] of users.entries()) {
          for (let j = 0; j <= i + 1; j++) devices.push({ deviceId: await newDevice(store, userId), userId });
        }
        // 2 + 3 + 4 = 9 devices; one more is revoked; a non-member's device is not listed.
        const revoked = await newDevice(store, users[0]!);
        await store.revokeDevice(revoked, 1_100);
        await newDevice(store, await newUser(store));
        const chatId = newId('chat');
        await newGroup(store, chatId, users.map((userId) => ({ userId, role: 'member' as const })), 2_000);

        const expected = [...devices].sort((x, y) => cmp(x.deviceId, y.deviceId));
        for (const limit of [1, 2, 4, 9, 100]) {
          const { all, pages } = await walkChatDevices(store, chatId, limit);
          expect(all).toEqual(expected);
          expect(pages).toBe(Math.floor(expected.length / limit) + 1);
        }
        // afterDeviceId is exclusive and need not be a device of the chat.
        const fourth = expected[3]!.deviceId;
        expect(devicesOnly(await store.chatDevices(chatId, fourth, 2))).toEqual(expected.slice(4, 6));
        expect(devicesOnly(await store.chatDevices(chatId, expected.at(-1)!.deviceId, 10))).toEqual([]);
        expect(devicesOnly(await store.chatDevices(chatId, `${fourth}~`, 1))).toEqual(expected.slice(4, 5));

        // A device revoked after the chat was made drops out too.
        const gone = expected[0]!.deviceId;
        await store.revokeDevice(gone, 3_000);
        expect((await walkChatDevices(store, chatId, 4)).all).toEqual(expected.slice(1));

        expect(devicesOnly(await store.chatDevices(newId('chat'), '', 10))).toEqual([]);
      });

      it('covers every device of a 1,024-member group in bounded pages', async () => {
        const { store } = ctx;
        const n = 1_024;
        const members: Array<{ userId: string; deviceId: string }> = [];
        // Built through the port, a few at a time (a networked adapter then overlaps round trips).
        for (let i = 0; i < n; i += 64) {
          members.push(...await Promise.all(Array.from({ length: Math.min(64, n - i) }, async () => {
            const userId = (await store.getOrCreateUserByPhone(newPhone(), newId('user'), 1)).user.userId;
            const deviceId = newId('device');
            await store.addDevice({ deviceId, userId, tokenHash: 'f'.repeat(64), name: 'p', createdAt: 1 }, { maxActive: 5, historyDepth: 0 });
            return { userId, deviceId };
          })));
        }
        const chatId = newId('chat');
        await newGroup(store, 
          chatId, members.map((m, i) => ({ userId: m.userId, role: i === 0 ? 'admin' as const : 'member' as const })), 2_000,
        );
        expect(await store.getMembers(chatId)).toHaveLength(n);

        const { all, pages } = await walkChatDevices(store, chatId, 100);
        expect(pages).toBe(11);
        expect(all).toHaveLength(n);
        expect(all).toEqual(
          members.map((m) => ({ deviceId: m.deviceId, userId: m.userId })).sort((x, y) => cmp(x.deviceId, y.deviceId)),
        );
      });
    });

    describe('group changes', () => {
      /** A group of owner (admin), m1 and m2, one device each, with one message from the owner (seq 2). */
      async function group(store: Parameters<typeof newGroup>[0] & Parameters<typeof newDevice>[0] & Parameters<typeof newUser>[0] & MessageStore & ProgressStore) {
        const [owner, m1, m2] = [await newUser(store), await newUser(store), await newUser(store)];
        const [dOwner, d1, d2] = [await newDevice(store, owner), await newDevice(store, m1), await newDevice(store, m2)];
        const chatId = newId('group');
        await newGroup(store, chatId, [{ userId: owner, role: 'admin' }, { userId: m1, role: 'member' }, { userId: m2, role: 'member' }], 1_000);
        await store.appendMessages([newMessage(chatId, owner, dOwner, 'before')]);
        return { chatId, owner, m1, m2, dOwner, d1, d2 };
      }
      const change = (chatId: string, version: number, actor: string, event: ChatEvent, extra: Partial<GroupChange> = {}): GroupChange => ({
        chatId, version, message: { senderUserId: actor, clientMsgId: newClientMsgId(), event, ts: 2_000 }, ...extra,
      });

      it('stores the change as the next message of the chat, with its event and no device', async () => {
        const { store } = ctx;
        const g = await group(store);
        const created = (await store.history(g.chatId, 0, 10))[0]!;
        expect(created).toMatchObject({ seq: 1, senderUserId: g.owner, senderDeviceId: '', body: '', event: { type: 'created', name: 'group' } });
        const m = await store.commitGroupChange(change(g.chatId, 1, g.owner, { type: 'updated', name: 'renamed' }, { settings: { name: 'renamed', description: 'about' } }));
        expect(m).toMatchObject({ chatId: g.chatId, seq: 3, senderDeviceId: '', event: { type: 'updated', name: 'renamed' } });
        expect(await store.getMessage(g.chatId, 3)).toEqual(m);
        expect(await store.getChat(g.chatId)).toMatchObject({ name: 'renamed', description: 'about', avatar: null, version: 2, lastSeq: 3 });
        // Every member's device gets it (there is no sender device to leave out).
        expect(seqsOf(await store.pending(g.dOwner, null, 10))).toEqual([1, 3]);
      });

      it('refuses a change planned on an older version (CONFLICT) and writes nothing', async () => {
        const { store } = ctx;
        const g = await group(store);
        await store.commitGroupChange(change(g.chatId, 1, g.owner, { type: 'promoted', users: [g.m1] }, { roles: [{ userId: g.m1, role: 'admin' }] }));
        const err = await errorOf(store.commitGroupChange(change(g.chatId, 1, g.owner, { type: 'removed', users: [g.m1] }, { remove: [g.m1] })));
        expect(err).toBeInstanceOf(StoreError);
        expect((err as StoreError).code).toBe('CONFLICT');
        expect((await store.getChat(g.chatId))!.lastSeq).toBe(3);
        expect(await store.getMember(g.chatId, g.m1)).toMatchObject({ role: 'admin', leftSeq: null });
        expect((await errorOf(store.commitGroupChange(change(newId('group'), 0, g.owner, { type: 'deleted' })))) as StoreError).toMatchObject({ code: 'NOT_FOUND' });
      });

      it('a removed member gets the removal and nothing after; its sends are refused; it keeps what it had', async () => {
        const { store } = ctx;
        const g = await group(store);
        const removal = await store.commitGroupChange(change(g.chatId, 1, g.owner, { type: 'removed', users: [g.m2] }, { remove: [g.m2] }));
        expect(removal.seq).toBe(3);
        const after = await store.appendMessages([newMessage(g.chatId, g.owner, g.dOwner, 'after'), newMessage(g.chatId, g.m2, g.d2, 'intruder')]);
        expect(after[0]!.message?.seq).toBe(4);
        expect(after[1]).toEqual({ message: null, created: false, refused: 'NOT_MEMBER' });
        expect(seqsOf(await store.pending(g.d2, null, 10))).toEqual([1, 2, 3]);
        expect(seqsOf(await store.pendingInChat(g.d2, g.chatId, 0, 10, 10))).toEqual([1, 2, 3]);
        expect(await store.isRecipient(g.d2, g.chatId, 4)).toBe(false);
        expect(await store.isRecipient(g.d2, g.chatId, 3)).toBe(true);
        expect(await store.progress(g.d2, g.chatId)).toMatchObject({ untilSeq: 3 });
        expect(await store.getMember(g.chatId, g.m2)).toBeNull();
        expect(await store.getMembership(g.chatId, g.m2)).toMatchObject({ leftSeq: 3 });
        expect((await store.getMembers(g.chatId)).map((m) => m.userId).sort(cmp)).toEqual([g.owner, g.m1].sort(cmp));
        expect(await store.tally(g.chatId, 4, g.owner)).toMatchObject({ of: 1 });
        // The fan-out of seq 4 still lists its device for seq 3, and `receives` tells them apart.
        const rows = await store.chatDevices(g.chatId, '', 10, 3);
        const d2row = rows.find((r) => r.deviceId === g.d2)!;
        expect(receives(d2row, { seq: 3, senderDeviceId: '' })).toBe(true);
        expect(receives(d2row, { seq: 4, senderDeviceId: g.dOwner })).toBe(false);
        expect((await store.chatDevices(g.chatId, '', 10, 4)).map((r) => r.deviceId)).not.toContain(g.d2);
        expect((await store.messageStatus(g.chatId, 4))!.recipients.map((r) => r.deviceId)).not.toContain(g.d2);
      });

      it('a new member sees from its addition on (or everything when history is shared); a member back gets a new window', async () => {
        const { store } = ctx;
        const g = await group(store);
        const late = await newUser(store);
        const dLate = await newDevice(store, late);
        const added = await store.commitGroupChange(change(g.chatId, 1, g.owner, { type: 'added', users: [late] }, { add: [{ userId: late, role: 'member' }] }));
        expect(added.seq).toBe(3);
        expect(await store.getMember(g.chatId, late)).toMatchObject({ sinceSeq: 2, leftSeq: null, deliveredSeq: 2, readSeq: 2, role: 'member' });
        expect(await store.progress(dLate, g.chatId)).toMatchObject({ sinceSeq: 2, deliveredSeq: 2, untilSeq: null });
        expect(seqsOf(await store.pending(dLate, null, 10))).toEqual([3]);
        expect(await store.isRecipient(dLate, g.chatId, 2)).toBe(false);
        // Removed, then added again: the window restarts at the new addition.
        await store.commitGroupChange(change(g.chatId, 2, g.owner, { type: 'removed', users: [late] }, { remove: [late] }));
        await store.appendMessages([newMessage(g.chatId, g.owner, g.dOwner, 'while away')]);
        await store.commitGroupChange(change(g.chatId, 3, g.owner, { type: 'added', users: [late] }, { add: [{ userId: late, role: 'member' }] }));
        expect(await store.progress(dLate, g.chatId)).toMatchObject({ sinceSeq: 5, untilSeq: null });
        expect(await store.isRecipient(dLate, g.chatId, 5)).toBe(false);
        expect(await store.isRecipient(dLate, g.chatId, 6)).toBe(true);
      });

      it('deleting ends every membership at the deletion and refuses later sends', async () => {
        const { store } = ctx;
        const g = await group(store);
        const del = await store.commitGroupChange(change(g.chatId, 1, g.owner, { type: 'deleted' }, { delete: true }));
        expect(await store.getChat(g.chatId)).toMatchObject({ deletedAt: 2_000 });
        expect(await store.getMembers(g.chatId)).toEqual([]);
        const [r] = await store.appendMessages([newMessage(g.chatId, g.owner, g.dOwner, 'too late')]);
        expect(r).toEqual({ message: null, created: false, refused: 'CHAT_DELETED' });
        expect(seqsOf(await store.pending(g.d1, null, 10))).toEqual([1, 2, del.seq]);
      });

      it('lists a user\'s chats with the last visible message, unread count and flags', async () => {
        const { store } = ctx;
        const g = await group(store);
        await store.appendMessages([newMessage(g.chatId, g.owner, g.dOwner, 'two', 6_000)]);
        const [entry] = (await store.listChats(g.m1, 10)).filter((e) => e.chat.chatId === g.chatId);
        expect(entry).toMatchObject({ unread: 2, last: { seq: 3, body: 'two' }, member: { mutedUntil: 0, archived: false } });
        await store.markRead(g.chatId, g.m1, 2, 7_000);
        expect(await store.setChatFlags(g.chatId, g.m1, { mutedUntil: 99_000, archived: true })).toBe(true);
        expect(await store.setChatFlags(g.chatId, await newUser(store), { archived: true })).toBe(false);
        const [again] = (await store.listChats(g.m1, 10)).filter((e) => e.chat.chatId === g.chatId);
        expect(again).toMatchObject({ unread: 1, member: { mutedUntil: 99_000, archived: true } });
        // A removed member keeps the chat, up to its removal.
        await store.commitGroupChange(change(g.chatId, 1, g.owner, { type: 'removed', users: [g.m2] }, { remove: [g.m2] }));
        await store.appendMessages([newMessage(g.chatId, g.owner, g.dOwner, 'after', 8_000)]);
        const [gone] = await store.listChats(g.m2, 10);
        expect(gone).toMatchObject({ member: { leftSeq: 4 }, last: { seq: 4, event: { type: 'removed' } } });
      });

      it('pages back with historyBefore', async () => {
        const { store } = ctx;
        const g = await group(store);
        await store.appendMessages(['3', '4', '5', '6'].map((b) => newMessage(g.chatId, g.owner, g.dOwner, b)));
        expect(seqsOf(await store.historyBefore(g.chatId, 6, 2))).toEqual([4, 5]);
        expect(seqsOf(await store.historyBefore(g.chatId, 100, 3))).toEqual([4, 5, 6]);
        expect(seqsOf(await store.historyBefore(g.chatId, 4, 10, 1))).toEqual([2, 3]);
      });

      it('a linked device starts `historyDepth` messages back in each current chat, never before its member could see', async () => {
        const { store } = ctx;
        const g = await group(store);
        await store.appendMessages(['3', '4', '5'].map((b) => newMessage(g.chatId, g.owner, g.dOwner, b)));
        const linked = newId('device');
        await store.addDevice({ deviceId: linked, userId: g.m1, tokenHash: 'l'.repeat(64), name: 'laptop', createdAt: 9_000 }, { maxActive: 5, historyDepth: 3 });
        expect(seqsOf(await store.pending(linked, null, 10))).toEqual([3, 4, 5]);
        const deep = newId('device');
        await store.addDevice({ deviceId: deep, userId: g.m1, tokenHash: 'l'.repeat(64), name: 'tablet', createdAt: 9_000 }, { maxActive: 5, historyDepth: 1000 });
        expect(seqsOf(await store.pending(deep, null, 10))).toEqual([1, 2, 3, 4, 5]);
      });

      it('keeps link codes and invitations until used, revoked or expired', async () => {
        const { store } = ctx;
        const g = await group(store);
        const hash = 'a'.repeat(64);
        await store.putGrant({ codeHash: hash, kind: 'invite', userId: g.owner, deviceId: g.dOwner, chatId: g.chatId, createdAt: 1, expiresAt: 100 });
        await store.putGrant({ codeHash: 'b'.repeat(64), kind: 'link', userId: g.m1, deviceId: g.d1, chatId: null, createdAt: 1, expiresAt: 50 });
        expect(await store.getGrant(hash, 99)).toEqual({ codeHash: hash, kind: 'invite', userId: g.owner, deviceId: g.dOwner, chatId: g.chatId, createdAt: 1, expiresAt: 100 });
        expect(await store.getGrant(hash, 100)).toBeNull();
        expect((await store.listGrants(g.chatId, 10)).map((x) => x.codeHash)).toEqual([hash]);
        expect((await store.expire(0, 60)).registrations).toBe(1);
        expect(await store.getGrant('b'.repeat(64), 0)).toBeNull();
        expect(await store.deleteGrant(hash)).toBe(true);
        expect(await store.deleteGrant(hash)).toBe(false);
      });
    });
  });
}
