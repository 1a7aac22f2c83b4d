/** The ChatStore contract: direct and group chats, their members, and the paged device walk. */
import { describe, expect, it } from 'vitest';
import { newId } from '@parley/client-sdk';
import { StoreError, type ChatStore } from '../../services/src/store/types.js';
import { cmp, errorOf, newDevice, newPair, newPhone, newUser, sortIds, useStore, type StoreFactory } from './helpers.js';

/** Every device of a chat, walked a page at a time; checks each page on the way. */
async function walkChatDevices(store: ChatStore, chatId: string, limit: number) {
  const all: Array<{ deviceId: string; userId: string }> = [];
  let after = '';
  let pages = 0;
  // Bounded, so an adapter whose paging does not advance fails instead of hanging.
  while (pages < 10_000) {
    const page = await store.chatDevices(chatId, after, limit);
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
        expect(chat).toEqual({ chatId, kind: 'direct', createdAt: 3_000, lastSeq: 0 });

        const again = await store.getOrCreateDirectChat(b, a, newId('chat'), 4_000);
        expect(again).toEqual(chat);
        expect(await store.getChat(chatId)).toEqual(chat);
        expect(await store.getChat(newId('chat'))).toBeNull();

        const members = await store.getMembers(chatId);
        expect(sortIds(members.map((m) => m.userId))).toEqual(sortIds([a, b]));
        for (const m of members) {
          expect(m).toEqual({ chatId, userId: m.userId, role: 'member', joinedAt: 3_000, deliveredSeq: 0, readSeq: 0 });
        }
        expect(await store.getMember(chatId, a)).toEqual({
          chatId, userId: a, role: 'member', joinedAt: 3_000, deliveredSeq: 0, readSeq: 0,
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
        const all = await store.chatDevices(p.chatId, '', 100);
        expect(all).toEqual(
          [{ deviceId: p.da, userId: p.a }, { deviceId: p.db1, userId: p.b }, { deviceId: p.db2, userId: p.b }]
            .sort((x, y) => cmp(x.deviceId, y.deviceId)),
        );
        for (const [deviceId, userId] of [[p.da, p.a], [p.db1, p.b], [p.db2, p.b]] as const) {
          expect(await store.progress(deviceId, p.chatId)).toEqual({ deviceId, chatId: p.chatId, userId, sinceSeq: 0, deliveredSeq: 0 });
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
        const chat = await store.createGroupChat(
          chatId, [{ userId: owner, role: 'admin' }, { userId: m1, role: 'member' }, { userId: m2, role: 'member' }], 7_000,
        );
        expect(chat).toEqual({ chatId, kind: 'group', createdAt: 7_000, lastSeq: 0 });
        expect(await store.getChat(chatId)).toEqual(chat);

        const members = [...(await store.getMembers(chatId))].sort((x, y) => cmp(x.userId, y.userId));
        expect(members).toEqual([
          { chatId, userId: owner, role: 'admin', joinedAt: 7_000, deliveredSeq: 0, readSeq: 0 },
          { chatId, userId: m1, role: 'member', joinedAt: 7_000, deliveredSeq: 0, readSeq: 0 },
          { chatId, userId: m2, role: 'member', joinedAt: 7_000, deliveredSeq: 0, readSeq: 0 },
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
        const chat = await store.createGroupChat(chatId, [{ userId: a, role: 'admin' }], 1);

        const err = await errorOf(store.createGroupChat(chatId, [{ userId: intruder, role: 'admin' }], 2));
        expect(err).toBeInstanceOf(StoreError);
        expect((err as StoreError).code).toBe('DUPLICATE');
        expect(await store.getChat(chatId)).toEqual(chat);
        expect((await store.getMembers(chatId)).map((m) => m.userId)).toEqual([a]);

        // A direct chat's id is taken too.
        const direct = await store.getOrCreateDirectChat(a, b, newId('chat'), 3);
        const err2 = await errorOf(store.createGroupChat(direct.chatId, [{ userId: intruder, role: 'member' }], 4));
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
        await store.createGroupChat(chatId, [
          { userId: u1, role: 'admin' }, { userId: u2, role: 'member' }, { userId: noDevices, role: 'member' },
        ], 2_000);
        expect(await store.chatDevices(chatId, '', 100)).toEqual(
          [{ deviceId: d1, userId: u1 }, { deviceId: d2a, userId: u2 }, { deviceId: d2b, userId: u2 }]
            .sort((x, y) => cmp(x.deviceId, y.deviceId)),
        );
        for (const [deviceId, userId] of [[d1, u1], [d2a, u2], [d2b, u2]] as const) {
          expect(await store.progress(deviceId, chatId)).toEqual({ deviceId, chatId, userId, sinceSeq: 0, deliveredSeq: 0 });
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
        await store.createGroupChat(chatId, users.map((userId) => ({ userId, role: 'member' as const })), 2_000);

        const expected = [...devices].sort((x, y) => cmp(x.deviceId, y.deviceId));
        for (const limit of [1, 2, 4, 9, 100]) {
          const { all, pages } = await walkChatDevices(store, chatId, limit);
          expect(all).toEqual(expected);
          expect(pages).toBe(Math.floor(expected.length / limit) + 1);
        }
        // afterDeviceId is exclusive and need not be a device of the chat.
        const fourth = expected[3]!.deviceId;
        expect(await store.chatDevices(chatId, fourth, 2)).toEqual(expected.slice(4, 6));
        expect(await store.chatDevices(chatId, expected.at(-1)!.deviceId, 10)).toEqual([]);
        expect(await store.chatDevices(chatId, `${fourth}~`, 1)).toEqual(expected.slice(4, 5));

        // A device revoked after the chat was made drops out too.
        const gone = expected[0]!.deviceId;
        await store.revokeDevice(gone, 3_000);
        expect((await walkChatDevices(store, chatId, 4)).all).toEqual(expected.slice(1));

        expect(await store.chatDevices(newId('chat'), '', 10)).toEqual([]);
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
            await store.addDevice({ deviceId, userId, tokenHash: 'f'.repeat(64), name: 'p', createdAt: 1 }, 5);
            return { userId, deviceId };
          })));
        }
        const chatId = newId('chat');
        await store.createGroupChat(
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
  });
}
