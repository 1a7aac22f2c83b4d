/**
 * The KeyStore contract (the MLS key directory): a device's identity (set, replaced, "changed"
 * only when the bytes differ), its pool of key packages (deduplicated by ref, capped), its
 * last-resort package (replaced by the next, handed out and kept when the pool is empty), claims
 * (one package per device, oldest first, never the same one twice), counts, and removal per device
 * (revocation) and per user (account deletion). Bytes come back as they went in.
 */
import { describe, expect, it } from 'vitest';
import { newId } from '@parley/client-sdk/protocol';
import type { KeyPackage } from '../../services/src/store/types.js';
import { byDevice, newDevice, newUser, useStore, type StoreFactory } from './helpers.js';

const bytes = (...xs: number[]): Uint8Array => new Uint8Array(xs);
const kp = (ref: string, n = 1): KeyPackage => ({ ref, data: bytes(n, n + 1, n + 2, 0, 255) });
const refs = (prefix: string, n: number): KeyPackage[] => Array.from({ length: n }, (_, i) => kp(`${prefix}${i}`, i));

export function keyStoreContract(factory: StoreFactory): void {
  describe('KeyStore', () => {
    const ctx = useStore(factory);

    it('sets, reads and replaces a device\'s identity; `changed` only when the bytes differ', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const d1 = await newDevice(store, u);
      const d2 = await newDevice(store, u);
      const first = { deviceId: d1, userId: u, credential: bytes(1, 2, 3), signatureKey: bytes(9, 8) };

      expect(await store.putIdentity(first, 10)).toEqual({ ...first, changedAt: 10, changed: false });
      expect(await store.getIdentities([d1, d2, newId('device')])).toEqual([{ ...first, changedAt: 10, changed: false }]);
      // The same bytes again: nothing changed, the time stays.
      expect(await store.putIdentity(first, 20)).toEqual({ ...first, changedAt: 10, changed: false });
      // Another signature key: a change.
      const second = { ...first, signatureKey: bytes(7, 7) };
      expect(await store.putIdentity(second, 30)).toEqual({ ...second, changedAt: 30, changed: true });
      expect(await store.getIdentities([d1])).toEqual([{ ...second, changedAt: 30, changed: true }]);
      // Repeated: still that key, no longer a change.
      expect(await store.putIdentity(second, 40)).toEqual({ ...second, changedAt: 30, changed: false });
      // Another credential: a change.
      const third = { ...second, credential: bytes(1, 2, 3, 4) };
      expect((await store.putIdentity(third, 50)).changed).toBe(true);

      const other = { deviceId: d2, userId: u, credential: bytes(0), signatureKey: bytes(0) };
      await store.putIdentity(other, 60);
      const both = byDevice(await store.getIdentities([d2, d1, d1]));
      expect(both).toEqual(byDevice([{ ...third, changedAt: 50, changed: true }, { ...other, changedAt: 60, changed: false }]));
      expect(both[0]!.credential).toBeInstanceOf(Uint8Array);
      expect(await store.getIdentities([])).toEqual([]);
    });

    it('drops the device\'s key packages and last resort when its identity changes (they carry the old one)', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const d = await newDevice(store, u);
      const id = { deviceId: d, userId: u, credential: bytes(1), signatureKey: bytes(2) };
      await store.putIdentity(id, 10);
      await store.addKeyPackages({ deviceId: d, userId: u }, refs('old', 3), kp('old-last', 9), 11, 100);
      // The same identity again keeps them.
      await store.putIdentity(id, 12);
      expect(await store.countKeyPackages(d)).toEqual({ count: 3, lastResort: true });
      await store.putIdentity({ ...id, signatureKey: bytes(3) }, 13);
      expect(await store.countKeyPackages(d)).toEqual({ count: 0, lastResort: false });
      expect(await store.claimKeyPackages([d])).toEqual([]);
    });

    it('adds key packages in batches: duplicate refs ignored, at most `max` held, counted', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const d = await newDevice(store, u);
      const owner = { deviceId: d, userId: u };
      expect(await store.countKeyPackages(d)).toEqual({ count: 0, lastResort: false });

      expect(await store.addKeyPackages(owner, refs('a', 3), null, 10, 5)).toEqual({ added: ['a0', 'a1', 'a2'], count: 3 });
      // a1 is held, b0 repeats within the batch: both ignored; then the cap stops it after b2.
      expect(await store.addKeyPackages(owner, [kp('a1'), kp('b0'), kp('b0', 7), kp('b1'), kp('b2'), kp('b3')], null, 20, 5))
        .toEqual({ added: ['b0', 'b1'], count: 5 });
      expect(await store.addKeyPackages(owner, [kp('c0')], null, 30, 5)).toEqual({ added: [], count: 5 });
      expect(await store.countKeyPackages(d)).toEqual({ count: 5, lastResort: false });
      // The same ref on another device is that device's own.
      const d2 = await newDevice(store, u);
      expect(await store.addKeyPackages({ deviceId: d2, userId: u }, [kp('a0')], null, 40, 5)).toEqual({ added: ['a0'], count: 1 });
    });

    it('claims one package per device, oldest first, with its bytes and what remains; never twice', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const d1 = await newDevice(store, u);
      const d2 = await newDevice(store, u);
      const d3 = await newDevice(store, u);
      await store.addKeyPackages({ deviceId: d1, userId: u }, [kp('x', 1), kp('y', 2)], null, 10, 100);
      await store.addKeyPackages({ deviceId: d1, userId: u }, [kp('a', 3)], null, 20, 100);
      await store.addKeyPackages({ deviceId: d2, userId: u }, [kp('z', 4)], null, 10, 100);

      const first = byDevice(await store.claimKeyPackages([d1, d2, d3, newId('device'), d1]));
      expect(first).toHaveLength(2);
      // The oldest upload first, in its order.
      expect(first.find((c) => c.deviceId === d1)).toEqual({ deviceId: d1, ref: 'x', data: kp('x', 1).data, lastResort: false, remaining: 2 });
      expect(first.find((c) => c.deviceId === d2)).toEqual({ deviceId: d2, ref: 'z', data: kp('z', 4).data, lastResort: false, remaining: 0 });

      const second = await store.claimKeyPackages([d1]);
      expect(second).toHaveLength(1);
      expect(second[0]!.ref).toBe('y');
      expect((await store.claimKeyPackages([d1]))[0]).toMatchObject({ ref: 'a', remaining: 0 });
      // Empty, and no last resort: left out.
      expect(await store.claimKeyPackages([d1, d2])).toEqual([]);
      expect(await store.claimKeyPackages([])).toEqual([]);
      expect(await store.countKeyPackages(d1)).toEqual({ count: 0, lastResort: false });
    });

    it('hands out the last resort (kept) when the pool is empty; the next upload replaces it', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const d = await newDevice(store, u);
      const owner = { deviceId: d, userId: u };
      expect(await store.addKeyPackages(owner, [kp('p')], kp('last1', 5), 10, 100)).toEqual({ added: ['p'], count: 1 });
      expect(await store.countKeyPackages(d)).toEqual({ count: 1, lastResort: true });
      expect((await store.claimKeyPackages([d]))[0]).toMatchObject({ ref: 'p', lastResort: false, remaining: 0 });
      for (let i = 0; i < 3; i++) {
        expect(await store.claimKeyPackages([d])).toEqual([{ deviceId: d, ref: 'last1', data: kp('last1', 5).data, lastResort: true, remaining: 0 }]);
      }
      // An upload with only a last resort replaces it and adds nothing to the pool.
      expect(await store.addKeyPackages(owner, [], kp('last2', 6), 20, 100)).toEqual({ added: [], count: 0 });
      expect((await store.claimKeyPackages([d]))[0]).toMatchObject({ ref: 'last2', lastResort: true });
      // A pool package again goes first.
      await store.addKeyPackages(owner, [kp('q')], null, 30, 100);
      expect((await store.claimKeyPackages([d]))[0]).toMatchObject({ ref: 'q', lastResort: false });
      expect(await store.countKeyPackages(d)).toEqual({ count: 0, lastResort: true });
    });

    it('concurrent claims on one store never hand out a package twice', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const d = await newDevice(store, u);
      await store.addKeyPackages({ deviceId: d, userId: u }, refs('k', 30), null, 10, 100);
      const got = (await Promise.all(Array.from({ length: 40 }, () => store.claimKeyPackages([d])))).flat();
      expect(got).toHaveLength(30);
      expect(new Set(got.map((c) => c.ref)).size).toBe(30);
      expect(await store.countKeyPackages(d)).toEqual({ count: 0, lastResort: false });
    });

    it('deletes a device\'s keys (revocation) and every key of a user (account deletion), no one else\'s', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const other = await newUser(store);
      const d1 = await newDevice(store, u);
      const d2 = await newDevice(store, u);
      const d3 = await newDevice(store, other);
      for (const [deviceId, userId] of [[d1, u], [d2, u], [d3, other]] as const) {
        await store.putIdentity({ deviceId, userId, credential: bytes(1), signatureKey: bytes(2) }, 10);
        await store.addKeyPackages({ deviceId, userId }, refs('r', 2), kp('lr'), 10, 100);
      }
      expect(await store.deleteDeviceKeys(d1)).toBe(4); // identity, 2 packages, last resort
      expect(await store.getIdentities([d1])).toEqual([]);
      expect(await store.countKeyPackages(d1)).toEqual({ count: 0, lastResort: false });
      expect(await store.claimKeyPackages([d1])).toEqual([]);
      expect(await store.deleteDeviceKeys(d1)).toBe(0);

      expect(await store.deleteKeysOf(u)).toBe(4);
      expect(await store.getIdentities([d1, d2, d3])).toHaveLength(1);
      expect(await store.countKeyPackages(d2)).toEqual({ count: 0, lastResort: false });
      expect(await store.countKeyPackages(d3)).toEqual({ count: 2, lastResort: true });
      expect(await store.deleteKeysOf(u)).toBe(0);
    });
  });
}
