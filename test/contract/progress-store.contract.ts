/**
 * The ProgressStore contract: one watermark per (device, chat), what a device still has to get,
 * the per-user delivered and read watermarks, and the status times derived from their moves.
 */
import { describe, expect, it } from 'vitest';
import { newId } from '@parley/client-sdk/protocol';
import type { ChatCursor, NewMessage, StoredMessage } from '../../services/src/store/types.js';
import {
  byDevice, fromA, newClientMsgId, newGroup, fromB, keyOf, newDevice, newMessage, newPair, newUser, seqsOf, useStore, type StoreFactory,
} from './helpers.js';

export function progressStoreContract(factory: StoreFactory): void {
  describe('ProgressStore', () => {
    const ctx = useStore(factory);

    /** Pages through `pending` with the cursor, `limit` at a time. */
    async function allPending(deviceId: string, limit: number): Promise<StoredMessage[]> {
      const out: StoredMessage[] = [];
      let after: ChatCursor | null = null;
      // Bounded, so an adapter whose cursor does not advance fails instead of hanging.
      for (let pages = 0; pages < 1_000; pages++) {
        const page: StoredMessage[] = await ctx.store.pending(deviceId, after, limit);
        expect(page.length).toBeLessThanOrEqual(limit);
        out.push(...page);
        const last = page.at(-1);
        if (!last || page.length < limit) return out;
        after = { chatId: last.chatId, seq: last.seq };
      }
      throw new Error(`pending(${deviceId}) did not end`);
    }

    describe('progress', () => {
      it('is null where the device is not a recipient', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const outsider = await newDevice(store, await newUser(store));
        expect(await store.progress(outsider, p.chatId)).toBeNull();
        expect(await store.progress(newId('device'), p.chatId)).toBeNull();
        expect(await store.progress(p.db1, newId('chat'))).toBeNull();
        expect(await store.progress(p.db1, p.chatId)).toEqual(
          { deviceId: p.db1, chatId: p.chatId, userId: p.b, sinceSeq: 0, deliveredSeq: 0, untilSeq: null },
        );
      });
    });

    describe('pending', () => {
      it("lists what a device has not acknowledged over all its chats in (chatId, seq) order, without its own", async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const c = await newUser(store);
        const dc = await newDevice(store, c);
        const other = (await store.getOrCreateDirectChat(p.b, c, newId('chat'), 2_100)).chatId;
        const fromC = (body: string): NewMessage => newMessage(other, c, dc, body);
        // Interleaved across chats on purpose. p: 1 a1, 2 b2 (db1), 3 a3; other: 1 c1, 2 c2.
        await store.appendMessages([fromA(p, 'a1'), fromC('c1'), fromB(p, 'b2'), fromA(p, 'a3'), fromC('c2')]);

        const ordered = (keys: Record<string, string[]>): string[] =>
          Object.keys(keys).sort().flatMap((chatId) => keys[chatId]!);
        const db1All = ordered({ [p.chatId]: [`${p.chatId}:1`, `${p.chatId}:3`], [other]: [`${other}:1`, `${other}:2`] });
        expect((await store.pending(p.db1, null, 100)).map(keyOf)).toEqual(db1All);
        expect((await store.pending(p.db1, null, 3)).map(keyOf)).toEqual(db1All.slice(0, 3));
        // Paging with the (chatId, seq) cursor yields the same messages, each once.
        for (const limit of [1, 2, 3]) expect((await allPending(p.db1, limit)).map(keyOf)).toEqual(db1All);
        // A cursor inside a chat continues from there.
        const [firstChat, secondChat] = [p.chatId, other].sort() as [string, string];
        expect((await store.pending(p.db1, { chatId: firstChat, seq: 1 }, 100)).map(keyOf)).toEqual(db1All.slice(1));
        expect((await store.pending(p.db1, { chatId: secondChat, seq: 0 }, 100)).map(keyOf)).toEqual(db1All.slice(2));

        // The sender's other device gets its messages; the others only what others sent.
        expect((await store.pending(p.db2, null, 100)).map(keyOf)).toEqual(
          ordered({ [p.chatId]: [1, 2, 3].map((s) => `${p.chatId}:${s}`), [other]: [`${other}:1`, `${other}:2`] }),
        );
        expect((await store.pending(p.da, null, 100)).map((m) => m.body)).toEqual(['b2']);
        expect(await store.pending(dc, null, 100)).toEqual([]);
        expect(await store.pending(newId('device'), null, 100)).toEqual([]);

        const one = (await store.pending(p.db2, { chatId: p.chatId, seq: 0 }, 1))[0]!;
        expect(one).toEqual({
          chatId: p.chatId, seq: 1, senderUserId: p.a, senderDeviceId: p.da, clientMsgId: one.clientMsgId, body: 'a1', ts: 5_000,
        });
      });

      it('after markDelivered holds only the later messages', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const c = await newUser(store);
        const dc = await newDevice(store, c);
        const other = (await store.getOrCreateDirectChat(p.b, c, newId('chat'), 2_100)).chatId;
        await store.appendMessages([fromA(p, '1'), fromA(p, '2'), fromA(p, '3')]);
        await store.appendMessages([newMessage(other, c, dc, 'x1'), newMessage(other, c, dc, 'x2')]);

        await store.markDelivered([{ chatId: p.chatId, seq: 2, deviceId: p.db1, at: 6_000 }]);
        const keys = (await store.pending(p.db1, null, 100)).map(keyOf);
        expect(keys.filter((k) => k.startsWith(p.chatId))).toEqual([`${p.chatId}:3`]);
        expect(keys.filter((k) => k.startsWith(other))).toEqual([`${other}:1`, `${other}:2`]);
        await store.markDelivered([{ chatId: other, seq: 2, deviceId: p.db1, at: 6_001 }]);
        expect((await store.pending(p.db1, null, 100)).map(keyOf)).toEqual([`${p.chatId}:3`]);
        await store.markDelivered([{ chatId: p.chatId, seq: 3, deviceId: p.db1, at: 6_002 }]);
        expect(await store.pending(p.db1, null, 100)).toEqual([]);
        // The other device of the same user still has all of it.
        expect(await store.pending(p.db2, null, 100)).toHaveLength(5);

        await store.appendMessages([fromA(p, '4')]);
        expect(seqsOf(await store.pending(p.db1, null, 100))).toEqual([4]);
      });
    });

    describe('pendingCount', () => {
      it("counts what pending lists (own messages, watermarks, a closed window left out), capped at the limit", async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const c = await newUser(store);
        const dc = await newDevice(store, c);
        const other = (await store.getOrCreateDirectChat(p.b, c, newId('chat'), 2_100)).chatId;
        await store.appendMessages([fromA(p, 'a1'), fromB(p, 'b2'), fromA(p, 'a3'), fromA(p, 'a4')]);
        await store.appendMessages([newMessage(other, c, dc, 'c1'), newMessage(other, c, dc, 'c2'), newMessage(other, c, dc, 'c3')]);
        await store.markDelivered([{ chatId: other, seq: 1, deviceId: p.db1, at: 6_000 }]);
        const agrees = async (deviceId: string): Promise<number> => {
          const all = (await store.pending(deviceId, null, 1_000)).length;
          expect(await store.pendingCount(deviceId, 1_000)).toBe(all);
          for (const limit of [0, 1, 2, all, all + 1]) {
            expect(await store.pendingCount(deviceId, limit)).toBe(Math.min(all, limit));
            expect(await store.pendingCount(deviceId, limit)).toBe((await store.pending(deviceId, null, limit)).length);
          }
          return all;
        };
        // db1: a1, a3, a4 (not its own b2), and c2, c3 after its watermark in the other chat.
        expect(await agrees(p.db1)).toBe(5);
        expect(await agrees(p.db2)).toBe(7);
        expect(await agrees(p.da)).toBe(1);
        expect(await agrees(dc)).toBe(0);
        expect(await store.pendingCount(newId('device'), 10)).toBe(0);
        await store.markDelivered([{ chatId: p.chatId, seq: 4, deviceId: p.db1, at: 6_001 }]);
        expect(await agrees(p.db1)).toBe(2);
        // A device whose window ended (its user was removed from a group) counts nothing after it.
        const [owner, m] = [await newUser(store), await newUser(store)];
        const [dOwner, dm] = [await newDevice(store, owner), await newDevice(store, m)];
        const group = newId('group');
        await newGroup(store, group, [{ userId: owner, role: 'admin' }, { userId: m, role: 'member' }], 1_000);
        await store.appendMessages([newMessage(group, owner, dOwner, 'g1')]);
        await store.commitGroupChange({
          chatId: group, version: 1, remove: [m],
          message: { senderUserId: owner, clientMsgId: newClientMsgId(), event: { type: 'removed', users: [m] }, ts: 2_000 },
        });
        await store.appendMessages([newMessage(group, owner, dOwner, 'g after'), newMessage(group, owner, dOwner, 'g after 2')]);
        // created, g1, the removal: not what came after.
        expect(await agrees(dm)).toBe(3);
        // The owner: the events (no sender device), not its own messages.
        expect(await agrees(dOwner)).toBe(2);
      });
    });

    describe('pendingInChat', () => {
      it("returns the chat's messages strictly between the bounds, not the device's own", async () => {
        const { store } = ctx;
        const p = await newPair(store);
        // 1 a, 2 a, 3 b (db1), 4 a, 5 a, 6 a
        await store.appendMessages([fromA(p), fromA(p), fromB(p), fromA(p), fromA(p), fromA(p)]);
        const inChat = async (deviceId: string, after: number, before: number, limit = 100) =>
          seqsOf(await store.pendingInChat(deviceId, p.chatId, after, before, limit));

        expect(await inChat(p.db1, 0, 7)).toEqual([1, 2, 4, 5, 6]);
        expect(await inChat(p.db1, 0, 4)).toEqual([1, 2]);
        expect(await inChat(p.db1, 1, 3)).toEqual([2]);
        expect(await inChat(p.db1, 2, 4)).toEqual([]);
        expect(await inChat(p.db1, 3, 3)).toEqual([]);
        expect(await inChat(p.db1, 4, 100)).toEqual([5, 6]);
        expect(await inChat(p.db1, 0, 100, 2)).toEqual([1, 2]);
        expect(await inChat(p.db2, 0, 100)).toEqual([1, 2, 3, 4, 5, 6]);
        expect(await inChat(p.da, 0, 100)).toEqual([3]);
        // The bounds decide, not the watermark.
        await store.markDelivered([{ chatId: p.chatId, seq: 5, deviceId: p.db1, at: 6_000 }]);
        expect(await inChat(p.db1, 0, 7)).toEqual([1, 2, 4, 5, 6]);

        expect(await store.pendingInChat(p.db1, newId('chat'), 0, 100, 100)).toEqual([]);
        const outsider = await newDevice(store, await newUser(store));
        expect(await inChat(outsider, 0, 100)).toEqual([]);
        // Nothing from before the device joined.
        const db3 = await newDevice(store, p.b);
        await store.appendMessages([fromA(p)]);
        expect(await inChat(db3, 0, 100)).toEqual([7]);
      });
    });

    describe('own messages', () => {
      it("do not hold the sender device's watermark", async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const delivered = async (deviceId: string) => (await store.progress(deviceId, p.chatId))?.deliveredSeq;

        // da is caught up: its own message moves it along.
        await store.appendMessages([fromA(p, '1')]);
        expect(await delivered(p.da)).toBe(1);
        expect(await store.pending(p.da, null, 10)).toEqual([]);
        // Several in one batch, too.
        await store.appendMessages([fromA(p, '2'), fromA(p, '3')]);
        expect(await delivered(p.da)).toBe(3);
        // The recipients are not moved.
        expect(await delivered(p.db1)).toBe(0);
        expect(await delivered(p.db2)).toBe(0);

        // db1 catches up, then sends: caught up again. Its user's other device still gets it.
        await store.markDelivered([{ chatId: p.chatId, seq: 3, deviceId: p.db1, at: 6_000 }]);
        await store.appendMessages([fromB(p, '4')]);
        expect(await delivered(p.db1)).toBe(4);
        expect(await store.pending(p.db1, null, 10)).toEqual([]);
        expect(seqsOf(await store.pending(p.db2, null, 10))).toEqual([1, 2, 3, 4]);
        expect(await delivered(p.da)).toBe(3);

        // Sending while something is pending does not skip it.
        await store.appendMessages([fromA(p, '5')]);
        expect(await delivered(p.da)).toBe(3);
        expect(seqsOf(await store.pending(p.da, null, 10))).toEqual([4]);
        // An ack past the own message covers it.
        await store.appendMessages([fromB(p, '6')]);
        await store.markDelivered([{ chatId: p.chatId, seq: 6, deviceId: p.da, at: 6_100 }]);
        expect(await delivered(p.da)).toBe(6);
        expect(await store.pending(p.da, null, 10)).toEqual([]);
      });
    });

    describe('markDelivered', () => {
      it('raises the device watermark to the acked seq, never back', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages([1, 2, 3, 4, 5].map((i) => fromA(p, `${i}`)));

        expect(await store.markDelivered([{ chatId: p.chatId, seq: 3, deviceId: p.db1, at: 10 }]))
          .toEqual([{ chatId: p.chatId, userId: p.b, seq: 3, at: 10 }]);
        expect((await store.progress(p.db1, p.chatId))?.deliveredSeq).toBe(3);
        expect(seqsOf(await store.pending(p.db1, null, 10))).toEqual([4, 5]);

        // Lower or equal acks (late, repeated) move nothing.
        expect(await store.markDelivered([{ chatId: p.chatId, seq: 2, deviceId: p.db1, at: 11 }])).toEqual([]);
        expect(await store.markDelivered([{ chatId: p.chatId, seq: 3, deviceId: p.db1, at: 12 }])).toEqual([]);
        expect((await store.progress(p.db1, p.chatId))?.deliveredSeq).toBe(3);
        expect(seqsOf(await store.pending(p.db1, null, 10))).toEqual([4, 5]);

        // In one call, out of order: the highest wins.
        expect(await store.markDelivered([
          { chatId: p.chatId, seq: 5, deviceId: p.db1, at: 13 },
          { chatId: p.chatId, seq: 4, deviceId: p.db1, at: 13 },
        ])).toEqual([{ chatId: p.chatId, userId: p.b, seq: 5, at: 13 }]);
        expect((await store.progress(p.db1, p.chatId))?.deliveredSeq).toBe(5);
        expect(await store.pending(p.db1, null, 10)).toEqual([]);
        // Only that device moved.
        expect((await store.progress(p.db2, p.chatId))?.deliveredSeq).toBe(0);
        expect(await store.markDelivered([])).toEqual([]);
      });

      it("moves the member watermark to the highest of the user's devices, and returns only moves", async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages([1, 2, 3, 4].map((i) => fromA(p, `${i}`)));

        const ch1 = await store.markDelivered([
          { chatId: p.chatId, seq: 1, deviceId: p.db1, at: 10 },
          { chatId: p.chatId, seq: 3, deviceId: p.db2, at: 12 },
        ]);
        expect(ch1).toEqual([{ chatId: p.chatId, userId: p.b, seq: 3, at: 12 }]);
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBe(3);

        // The device behind catching up moves itself, not the member.
        expect(await store.markDelivered([{ chatId: p.chatId, seq: 2, deviceId: p.db1, at: 20 }])).toEqual([]);
        expect((await store.progress(p.db1, p.chatId))?.deliveredSeq).toBe(2);
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBe(3);

        // Either device going further does.
        expect(await store.markDelivered([{ chatId: p.chatId, seq: 4, deviceId: p.db1, at: 30 }]))
          .toEqual([{ chatId: p.chatId, userId: p.b, seq: 4, at: 30 }]);
        expect(await store.markDelivered([{ chatId: p.chatId, seq: 4, deviceId: p.db2, at: 40 }])).toEqual([]);
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBe(4);
        // The sender's watermark is its own affair.
        expect((await store.getMember(p.chatId, p.a))?.deliveredSeq).toBe(0);
      });

      it('does not count, for the member, what a device added later never had', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages([fromA(p, '1'), fromA(p, '2'), fromA(p, '3')]);
        await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db1, at: 10 }]);
        const db3 = await newDevice(store, p.b, 20); // joins at 3
        await store.appendMessages([fromA(p, '4')]);

        // db3 has 4, but 2 and 3 reached none of b's devices yet.
        expect(await store.markDelivered([{ chatId: p.chatId, seq: 4, deviceId: db3, at: 30 }])).toEqual([]);
        expect((await store.progress(db3, p.chatId))?.deliveredSeq).toBe(4);
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBe(1);
        const st3 = (await store.messageStatus(p.chatId, 3))!.recipients;
        expect(st3.every((r) => r.deliveredAt === null)).toBe(true);

        // Once an older device closes the gap, the member covers db3's messages too.
        expect(await store.markDelivered([{ chatId: p.chatId, seq: 3, deviceId: p.db2, at: 40 }]))
          .toEqual([{ chatId: p.chatId, userId: p.b, seq: 4, at: 40 }]);
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBe(4);
      });

      it("is not held back by the user's own messages, even once the device that sent them is gone", async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages([fromA(p, '1'), fromA(p, '2'), fromA(p, '3')]);
        const da2 = await newDevice(store, p.a, 20); // joins at 3
        expect(await store.revokeDevice(p.da, 30)).toBe(true);
        await store.appendMessages([fromB(p, '4')]);
        expect(await store.markDelivered([{ chatId: p.chatId, seq: 4, deviceId: da2, at: 40 }]))
          .toEqual([{ chatId: p.chatId, userId: p.a, seq: 4, at: 40 }]);
        expect((await store.getMember(p.chatId, p.a))?.deliveredSeq).toBe(4);
      });

      it('ignores acks for unknown devices and chats, and chats the device is not in', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const c = await newUser(store);
        const dc = await newDevice(store, c);
        const other = (await store.getOrCreateDirectChat(p.a, c, newId('chat'), 2_100)).chatId;
        await store.appendMessages([fromA(p, '1'), newMessage(other, p.a, p.da, 'x')]);

        expect(await store.markDelivered([
          { chatId: p.chatId, seq: 1, deviceId: newId('device'), at: 5 },
          { chatId: newId('chat'), seq: 1, deviceId: p.db1, at: 5 },
          { chatId: other, seq: 1, deviceId: p.db1, at: 5 },
          { chatId: p.chatId, seq: 1, deviceId: dc, at: 5 },
        ])).toEqual([]);
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBe(0);
        expect((await store.getMember(other, c))?.deliveredSeq).toBe(0);
        expect(await store.progress(p.db1, other)).toBeNull();
        expect(await store.progress(dc, p.chatId)).toBeNull();
        expect(seqsOf(await store.pending(p.db1, null, 10))).toEqual([1]);
        expect(seqsOf(await store.pending(dc, null, 10))).toEqual([1]);

        // A known ack in the same call still counts.
        expect(await store.markDelivered([
          { chatId: other, seq: 1, deviceId: p.db1, at: 6 },
          { chatId: other, seq: 1, deviceId: dc, at: 7 },
        ])).toEqual([{ chatId: other, userId: c, seq: 1, at: 7 }]);
      });

      it('reports each (chat, user) that moved, across chats', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const c = await newUser(store);
        const dc = await newDevice(store, c);
        const other = (await store.getOrCreateDirectChat(p.a, c, newId('chat'), 1)).chatId;
        await store.appendMessages([fromA(p), newMessage(other, p.a, p.da, 'c', 1)]);
        const ch = await store.markDelivered([
          { chatId: p.chatId, seq: 1, deviceId: p.db2, at: 1 },
          { chatId: other, seq: 1, deviceId: dc, at: 2 },
        ]);
        expect([...ch].sort((x, y) => x.at - y.at)).toEqual([
          { chatId: p.chatId, userId: p.b, seq: 1, at: 1 },
          { chatId: other, userId: c, seq: 1, at: 2 },
        ]);
      });
    });

    describe('markRead', () => {
      it('raises readSeq and deliveredSeq with it; null when not higher', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages([fromA(p, '1'), fromA(p, '2'), fromA(p, '3')]);
        await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db1, at: 50 }]);

        expect(await store.markRead(p.chatId, p.b, 2, 100)).toEqual({ chatId: p.chatId, userId: p.b, seq: 2, at: 100 });
        expect(await store.getMember(p.chatId, p.b)).toMatchObject({ readSeq: 2, deliveredSeq: 2 });
        // The member already has 2 delivered: a device acking it moves no member watermark.
        expect(await store.markDelivered([{ chatId: p.chatId, seq: 2, deviceId: p.db2, at: 120 }])).toEqual([]);

        // Not higher: null, nothing changes.
        expect(await store.markRead(p.chatId, p.b, 2, 200)).toBeNull();
        expect(await store.markRead(p.chatId, p.b, 1, 200)).toBeNull();
        expect(await store.getMember(p.chatId, p.b)).toMatchObject({ readSeq: 2, deliveredSeq: 2 });

        // Further.
        expect(await store.markRead(p.chatId, p.b, 3, 300)).toEqual({ chatId: p.chatId, userId: p.b, seq: 3, at: 300 });
        expect(await store.getMember(p.chatId, p.b)).toMatchObject({ readSeq: 3, deliveredSeq: 3 });
      });

      it('does not lower a delivered watermark that is ahead', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages([fromA(p), fromA(p), fromA(p)]);
        await store.markDelivered([{ chatId: p.chatId, seq: 3, deviceId: p.db1, at: 10 }]);
        expect(await store.markRead(p.chatId, p.b, 1, 20)).toEqual({ chatId: p.chatId, userId: p.b, seq: 1, at: 20 });
        expect(await store.getMember(p.chatId, p.b)).toMatchObject({ readSeq: 1, deliveredSeq: 3 });
      });

      it('returns null for a non-member or an unknown chat, and touches only that user', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages([fromA(p), fromB(p)]);
        expect(await store.markRead(p.chatId, await newUser(store), 2, 1)).toBeNull();
        expect(await store.markRead(newId('chat'), p.b, 2, 1)).toBeNull();

        expect(await store.markRead(p.chatId, p.a, 2, 9)).toEqual({ chatId: p.chatId, userId: p.a, seq: 2, at: 9 });
        expect(await store.getMember(p.chatId, p.b)).toMatchObject({ readSeq: 0, deliveredSeq: 0 });
        const s1 = (await store.messageStatus(p.chatId, 1))!.recipients;
        expect(s1.every((x) => x.readAt === null)).toBe(true);
        const s2 = (await store.messageStatus(p.chatId, 2))!.recipients;
        expect(s2.find((x) => x.deviceId === p.da)?.readAt).toBe(9);
        expect(s2.find((x) => x.deviceId === p.db2)?.readAt).toBeNull();
      });
    });

    describe('isRecipient', () => {
      it('is true for a stored message meant for the device: not its own, not from before it joined', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages([fromA(p), fromB(p)]);
        expect(await store.isRecipient(p.db1, p.chatId, 1)).toBe(true);
        expect(await store.isRecipient(p.db2, p.chatId, 1)).toBe(true);
        expect(await store.isRecipient(p.da, p.chatId, 1)).toBe(false); // its own
        expect(await store.isRecipient(p.da, p.chatId, 2)).toBe(true);
        expect(await store.isRecipient(p.db2, p.chatId, 2)).toBe(true); // the sender's other device
        expect(await store.isRecipient(p.db1, p.chatId, 2)).toBe(false);
        expect(await store.isRecipient(p.db1, p.chatId, 3)).toBe(false); // not stored
        expect(await store.isRecipient(p.db1, p.chatId, 0)).toBe(false);
        expect(await store.isRecipient(p.db1, newId('chat'), 1)).toBe(false);
        expect(await store.isRecipient(newId('device'), p.chatId, 1)).toBe(false);
        expect(await store.isRecipient(await newDevice(store, await newUser(store)), p.chatId, 1)).toBe(false);
        // Still true once delivered and read.
        await store.markDelivered([{ chatId: p.chatId, seq: 2, deviceId: p.db1, at: 1 }]);
        await store.markRead(p.chatId, p.b, 2, 2);
        expect(await store.isRecipient(p.db1, p.chatId, 1)).toBe(true);
      });
    });

    describe('messageStatus', () => {
      it('lists each recipient device with its user’s delivered and read times', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const [first] = await store.appendMessages([fromA(p, '1', 5_000), fromA(p, '2', 5_001), fromA(p, '3', 5_002)]);
        await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db1, at: 10 }]);
        await store.markDelivered([{ chatId: p.chatId, seq: 3, deviceId: p.db2, at: 20 }]);

        const status = async (seq: number) => {
          const s = await store.messageStatus(p.chatId, seq);
          return s && { message: s.message, recipients: byDevice(s.recipients) };
        };
        const row = (deviceId: string, deliveredAt: number | null, readAt: number | null) =>
          ({ userId: p.b, deviceId, deliveredAt, readAt });

        // deliveredAt: when the user first had it (seq 1 reached db1 at 10), null on a device without it.
        expect(await status(1)).toEqual({ message: first!.message, recipients: byDevice([row(p.db1, 10, null), row(p.db2, 10, null)]) });
        expect((await status(2))?.recipients).toEqual(byDevice([row(p.db1, null, null), row(p.db2, 20, null)]));
        expect((await status(3))?.recipients).toEqual(byDevice([row(p.db1, null, null), row(p.db2, 20, null)]));

        // Read is per user.
        await store.markRead(p.chatId, p.b, 2, 30);
        expect((await status(1))?.recipients).toEqual(byDevice([row(p.db1, 10, 30), row(p.db2, 10, 30)]));
        expect((await status(2))?.recipients).toEqual(byDevice([row(p.db1, null, 30), row(p.db2, 20, 30)]));
        expect((await status(3))?.recipients).toEqual(byDevice([row(p.db1, null, null), row(p.db2, 20, null)]));
        await store.markRead(p.chatId, p.b, 3, 40);
        expect((await status(3))?.recipients).toEqual(byDevice([row(p.db1, null, 40), row(p.db2, 20, 40)]));
        expect((await status(2))?.recipients).toEqual(byDevice([row(p.db1, null, 30), row(p.db2, 20, 30)]));

        // db1 catching up later keeps the user's first time.
        await store.markDelivered([{ chatId: p.chatId, seq: 3, deviceId: p.db1, at: 50 }]);
        expect((await status(2))?.recipients).toEqual(byDevice([row(p.db1, 20, 30), row(p.db2, 20, 30)]));

        expect(await store.messageStatus(p.chatId, 4)).toBeNull();
        expect(await store.messageStatus(newId('chat'), 1)).toBeNull();
      });

      it('takes the time of the first watermark move covering the seq', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages([fromA(p), fromA(p), fromA(p)]);
        // One ack covers 1..3; the other device's later acks do not change the time.
        await store.markDelivered([{ chatId: p.chatId, seq: 3, deviceId: p.db1, at: 10 }]);
        await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db2, at: 50 }]);
        for (const seq of [1, 2, 3]) {
          const st = await store.messageStatus(p.chatId, seq);
          expect(st?.recipients.find((r) => r.deviceId === p.db1)?.deliveredAt).toBe(10);
        }
        expect((await store.messageStatus(p.chatId, 1))?.recipients.find((r) => r.deviceId === p.db2)?.deliveredAt).toBe(10);

        // Read first, delivered later: reading moved the delivered watermark first.
        await store.appendMessages([fromA(p)]);
        await store.markRead(p.chatId, p.b, 4, 60);
        const before = (await store.messageStatus(p.chatId, 4))!.recipients.find((r) => r.deviceId === p.db1);
        expect(before).toEqual({ userId: p.b, deviceId: p.db1, deliveredAt: null, readAt: 60 });
        await store.markDelivered([{ chatId: p.chatId, seq: 4, deviceId: p.db1, at: 70 }]);
        const after = (await store.messageStatus(p.chatId, 4))!.recipients.find((r) => r.deviceId === p.db1);
        expect(after).toEqual({ userId: p.b, deviceId: p.db1, deliveredAt: 60, readAt: 60 });
      });

      it("leaves out the sender device but not the sender's other devices", async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages([fromB(p)]);
        await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db2, at: 9 }]);
        const st = (await store.messageStatus(p.chatId, 1))!;
        expect(st.message.senderDeviceId).toBe(p.db1);
        expect(byDevice(st.recipients).map((r) => [r.userId, r.deviceId])).toEqual(
          byDevice([{ userId: p.a, deviceId: p.da }, { userId: p.b, deviceId: p.db2 }]).map((r) => [r.userId, r.deviceId]),
        );
        expect(st.recipients.find((r) => r.deviceId === p.da)).toEqual({ userId: p.a, deviceId: p.da, deliveredAt: null, readAt: null });
        expect(st.recipients.find((r) => r.deviceId === p.db2)?.deliveredAt).not.toBeNull();
      });

      it('leaves out revoked devices and devices that joined after the message', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages([fromA(p)]);
        const db3 = await newDevice(store, p.b);
        await store.revokeDevice(p.db2, 6_000);
        await store.appendMessages([fromA(p)]);
        expect((await store.messageStatus(p.chatId, 1))!.recipients.map((r) => r.deviceId)).toEqual([p.db1]);
        expect(byDevice((await store.messageStatus(p.chatId, 2))!.recipients).map((r) => r.deviceId))
          .toEqual(byDevice([{ deviceId: p.db1 }, { deviceId: db3 }]).map((r) => r.deviceId));
      });

      it('covers every member device of a group', async () => {
        const { store } = ctx;
        const users = [await newUser(store), await newUser(store), await newUser(store)];
        const devices = [await newDevice(store, users[0]!), await newDevice(store, users[1]!), await newDevice(store, users[2]!)];
        const extra = await newDevice(store, users[2]!);
        const chatId = newId('chat');
        await newGroup(store, chatId, users.map((userId) => ({ userId, role: 'member' as const })), 1);
        await store.appendMessages([newMessage(chatId, users[0]!, devices[0]!, 'hello group')]);
        await store.markDelivered([{ chatId, seq: 2, deviceId: extra, at: 7 }]);
        expect(byDevice((await store.messageStatus(chatId, 2))!.recipients)).toEqual(byDevice([
          { userId: users[1]!, deviceId: devices[1]!, deliveredAt: null, readAt: null },
          { userId: users[2]!, deviceId: devices[2]!, deliveredAt: null, readAt: null },
          { userId: users[2]!, deviceId: extra, deliveredAt: 7, readAt: null },
        ]));
      });
    });

    describe('tally', () => {
      it("counts the other members that have a seq delivered and read, leaving out the sender", async () => {
        const { store } = ctx;
        const users = [await newUser(store), await newUser(store), await newUser(store), await newUser(store)];
        const devices = await Promise.all(users.map((u) => newDevice(store, u)));
        const chatId = newId('chat');
        await newGroup(store, chatId, users.map((userId) => ({ userId, role: 'member' as const })), 1);
        await store.appendMessages([newMessage(chatId, users[0]!, devices[0]!, 'one'), newMessage(chatId, users[0]!, devices[0]!, 'two')]);
        expect(await store.tally(chatId, 2, users[0]!)).toEqual({ of: 3, delivered: 0, read: 0 });
        await store.markDelivered([
          { chatId, seq: 2, deviceId: devices[1]!, at: 5 },
          { chatId, seq: 1, deviceId: devices[2]!, at: 5 },
        ]);
        await store.markRead(chatId, users[3]!, 2, 6);
        expect(await store.tally(chatId, 2, users[0]!)).toEqual({ of: 3, delivered: 2, read: 1 });
        expect(await store.tally(chatId, 1, users[0]!)).toEqual({ of: 3, delivered: 3, read: 1 });
        expect(await store.tally(newId('chat'), 1, users[0]!)).toEqual({ of: 0, delivered: 0, read: 0 });
      });
    });
  });
}
