/**
 * The StatusStore contract: posts with their audience, the feed (unexpired, not removed, by author,
 * oldest first), own posts, views (idempotent), removal (content and views gone, audience kept
 * until expiry), expiry in pages, and account deletion.
 */
import { describe, expect, it } from 'vitest';
import { newId, type MediaRef } from '@parley/client-sdk/protocol';
import { StoreError, type StatusPost } from '../../services/src/store/types.js';
import { cmp, errorOf, sortIds, useStore, type StoreFactory } from './helpers.js';

const HOUR = 3_600_000;

export function statusStoreContract(factory: StoreFactory): void {
  describe('StatusStore', () => {
    const ctx = useStore(factory);
    const user = (): string => newId('user');

    function post(author: string, ts: number, over: Partial<Omit<StatusPost, 'removedAt'>> = {}): Omit<StatusPost, 'removedAt'> {
      return {
        statusId: newId('status'), authorUserId: author, authorDeviceId: newId('device'), ts, expiresAt: ts + 24 * HOUR,
        text: 'hello', background: 0x336699, font: 2, media: null, ...over,
      };
    }

    const media = (): MediaRef => ({
      attachmentId: newId('media'), kind: 'image', contentType: 'image/png', size: 123, sha256: 'ab'.repeat(32), preview: 'AAAA', width: 64, height: 48,
    });

    it('stores a post as given (text or media) with its audience; an id is taken once', async () => {
      const { store } = ctx;
      const a = user();
      const [b, c, d] = [user(), user(), user()];
      const text = post(a, 1_000);
      const pic = post(a, 2_000, { text: 'caption', background: null, font: null, media: media() });
      await store.createStatus(text, [b, c, b]);
      await store.createStatus(pic, [c]);
      expect(await store.getStatus(text.statusId)).toEqual({ ...text, removedAt: null });
      expect(await store.getStatus(pic.statusId)).toEqual({ ...pic, removedAt: null });
      expect(await store.getStatus(newId('status'))).toBeNull();
      expect(await store.inStatusAudience(text.statusId, b)).toBe(true);
      expect(await store.inStatusAudience(text.statusId, d)).toBe(false);
      expect(await store.inStatusAudience(pic.statusId, b)).toBe(false);
      const err = await errorOf(store.createStatus(text, [d]));
      expect(err).toBeInstanceOf(StoreError);
      expect((err as StoreError).code).toBe('DUPLICATE');
      expect(await store.inStatusAudience(text.statusId, d)).toBe(false);
    });

    it('pages through the audience by userId', async () => {
      const { store } = ctx;
      const audience = Array.from({ length: 7 }, user);
      const p = post(user(), 1_000);
      await store.createStatus(p, audience);
      const sorted = sortIds(audience);
      const first = await store.statusAudience(p.statusId, '', 3);
      expect(first).toEqual(sorted.slice(0, 3));
      expect(await store.statusAudience(p.statusId, first.at(-1)!, 3)).toEqual(sorted.slice(3, 6));
      expect(await store.statusAudience(p.statusId, sorted[5]!, 3)).toEqual(sorted.slice(6));
      expect(await store.statusAudience(p.statusId, sorted[6]!, 3)).toEqual([]);
      expect(await store.statusAudience(newId('status'), '', 3)).toEqual([]);
    });

    it('answers the feed: unexpired posts the viewer is in the audience of, by author, oldest first', async () => {
      const { store } = ctx;
      const viewer = user();
      const [a, b] = [user(), user()].sort(cmp) as [string, string];
      const a2 = post(a, 3_000);
      const a1 = post(a, 1_000);
      const b1 = post(b, 2_000);
      const old = post(b, 500, { expiresAt: 10_000 });
      const notMine = post(a, 1_500);
      await store.createStatus(a2, [viewer]);
      await store.createStatus(a1, [viewer, b]);
      await store.createStatus(b1, [viewer]);
      await store.createStatus(old, [viewer]);
      await store.createStatus(notMine, [b]);
      const ids = (ps: StatusPost[]): string[] => ps.map((p) => p.statusId);
      expect(ids(await store.statusFeed(viewer, 5_000, 100))).toEqual([a1.statusId, a2.statusId, old.statusId, b1.statusId]);
      // Expired at `now` (expiresAt <= now) is gone.
      expect(ids(await store.statusFeed(viewer, 10_000, 100))).toEqual([a1.statusId, a2.statusId, b1.statusId]);
      expect(ids(await store.statusFeed(viewer, 10_000, 2))).toEqual([a1.statusId, a2.statusId]);
      expect(await store.statusFeed(viewer, a1.expiresAt + 3 * HOUR, 100)).toEqual([]);
      expect(ids(await store.statusFeed(b, 5_000, 100))).toEqual([a1.statusId, notMine.statusId]);
      expect((await store.statusFeed(viewer, 5_000, 100))[0]).toEqual({ ...a1, removedAt: null });
    });

    it("lists the author's own unexpired posts, oldest first", async () => {
      const { store } = ctx;
      const a = user();
      const p2 = post(a, 2_000);
      const p1 = post(a, 1_000, { expiresAt: 5_000 });
      await store.createStatus(p2, []);
      await store.createStatus(p1, [user()]);
      await store.createStatus(post(user(), 1_000), [a]);
      expect((await store.ownStatuses(a, 3_000)).map((p) => p.statusId)).toEqual([p1.statusId, p2.statusId]);
      expect((await store.ownStatuses(a, 5_000)).map((p) => p.statusId)).toEqual([p2.statusId]);
    });

    it('records views once (the first time stays), lists viewers in view order, tells which were viewed', async () => {
      const { store } = ctx;
      const [v1, v2] = [user(), user()];
      const p = post(user(), 1_000);
      const q = post(user(), 1_000);
      await store.createStatus(p, [v1, v2]);
      await store.createStatus(q, [v1]);
      expect(await store.addStatusView(p.statusId, v2, 2_000)).toBe(true);
      expect(await store.addStatusView(p.statusId, v1, 3_000)).toBe(true);
      expect(await store.addStatusView(p.statusId, v2, 4_000)).toBe(false);
      expect(await store.statusViewers(p.statusId)).toEqual([{ viewerUserId: v2, at: 2_000 }, { viewerUserId: v1, at: 3_000 }]);
      expect(await store.statusViewers(q.statusId)).toEqual([]);
      expect(await store.viewedStatuses(v1, [p.statusId, q.statusId, newId('status')])).toEqual(new Set([p.statusId]));
      expect(await store.viewedStatuses(v1, [])).toEqual(new Set());
    });

    it('removes a post: content and views gone, marked removed, out of feeds, audience kept for the removal', async () => {
      const { store } = ctx;
      const [a, v] = [user(), user()];
      const p = post(a, 1_000, { media: media(), text: 'caption' });
      await store.createStatus(p, [v]);
      await store.addStatusView(p.statusId, v, 1_500);
      expect(await store.removeStatus(p.statusId, 2_000)).toBe(true);
      expect(await store.removeStatus(p.statusId, 2_500)).toBe(false);
      expect(await store.removeStatus(newId('status'), 2_500)).toBe(false);
      expect(await store.getStatus(p.statusId)).toEqual({ ...p, text: null, background: null, font: null, media: null, removedAt: 2_000 });
      expect(await store.statusViewers(p.statusId)).toEqual([]);
      expect(await store.statusFeed(v, 3_000, 10)).toEqual([]);
      expect(await store.ownStatuses(a, 3_000)).toEqual([]);
      expect(await store.statusAudience(p.statusId, '', 10)).toEqual([v]);
      // Its attachment is still reported when it expires.
      expect(await store.expireStatuses(p.expiresAt + 1, 10)).toEqual({ statusIds: [p.statusId], attachmentIds: [p.media!.attachmentId] });
    });

    it('expires posts older than a time, oldest first, in pages, with their audience and views', async () => {
      const { store } = ctx;
      const [a, v] = [user(), user()];
      const m = media();
      const p1 = post(a, 1_000, { expiresAt: 3_000, media: m, text: null, background: null, font: null });
      const p2 = post(a, 1_100, { expiresAt: 2_000, media: m, text: null, background: null, font: null });
      const p3 = post(a, 1_200, { expiresAt: 4_000 });
      const live = post(a, 1_300, { expiresAt: 9_000 });
      for (const p of [p1, p2, p3, live]) await store.createStatus(p, [v]);
      await store.addStatusView(p1.statusId, v, 1_500);
      expect(await store.expireStatuses(5_000, 2)).toEqual({ statusIds: [p2.statusId, p1.statusId], attachmentIds: [m.attachmentId] });
      expect(await store.getStatus(p1.statusId)).toBeNull();
      expect(await store.statusViewers(p1.statusId)).toEqual([]);
      expect(await store.inStatusAudience(p1.statusId, v)).toBe(false);
      expect(await store.expireStatuses(5_000, 2)).toEqual({ statusIds: [p3.statusId], attachmentIds: [] });
      expect(await store.expireStatuses(5_000, 2)).toEqual({ statusIds: [], attachmentIds: [] });
      expect((await store.getStatus(live.statusId))?.statusId).toBe(live.statusId);
      expect((await store.statusFeed(v, 5_000, 10)).map((p) => p.statusId)).toEqual([live.statusId]);
    });

    it("deletes a user's posts and his audience entries and views elsewhere (account deletion)", async () => {
      const { store } = ctx;
      const [gone, other, third] = [user(), user(), user()];
      const m = media();
      const mine = post(gone, 1_000, { media: m, text: null, background: null, font: null });
      const mineToo = post(gone, 1_100);
      const theirs = post(other, 1_200);
      await store.createStatus(mine, [other]);
      await store.createStatus(mineToo, [other, third]);
      await store.removeStatus(mineToo.statusId, 1_300);
      await store.createStatus(theirs, [gone, third]);
      await store.addStatusView(mine.statusId, other, 1_500);
      await store.addStatusView(theirs.statusId, gone, 1_600);
      await store.addStatusView(theirs.statusId, third, 1_700);
      expect(await store.deleteStatusesOf(gone)).toEqual([m.attachmentId]);
      expect(await store.getStatus(mine.statusId)).toBeNull();
      expect(await store.getStatus(mineToo.statusId)).toBeNull();
      expect(await store.statusAudience(mineToo.statusId, '', 10)).toEqual([]);
      expect(await store.statusViewers(mine.statusId)).toEqual([]);
      expect(await store.inStatusAudience(theirs.statusId, gone)).toBe(false);
      expect(await store.statusViewers(theirs.statusId)).toEqual([{ viewerUserId: third, at: 1_700 }]);
      expect(await store.statusFeed(gone, 2_000, 10)).toEqual([]);
      expect((await store.statusFeed(third, 2_000, 10)).map((p) => p.statusId)).toEqual([theirs.statusId]);
      expect(await store.deleteStatusesOf(gone)).toEqual([]);
    });
  });
}
