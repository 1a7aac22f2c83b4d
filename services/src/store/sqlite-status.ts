/**
 * SQLite adapter of the StatusStore port, on the database of sqlite.ts (tables in its SCHEMA_V5,
 * status section). Statements are prepared lazily: the tables exist only after the store's init().
 *
 * A post is one `statuses` row; its audience one `status_audience` row per user (with an index
 * from the user's side: the feed), its views one `status_views` row per viewer. A removed post
 * keeps its row (content cleared, `removed_at` set) and its audience until it expires, so the
 * removal fan-out can still find whom to tell; every reader leaves removed and expired posts out.
 */
import type Database from 'better-sqlite3';
import type { MediaRef } from '@parley/client-sdk/protocol';
import { StoreError, type StatusPost, type StatusRemoval, type StatusStore, type StatusView } from './types.js';

interface StatusRow {
  status_id: string; author_user_id: string; author_device_id: string; ts: number; expires_at: number; text: string | null;
  background: number | null; font: number | null; media: string | null; attachment_id: string | null; removed_at: number | null;
}

const toPost = (r: StatusRow): StatusPost => ({
  statusId: r.status_id, authorUserId: r.author_user_id, authorDeviceId: r.author_device_id, ts: r.ts, expiresAt: r.expires_at,
  text: r.text, background: r.background, font: r.font, media: r.media ? JSON.parse(r.media) as MediaRef : null, removedAt: r.removed_at,
});

/** Rows in one `IN (json_each(?))` list. */
const CHUNK = 500;

export function createSqliteStatusStore(db: Database.Database): StatusStore {
  let q: ReturnType<typeof prepare> | null = null;
  const st = (): ReturnType<typeof prepare> => (q ??= prepare());

  function prepare() {
    return {
      insStatus: db.prepare<[string, string, string, number, number, string | null, number | null, number | null, string | null, string | null]>(
        `INSERT OR IGNORE INTO statuses (status_id, author_user_id, author_device_id, ts, expires_at, text, background, font, media, attachment_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      insAudience: db.prepare<[string, string, number]>('INSERT OR IGNORE INTO status_audience (status_id, user_id, expires_at) VALUES (?, ?, ?)'),
      status: db.prepare<[string], StatusRow>('SELECT * FROM statuses WHERE status_id = ?'),
      inAudience: db.prepare<[string, string], { one: number }>('SELECT 1 AS one FROM status_audience WHERE status_id = ? AND user_id = ?'),
      audience: db.prepare<[string, string, number], { user_id: string }>(
        'SELECT user_id FROM status_audience WHERE status_id = ? AND user_id > ? ORDER BY user_id LIMIT ?'),
      feed: db.prepare<[string, number, number], StatusRow>(
        `SELECT s.* FROM status_audience a JOIN statuses s ON s.status_id = a.status_id
         WHERE a.user_id = ? AND a.expires_at > ? AND s.removed_at IS NULL
         ORDER BY s.author_user_id, s.ts, s.status_id LIMIT ?`),
      own: db.prepare<[string, number], StatusRow>(
        'SELECT * FROM statuses WHERE author_user_id = ? AND expires_at > ? AND removed_at IS NULL ORDER BY ts, status_id'),
      insView: db.prepare<[string, string, number]>('INSERT OR IGNORE INTO status_views (status_id, viewer_user_id, at) VALUES (?, ?, ?)'),
      viewers: db.prepare<[string], { viewer_user_id: string; at: number }>(
        'SELECT viewer_user_id, at FROM status_views WHERE status_id = ? ORDER BY at, viewer_user_id'),
      viewed: db.prepare<[string, string], { status_id: string }>(
        'SELECT status_id FROM status_views WHERE viewer_user_id = ? AND status_id IN (SELECT value FROM json_each(?))'),
      remove: db.prepare<[number, string]>(
        `UPDATE statuses SET removed_at = ?, text = NULL, background = NULL, font = NULL, media = NULL
         WHERE status_id = ? AND removed_at IS NULL`),
      delViews: db.prepare<[string]>('DELETE FROM status_views WHERE status_id = ?'),
      delAudience: db.prepare<[string]>('DELETE FROM status_audience WHERE status_id = ?'),
      delStatus: db.prepare<[string]>('DELETE FROM statuses WHERE status_id = ?'),
      expired: db.prepare<[number, number], { status_id: string; attachment_id: string | null }>(
        'SELECT status_id, attachment_id FROM statuses WHERE expires_at < ? ORDER BY expires_at, status_id LIMIT ?'),
      ofAuthor: db.prepare<[string], { status_id: string; attachment_id: string | null }>(
        'SELECT status_id, attachment_id FROM statuses WHERE author_user_id = ?'),
      delAudienceOfUser: db.prepare<[string]>('DELETE FROM status_audience WHERE user_id = ?'),
      delViewsOfUser: db.prepare<[string]>('DELETE FROM status_views WHERE viewer_user_id = ?'),
    };
  }

  const deletePosts = (rows: Array<{ status_id: string; attachment_id: string | null }>): StatusRemoval => {
    const s = st();
    for (const r of rows) {
      s.delViews.run(r.status_id);
      s.delAudience.run(r.status_id);
      s.delStatus.run(r.status_id);
    }
    return {
      statusIds: rows.map((r) => r.status_id),
      attachmentIds: [...new Set(rows.flatMap((r) => (r.attachment_id ? [r.attachment_id] : [])))],
    };
  };

  const tx = {
    create: db.transaction((post: Omit<StatusPost, 'removedAt'>, audience: string[]) => {
      const s = st();
      const r = s.insStatus.run(
        post.statusId, post.authorUserId, post.authorDeviceId, post.ts, post.expiresAt, post.text, post.background, post.font,
        post.media ? JSON.stringify(post.media) : null, post.media?.attachmentId ?? null,
      );
      if (r.changes === 0) throw new StoreError('DUPLICATE', `status ${post.statusId} exists`);
      for (const u of new Set(audience)) s.insAudience.run(post.statusId, u, post.expiresAt);
    }),
    remove: db.transaction((statusId: string, at: number): boolean => {
      const s = st();
      if (s.remove.run(at, statusId).changes === 0) return false;
      s.delViews.run(statusId);
      return true;
    }),
    expire: db.transaction((before: number, limit: number): StatusRemoval => deletePosts(st().expired.all(before, limit))),
    deleteOf: db.transaction((userId: string): string[] => {
      const s = st();
      const removed = deletePosts(s.ofAuthor.all(userId));
      s.delAudienceOfUser.run(userId);
      s.delViewsOfUser.run(userId);
      return removed.attachmentIds;
    }),
  };

  return {
    async createStatus(post, audience) {
      tx.create.immediate(post, audience);
    },
    async getStatus(statusId) {
      const r = st().status.get(statusId);
      return r ? toPost(r) : null;
    },
    async inStatusAudience(statusId, userId) {
      return st().inAudience.get(statusId, userId) !== undefined;
    },
    async statusAudience(statusId, afterUserId, limit) {
      if (limit <= 0) return [];
      return st().audience.all(statusId, afterUserId, limit).map((r) => r.user_id);
    },
    async statusFeed(viewerUserId, now, limit) {
      if (limit <= 0) return [];
      return st().feed.all(viewerUserId, now, limit).map(toPost);
    },
    async ownStatuses(userId, now) {
      return st().own.all(userId, now).map(toPost);
    },
    async addStatusView(statusId, viewerUserId, at) {
      return st().insView.run(statusId, viewerUserId, at).changes > 0;
    },
    async statusViewers(statusId): Promise<StatusView[]> {
      return st().viewers.all(statusId).map((r) => ({ viewerUserId: r.viewer_user_id, at: r.at }));
    },
    async viewedStatuses(viewerUserId, statusIds) {
      const out = new Set<string>();
      for (let i = 0; i < statusIds.length; i += CHUNK) {
        for (const r of st().viewed.all(viewerUserId, JSON.stringify(statusIds.slice(i, i + CHUNK)))) out.add(r.status_id);
      }
      return out;
    },
    async removeStatus(statusId, at) {
      return tx.remove.immediate(statusId, at);
    },
    async expireStatuses(before, limit) {
      if (limit <= 0) return { statusIds: [], attachmentIds: [] };
      return tx.expire.immediate(before, limit);
    },
    async deleteStatusesOf(userId) {
      return tx.deleteOf.immediate(userId);
    },
  };
}
