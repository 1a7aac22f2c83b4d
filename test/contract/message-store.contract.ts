/** The MessageStore contract: each message stored once per chat, idempotently, with its chat's next seq. */
import { describe, expect, it } from 'vitest';
import { type Body } from '@parley/client-sdk';
import { newId } from '@parley/client-sdk/protocol';
import { StoreError, type NewMessage } from '../../services/src/store/types.js';
import {
  errorOf, expectBody, fromA, fromB, newClientMsgId, newDevice, newMessage, newPair, newUser, seqsOf, useStore,
  type StoreFactory,
} from './helpers.js';

export function messageStoreContract(factory: StoreFactory): void {
  describe('MessageStore', () => {
    const ctx = useStore(factory);

    describe('appendMessages', () => {
      it('assigns seq 1..n in order within a batch and across batches', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const r1 = await store.appendMessages([fromA(p, 'one'), fromB(p, 'two'), fromA(p, 'three')]);
        expect(r1.map((r) => r.message!.seq)).toEqual([1, 2, 3]);
        expect(r1.map((r) => r.created)).toEqual([true, true, true]);
        expect(r1.map((r) => r.message!.body)).toEqual(['one', 'two', 'three']);
        const r2 = await store.appendMessages([fromB(p, 'four'), fromA(p, 'five')]);
        expect(r2.map((r) => r.message!.seq)).toEqual([4, 5]);
        expect((await store.getChat(p.chatId))?.lastSeq).toBe(5);
        expect(await store.appendMessages([])).toEqual([]);

        const first = r1[0]!;
        expect(first.message).toEqual({
          chatId: p.chatId, seq: 1, senderUserId: p.a, senderDeviceId: p.da, clientMsgId: first.message!.clientMsgId,
          body: 'one', ts: 5_000,
        });
        expect((await store.history(p.chatId, 0, 10)).map((m) => m.body)).toEqual(['one', 'two', 'three', 'four', 'five']);
      });

      it('stores a message repeated within one batch once, interleaved with two chats and a resend', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const q = await newPair(store);
        const [old] = await store.appendMessages([fromA(p, 'earlier', 5_000, 'old-1')]);
        const r = await store.appendMessages([
          fromA(p, 'x', 5_000, 'rep-1'), fromA(q, 'y'), fromA(p, 'x again', 5_000, 'rep-1'), fromA(p, 'earlier', 5_000, 'old-1'), fromB(p, 'z'),
        ]);
        expect(r.map((x) => x.created)).toEqual([true, true, false, false, true]);
        expect(r.map((x) => `${x.message!.chatId === p.chatId ? 'p' : 'q'}${x.message!.seq}`)).toEqual(['p2', 'q1', 'p2', 'p1', 'p3']);
        expect(r[2]!.message!.body).toBe('x');
        expect(r[3]!.message).toEqual(old!.message);
        expect((await store.history(p.chatId, 0, 10)).map((m) => m.body)).toEqual(['earlier', 'x', 'z']);
        // The sender's own run (1, 2) moved its watermark; 3 is B's.
        expect((await store.progress(p.da, p.chatId))?.deliveredSeq).toBe(2);
      });

      it('is idempotent by (senderDeviceId, clientMsgId)', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const msg = fromA(p, 'original', 5_000, 'dup-1');
        const [first] = await store.appendMessages([msg]);
        expect(first?.created).toBe(true);
        await store.appendMessages([fromA(p, 'other')]);

        const [again] = await store.appendMessages([{ ...msg, body: 'retry', ts: 9_999 }]);
        expect(again?.created).toBe(false);
        expect(again?.message).toEqual(first?.message);
        expect((await store.getChat(p.chatId))?.lastSeq).toBe(2);
        expect(await store.history(p.chatId, 0, 10)).toHaveLength(2);

        // Within one batch too: the second copy is the first one.
        const twin = fromB(p, 'twin', 6_000, 'dup-2');
        const res = await store.appendMessages([twin, fromA(p, 'between'), { ...twin, body: 'twin again' }]);
        expect(res.map((r) => [r.message!.seq, r.created])).toEqual([[3, true], [4, true], [3, false]]);
        expect(res[2]?.message!.body).toBe('twin');
        expect(await store.history(p.chatId, 0, 10)).toHaveLength(4);

        // The same clientMsgId from another device is another message.
        const [fromOtherDevice] = await store.appendMessages([{ ...fromB(p, 'x', 7_000, 'dup-1'), senderDeviceId: p.db2 }]);
        expect(fromOtherDevice?.created).toBe(true);
        expect(fromOtherDevice?.message!.seq).toBe(5);
      });

      it('round-trips text and bytes bodies with their types', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const bodies: Body[] = [
          'plain text',
          'ünïcödé ✓ 💬',
          '',
          new Uint8Array([0, 1, 2, 253, 254, 255]),
          new Uint8Array(0),
          new TextEncoder().encode('bytes that look like text'),
          new Uint8Array(new ArrayBuffer(16), 4, 8).fill(7), // a view with an offset
        ];
        const res = await store.appendMessages(bodies.map((b) => fromA(p, b)));
        res.forEach((r, i) => expectBody(r.message!.body, bodies[i]!));

        const hist = await store.history(p.chatId, 0, 100);
        expect(hist).toHaveLength(bodies.length);
        hist.forEach((m, i) => expectBody(m.body, bodies[i]!));

        for (const [i, b] of bodies.entries()) {
          const got = await store.getMessage(p.chatId, i + 1);
          expectBody(got!.body, b);
        }
        const pending = await store.pending(p.db1, null, 100);
        pending.forEach((m, i) => expectBody(m.body, bodies[i]!));
        const inChat = await store.pendingInChat(p.db1, p.chatId, 0, 100, 100);
        inChat.forEach((m, i) => expectBody(m.body, bodies[i]!));
        expectBody((await store.messageStatus(p.chatId, 4))!.message.body, bodies[3]!);

        // A duplicate returns the stored body with its type.
        const [dup] = await store.appendMessages([{ ...fromA(p), clientMsgId: res[3]!.message!.clientMsgId }]);
        expect(dup?.created).toBe(false);
        expectBody(dup!.message!.body, bodies[3]!);
      });

      it('keeps seqs per chat in a batch spanning two chats', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const c = await newUser(store);
        await newDevice(store, c);
        const other = await store.getOrCreateDirectChat(p.a, c, newId('chat'), 1);
        const toC = (body: string): NewMessage => newMessage(other.chatId, p.a, p.da, body, 1);
        const res = await store.appendMessages([fromA(p, 'b1'), toC('c1'), fromA(p, 'b2'), toC('c2'), toC('c3')]);
        expect(res.map((r) => [r.message!.chatId, r.message!.seq])).toEqual([
          [p.chatId, 1], [other.chatId, 1], [p.chatId, 2], [other.chatId, 2], [other.chatId, 3],
        ]);
        expect((await store.getChat(p.chatId))?.lastSeq).toBe(2);
        expect((await store.getChat(other.chatId))?.lastSeq).toBe(3);
        expect((await store.history(other.chatId, 0, 10)).map((m) => m.body)).toEqual(['c1', 'c2', 'c3']);
        expect((await store.history(p.chatId, 0, 10)).map((m) => m.body)).toEqual(['b1', 'b2']);
      });

      it('gives concurrent appends to one chat distinct, gap-free seqs', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const res = await Promise.all(Array.from({ length: 12 }, (_, i) =>
          store.appendMessages(i % 2 ? [fromA(p, `a${i}`)] : [fromB(p, `b${i}`), fromB(p, `b${i}'`)])));
        const seqs = res.flat().map((r) => r.message!.seq);
        for (const batch of res) {
          const s = batch.map((r) => r.message!.seq);
          expect(s).toEqual([...s].sort((x, y) => x - y));
        }
        expect([...seqs].sort((x, y) => x - y)).toEqual(Array.from({ length: 18 }, (_, i) => i + 1));
        expect((await store.getChat(p.chatId))?.lastSeq).toBe(18);
      });

      it('rejects a batch naming an unknown chat with NOT_FOUND and stores none of it', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const ghost: NewMessage = { ...fromA(p, 'lost'), chatId: newId('chat') };
        const err = await errorOf(store.appendMessages([fromA(p, 'kept?'), ghost]));
        expect(err).toBeInstanceOf(StoreError);
        expect((err as StoreError).code).toBe('NOT_FOUND');
        expect(await store.history(p.chatId, 0, 10)).toEqual([]);
        expect((await store.getChat(p.chatId))?.lastSeq).toBe(0);
        expect(await store.pending(p.db1, null, 10)).toEqual([]);
      });
    });

    describe('reading messages', () => {
      it('history pages a chat ascending after a seq', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages(Array.from({ length: 7 }, (_, i) => fromA(p, `m${i + 1}`, 100 + i)));
        expect(seqsOf(await store.history(p.chatId, 0, 3))).toEqual([1, 2, 3]);
        expect(seqsOf(await store.history(p.chatId, 3, 3))).toEqual([4, 5, 6]);
        expect((await store.history(p.chatId, 6, 3)).map((m) => m.body)).toEqual(['m7']);
        expect(await store.history(p.chatId, 7, 3)).toEqual([]);
        expect(await store.history(newId('chat'), 0, 3)).toEqual([]);
        const [m1] = await store.history(p.chatId, 0, 1);
        expect(m1).toEqual({
          chatId: p.chatId, seq: 1, senderUserId: p.a, senderDeviceId: p.da, clientMsgId: m1!.clientMsgId, body: 'm1', ts: 100,
        });
      });

      it('getMessage returns one message or null', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const clientMsgId = newClientMsgId();
        await store.appendMessages([fromA(p, 'status?', 4_242, clientMsgId)]);
        expect(await store.getMessage(p.chatId, 1)).toEqual({
          chatId: p.chatId, seq: 1, senderUserId: p.a, senderDeviceId: p.da, clientMsgId, body: 'status?', ts: 4_242,
        });
        expect(await store.getMessage(p.chatId, 2)).toBeNull();
        expect(await store.getMessage(p.chatId, 0)).toBeNull();
        expect(await store.getMessage(newId('chat'), 1)).toBeNull();
      });
    });
  });
}
