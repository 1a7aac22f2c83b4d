/** The StoreLifecycle contract: init() and expire(). */
import { describe, expect, it } from 'vitest';
import { fromA, fromB, newPair, newPhone, newUser, seqsOf, useStore, type StoreFactory } from './helpers.js';

export function lifecycleContract(factory: StoreFactory): void {
  describe('StoreLifecycle', () => {
    const ctx = useStore(factory);

    it('init() is idempotent and keeps the data', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      await store.init();
      expect((await store.getUser(u))?.userId).toBe(u);
    });

    it('expire removes old messages, older watermark history and expired registrations, and keeps the rest', async () => {
      const { store } = ctx;
      const p = await newPair(store);
      // 1 old1 (a), 2 old2 (b from db1), 3 edge (a), 4 new (a)
      await store.appendMessages([fromA(p, 'old1', 100), fromB(p, 'old2', 200), fromA(p, 'edge', 500), fromA(p, 'new', 1_000)]);
      // Watermark moves: three before the cutoff, three at or after it.
      await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db1, at: 300 }]); // b delivered 1 @300
      await store.markRead(p.chatId, p.b, 1, 400); // b read 1 @400
      await store.markDelivered([{ chatId: p.chatId, seq: 2, deviceId: p.da, at: 450 }]); // a delivered 2 @450
      await store.markDelivered([{ chatId: p.chatId, seq: 3, deviceId: p.db1, at: 500 }]); // b delivered 3 @500
      await store.markDelivered([{ chatId: p.chatId, seq: 4, deviceId: p.db2, at: 1_100 }]); // b delivered 4 @1100
      await store.markRead(p.chatId, p.b, 3, 1_200); // b read 3 @1200

      const keepPhone = newPhone();
      const dropPhone = newPhone();
      await store.putPendingRegistration({ phone: keepPhone, codeHash: 'k', expiresAt: 10_000, attempts: 0, createdAt: 1 });
      await store.putPendingRegistration({ phone: dropPhone, codeHash: 'd', expiresAt: 4_000, attempts: 0, createdAt: 1 });

      expect(await store.expire(500, 5_000)).toEqual({ messages: 2, marks: 3, registrations: 1 });

      // ts < before only: the message at exactly `before` stays.
      expect((await store.history(p.chatId, 0, 10)).map((m) => m.body)).toEqual(['edge', 'new']);
      expect(await store.getMessage(p.chatId, 1)).toBeNull();
      expect(await store.messageStatus(p.chatId, 2)).toBeNull();
      expect(await store.isRecipient(p.db1, p.chatId, 1)).toBe(false);
      expect(await store.isRecipient(p.db1, p.chatId, 3)).toBe(true);
      // The kept messages keep their times (the move at exactly `before` stays too).
      const st3 = (await store.messageStatus(p.chatId, 3))!.recipients;
      expect(st3.map((r) => [r.deviceId, r.deliveredAt, r.readAt]).sort()).toEqual(
        [[p.db1, 500, 1_200], [p.db2, 500, 1_200]].sort(),
      );
      const st4 = (await store.messageStatus(p.chatId, 4))!.recipients;
      expect(st4.map((r) => [r.deviceId, r.deliveredAt, r.readAt]).sort()).toEqual(
        [[p.db1, null, null], [p.db2, 1_100, null]].sort(),
      );
      expect(seqsOf(await store.pending(p.db1, null, 10))).toEqual([4]);
      expect(seqsOf(await store.pending(p.da, null, 10))).toEqual([]);
      expect(await store.getMember(p.chatId, p.b)).toMatchObject({ deliveredSeq: 4, readSeq: 3 });
      expect(await store.getPendingRegistration(dropPhone)).toBeNull();
      expect((await store.getPendingRegistration(keepPhone))?.codeHash).toBe('k');

      // Seqs keep counting after expiry.
      const [next] = await store.appendMessages([fromA(p, 'after')]);
      expect(next?.message!.seq).toBe(5);

      expect(await store.expire(500, 5_000)).toEqual({ messages: 0, marks: 0, registrations: 0 });
    });
  });
}
