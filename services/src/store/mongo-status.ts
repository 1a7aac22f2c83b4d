/**
 * MongoDB adapter of the StatusStore port: collections `statuses` (`_id` = statusId),
 * `statusAudience` (`_id` = statusId|userId, with the post's expiry copied so the feed reads one
 * index from the viewer's side) and `statusViews` (`_id` = statusId|viewerUserId: a view is
 * recorded once by the unique `_id`).
 *
 * Without transactions (as mongo.ts explains), multi-document writes are ordered so that what a
 * reader finds is complete or harmless:
 * - createStatus inserts the post first (the unique `_id` refuses a duplicate before any audience
 *   is written), then its audience: the feed reads from the audience side, so a viewer sees the
 *   post once his row exists; a retry of the audience is an insert-if-absent.
 * - Deletions (expiry, account deletion) remove the views and audience first and the post last, so
 *   an interrupted one is found again and finished by the next run; the feed joins on the posts,
 *   so leftover audience rows of a deleted post show nothing, and expiry sweeps them by their copy
 *   of the expiry.
 */
import type { Db, MongoServerError } from 'mongodb';
import type { MediaRef } from '@parley/client-sdk/protocol';
import { StoreError, type StatusPost, type StatusRemoval, type StatusStore } from './types.js';

interface StatusDoc {
  _id: string;
  authorUserId: string;
  authorDeviceId: string;
  ts: number;
  expiresAt: number;
  text: string | null;
  background: number | null;
  font: number | null;
  media: MediaRef | null;
  /** The media's attachment, kept after a removal clears `media`. */
  attachmentId: string | null;
  removedAt: number | null;
}
interface AudienceDoc { _id: string; statusId: string; userId: string; expiresAt: number }
interface ViewDoc { _id: string; statusId: string; viewerUserId: string; at: number; expiresAt: number }

const isDuplicateKey = (err: unknown): boolean => (err as MongoServerError | undefined)?.code === 11000;
/** A bulk insert whose only failures are duplicate keys (rows already there). */
const onlyDuplicates = (err: unknown): boolean => {
  const e = err as { code?: number; writeErrors?: Array<{ code?: number }> | { code?: number } };
  if (e?.code === 11000) return true;
  const list = Array.isArray(e?.writeErrors) ? e.writeErrors : e?.writeErrors ? [e.writeErrors] : [];
  return list.length > 0 && list.every((w) => w.code === 11000);
};

const toPost = (d: StatusDoc): StatusPost => ({
  statusId: d._id, authorUserId: d.authorUserId, authorDeviceId: d.authorDeviceId, ts: d.ts, expiresAt: d.expiresAt,
  text: d.text ?? null, background: d.background ?? null, font: d.font ?? null, media: d.media ?? null, removedAt: d.removedAt ?? null,
});

const key = (statusId: string, userId: string): string => `${statusId}|${userId}`;

export function createMongoStatusStore(db: Db): { store: StatusStore; indexes(): Promise<unknown> } {
  const statuses = db.collection<StatusDoc>('statuses');
  const audience = db.collection<AudienceDoc>('statusAudience');
  const views = db.collection<ViewDoc>('statusViews');

  const deletePosts = async (docs: Array<Pick<StatusDoc, '_id' | 'attachmentId'>>): Promise<StatusRemoval> => {
    const ids = docs.map((d) => d._id);
    if (ids.length) {
      await views.deleteMany({ statusId: { $in: ids } });
      await audience.deleteMany({ statusId: { $in: ids } });
      await statuses.deleteMany({ _id: { $in: ids } });
    }
    return { statusIds: ids, attachmentIds: [...new Set(docs.flatMap((d) => (d.attachmentId ? [d.attachmentId] : [])))] };
  };

  const store: StatusStore = {
    async createStatus(post, users) {
      try {
        await statuses.insertOne({
          _id: post.statusId, authorUserId: post.authorUserId, authorDeviceId: post.authorDeviceId, ts: post.ts, expiresAt: post.expiresAt,
          // The media as a JSON copy (what SQLite stores, and mongo.ts for messages): a key left
          // undefined is dropped, where the driver would store it as null and read it back as null.
          text: post.text, background: post.background, font: post.font, media: post.media ? JSON.parse(JSON.stringify(post.media)) as MediaRef : null,
          attachmentId: post.media?.attachmentId ?? null,
          removedAt: null,
        });
      } catch (err) {
        if (isDuplicateKey(err)) throw new StoreError('DUPLICATE', `status ${post.statusId} exists`);
        throw err;
      }
      const docs = [...new Set(users)].map((userId) => ({ _id: key(post.statusId, userId), statusId: post.statusId, userId, expiresAt: post.expiresAt }));
      if (!docs.length) return;
      try {
        await audience.insertMany(docs, { ordered: false });
      } catch (err) {
        if (!onlyDuplicates(err)) throw err;
      }
    },
    async getStatus(statusId) {
      const d = await statuses.findOne({ _id: statusId });
      return d ? toPost(d) : null;
    },
    async inStatusAudience(statusId, userId) {
      return (await audience.countDocuments({ _id: key(statusId, userId) }, { limit: 1 })) > 0;
    },
    async statusAudience(statusId, afterUserId, limit) {
      if (limit <= 0) return [];
      const docs = await audience.find({ statusId, userId: { $gt: afterUserId } }, { projection: { _id: 0, userId: 1 } })
        .sort({ userId: 1 }).limit(limit).toArray();
      return docs.map((d) => d.userId);
    },
    async statusFeed(viewerUserId, now, limit) {
      if (limit <= 0) return [];
      const rows = await audience.find({ userId: viewerUserId, expiresAt: { $gt: now } }, { projection: { _id: 0, statusId: 1 } }).toArray();
      if (!rows.length) return [];
      const docs = await statuses.find({ _id: { $in: rows.map((r) => r.statusId) }, expiresAt: { $gt: now }, removedAt: null })
        .sort({ authorUserId: 1, ts: 1, _id: 1 }).limit(limit).toArray();
      return docs.map(toPost);
    },
    async ownStatuses(userId, now) {
      const docs = await statuses.find({ authorUserId: userId, expiresAt: { $gt: now }, removedAt: null }).sort({ ts: 1, _id: 1 }).toArray();
      return docs.map(toPost);
    },
    async addStatusView(statusId, viewerUserId, at) {
      const post = await statuses.findOne({ _id: statusId }, { projection: { expiresAt: 1 } });
      try {
        await views.insertOne({ _id: key(statusId, viewerUserId), statusId, viewerUserId, at, expiresAt: post?.expiresAt ?? at });
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    },
    async statusViewers(statusId) {
      const docs = await views.find({ statusId }).sort({ at: 1, viewerUserId: 1 }).toArray();
      return docs.map((d) => ({ viewerUserId: d.viewerUserId, at: d.at }));
    },
    async viewedStatuses(viewerUserId, statusIds) {
      if (!statusIds.length) return new Set();
      const docs = await views.find({ _id: { $in: statusIds.map((s) => key(s, viewerUserId)) } }, { projection: { statusId: 1 } }).toArray();
      return new Set(docs.map((d) => d.statusId));
    },
    async removeStatus(statusId, at) {
      const d = await statuses.findOneAndUpdate(
        { _id: statusId, removedAt: null },
        { $set: { removedAt: at, text: null, background: null, font: null, media: null } },
      );
      if (!d) return false;
      await views.deleteMany({ statusId });
      return true;
    },
    async expireStatuses(before, limit) {
      if (limit <= 0) return { statusIds: [], attachmentIds: [] };
      const docs = await statuses.find({ expiresAt: { $lt: before } }, { projection: { _id: 1, attachmentId: 1 } })
        .sort({ expiresAt: 1, _id: 1 }).limit(limit).toArray();
      const removed = await deletePosts(docs);
      // Leftovers of an interrupted deletion, by their copy of the expiry (rows of expired posts
      // of later pages go too: nobody reads an expired post's audience or views).
      await audience.deleteMany({ expiresAt: { $lt: before } });
      await views.deleteMany({ expiresAt: { $lt: before } });
      return removed;
    },
    async deleteStatusesOf(userId) {
      const docs = await statuses.find({ authorUserId: userId }, { projection: { _id: 1, attachmentId: 1 } }).toArray();
      const removed = await deletePosts(docs);
      await audience.deleteMany({ userId });
      await views.deleteMany({ viewerUserId: userId });
      return removed.attachmentIds;
    },
  };

  return {
    store,
    indexes: () => Promise.all([
      statuses.createIndexes([
        { key: { authorUserId: 1, ts: 1 }, name: 'author' },
        { key: { expiresAt: 1, _id: 1 }, name: 'expiry' },
      ]),
      audience.createIndexes([
        { key: { statusId: 1, userId: 1 }, name: 'status_user' },
        { key: { userId: 1, expiresAt: 1 }, name: 'user_expiry' },
        { key: { expiresAt: 1 }, name: 'expiry' },
      ]),
      views.createIndexes([
        { key: { statusId: 1, at: 1 }, name: 'status_at' },
        { key: { viewerUserId: 1 }, name: 'viewer' },
        { key: { expiresAt: 1 }, name: 'expiry' },
      ]),
    ]),
  };
}
