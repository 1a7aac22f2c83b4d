/**
 * The RelationStore contract: a user's contacts (registered users he saved) and blocks, both
 * directions of each question, forgetting a user; and contacts discovery's
 * AccountStore.getUsersByPhoneHashes (the phone hash each user gets when created).
 */
import { describe, expect, it } from 'vitest';
import { hashPhone, newId } from '@parley/client-sdk/protocol';
import { phoneHashSync } from '../../services/src/store/sqlite-social.js';
import { newPhone, newUser, sortIds, useStore, type StoreFactory } from './helpers.js';

const key = (a: string, b: string): string => (a < b ? `${a}|${b}` : `${b}|${a}`);

export function relationStoreContract(factory: StoreFactory): void {
  describe('RelationStore', () => {
    const ctx = useStore(factory);

    it('contacts: added once, in order, never oneself; removed; contactOf answers from the other side', async () => {
      const { store } = ctx;
      const [a, b, c, d] = [await newUser(store), await newUser(store), await newUser(store), await newUser(store)];
      expect(await store.listContacts(a)).toEqual([]);
      await store.addContacts(a, [b, a], 10);
      await store.addContacts(a, [c, b], 20);
      await store.addContacts(a, [], 30);
      expect(await store.listContacts(a)).toEqual([b, c]);
      await store.addContacts(d, [b], 10);
      // Who has b in his contacts, among these.
      expect(sortIds([...(await store.contactOf([a, c, d], b))])).toEqual(sortIds([a, d]));
      expect([...(await store.contactOf([a, b, c, d], c))]).toEqual([a]);
      expect((await store.contactOf([], b)).size).toBe(0);
      // Contacts are one-way.
      expect(await store.listContacts(b)).toEqual([]);
      await store.removeContacts(a, [b, newId('user')]);
      await store.removeContacts(a, []);
      expect(await store.listContacts(a)).toEqual([c]);
      expect([...(await store.contactOf([a, d], b))]).toEqual([d]);
    });

    it('blocks: idempotent, one-way, listed in order; unblock says whether there was one', async () => {
      const { store } = ctx;
      const [a, b, c] = [await newUser(store), await newUser(store), await newUser(store)];
      await store.block(a, b, 10);
      await store.block(a, b, 11);
      await store.block(a, c, 12);
      await store.block(c, b, 13);
      expect(await store.listBlocked(a)).toEqual([b, c]);
      expect(await store.listBlocked(b)).toEqual([]);
      expect(sortIds([...(await store.blockedBy([a, b, c], b))])).toEqual(sortIds([a, c]));
      expect([...(await store.blockedBy([b, c], a))]).toEqual([]);
      expect((await store.blockedBy([], b)).size).toBe(0);
      expect(await store.unblock(a, b)).toBe(true);
      expect(await store.unblock(a, b)).toBe(false);
      expect(await store.listBlocked(a)).toEqual([c]);
      expect([...(await store.blockedBy([a, c], b))]).toEqual([c]);
    });

    it('blockedPairs: pairs blocked in either direction, by their sorted key', async () => {
      const { store } = ctx;
      const [a, b, c, d] = [await newUser(store), await newUser(store), await newUser(store), await newUser(store)];
      await store.block(a, b, 1);
      await store.block(d, c, 1);
      const got = await store.blockedPairs([[a, b], [b, a], [c, d], [a, c], [b, d]]);
      expect([...got].sort()).toEqual([key(a, b), key(c, d)].sort());
      // Both directions blocked: still one key.
      await store.block(b, a, 2);
      expect([...(await store.blockedPairs([[b, a]]))]).toEqual([key(a, b)]);
      expect((await store.blockedPairs([])).size).toBe(0);
    });

    it('forgetRelations removes the user\'s contacts and blocks and his place in others\'', async () => {
      const { store } = ctx;
      const [a, b, c] = [await newUser(store), await newUser(store), await newUser(store)];
      await store.addContacts(a, [b, c], 1);
      await store.addContacts(b, [a, c], 1);
      await store.block(a, c, 1);
      await store.block(c, a, 1);
      await store.block(b, c, 1);
      await store.forgetRelations(a);
      await store.forgetRelations(a);
      expect(await store.listContacts(a)).toEqual([]);
      expect(await store.listBlocked(a)).toEqual([]);
      expect(await store.listContacts(b)).toEqual([c]);
      expect(await store.listBlocked(c)).toEqual([]);
      expect(await store.listBlocked(b)).toEqual([c]);
      expect((await store.contactOf([b], a)).size).toBe(0);
      expect((await store.blockedBy([c], a)).size).toBe(0);
    });
  });

  describe('AccountStore.getUsersByPhoneHashes', () => {
    const ctx = useStore(factory);

    it('finds the users of known hashes (the SDK\'s hashPhone of the E.164 phone), nothing for the rest', async () => {
      const { store } = ctx;
      const p1 = newPhone();
      const p2 = newPhone();
      const u1 = (await store.getOrCreateUserByPhone(p1, newId('user'), 1)).user.userId;
      const u2 = (await store.getOrCreateUserByPhone(p2, newId('user'), 1)).user.userId;
      const h1 = await hashPhone(p1);
      const h2 = await hashPhone(p2);
      const found = await store.getUsersByPhoneHashes([h1, await hashPhone(newPhone()), h2, h1]);
      expect(found.sort((x, y) => (x.userId < y.userId ? -1 : 1))).toEqual(
        [{ userId: u1, phoneHash: h1 }, { userId: u2, phoneHash: h2 }].sort((x, y) => (x.userId < y.userId ? -1 : 1)),
      );
      expect(await store.getUsersByPhoneHashes([])).toEqual([]);
      // An existing user found again keeps his hash.
      await store.getOrCreateUserByPhone(p1, newId('user'), 2);
      expect(await store.getUsersByPhoneHashes([h1])).toEqual([{ userId: u1, phoneHash: h1 }]);
    });

    it('the server-side synchronous hash (migrations) equals the SDK\'s WebCrypto hashPhone', async () => {
      for (const p of ['+447700900123', '+15550101234', newPhone()]) expect(phoneHashSync(p)).toBe(await hashPhone(p));
      expect(await hashPhone('+447700900123')).toMatch(/^[0-9a-f]{64}$/);
    });
  });
}
