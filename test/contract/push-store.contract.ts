/**
 * The PushStore contract: one registration per device (a put replaces it), an address (endpoint
 * or token) held by one device per kind, look-up of many devices at once, removal by device, by
 * device and address ("gone"), and of every registration of a user (account deletion).
 */
import { describe, expect, it } from 'vitest';
import { newId } from '@parley/client-sdk/protocol';
import type { DevicePush, PushRegistration } from '../../services/src/store/types.js';
import { newDevice, newUser, sortIds, useStore, type StoreFactory } from './helpers.js';

const webpush = (n: string): PushRegistration => ({
  kind: 'webpush', endpoint: `https://push.example.net/send/${n}`, keys: { p256dh: `BPk${n}`, auth: `au${n}` },
});
const fcm = (n: string): PushRegistration => ({ kind: 'fcm', token: `fcm:${n}` });
const apns = (n: string, extra: Partial<Extract<PushRegistration, { kind: 'apns' }>> = {}): PushRegistration => ({
  kind: 'apns', token: n.padEnd(64, '0'), ...extra,
});

export function pushStoreContract(factory: StoreFactory): void {
  describe('PushStore', () => {
    const ctx = useStore(factory);

    it('puts, gets (many at once, unknown devices left out) and replaces a device\'s registration', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const d1 = await newDevice(store, u);
      const d2 = await newDevice(store, u);
      const d3 = await newDevice(store, u);
      const a: DevicePush = { deviceId: d1, userId: u, registration: webpush('a'), at: 10 };
      const b: DevicePush = { deviceId: d2, userId: u, registration: fcm('b'), at: 11 };
      const c: DevicePush = { deviceId: d3, userId: u, registration: apns('abc', { environment: 'development', topic: 'com.example.app' }), at: 12 };
      await store.putPushRegistration(a);
      await store.putPushRegistration(b);
      await store.putPushRegistration(c);

      const got = await store.getPushRegistrations([d3, d1, newId('device'), d2, d1]);
      expect([...got].sort((x, y) => x.at - y.at)).toEqual([a, b, c]);
      expect(await store.getPushRegistrations([])).toEqual([]);
      expect(await store.getPushRegistrations([newId('device')])).toEqual([]);

      // One per device: a new registration (of any kind) replaces the old one.
      const a2: DevicePush = { deviceId: d1, userId: u, registration: apns('def'), at: 20 };
      await store.putPushRegistration(a2);
      expect(await store.getPushRegistrations([d1])).toEqual([a2]);
      const a3: DevicePush = { deviceId: d1, userId: u, registration: webpush('z'), at: 21 };
      await store.putPushRegistration(a3);
      expect(await store.getPushRegistrations([d1])).toEqual([a3]);
    });

    it('an address belongs to one device: registering it on another device moves it', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const other = await newUser(store);
      const d1 = await newDevice(store, u);
      const d2 = await newDevice(store, other);
      await store.putPushRegistration({ deviceId: d1, userId: u, registration: webpush('same'), at: 1 });
      await store.putPushRegistration({ deviceId: d2, userId: other, registration: webpush('same'), at: 2 });
      expect((await store.getPushRegistrations([d1, d2])).map((r) => r.deviceId)).toEqual([d2]);

      // The same token string under another kind is another address.
      await store.putPushRegistration({ deviceId: d1, userId: u, registration: { kind: 'fcm', token: 'shared' }, at: 3 });
      await store.putPushRegistration({ deviceId: d2, userId: other, registration: { kind: 'apns', token: 'shared' }, at: 4 });
      expect(sortIds((await store.getPushRegistrations([d1, d2])).map((r) => r.deviceId))).toEqual(sortIds([d1, d2]));

      // Re-registering the same address on the same device is a plain replace.
      await store.putPushRegistration({ deviceId: d1, userId: u, registration: { kind: 'fcm', token: 'shared' }, at: 5 });
      expect((await store.getPushRegistrations([d1]))[0]?.at).toBe(5);
    });

    it('deletes by device, and by device and address only while the address is still the device\'s', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const d1 = await newDevice(store, u);
      const d2 = await newDevice(store, u);
      await store.putPushRegistration({ deviceId: d1, userId: u, registration: fcm('one'), at: 1 });
      await store.putPushRegistration({ deviceId: d2, userId: u, registration: webpush('two'), at: 1 });

      // "Gone" for an address the device no longer has: nothing happens.
      expect(await store.deletePushRegistration(d1, 'fcm:old')).toBe(false);
      expect(await store.getPushRegistrations([d1])).toHaveLength(1);
      expect(await store.deletePushRegistration(d1, 'fcm:one')).toBe(true);
      expect(await store.getPushRegistrations([d1])).toEqual([]);
      expect(await store.deletePushRegistration(d1, 'fcm:one')).toBe(false);

      expect(await store.deletePushRegistration(d2)).toBe(true);
      expect(await store.deletePushRegistration(d2)).toBe(false);
      expect(await store.getPushRegistrations([d1, d2])).toEqual([]);
      // The address is free again.
      await store.putPushRegistration({ deviceId: d1, userId: u, registration: webpush('two'), at: 2 });
      expect((await store.getPushRegistrations([d1]))[0]?.registration).toEqual(webpush('two'));
    });

    it('deletePushRegistrationsOf removes every registration of the user and no one else\'s', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const other = await newUser(store);
      const d1 = await newDevice(store, u);
      const d2 = await newDevice(store, u);
      const d3 = await newDevice(store, other);
      await store.putPushRegistration({ deviceId: d1, userId: u, registration: fcm('u1'), at: 1 });
      await store.putPushRegistration({ deviceId: d2, userId: u, registration: apns('u2'), at: 1 });
      await store.putPushRegistration({ deviceId: d3, userId: other, registration: fcm('o1'), at: 1 });

      expect(await store.deletePushRegistrationsOf(u)).toBe(2);
      expect(await store.getPushRegistrations([d1, d2, d3])).toEqual([
        { deviceId: d3, userId: other, registration: fcm('o1'), at: 1 },
      ]);
      expect(await store.deletePushRegistrationsOf(u)).toBe(0);
    });
  });
}
