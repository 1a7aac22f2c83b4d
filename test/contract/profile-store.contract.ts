/**
 * The ProfileStore contract: a user's profile (name, about, avatar) and privacy settings, one
 * record each, created on the first change; settings never chosen read as DEFAULT_PRIVACY.
 */
import { describe, expect, it } from 'vitest';
import { newId } from '@parley/client-sdk/protocol';
import { DEFAULT_PRIVACY } from '../../services/src/store/types.js';
import { newUser, useStore, type StoreFactory } from './helpers.js';

export function profileStoreContract(factory: StoreFactory): void {
  describe('ProfileStore', () => {
    const ctx = useStore(factory);

    it('has no profile until one is set; a patch changes only its fields', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      expect(await store.getProfile(u)).toBeNull();
      expect(await store.putProfile(u, { name: 'Ann' }, 10)).toEqual({ userId: u, name: 'Ann', about: '', avatar: null, updatedAt: 10 });
      const avatar = newId('media');
      expect(await store.putProfile(u, { about: 'Hey there', avatar }, 20)).toEqual({ userId: u, name: 'Ann', about: 'Hey there', avatar, updatedAt: 20 });
      expect(await store.putProfile(u, { avatar: null }, 30)).toEqual({ userId: u, name: 'Ann', about: 'Hey there', avatar: null, updatedAt: 30 });
      expect(await store.getProfile(u)).toEqual({ userId: u, name: 'Ann', about: 'Hey there', avatar: null, updatedAt: 30 });
      // Another user's profile is his own.
      expect(await store.getProfile(await newUser(store))).toBeNull();
    });

    it('concurrent patches of different fields both land', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      await Promise.all([store.putProfile(u, { name: 'N' }, 1), store.putProfile(u, { about: 'A' }, 1)]);
      expect(await store.getProfile(u)).toMatchObject({ name: 'N', about: 'A' });
    });

    it('privacy: defaults until set, patches merge, several users at once', async () => {
      const { store } = ctx;
      const a = await newUser(store);
      const b = await newUser(store);
      expect(await store.getPrivacy(a)).toEqual(DEFAULT_PRIVACY);
      expect(await store.putPrivacy(a, { lastSeen: 'contacts', readReceipts: false })).toEqual({ ...DEFAULT_PRIVACY, lastSeen: 'contacts', readReceipts: false });
      expect(await store.putPrivacy(a, { photo: 'nobody', groupAdd: 'contacts' })).toEqual({
        ...DEFAULT_PRIVACY, lastSeen: 'contacts', readReceipts: false, photo: 'nobody', groupAdd: 'contacts',
      });
      expect(await store.putPrivacy(a, { readReceipts: true, about: 'nobody' })).toEqual({
        lastSeen: 'contacts', readReceipts: true, photo: 'nobody', groupAdd: 'contacts', about: 'nobody',
      });
      // An empty patch changes nothing.
      expect(await store.putPrivacy(a, {})).toEqual(await store.getPrivacy(a));
      const unknown = newId('user');
      const all = await store.getPrivacies([a, b, unknown, a]);
      expect([...all.keys()].sort()).toEqual([a, b, unknown].sort());
      expect(all.get(a)).toEqual(await store.getPrivacy(a));
      expect(all.get(b)).toEqual(DEFAULT_PRIVACY);
      expect(all.get(unknown)).toEqual(DEFAULT_PRIVACY);
      expect((await store.getPrivacies([])).size).toBe(0);
      // The defaults object itself is never changed by an adapter.
      expect(DEFAULT_PRIVACY).toEqual({ lastSeen: 'everyone', photo: 'everyone', about: 'everyone', readReceipts: true, groupAdd: 'everyone' });
    });

    it('deleteProfile forgets the profile and the privacy settings, and only that user\'s', async () => {
      const { store } = ctx;
      const a = await newUser(store);
      const b = await newUser(store);
      for (const u of [a, b]) {
        await store.putProfile(u, { name: 'x', about: 'y' }, 1);
        await store.putPrivacy(u, { photo: 'nobody' });
      }
      await store.deleteProfile(a);
      await store.deleteProfile(a);
      expect(await store.getProfile(a)).toBeNull();
      expect(await store.getPrivacy(a)).toEqual(DEFAULT_PRIVACY);
      expect(await store.getProfile(b)).toMatchObject({ name: 'x' });
      expect((await store.getPrivacy(b)).photo).toBe('nobody');
    });
  });
}
