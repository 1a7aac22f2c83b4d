/**
 * The Store contract: one suite, run against every adapter (test/store.sqlite.test.ts,
 * test/store.mongo.test.ts). It goes through the `Store` interface only, so whatever passes here
 * is interchangeable for the services.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newId, type Body } from '@parley/client-sdk';
import { StoreError, type NewMessage, type Store, type StoredMessage } from '../../services/src/store/types.js';

export type StoreFactory = () => Promise<{ store: Store; cleanup: () => Promise<void> }>;

let phoneCounter = 0;
/** A phone number no other test (or concurrent worker) uses. */
function newPhone(): string {
  phoneCounter++;
  const rnd = Math.floor(Math.random() * 1e6).toString().padStart(6, '0');
  return `+44${rnd}${(phoneCounter % 10000).toString().padStart(4, '0')}`;
}

let clientMsgCounter = 0;
const newClientMsgId = (): string => `m${(++clientMsgCounter).toString(36)}${newId('chat').slice(1, 7)}`;

function expectBody(actual: Body, expected: Body): void {
  if (typeof expected === 'string') {
    expect(typeof actual).toBe('string');
    expect(actual).toBe(expected);
  } else {
    expect(actual).toBeInstanceOf(Uint8Array);
    expect(typeof actual).not.toBe('string');
    expect(Array.from(actual as Uint8Array)).toEqual(Array.from(expected));
  }
}

const byDevice = <T extends { deviceId: string }>(xs: T[]): T[] =>
  [...xs].sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));

const keyOf = (m: StoredMessage): string => `${m.chatId}:${m.seq}`;

export function storeContract(name: string, makeStore: StoreFactory): void {
  describe(name, () => {
    let store: Store;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      const made = await makeStore();
      store = made.store;
      cleanup = made.cleanup;
      await store.init();
    });

    afterEach(async () => {
      await cleanup();
    });

    // ---- helpers (through the port only) ----

    async function user(): Promise<string> {
      const { user } = await store.getOrCreateUserByPhone(newPhone(), newId('user'), 1_000);
      return user.userId;
    }

    async function device(userId: string, createdAt = 1_000): Promise<string> {
      const deviceId = newId('device');
      await store.addDevice({ deviceId, userId, tokenHash: 'h'.repeat(64), name: 'phone', createdAt }, 10);
      return deviceId;
    }

    /** Alice (one device) and Bob (two devices) in a direct chat. */
    async function pair() {
      const a = await user();
      const b = await user();
      const da = await device(a);
      const db1 = await device(b, 1_001);
      const db2 = await device(b, 1_002);
      const chat = await store.getOrCreateDirectChat(a, b, newId('chat'), 2_000);
      return { a, b, da, db1, db2, chatId: chat.chatId };
    }

    type P = Awaited<ReturnType<typeof pair>>;

    function fromA(p: P, body: Body = 'hi', ts = 5_000, clientMsgId = newClientMsgId()): NewMessage {
      return {
        chatId: p.chatId, senderUserId: p.a, senderDeviceId: p.da, clientMsgId, body, ts,
        recipients: [{ deviceId: p.db1, userId: p.b }, { deviceId: p.db2, userId: p.b }],
      };
    }

    function fromB(p: P, body: Body = 'yo', ts = 5_000, clientMsgId = newClientMsgId()): NewMessage {
      return {
        chatId: p.chatId, senderUserId: p.b, senderDeviceId: p.db1, clientMsgId, body, ts,
        recipients: [{ deviceId: p.da, userId: p.a }, { deviceId: p.db2, userId: p.b }],
      };
    }

    // ---- lifecycle ----

    it('init() is idempotent and keeps the data', async () => {
      const u = await user();
      await store.init();
      expect((await store.getUser(u))?.userId).toBe(u);
    });

    // ---- users ----

    describe('users', () => {
      it('getOrCreateUserByPhone creates once, then returns the same user', async () => {
        const phone = newPhone();
        const id1 = newId('user');
        const first = await store.getOrCreateUserByPhone(phone, id1, 111);
        expect(first.created).toBe(true);
        expect(first.user).toEqual({ userId: id1, phone, createdAt: 111 });

        const second = await store.getOrCreateUserByPhone(phone, newId('user'), 222);
        expect(second.created).toBe(false);
        expect(second.user).toEqual({ userId: id1, phone, createdAt: 111 });

        expect(await store.getUser(id1)).toEqual(first.user);
        expect(await store.getUserByPhone(phone)).toEqual(first.user);
        expect(await store.getUser(newId('user'))).toBeNull();
        expect(await store.getUserByPhone(newPhone())).toBeNull();
      });

      it('getUsersByPhones returns the known users and leaves out unknown phones', async () => {
        const p1 = newPhone();
        const p2 = newPhone();
        const u1 = (await store.getOrCreateUserByPhone(p1, newId('user'), 1)).user;
        const u2 = (await store.getOrCreateUserByPhone(p2, newId('user'), 2)).user;
        await user(); // someone not asked for

        const found = await store.getUsersByPhones([p2, newPhone(), p1]);
        expect([...found].sort((x, y) => x.createdAt - y.createdAt)).toEqual([u1, u2]);
        expect(await store.getUsersByPhones([newPhone()])).toEqual([]);
        expect(await store.getUsersByPhones([])).toEqual([]);
      });
    });

    // ---- devices ----

    describe('devices', () => {
      it('addDevice, getDevice, listDevices (oldest first), listDevicesOfUsers', async () => {
        const u = await user();
        const other = await user();
        const newer = { deviceId: newId('device'), userId: u, tokenHash: 'a'.repeat(64), name: 'laptop', createdAt: 20 };
        const older = { deviceId: newId('device'), userId: u, tokenHash: 'b'.repeat(64), name: 'phone', createdAt: 10 };
        await store.addDevice(newer, 5);
        await store.addDevice(older, 5);
        const otherDev = await device(other);
        await device(await user()); // a third user's device, never asked for

        expect(await store.getDevice(newer.deviceId)).toEqual({ ...newer, revokedAt: null });
        expect(await store.getDevice(newId('device'))).toBeNull();
        expect((await store.listDevices(u)).map((d) => d.deviceId)).toEqual([older.deviceId, newer.deviceId]);
        expect(await store.listDevices(newId('user'))).toEqual([]);

        const both = await store.listDevicesOfUsers([u, other]);
        expect(byDevice(both).map((d) => d.deviceId)).toEqual(
          [older.deviceId, newer.deviceId, otherDev].sort(),
        );
        expect(await store.listDevicesOfUsers([])).toEqual([]);
      });

      it('addDevice enforces the active device limit with DEVICE_LIMIT', async () => {
        const u = await user();
        const mk = (createdAt: number) => ({ deviceId: newId('device'), userId: u, tokenHash: 'c'.repeat(64), name: 'x', createdAt });
        const d1 = mk(1);
        await store.addDevice(d1, 2);
        await store.addDevice(mk(2), 2);
        const third = mk(3);
        const err = await store.addDevice(third, 2).then(() => null, (e: unknown) => e);
        expect(err).toBeInstanceOf(StoreError);
        expect((err as StoreError).code).toBe('DEVICE_LIMIT');
        expect(await store.getDevice(third.deviceId)).toBeNull();
        expect(await store.listDevices(u)).toHaveLength(2);

        // Revoked devices do not count.
        expect(await store.revokeDevice(d1.deviceId, 50)).toBe(true);
        await store.addDevice(third, 2);
        expect((await store.listDevices(u)).map((d) => d.deviceId)).toContain(third.deviceId);
      });

      it('revokeDevice hides the device from the lists but getDevice still shows it', async () => {
        const u = await user();
        const keep = await device(u, 1);
        const gone = await device(u, 2);
        expect(await store.revokeDevice(gone, 777)).toBe(true);
        expect(await store.revokeDevice(gone, 888)).toBe(false);
        expect(await store.revokeDevice(newId('device'), 1)).toBe(false);

        expect((await store.getDevice(gone))?.revokedAt).toBe(777);
        expect((await store.getDevice(keep))?.revokedAt).toBeNull();
        expect((await store.listDevices(u)).map((d) => d.deviceId)).toEqual([keep]);
        expect((await store.listDevicesOfUsers([u])).map((d) => d.deviceId)).toEqual([keep]);
      });
    });

    // ---- pending registrations ----

    describe('pending registrations', () => {
      it('put, get, bump, delete; put replaces and resets attempts', async () => {
        const phone = newPhone();
        expect(await store.getPendingRegistration(phone)).toBeNull();
        expect(await store.bumpRegistrationAttempts(phone)).toBe(0);
        expect(await store.getPendingRegistration(phone)).toBeNull();

        await store.putPendingRegistration({ phone, codeHash: 'h1', expiresAt: 9_000, attempts: 0, createdAt: 1_000 });
        expect(await store.getPendingRegistration(phone)).toEqual(
          { phone, codeHash: 'h1', expiresAt: 9_000, attempts: 0, createdAt: 1_000 },
        );
        expect(await store.bumpRegistrationAttempts(phone)).toBe(1);
        expect(await store.bumpRegistrationAttempts(phone)).toBe(2);
        expect((await store.getPendingRegistration(phone))?.attempts).toBe(2);

        await store.putPendingRegistration({ phone, codeHash: 'h2', expiresAt: 19_000, attempts: 7, createdAt: 2_000 });
        expect(await store.getPendingRegistration(phone)).toEqual(
          { phone, codeHash: 'h2', expiresAt: 19_000, attempts: 0, createdAt: 2_000 },
        );

        await store.deletePendingRegistration(phone);
        expect(await store.getPendingRegistration(phone)).toBeNull();
        await store.deletePendingRegistration(phone); // deleting nothing is fine
        expect(await store.bumpRegistrationAttempts(phone)).toBe(0);
      });
    });

    // ---- chats ----

    describe('direct chats', () => {
      it('is the same chat for (a, b) and (b, a), with both members', async () => {
        const a = await user();
        const b = await user();
        const chatId = newId('chat');
        const chat = await store.getOrCreateDirectChat(a, b, chatId, 3_000);
        expect(chat).toEqual({ chatId, kind: 'direct', createdAt: 3_000, lastSeq: 0 });

        const again = await store.getOrCreateDirectChat(b, a, newId('chat'), 4_000);
        expect(again).toEqual(chat);
        expect(await store.getChat(chatId)).toEqual(chat);
        expect(await store.getChat(newId('chat'))).toBeNull();

        const members = await store.getMembers(chatId);
        expect(members.map((m) => m.userId).sort()).toEqual([a, b].sort());
        for (const m of members) {
          expect(m).toEqual({ chatId, userId: m.userId, role: 'member', joinedAt: 3_000, deliveredSeq: 0, readSeq: 0 });
        }
        expect(await store.getMember(chatId, a)).toEqual({
          chatId, userId: a, role: 'member', joinedAt: 3_000, deliveredSeq: 0, readSeq: 0,
        });
        expect(await store.getMember(chatId, await user())).toBeNull();
        expect(await store.getMembers(newId('chat'))).toEqual([]);

        // A third user gets a different chat with each of them.
        const c = await user();
        const ac = await store.getOrCreateDirectChat(a, c, newId('chat'), 5_000);
        expect(ac.chatId).not.toBe(chatId);
      });

      it('a self chat has one member', async () => {
        const a = await user();
        const chat = await store.getOrCreateDirectChat(a, a, newId('chat'), 1);
        expect(chat.kind).toBe('direct');
        expect((await store.getOrCreateDirectChat(a, a, newId('chat'), 2)).chatId).toBe(chat.chatId);
        const members = await store.getMembers(chat.chatId);
        expect(members.map((m) => m.userId)).toEqual([a]);
      });

      it('concurrent calls agree on one chat', async () => {
        const a = await user();
        const b = await user();
        const chats = await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            i % 2 ? store.getOrCreateDirectChat(a, b, newId('chat'), i) : store.getOrCreateDirectChat(b, a, newId('chat'), i),
          ),
        );
        expect(new Set(chats.map((c) => c.chatId)).size).toBe(1);
        expect(await store.getMembers(chats[0]!.chatId)).toHaveLength(2);
      });
    });

    // ---- appendMessages ----

    describe('appendMessages', () => {
      it('assigns seq 1..n in order within a batch and across batches', async () => {
        const p = await pair();
        const r1 = await store.appendMessages([fromA(p, 'one'), fromB(p, 'two'), fromA(p, 'three')]);
        expect(r1.map((r) => r.message.seq)).toEqual([1, 2, 3]);
        expect(r1.map((r) => r.created)).toEqual([true, true, true]);
        expect(r1.map((r) => r.message.body)).toEqual(['one', 'two', 'three']);
        const r2 = await store.appendMessages([fromB(p, 'four'), fromA(p, 'five')]);
        expect(r2.map((r) => r.message.seq)).toEqual([4, 5]);
        expect((await store.getChat(p.chatId))?.lastSeq).toBe(5);
        expect(await store.appendMessages([])).toEqual([]);

        const first = r1[0]!;
        expect(first.message).toMatchObject({ chatId: p.chatId, seq: 1, senderUserId: p.a, senderDeviceId: p.da, ts: 5_000 });
        expect(byDevice(first.pending)).toEqual(byDevice([{ deviceId: p.db1, userId: p.b }, { deviceId: p.db2, userId: p.b }]));
        expect((await store.history(p.chatId, 0, 10)).map((m) => m.body)).toEqual(['one', 'two', 'three', 'four', 'five']);
      });

      it('is idempotent by (senderDeviceId, clientMsgId)', async () => {
        const p = await pair();
        const msg = fromA(p, 'original', 5_000, 'dup-1');
        const [first] = await store.appendMessages([msg]);
        expect(first?.created).toBe(true);
        await store.appendMessages([fromA(p, 'other')]);

        const [again] = await store.appendMessages([{ ...msg, body: 'retry', ts: 9_999 }]);
        expect(again?.created).toBe(false);
        expect(again?.message.seq).toBe(1);
        expect(again?.message.body).toBe('original');
        expect(again?.message.ts).toBe(5_000);
        expect(byDevice(again?.pending ?? [])).toEqual(byDevice(first?.pending ?? []));
        expect((await store.getChat(p.chatId))?.lastSeq).toBe(2);
        expect(await store.history(p.chatId, 0, 10)).toHaveLength(2);
        expect((await store.messageStatus(p.chatId, 1))?.recipients).toHaveLength(2);

        // Within one batch too: the second copy is the first one.
        const twin = fromB(p, 'twin', 6_000, 'dup-2');
        const res = await store.appendMessages([twin, fromA(p, 'between'), { ...twin, body: 'twin again' }]);
        expect(res.map((r) => [r.message.seq, r.created])).toEqual([[3, true], [4, true], [3, false]]);
        expect(res[2]?.message.body).toBe('twin');
        expect((await store.messageStatus(p.chatId, 3))?.recipients).toHaveLength(2);

        // The same clientMsgId from another device is another message.
        const [fromOtherDevice] = await store.appendMessages([{ ...fromB(p, 'x', 7_000, 'dup-1'), senderDeviceId: p.db2 }]);
        expect(fromOtherDevice?.created).toBe(true);
        expect(fromOtherDevice?.message.seq).toBe(5);
      });

      it('round-trips text and bytes bodies with their types', async () => {
        const p = await pair();
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
        res.forEach((r, i) => expectBody(r.message.body, bodies[i]!));

        const hist = await store.history(p.chatId, 0, 100);
        expect(hist).toHaveLength(bodies.length);
        hist.forEach((m, i) => expectBody(m.body, bodies[i]!));

        for (const [i, b] of bodies.entries()) {
          const got = await store.getMessage(p.chatId, i + 1);
          expectBody(got!.body, b);
        }
        const und = await store.undelivered(p.db1, { limit: 100 });
        und.forEach((m, i) => expectBody(m.body, bodies[i]!));
        expectBody((await store.messageStatus(p.chatId, 4))!.message.body, bodies[3]!);

        // A duplicate returns the stored body with its type.
        const [dup] = await store.appendMessages([{ ...fromA(p), clientMsgId: res[3]!.message.clientMsgId }]);
        expect(dup?.created).toBe(false);
        expectBody(dup!.message.body, bodies[3]!);
      });

      it('handles a batch spanning two chats', async () => {
        const p = await pair();
        const c = await user();
        const dc = await device(c);
        const other = await store.getOrCreateDirectChat(p.a, c, newId('chat'), 1);
        const toC = (body: string): NewMessage => ({
          chatId: other.chatId, senderUserId: p.a, senderDeviceId: p.da, clientMsgId: newClientMsgId(), body, ts: 1,
          recipients: [{ deviceId: dc, userId: c }],
        });
        const res = await store.appendMessages([fromA(p, 'b1'), toC('c1'), fromA(p, 'b2'), toC('c2'), toC('c3')]);
        expect(res.map((r) => [r.message.chatId, r.message.seq])).toEqual([
          [p.chatId, 1], [other.chatId, 1], [p.chatId, 2], [other.chatId, 2], [other.chatId, 3],
        ]);
        expect((await store.getChat(p.chatId))?.lastSeq).toBe(2);
        expect((await store.getChat(other.chatId))?.lastSeq).toBe(3);
        expect((await store.history(other.chatId, 0, 10)).map((m) => m.body)).toEqual(['c1', 'c2', 'c3']);
        expect(res[1]?.pending).toEqual([{ deviceId: dc, userId: c }]);
      });

      it('rejects a batch naming an unknown chat with NOT_FOUND and stores none of it', async () => {
        const p = await pair();
        const ghost: NewMessage = { ...fromA(p, 'lost'), chatId: newId('chat') };
        const err = await store.appendMessages([fromA(p, 'kept?'), ghost]).then(() => null, (e: unknown) => e);
        expect(err).toBeInstanceOf(StoreError);
        expect((err as StoreError).code).toBe('NOT_FOUND');
        expect(await store.history(p.chatId, 0, 10)).toEqual([]);
        expect((await store.getChat(p.chatId))?.lastSeq).toBe(0);
      });
    });

    // ---- markQueued ----

    describe('markQueued', () => {
      it('moves rows out of `pending`, which a duplicate append then reports', async () => {
        const p = await pair();
        const msg = fromA(p, 'q');
        const [r] = await store.appendMessages([msg]);
        expect(r?.pending).toHaveLength(2);
        await store.markQueued([
          { chatId: p.chatId, seq: 1, deviceId: p.db1 },
          { chatId: p.chatId, seq: 99, deviceId: p.db1 }, // unknown: ignored
          { chatId: newId('chat'), seq: 1, deviceId: p.db2 },
        ]);
        await store.markQueued([]);
        const [dup] = await store.appendMessages([msg]);
        expect(dup?.created).toBe(false);
        expect(dup?.pending).toEqual([{ deviceId: p.db2, userId: p.b }]);

        await store.markQueued([{ chatId: p.chatId, seq: 1, deviceId: p.db2 }]);
        const [dup2] = await store.appendMessages([msg]);
        expect(dup2?.pending).toEqual([]);

        // Queued is not delivered.
        expect((await store.undelivered(p.db1, { limit: 10 })).map((m) => m.seq)).toEqual([1]);
        expect((await store.messageStatus(p.chatId, 1))?.recipients.every((x) => x.deliveredAt === null)).toBe(true);
      });
    });

    // ---- markDelivered ----

    describe('markDelivered', () => {
      it('sets deliveredAt the first time only', async () => {
        const p = await pair();
        await store.appendMessages([fromA(p)]);
        const ch1 = await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db1, at: 100 }]);
        expect(ch1).toEqual([{ chatId: p.chatId, userId: p.b, seq: 1, at: 100 }]);
        const ch2 = await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db1, at: 200 }]);
        expect(ch2).toEqual([]);
        const st = await store.messageStatus(p.chatId, 1);
        const row = st?.recipients.find((x) => x.deviceId === p.db1);
        expect(row?.deliveredAt).toBe(100);
        expect(st?.recipients.find((x) => x.deviceId === p.db2)?.deliveredAt).toBeNull();
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBe(1);
        expect(await store.markDelivered([])).toEqual([]);
      });

      it('moves the watermark only over a gap-free prefix', async () => {
        const p = await pair();
        await store.appendMessages([fromA(p, '1'), fromA(p, '2'), fromA(p, '3')]);
        const ch1 = await store.markDelivered([
          { chatId: p.chatId, seq: 1, deviceId: p.db1, at: 10 },
          { chatId: p.chatId, seq: 3, deviceId: p.db2, at: 12 },
        ]);
        expect(ch1).toEqual([{ chatId: p.chatId, userId: p.b, seq: 1, at: 12 }]);
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBe(1);

        // Any one of the user's devices is enough.
        const ch2 = await store.markDelivered([{ chatId: p.chatId, seq: 2, deviceId: p.db2, at: 20 }]);
        expect(ch2).toEqual([{ chatId: p.chatId, userId: p.b, seq: 3, at: 20 }]);
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBe(3);

        // The other device catching up later moves nothing.
        const ch3 = await store.markDelivered([
          { chatId: p.chatId, seq: 1, deviceId: p.db2, at: 30 },
          { chatId: p.chatId, seq: 2, deviceId: p.db1, at: 30 },
        ]);
        expect(ch3).toEqual([]);
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBe(3);
      });

      it("does not count a user's own messages and ignores unknown keys", async () => {
        const p = await pair();
        // 1: a -> b, 2: b (from db1) -> a and b's other device db2, 3: a -> b
        await store.appendMessages([fromA(p, '1'), fromB(p, '2'), fromA(p, '3')]);

        // Keys without a row: a's own message on a's device, unknown seq / chat / device.
        const none = await store.markDelivered([
          { chatId: p.chatId, seq: 1, deviceId: p.da, at: 5 },
          { chatId: p.chatId, seq: 42, deviceId: p.db1, at: 5 },
          { chatId: newId('chat'), seq: 1, deviceId: p.db1, at: 5 },
          { chatId: p.chatId, seq: 2, deviceId: newId('device'), at: 5 },
        ]);
        expect(none).toEqual([]);
        expect((await store.getMember(p.chatId, p.a))?.deliveredSeq).toBe(0);
        expect(await store.hasDelivery({ chatId: p.chatId, seq: 1, deviceId: p.da })).toBe(false);

        // b gets 1 and 3 on db1. Message 2 is b's own: its row for db2 is undelivered, yet it
        // does not hold b's watermark back.
        const ch = await store.markDelivered([
          { chatId: p.chatId, seq: 3, deviceId: p.db1, at: 7 },
          { chatId: p.chatId, seq: 1, deviceId: p.db1, at: 6 },
        ]);
        expect(ch).toEqual([{ chatId: p.chatId, userId: p.b, seq: 3, at: 7 }]);
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBe(3);

        // db2 getting b's own message moves nothing for b, but the row is marked.
        expect(await store.markDelivered([{ chatId: p.chatId, seq: 2, deviceId: p.db2, at: 8 }])).toEqual([]);
        const s2 = (await store.messageStatus(p.chatId, 2))!.recipients;
        expect(s2.find((x) => x.deviceId === p.db2)?.deliveredAt).toBe(8);

        // a gets 2: a's watermark moves to 2 (message 3 is a's own, a has no row for it).
        const chA = await store.markDelivered([{ chatId: p.chatId, seq: 2, deviceId: p.da, at: 9 }]);
        expect(chA).toEqual([{ chatId: p.chatId, userId: p.a, seq: 2, at: 9 }]);
        expect((await store.getMember(p.chatId, p.a))?.deliveredSeq).toBe(2);
      });

      it('reports each (chat, user) that moved, across chats', async () => {
        const p = await pair();
        const c = await user();
        const dc = await device(c);
        const other = await store.getOrCreateDirectChat(p.a, c, newId('chat'), 1);
        await store.appendMessages([
          fromA(p),
          {
            chatId: other.chatId, senderUserId: p.a, senderDeviceId: p.da, clientMsgId: newClientMsgId(), body: 'c', ts: 1,
            recipients: [{ deviceId: dc, userId: c }],
          },
        ]);
        const ch = await store.markDelivered([
          { chatId: p.chatId, seq: 1, deviceId: p.db2, at: 1 },
          { chatId: other.chatId, seq: 1, deviceId: dc, at: 2 },
        ]);
        const sorted = [...ch].sort((x, y) => x.at - y.at);
        expect(sorted).toEqual([
          { chatId: p.chatId, userId: p.b, seq: 1, at: 1 },
          { chatId: other.chatId, userId: c, seq: 1, at: 2 },
        ]);
      });
    });

    // ---- markRead ----

    describe('markRead', () => {
      it('raises readSeq and marks rows up to it read (and delivered where not yet)', async () => {
        const p = await pair();
        await store.appendMessages([fromA(p, '1'), fromA(p, '2'), fromA(p, '3')]);
        await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db1, at: 50 }]);

        const ch = await store.markRead(p.chatId, p.b, 2, 100);
        expect(ch).toEqual({ chatId: p.chatId, userId: p.b, seq: 2, at: 100 });
        expect((await store.getMember(p.chatId, p.b))?.readSeq).toBe(2);
        // Read implies delivered.
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBeGreaterThanOrEqual(2);

        const s1 = byDevice((await store.messageStatus(p.chatId, 1))!.recipients);
        const expected1 = byDevice([
          { userId: p.b, deviceId: p.db1, deliveredAt: 50, readAt: 100 },
          { userId: p.b, deviceId: p.db2, deliveredAt: 100, readAt: 100 },
        ]);
        expect(s1).toEqual(expected1);
        const s2 = (await store.messageStatus(p.chatId, 2))!.recipients;
        expect(s2.every((x) => x.readAt === 100 && x.deliveredAt === 100)).toBe(true);
        const s3 = (await store.messageStatus(p.chatId, 3))!.recipients;
        expect(s3.every((x) => x.readAt === null && x.deliveredAt === null)).toBe(true);

        // Not advanced: null, nothing changes.
        expect(await store.markRead(p.chatId, p.b, 2, 200)).toBeNull();
        expect(await store.markRead(p.chatId, p.b, 1, 200)).toBeNull();
        expect((await store.messageStatus(p.chatId, 1))!.recipients.every((x) => x.readAt === 100)).toBe(true);

        // Further.
        expect(await store.markRead(p.chatId, p.b, 3, 300)).toEqual({ chatId: p.chatId, userId: p.b, seq: 3, at: 300 });
        expect((await store.messageStatus(p.chatId, 3))!.recipients.every((x) => x.readAt === 300)).toBe(true);
        expect((await store.messageStatus(p.chatId, 2))!.recipients.every((x) => x.readAt === 100)).toBe(true);
        expect((await store.getMember(p.chatId, p.b))?.readSeq).toBe(3);
      });

      it('returns null for a non-member and touches only that user', async () => {
        const p = await pair();
        await store.appendMessages([fromA(p), fromB(p)]);
        expect(await store.markRead(p.chatId, await user(), 2, 1)).toBeNull();
        expect(await store.markRead(newId('chat'), p.b, 2, 1)).toBeNull();

        expect(await store.markRead(p.chatId, p.a, 2, 9)).toEqual({ chatId: p.chatId, userId: p.a, seq: 2, at: 9 });
        // b's rows (message 1 on both b devices, message 2 on db2) are untouched.
        const s1 = (await store.messageStatus(p.chatId, 1))!.recipients;
        expect(s1.every((x) => x.readAt === null)).toBe(true);
        const s2 = (await store.messageStatus(p.chatId, 2))!.recipients;
        expect(s2.find((x) => x.deviceId === p.da)?.readAt).toBe(9);
        expect(s2.find((x) => x.deviceId === p.db2)?.readAt).toBeNull();
        expect((await store.getMember(p.chatId, p.b))?.readSeq).toBe(0);
      });
    });

    // ---- hasDelivery ----

    describe('hasDelivery', () => {
      it('tells whether a message was addressed to a device', async () => {
        const p = await pair();
        await store.appendMessages([fromA(p)]);
        expect(await store.hasDelivery({ chatId: p.chatId, seq: 1, deviceId: p.db1 })).toBe(true);
        expect(await store.hasDelivery({ chatId: p.chatId, seq: 1, deviceId: p.db2 })).toBe(true);
        expect(await store.hasDelivery({ chatId: p.chatId, seq: 1, deviceId: p.da })).toBe(false);
        expect(await store.hasDelivery({ chatId: p.chatId, seq: 2, deviceId: p.db1 })).toBe(false);
        expect(await store.hasDelivery({ chatId: newId('chat'), seq: 1, deviceId: p.db1 })).toBe(false);
        // Still true once delivered.
        await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db1, at: 1 }]);
        expect(await store.hasDelivery({ chatId: p.chatId, seq: 1, deviceId: p.db1 })).toBe(true);
      });
    });

    // ---- undelivered ----

    describe('undelivered', () => {
      it('lists undelivered messages of a device by chat then seq, with filters and a limit', async () => {
        const p = await pair();
        const c = await user();
        const dc = await device(c);
        const other = await store.getOrCreateDirectChat(p.b, c, newId('chat'), 1);
        const toB = (body: string): NewMessage => ({
          chatId: other.chatId, senderUserId: c, senderDeviceId: dc, clientMsgId: newClientMsgId(), body, ts: 1,
          recipients: [{ deviceId: p.db1, userId: p.b }, { deviceId: p.db2, userId: p.b }],
        });
        // Interleaved across chats on purpose.
        await store.appendMessages([fromA(p, 'a1'), toB('c1'), fromA(p, 'a2'), toB('c2'), fromA(p, 'a3')]);
        await store.markQueued([{ chatId: p.chatId, seq: 2, deviceId: p.db1 }]);
        await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db1, at: 1 }]);

        const [first, second] = [p.chatId, other.chatId].sort() as [string, string];
        const expectAll = [
          ...(first === p.chatId ? [`${p.chatId}:2`, `${p.chatId}:3`] : [`${other.chatId}:1`, `${other.chatId}:2`]),
          ...(second === p.chatId ? [`${p.chatId}:2`, `${p.chatId}:3`] : [`${other.chatId}:1`, `${other.chatId}:2`]),
        ];
        const all = await store.undelivered(p.db1, { limit: 100 });
        expect(all.map(keyOf)).toEqual(expectAll);
        expect((await store.undelivered(p.db1, { limit: 3 })).map(keyOf)).toEqual(expectAll.slice(0, 3));
        // Paging across chats with the (chatId, seq) cursor yields the same rows, each once.
        const paged: string[] = [];
        let cursor: { chatId: string; seq: number } | undefined;
        for (;;) {
          const page = await store.undelivered(p.db1, { limit: 1, ...(cursor ? { after: cursor } : {}) });
          const last = page.at(-1);
          if (!last) break;
          paged.push(...page.map(keyOf));
          cursor = { chatId: last.chatId, seq: last.seq };
        }
        expect(paged).toEqual(expectAll);

        // db2 has delivered nothing.
        expect(await store.undelivered(p.db2, { limit: 100 })).toHaveLength(5);
        // The sender's device has nothing; neither has an unknown one.
        expect(await store.undelivered(p.da, { limit: 100 })).toEqual([]);
        expect(await store.undelivered(newId('device'), { limit: 100 })).toEqual([]);

        const inChat = await store.undelivered(p.db2, { chatId: p.chatId, limit: 100 });
        expect(inChat.map((m) => m.body)).toEqual(['a1', 'a2', 'a3']);
        const after = await store.undelivered(p.db2, { chatId: p.chatId, afterSeq: 1, limit: 100 });
        expect(after.map((m) => m.seq)).toEqual([2, 3]);
        const afterLimited = await store.undelivered(p.db2, { chatId: p.chatId, afterSeq: 1, limit: 1 });
        expect(afterLimited.map((m) => m.seq)).toEqual([2]);
        expect(await store.undelivered(p.db2, { chatId: p.chatId, afterSeq: 3, limit: 10 })).toEqual([]);

        const one = inChat[0]!;
        expect(one).toMatchObject({ chatId: p.chatId, seq: 1, senderUserId: p.a, senderDeviceId: p.da, ts: 5_000 });
      });
    });

    // ---- history / getMessage / messageStatus ----

    describe('reading messages', () => {
      it('history pages a chat ascending after a seq', async () => {
        const p = await pair();
        await store.appendMessages(Array.from({ length: 7 }, (_, i) => fromA(p, `m${i + 1}`, 100 + i)));
        expect((await store.history(p.chatId, 0, 3)).map((m) => m.seq)).toEqual([1, 2, 3]);
        expect((await store.history(p.chatId, 3, 3)).map((m) => m.seq)).toEqual([4, 5, 6]);
        expect((await store.history(p.chatId, 6, 3)).map((m) => m.body)).toEqual(['m7']);
        expect(await store.history(p.chatId, 7, 3)).toEqual([]);
        expect(await store.history(newId('chat'), 0, 3)).toEqual([]);
        const [m1] = await store.history(p.chatId, 0, 1);
        expect(m1).toEqual({
          chatId: p.chatId, seq: 1, senderUserId: p.a, senderDeviceId: p.da, clientMsgId: m1!.clientMsgId, body: 'm1', ts: 100,
        });
      });

      it('getMessage and messageStatus', async () => {
        const p = await pair();
        const msg = fromA(p, 'status?', 4_242, 'cm-1');
        await store.appendMessages([msg]);
        const expectedMessage = {
          chatId: p.chatId, seq: 1, senderUserId: p.a, senderDeviceId: p.da, clientMsgId: 'cm-1', body: 'status?', ts: 4_242,
        };
        expect(await store.getMessage(p.chatId, 1)).toEqual(expectedMessage);
        expect(await store.getMessage(p.chatId, 2)).toBeNull();
        expect(await store.getMessage(newId('chat'), 1)).toBeNull();

        await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db2, at: 10 }]);
        const st = await store.messageStatus(p.chatId, 1);
        expect(st?.message).toEqual(expectedMessage);
        expect(byDevice(st!.recipients)).toEqual(byDevice([
          { userId: p.b, deviceId: p.db1, deliveredAt: null, readAt: null },
          { userId: p.b, deviceId: p.db2, deliveredAt: 10, readAt: null },
        ]));
        expect(await store.messageStatus(p.chatId, 2)).toBeNull();
      });
    });

    // ---- expire ----

    describe('expire', () => {
      it('removes old messages with their deliveries and expired registrations, keeps the rest', async () => {
        const p = await pair();
        await store.appendMessages([
          fromA(p, 'old1', 100), fromB(p, 'old2', 200), fromA(p, 'edge', 500), fromA(p, 'new', 1_000),
        ]);
        const keepPhone = newPhone();
        const dropPhone = newPhone();
        await store.putPendingRegistration({ phone: keepPhone, codeHash: 'k', expiresAt: 10_000, attempts: 0, createdAt: 1 });
        await store.putPendingRegistration({ phone: dropPhone, codeHash: 'd', expiresAt: 4_000, attempts: 0, createdAt: 1 });

        const res = await store.expire(500, 5_000);
        expect(res).toEqual({ messages: 2, deliveries: 4, registrations: 1 });

        // ts < before only: the message at exactly `before` stays, with its rows.
        expect((await store.history(p.chatId, 0, 10)).map((m) => m.body)).toEqual(['edge', 'new']);
        expect(await store.getMessage(p.chatId, 1)).toBeNull();
        expect(await store.messageStatus(p.chatId, 2)).toBeNull();
        expect(await store.hasDelivery({ chatId: p.chatId, seq: 1, deviceId: p.db1 })).toBe(false);
        expect(await store.hasDelivery({ chatId: p.chatId, seq: 3, deviceId: p.db1 })).toBe(true);
        expect((await store.messageStatus(p.chatId, 3))?.recipients).toHaveLength(2);
        expect((await store.undelivered(p.db2, { limit: 10 })).map((m) => m.seq)).toEqual([3, 4]);
        expect(await store.getPendingRegistration(dropPhone)).toBeNull();
        expect((await store.getPendingRegistration(keepPhone))?.codeHash).toBe('k');

        // Seqs keep counting after expiry.
        const [next] = await store.appendMessages([fromA(p, 'after')]);
        expect(next?.message.seq).toBe(5);

        expect(await store.expire(500, 5_000)).toEqual({ messages: 0, deliveries: 0, registrations: 0 });
      });
    });
  });
}
