/**
 * The AccountStore contract: users, devices (and what adding or revoking one does to the device's
 * place in its chats), pending registrations.
 */
import { describe, expect, it } from 'vitest';
import { newId } from '@parley/client-sdk/protocol';
import { StoreError } from '../../services/src/store/types.js';
import {
  byDevice, errorOf, newGroup, fromA, fromB, newDevice, newMessage, newPair, newPhone, newUser, seqsOf, sortIds, useStore,
  type StoreFactory,
} from './helpers.js';

export function accountStoreContract(factory: StoreFactory): void {
  describe('AccountStore', () => {
    const ctx = useStore(factory);

    describe('users', () => {
      it('getOrCreateUserByPhone creates once, then returns the same user', async () => {
        const { store } = ctx;
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
    });

    describe('devices', () => {
      it('addDevice, getDevice, listDevices (oldest first), listDevicesOfUsers', async () => {
        const { store } = ctx;
        const u = await newUser(store);
        const other = await newUser(store);
        const newer = { deviceId: newId('device'), userId: u, tokenHash: 'a'.repeat(64), name: 'laptop', createdAt: 20 };
        const older = { deviceId: newId('device'), userId: u, tokenHash: 'b'.repeat(64), name: 'phone', createdAt: 10 };
        await store.addDevice(newer, { maxActive: 5, historyDepth: 0 });
        await store.addDevice(older, { maxActive: 5, historyDepth: 0 });
        const otherDev = await newDevice(store, other);
        await newDevice(store, await newUser(store)); // a third user's device, never asked for

        expect(await store.getDevice(newer.deviceId)).toEqual({ ...newer, revokedAt: null });
        expect(await store.getDevice(newId('device'))).toBeNull();
        expect((await store.listDevices(u)).map((d) => d.deviceId)).toEqual([older.deviceId, newer.deviceId]);
        expect(await store.listDevices(newId('user'))).toEqual([]);

        const both = await store.listDevicesOfUsers([u, other]);
        expect(byDevice(both).map((d) => d.deviceId)).toEqual(sortIds([older.deviceId, newer.deviceId, otherDev]));
        expect(await store.listDevicesOfUsers([])).toEqual([]);
      });

      it('addDevice enforces the active device limit with DEVICE_LIMIT', async () => {
        const { store } = ctx;
        const u = await newUser(store);
        const mk = (createdAt: number) => ({ deviceId: newId('device'), userId: u, tokenHash: 'c'.repeat(64), name: 'x', createdAt });
        const d1 = mk(1);
        await store.addDevice(d1, { maxActive: 2, historyDepth: 0 });
        await store.addDevice(mk(2), { maxActive: 2, historyDepth: 0 });
        const third = mk(3);
        const err = await errorOf(store.addDevice(third, { maxActive: 2, historyDepth: 0 }));
        expect(err).toBeInstanceOf(StoreError);
        expect((err as StoreError).code).toBe('DEVICE_LIMIT');
        expect(await store.getDevice(third.deviceId)).toBeNull();
        expect(await store.listDevices(u)).toHaveLength(2);

        // Revoked devices do not count.
        expect(await store.revokeDevice(d1.deviceId, 50)).toBe(true);
        await store.addDevice(third, { maxActive: 2, historyDepth: 0 });
        expect((await store.listDevices(u)).map((d) => d.deviceId)).toContain(third.deviceId);
      });

      it('a refused device joins no chat', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const extra = { deviceId: newId('device'), userId: p.b, tokenHash: 'd'.repeat(64), name: 'x', createdAt: 3 };
        expect(await errorOf(store.addDevice(extra, { maxActive: 2, historyDepth: 0 }))).toBeInstanceOf(StoreError);
        expect(await store.progress(extra.deviceId, p.chatId)).toBeNull();
        const all = await store.chatDevices(p.chatId, '', 100);
        expect(all.map((d) => d.deviceId)).not.toContain(extra.deviceId);
      });

      it('revokeDevice hides the device from the lists but getDevice still shows it', async () => {
        const { store } = ctx;
        const u = await newUser(store);
        const keep = await newDevice(store, u, 1);
        const gone = await newDevice(store, u, 2);
        expect(await store.revokeDevice(gone, 777)).toBe(true);
        expect(await store.revokeDevice(gone, 888)).toBe(false);
        expect(await store.revokeDevice(newId('device'), 1)).toBe(false);

        expect((await store.getDevice(gone))?.revokedAt).toBe(777);
        expect((await store.getDevice(keep))?.revokedAt).toBeNull();
        expect((await store.listDevices(u)).map((d) => d.deviceId)).toEqual([keep]);
        expect((await store.listDevicesOfUsers([u])).map((d) => d.deviceId)).toEqual([keep]);
      });
    });

    describe('a device added later', () => {
      it("joins each of the user's chats at its last seq: later messages only", async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const c = await newUser(store);
        const dc = await newDevice(store, c);
        const group = newId('chat');
        await newGroup(store, group, [{ userId: p.b, role: 'admin' }, { userId: c, role: 'member' }], 2_500);
        await store.appendMessages([fromA(p, 'a1'), fromA(p, 'a2'), fromB(p, 'b3')]);
        await store.appendMessages([newMessage(group, c, dc, 'g1')]);

        const db3 = await newDevice(store, p.b, 6_000);
        expect(await store.progress(db3, p.chatId)).toEqual(
          { deviceId: db3, chatId: p.chatId, userId: p.b, sinceSeq: 3, deliveredSeq: 3, untilSeq: null },
        );
        expect(await store.progress(db3, group)).toEqual(
          { deviceId: db3, chatId: group, userId: p.b, sinceSeq: 2, deliveredSeq: 2, untilSeq: null },
        );
        // Older messages are history, not pending, and were not meant for it.
        expect(await store.pending(db3, null, 100)).toEqual([]);
        expect(await store.pendingInChat(db3, p.chatId, 0, 100, 100)).toEqual([]);
        for (const seq of [1, 2, 3]) expect(await store.isRecipient(db3, p.chatId, seq)).toBe(false);
        for (const seq of [1, 2]) expect(await store.isRecipient(db3, group, seq)).toBe(false);
        expect((await store.messageStatus(p.chatId, 1))!.recipients.map((r) => r.deviceId)).not.toContain(db3);
        expect(seqsOf(await store.history(p.chatId, 0, 100))).toEqual([1, 2, 3]);
        // It is one of the chats' devices from now on.
        expect((await store.chatDevices(p.chatId, '', 100)).map((d) => d.deviceId)).toContain(db3);
        expect((await store.chatDevices(group, '', 100)).map((d) => d.deviceId)).toContain(db3);

        // What is sent from now on is meant for it.
        await store.appendMessages([fromA(p, 'a4'), newMessage(group, c, dc, 'g2')]);
        expect((await store.pending(db3, null, 100)).map((m) => m.body).sort()).toEqual(['a4', 'g2']);
        expect(await store.isRecipient(db3, p.chatId, 4)).toBe(true);
        expect(await store.isRecipient(db3, group, 3)).toBe(true);
        expect((await store.messageStatus(p.chatId, 4))!.recipients.map((r) => r.deviceId)).toContain(db3);
        expect(seqsOf(await store.pendingInChat(db3, p.chatId, 0, 100, 100))).toEqual([4]);
      });

      it('of a user without chats is in none', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        const loner = await newUser(store);
        const d = await newDevice(store, loner);
        expect(await store.progress(d, p.chatId)).toBeNull();
        expect(await store.pending(d, null, 10)).toEqual([]);
        // Its user's first chat then takes it in from seq 0.
        const chat = await store.getOrCreateDirectChat(loner, p.a, newId('chat'), 3_000);
        expect(await store.progress(d, chat.chatId)).toEqual(
          { deviceId: d, chatId: chat.chatId, userId: loner, sinceSeq: 0, deliveredSeq: 0, untilSeq: null },
        );
      });
    });

    describe('a revoked device', () => {
      it('leaves its chats: no chatDevices, pending, progress, recipient or status entry', async () => {
        const { store } = ctx;
        const p = await newPair(store);
        await store.appendMessages([fromA(p, '1'), fromA(p, '2')]);
        await store.markDelivered([{ chatId: p.chatId, seq: 1, deviceId: p.db2, at: 6_000 }]);
        expect(await store.revokeDevice(p.db2, 7_000)).toBe(true);

        expect((await store.chatDevices(p.chatId, '', 100)).map((d) => d.deviceId)).toEqual(sortIds([p.da, p.db1]));
        expect(await store.pending(p.db2, null, 100)).toEqual([]);
        expect(await store.pendingInChat(p.db2, p.chatId, 0, 100, 100)).toEqual([]);
        expect(await store.progress(p.db2, p.chatId)).toBeNull();
        expect(await store.isRecipient(p.db2, p.chatId, 2)).toBe(false);
        for (const seq of [1, 2]) {
          expect((await store.messageStatus(p.chatId, seq))!.recipients.map((r) => r.deviceId)).toEqual([p.db1]);
        }
        // Acks it still had in flight change nothing.
        expect(await store.markDelivered([{ chatId: p.chatId, seq: 2, deviceId: p.db2, at: 7_001 }])).toEqual([]);
        expect((await store.getMember(p.chatId, p.b))?.deliveredSeq).toBe(1);
        // The user's other device is untouched.
        expect(seqsOf(await store.pending(p.db1, null, 100))).toEqual([1, 2]);

        // New messages are not meant for it either.
        await store.appendMessages([fromA(p, '3')]);
        expect(await store.pending(p.db2, null, 100)).toEqual([]);
        expect((await store.messageStatus(p.chatId, 3))!.recipients.map((r) => r.deviceId)).toEqual([p.db1]);
      });
    });

    describe('pending registrations', () => {
      it('put, get, bump, delete; put replaces and resets attempts', async () => {
        const { store } = ctx;
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
  });
}
