/**
 * MongoDB adapter of the social ports (ProfileStore, RelationStore) and of contacts discovery's
 * AccountStore.getUsersByPhoneHashes, with the same semantics as sqlite-social.ts:
 * - `profiles` and `privacy`: one document per user (`_id` = userId), written on the first change
 *   with one upsert (`$set` of the fields given only), so concurrent patches of different fields
 *   both land. A privacy field never set reads as its default.
 * - `contacts` and `blocks`: one document per (owner, other) pair, `_id` = `owner|other`, inserted
 *   if absent (idempotent); an index from the other side answers contactOf / blockedBy.
 * - `users.phoneHash`: set by getOrCreateUserByPhone (mongo.ts); users created before it get theirs
 *   in indexes() (run by init()), one bulk write per 1,000 users, once (a `meta` document records
 *   it); a unique partial index serves the look-up. forgetRelations is two deletes (contacts, then blocks), each idempotent.
 */
import type { AnyBulkWriteOperation, Db } from 'mongodb';
import { hashPhone } from '@parley/client-sdk/protocol';
import { DEFAULT_PRIVACY, userPairKey, type Privacy, type Profile, type Visibility } from './types.js';
import type { SqliteSocialStore } from './sqlite-social.js';

/** The same ports as the SQLite adapter's social part. */
export type SocialStore = SqliteSocialStore;

interface ProfileDoc { _id: string; name: string; about: string; avatar: string | null; updatedAt: number }
interface PrivacyDoc {
  _id: string; lastSeen?: Visibility; photo?: Visibility; about?: Visibility; readReceipts?: boolean; groupAdd?: Visibility;
}
interface RelationDoc { _id: string; userId: string; otherId: string; createdAt: number }
interface UserHashDoc { _id: string; phone: string; phoneHash?: string }

const toProfile = (d: ProfileDoc): Profile => ({ userId: d._id, name: d.name ?? '', about: d.about ?? '', avatar: d.avatar ?? null, updatedAt: d.updatedAt });
const toPrivacy = (d: PrivacyDoc | null | undefined): Privacy => ({
  lastSeen: d?.lastSeen ?? DEFAULT_PRIVACY.lastSeen,
  photo: d?.photo ?? DEFAULT_PRIVACY.photo,
  about: d?.about ?? DEFAULT_PRIVACY.about,
  readReceipts: d?.readReceipts ?? DEFAULT_PRIVACY.readReceipts,
  groupAdd: d?.groupAdd ?? DEFAULT_PRIVACY.groupAdd,
});
const relId = (userId: string, otherId: string): string => `${userId}|${otherId}`;

export function createMongoSocial(db: Db): { store: SocialStore; indexes(): Promise<unknown> } {
  const users = db.collection<UserHashDoc>('users');
  const profiles = db.collection<ProfileDoc>('profiles');
  const privacy = db.collection<PrivacyDoc>('privacy');
  const contacts = db.collection<RelationDoc>('contacts');
  const blocks = db.collection<RelationDoc>('blocks');

  /** Inserts (owner, other) documents if absent; `others` is already free of repeats. */
  const insertPairs = async (coll: typeof contacts, userId: string, ids: string[], now: number): Promise<void> => {
    if (ids.length === 0) return;
    await coll.bulkWrite(
      ids.map((otherId) => ({
        updateOne: {
          filter: { _id: relId(userId, otherId) },
          update: { $setOnInsert: { userId, otherId, createdAt: now } },
          upsert: true,
        },
      })),
      { ordered: false },
    );
  };

  // Majority, as mongo.ts writes `meta`: the `done` mark then implies the hashes written before it survive a failover.
  const meta = db.collection<{ _id: string; done?: boolean }>('meta', { writeConcern: { w: 'majority' } });

  /**
   * Users created before phone hashes existed get theirs, once (recorded in `meta`, so later
   * starts do not scan the users again); idempotent if interrupted.
   */
  async function backfillPhoneHashes(): Promise<void> {
    if ((await meta.findOne({ _id: 'phoneHashes' }))?.done) return;
    let batch: AnyBulkWriteOperation<UserHashDoc>[] = [];
    for await (const u of users.find({ phoneHash: { $exists: false } }, { projection: { phone: 1 } })) {
      batch.push({ updateOne: { filter: { _id: u._id, phoneHash: { $exists: false } }, update: { $set: { phoneHash: await hashPhone(u.phone) } } } });
      if (batch.length >= 1000) {
        await users.bulkWrite(batch, { ordered: false });
        batch = [];
      }
    }
    if (batch.length) await users.bulkWrite(batch, { ordered: false });
    await meta.updateOne({ _id: 'phoneHashes' }, { $set: { done: true } }, { upsert: true });
  }

  const store: SocialStore = {
    async getUsersByPhoneHashes(hashes) {
      if (hashes.length === 0) return [];
      // `$type` too: the planner uses the partial index (phoneHash_unique) only for a query that
      // contains its filter expression; it does not infer `$type: 'string'` from string values.
      const docs = await users.find({ phoneHash: { $in: hashes, $type: 'string' } }, { projection: { phoneHash: 1 } })
        .sort({ phoneHash: 1 }).toArray();
      return docs.map((d) => ({ userId: d._id, phoneHash: d.phoneHash! }));
    },

    async getProfile(userId) {
      const d = await profiles.findOne({ _id: userId });
      return d ? toProfile(d) : null;
    },
    async putProfile(userId, patch, now) {
      const set: Partial<ProfileDoc> = { updatedAt: now };
      const onInsert: Partial<ProfileDoc> = {};
      if (patch.name !== undefined) set.name = patch.name;
      else onInsert.name = '';
      if (patch.about !== undefined) set.about = patch.about;
      else onInsert.about = '';
      if (patch.avatar !== undefined) set.avatar = patch.avatar;
      else onInsert.avatar = null;
      const d = await profiles.findOneAndUpdate(
        { _id: userId }, { $set: set, ...(Object.keys(onInsert).length ? { $setOnInsert: onInsert } : {}) },
        { upsert: true, returnDocument: 'after' },
      );
      return toProfile(d!);
    },
    async getPrivacy(userId) {
      return toPrivacy(await privacy.findOne({ _id: userId }));
    },
    async getPrivacies(userIds) {
      const out = new Map<string, Privacy>();
      if (userIds.length === 0) return out;
      const docs = new Map((await privacy.find({ _id: { $in: [...new Set(userIds)] } }).toArray()).map((d) => [d._id, d]));
      for (const u of userIds) out.set(u, toPrivacy(docs.get(u)));
      return out;
    },
    async putPrivacy(userId, patch) {
      const set: Omit<PrivacyDoc, '_id'> = {};
      if (patch.lastSeen !== undefined) set.lastSeen = patch.lastSeen;
      if (patch.photo !== undefined) set.photo = patch.photo;
      if (patch.about !== undefined) set.about = patch.about;
      if (patch.readReceipts !== undefined) set.readReceipts = patch.readReceipts;
      if (patch.groupAdd !== undefined) set.groupAdd = patch.groupAdd;
      if (Object.keys(set).length === 0) return toPrivacy(await privacy.findOne({ _id: userId }));
      const d = await privacy.findOneAndUpdate({ _id: userId }, { $set: set }, { upsert: true, returnDocument: 'after' });
      return toPrivacy(d);
    },
    async deleteProfile(userId) {
      await profiles.deleteOne({ _id: userId });
      await privacy.deleteOne({ _id: userId });
    },

    async addContacts(userId, contactIds, now) {
      // Never oneself (as SQLite's insert leaves that out).
      await insertPairs(contacts, userId, [...new Set(contactIds)].filter((c) => c !== userId), now);
    },
    async removeContacts(userId, contactIds) {
      if (contactIds.length) await contacts.deleteMany({ _id: { $in: contactIds.map((c) => relId(userId, c)) } });
    },
    async listContacts(userId) {
      return (await contacts.find({ userId }).sort({ createdAt: 1, otherId: 1 }).toArray()).map((d) => d.otherId);
    },
    async contactOf(ownerIds, otherId) {
      if (ownerIds.length === 0) return new Set();
      return new Set((await contacts.find({ otherId, userId: { $in: ownerIds } }).toArray()).map((d) => d.userId));
    },
    async block(userId, blockedId, now) {
      await insertPairs(blocks, userId, [blockedId], now);
    },
    async unblock(userId, blockedId) {
      return (await blocks.deleteOne({ _id: relId(userId, blockedId) })).deletedCount === 1;
    },
    async listBlocked(userId) {
      return (await blocks.find({ userId }).sort({ createdAt: 1, otherId: 1 }).toArray()).map((d) => d.otherId);
    },
    async blockedBy(blockerIds, userId) {
      if (blockerIds.length === 0) return new Set();
      return new Set((await blocks.find({ otherId: userId, userId: { $in: blockerIds } }).toArray()).map((d) => d.userId));
    },
    async blockedPairs(pairs) {
      if (pairs.length === 0) return new Set();
      const ids = pairs.flatMap(([a, b]) => [relId(a, b), relId(b, a)]);
      return new Set((await blocks.find({ _id: { $in: ids } }).toArray()).map((d) => userPairKey(d.userId, d.otherId)));
    },
    async forgetRelations(userId) {
      await contacts.deleteMany({ $or: [{ userId }, { otherId: userId }] });
      await blocks.deleteMany({ $or: [{ userId }, { otherId: userId }] });
    },
  };

  return {
    store,
    async indexes() {
      await Promise.all([
        users.createIndexes([{ key: { phoneHash: 1 }, name: 'phoneHash_unique', unique: true, partialFilterExpression: { phoneHash: { $type: 'string' } } }]),
        contacts.createIndexes([
          { key: { userId: 1, createdAt: 1, otherId: 1 }, name: 'owner' },
          { key: { otherId: 1, userId: 1 }, name: 'other' },
        ]),
        blocks.createIndexes([
          { key: { userId: 1, createdAt: 1, otherId: 1 }, name: 'owner' },
          { key: { otherId: 1, userId: 1 }, name: 'other' },
        ]),
      ]);
      await backfillPhoneHashes();
    },
  };
}
