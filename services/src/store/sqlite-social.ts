/**
 * SQLite adapter of the social ports (ProfileStore, RelationStore) and of contacts discovery's
 * AccountStore.getUsersByPhoneHashes, on the database of sqlite.ts (tables in its SCHEMA_V5,
 * social section). Statements are prepared lazily: the tables exist only after the store's init().
 *
 * Profiles and privacy settings are one row per user each, written on the first change; a setting
 * never written reads as its default (DEFAULT_PRIVACY), so a new default reaches every user who
 * never chose. Contacts and blocks are one row per (owner, other) pair, each with an index from
 * the other side (who has me in his contacts, who blocked me).
 */
import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import {
  DEFAULT_PRIVACY, userPairKey, type AccountStore, type Privacy, type Profile, type ProfileStore, type RelationStore, type Visibility,
} from './types.js';

/** The social ports as this adapter implements them (spread into createSqliteStore's object). */
export type SqliteSocialStore = ProfileStore & RelationStore & Pick<AccountStore, 'getUsersByPhoneHashes'>;

interface ProfileRow { user_id: string; name: string; about: string; avatar: string | null; updated_at: number }
interface PrivacyRow {
  user_id: string; last_seen: Visibility | null; photo: Visibility | null; about: Visibility | null; read_receipts: number | null;
  group_add: Visibility | null;
}

const toProfile = (r: ProfileRow): Profile => ({ userId: r.user_id, name: r.name, about: r.about, avatar: r.avatar, updatedAt: r.updated_at });
const toPrivacy = (r: PrivacyRow | undefined): Privacy => ({
  lastSeen: r?.last_seen ?? DEFAULT_PRIVACY.lastSeen,
  photo: r?.photo ?? DEFAULT_PRIVACY.photo,
  about: r?.about ?? DEFAULT_PRIVACY.about,
  readReceipts: r?.read_receipts == null ? DEFAULT_PRIVACY.readReceipts : r.read_receipts === 1,
  groupAdd: r?.group_add ?? DEFAULT_PRIVACY.groupAdd,
});

/**
 * The phone hash computed synchronously (node:crypto), for the one place that cannot await: the
 * schema migration's transaction. Everything else uses the SDK's `hashPhone` (WebCrypto); the
 * contract suite checks that the two agree.
 */
export const phoneHashSync = (e164: string): string => createHash('sha256').update(e164, 'utf8').digest('hex');

/**
 * v5 migration step (inside the migration transaction, after SCHEMA_V5 added `users.phone_hash`):
 * the hash of every existing user's phone. SQLite has no SHA-256 in SQL, so it is done here.
 */
export function backfillPhoneHashes(db: Database.Database): void {
  const set = db.prepare<[string, string]>('UPDATE users SET phone_hash = ? WHERE user_id = ?');
  for (const r of db.prepare<[], { user_id: string; phone: string }>('SELECT user_id, phone FROM users WHERE phone_hash IS NULL').all()) {
    set.run(phoneHashSync(r.phone), r.user_id);
  }
}

export function createSqliteSocialStore(db: Database.Database): SqliteSocialStore {
  let q: ReturnType<typeof prepare> | null = null;
  const st = (): ReturnType<typeof prepare> => (q ??= prepare());

  function prepare() {
    return {
      usersByHashes: db.prepare<[string], { user_id: string; phone_hash: string }>(
        'SELECT user_id, phone_hash FROM users WHERE phone_hash IN (SELECT value FROM json_each(?)) ORDER BY phone_hash'),

      profile: db.prepare<[string], ProfileRow>('SELECT * FROM profiles WHERE user_id = ?'),
      putProfile: db.prepare<[{ user: string; name: string | null; about: string | null; setAvatar: number; avatar: string | null; at: number }], ProfileRow>(
        `INSERT INTO profiles (user_id, name, about, avatar, updated_at)
         VALUES (@user, COALESCE(@name, ''), COALESCE(@about, ''), @avatar, @at)
         ON CONFLICT (user_id) DO UPDATE SET name = COALESCE(@name, name), about = COALESCE(@about, about),
           avatar = CASE WHEN @setAvatar THEN @avatar ELSE avatar END, updated_at = @at
         RETURNING *`),
      delProfile: db.prepare<[string]>('DELETE FROM profiles WHERE user_id = ?'),
      privacy: db.prepare<[string], PrivacyRow>('SELECT * FROM privacy WHERE user_id = ?'),
      privacies: db.prepare<[string], PrivacyRow>('SELECT * FROM privacy WHERE user_id IN (SELECT value FROM json_each(?))'),
      putPrivacy: db.prepare<[{ user: string; lastSeen: string | null; photo: string | null; about: string | null; readReceipts: number | null; groupAdd: string | null }], PrivacyRow>(
        `INSERT INTO privacy (user_id, last_seen, photo, about, read_receipts, group_add)
         VALUES (@user, @lastSeen, @photo, @about, @readReceipts, @groupAdd)
         ON CONFLICT (user_id) DO UPDATE SET last_seen = COALESCE(@lastSeen, last_seen), photo = COALESCE(@photo, photo),
           about = COALESCE(@about, about), read_receipts = COALESCE(@readReceipts, read_receipts), group_add = COALESCE(@groupAdd, group_add)
         RETURNING *`),
      delPrivacy: db.prepare<[string]>('DELETE FROM privacy WHERE user_id = ?'),

      addContacts: db.prepare<[{ ids: string; user: string; at: number }]>(
        'INSERT OR IGNORE INTO contacts (user_id, contact_id, created_at) SELECT @user, value, @at FROM json_each(@ids) WHERE value <> @user'),
      removeContacts: db.prepare<[{ ids: string; user: string }]>(
        'DELETE FROM contacts WHERE user_id = @user AND contact_id IN (SELECT value FROM json_each(@ids))'),
      contacts: db.prepare<[string], { contact_id: string }>('SELECT contact_id FROM contacts WHERE user_id = ? ORDER BY created_at, contact_id'),
      contactOf: db.prepare<[string, string], { user_id: string }>(
        'SELECT user_id FROM contacts WHERE contact_id = ? AND user_id IN (SELECT value FROM json_each(?))'),
      block: db.prepare<[string, string, number]>('INSERT OR IGNORE INTO blocks (user_id, blocked_id, created_at) VALUES (?, ?, ?)'),
      unblock: db.prepare<[string, string]>('DELETE FROM blocks WHERE user_id = ? AND blocked_id = ?'),
      blocked: db.prepare<[string], { blocked_id: string }>('SELECT blocked_id FROM blocks WHERE user_id = ? ORDER BY created_at, blocked_id'),
      blockedBy: db.prepare<[string, string], { user_id: string }>(
        'SELECT user_id FROM blocks WHERE blocked_id = ? AND user_id IN (SELECT value FROM json_each(?))'),
      // Both directions of each pair ([[a, b], ...] as JSON), each a primary key look-up.
      blockedPairs: db.prepare<[{ pairs: string }], { user_id: string; blocked_id: string }>(
        `SELECT b.user_id, b.blocked_id FROM json_each(@pairs) p JOIN blocks b ON b.user_id = p.value ->> 0 AND b.blocked_id = p.value ->> 1
         UNION ALL
         SELECT b.user_id, b.blocked_id FROM json_each(@pairs) p JOIN blocks b ON b.user_id = p.value ->> 1 AND b.blocked_id = p.value ->> 0`),
      forgetContacts: db.prepare<[string, string]>('DELETE FROM contacts WHERE user_id = ? OR contact_id = ?'),
      forgetBlocks: db.prepare<[string, string]>('DELETE FROM blocks WHERE user_id = ? OR blocked_id = ?'),
    };
  }

  const forget = db.transaction((userId: string) => {
    const s = st();
    s.forgetContacts.run(userId, userId);
    s.forgetBlocks.run(userId, userId);
  });
  const deleteProfile = db.transaction((userId: string) => {
    const s = st();
    s.delProfile.run(userId);
    s.delPrivacy.run(userId);
  });

  return {
    async getUsersByPhoneHashes(hashes) {
      if (hashes.length === 0) return [];
      return st().usersByHashes.all(JSON.stringify(hashes)).map((r) => ({ userId: r.user_id, phoneHash: r.phone_hash }));
    },

    async getProfile(userId) {
      const r = st().profile.get(userId);
      return r ? toProfile(r) : null;
    },
    async putProfile(userId, patch, now) {
      // One upsert: concurrent patches of different fields both land.
      const r = st().putProfile.get({
        user: userId, name: patch.name ?? null, about: patch.about ?? null,
        setAvatar: patch.avatar !== undefined ? 1 : 0, avatar: patch.avatar ?? null, at: now,
      });
      return toProfile(r!);
    },
    async getPrivacy(userId) {
      return toPrivacy(st().privacy.get(userId));
    },
    async getPrivacies(userIds) {
      const out = new Map<string, Privacy>();
      if (userIds.length === 0) return out;
      const rows = new Map(st().privacies.all(JSON.stringify([...new Set(userIds)])).map((r) => [r.user_id, r]));
      for (const u of userIds) out.set(u, toPrivacy(rows.get(u)));
      return out;
    },
    async putPrivacy(userId, patch) {
      const r = st().putPrivacy.get({
        user: userId, lastSeen: patch.lastSeen ?? null, photo: patch.photo ?? null, about: patch.about ?? null,
        readReceipts: patch.readReceipts === undefined ? null : patch.readReceipts ? 1 : 0, groupAdd: patch.groupAdd ?? null,
      });
      return toPrivacy(r);
    },
    async deleteProfile(userId) {
      deleteProfile.immediate(userId);
    },

    async addContacts(userId, contactIds, now) {
      if (contactIds.length) st().addContacts.run({ ids: JSON.stringify(contactIds), user: userId, at: now });
    },
    async removeContacts(userId, contactIds) {
      if (contactIds.length) st().removeContacts.run({ ids: JSON.stringify(contactIds), user: userId });
    },
    async listContacts(userId) {
      return st().contacts.all(userId).map((r) => r.contact_id);
    },
    async contactOf(ownerIds, otherId) {
      if (ownerIds.length === 0) return new Set();
      return new Set(st().contactOf.all(otherId, JSON.stringify(ownerIds)).map((r) => r.user_id));
    },
    async block(userId, blockedId, now) {
      st().block.run(userId, blockedId, now);
    },
    async unblock(userId, blockedId) {
      return st().unblock.run(userId, blockedId).changes === 1;
    },
    async listBlocked(userId) {
      return st().blocked.all(userId).map((r) => r.blocked_id);
    },
    async blockedBy(blockerIds, userId) {
      if (blockerIds.length === 0) return new Set();
      return new Set(st().blockedBy.all(userId, JSON.stringify(blockerIds)).map((r) => r.user_id));
    },
    async blockedPairs(pairs) {
      if (pairs.length === 0) return new Set();
      return new Set(st().blockedPairs.all({ pairs: JSON.stringify(pairs) }).map((r) => userPairKey(r.user_id, r.blocked_id)));
    },
    async forgetRelations(userId) {
      forget.immediate(userId);
    },
  };
}
