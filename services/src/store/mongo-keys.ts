/**
 * MongoDB adapter of the KeyStore port (the MLS key directory): collections `keyIdentities` and
 * `keyLastResort` (`_id` = deviceId) and `keyPackages` (`_id` = `${deviceId}|${ref}`, so a ref is
 * stored once per device), each with an index on the user (account deletion); the pool has one
 * on (deviceId, addedAt, order), the order claims take it in (oldest upload first, then batch
 * order). Bytes are BSON Binary, never looked into.
 *
 * Differences from SQLite, without multi-document transactions:
 * - A claim is one `findOneAndDelete` per device: atomic per package, so two claimers never get
 *   the same one (what matters); the devices of one claim are not taken as one unit.
 * - The pool's cap is checked by counting before the insert: concurrent uploads of one device can
 *   overshoot it by at most one batch (the cap is a storage bound, not a protocol rule).
 * - putIdentity is "update if present, else insert" (an insert race retries): only the device
 *   itself publishes its identity, so these races are its own.
 */
import { Binary, MongoBulkWriteError, type Db, type MongoServerError } from 'mongodb';
import type { ClaimedKeyPackage, DeviceIdentity, KeyPackage, KeyStore } from './types.js';

interface IdentityDoc {
  _id: string; userId: string; credential: Binary; signatureKey: Binary; changedAt: number; changed: boolean;
}
interface PackageDoc {
  _id: string; deviceId: string; userId: string; ref: string; data: Binary; addedAt: number;
  /** The package's place in its upload: with addedAt, the pool's order (as SQLite's rowid). */
  order: number;
}
interface LastResortDoc { _id: string; userId: string; ref: string; data: Binary; addedAt: number }

const DUPLICATE_KEY = 11000;
/** Concurrent device claims of one call. */
const PARALLEL = 32;

const isDuplicateKey = (err: unknown): boolean => (err as MongoServerError | undefined)?.code === DUPLICATE_KEY;

/** A plain Uint8Array copy of a stored byte string (Binary, or a Buffer with promoteBuffers). */
function bytes(v: Binary | Uint8Array): Uint8Array {
  return new Uint8Array(v instanceof Binary ? v.value() : v);
}

const toIdentity = (d: IdentityDoc): DeviceIdentity => ({
  deviceId: d._id, userId: d.userId, credential: bytes(d.credential), signatureKey: bytes(d.signatureKey),
  changedAt: d.changedAt, changed: d.changed,
});

/** The indexes (in the batch) an unordered insertMany refused as duplicates; rethrows anything else. */
async function insertIgnoringDuplicates(insert: () => Promise<unknown>): Promise<Set<number>> {
  try {
    await insert();
    return new Set();
  } catch (err) {
    if (!(err instanceof MongoBulkWriteError)) throw err;
    const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
    if (errors.some((e) => e.code !== DUPLICATE_KEY)) throw err;
    return new Set(errors.map((e) => e.index));
  }
}

export function createMongoKeyStore(db: Db): { store: KeyStore; indexes(): Promise<unknown> } {
  const identities = db.collection<IdentityDoc>('keyIdentities');
  const packages = db.collection<PackageDoc>('keyPackages');
  const lastResorts = db.collection<LastResortDoc>('keyLastResort');
  const packageId = (deviceId: string, ref: string): string => `${deviceId}|${ref}`;

  async function claimOne(deviceId: string): Promise<ClaimedKeyPackage | null> {
    const taken = await packages.findOneAndDelete({ deviceId }, { sort: { addedAt: 1, order: 1 } });
    if (taken) {
      const remaining = await packages.countDocuments({ deviceId });
      return { deviceId, ref: taken.ref, data: bytes(taken.data), lastResort: false, remaining };
    }
    const last = await lastResorts.findOne({ _id: deviceId });
    return last ? { deviceId, ref: last.ref, data: bytes(last.data), lastResort: true, remaining: 0 } : null;
  }

  const store: KeyStore = {
    async putIdentity(i, at) {
      const credential = new Binary(i.credential);
      const signatureKey = new Binary(i.signatureKey);
      for (let attempt = 0; ; attempt++) {
        // The same bytes again: only `changed` goes back to false.
        const same = await identities.findOneAndUpdate(
          { _id: i.deviceId, credential, signatureKey }, { $set: { userId: i.userId, changed: false } }, { returnDocument: 'after' });
        if (same) return toIdentity(same);
        const replaced = await identities.updateOne(
          { _id: i.deviceId }, { $set: { userId: i.userId, credential, signatureKey, changedAt: at, changed: true } });
        if (replaced.matchedCount > 0) {
          // Key packages carry the credential they were made with: after a new identity the old
          // ones would add the device with keys it may no longer hold.
          await Promise.all([packages.deleteMany({ deviceId: i.deviceId }), lastResorts.deleteOne({ _id: i.deviceId })]);
          return { ...i, changedAt: at, changed: true };
        }
        try {
          await identities.insertOne({ _id: i.deviceId, userId: i.userId, credential, signatureKey, changedAt: at, changed: false });
          return { ...i, changedAt: at, changed: false };
        } catch (err) {
          if (!isDuplicateKey(err) || attempt >= 3) throw err;
        }
      }
    },
    async getIdentities(deviceIds) {
      if (deviceIds.length === 0) return [];
      return (await identities.find({ _id: { $in: [...new Set(deviceIds)] } }).toArray()).map(toIdentity);
    },
    async addKeyPackages(owner, batch, lastResort, at, max) {
      let count = await packages.countDocuments({ deviceId: owner.deviceId });
      // New refs only (the batch's repeats and those the device holds), as many as fit.
      const seen = new Set<string>();
      const fresh = batch.filter((p) => !seen.has(p.ref) && seen.add(p.ref));
      const held = new Set((await packages.find(
        { _id: { $in: fresh.map((p) => packageId(owner.deviceId, p.ref)) } }, { projection: { ref: 1 } },
      ).toArray()).map((d) => d.ref));
      const docs: PackageDoc[] = fresh.filter((p) => !held.has(p.ref)).slice(0, Math.max(0, max - count)).map((p: KeyPackage, order) => ({
        _id: packageId(owner.deviceId, p.ref), deviceId: owner.deviceId, userId: owner.userId, ref: p.ref, data: new Binary(p.data), addedAt: at, order,
      }));
      const dup = docs.length ? await insertIgnoringDuplicates(() => packages.insertMany(docs, { ordered: false })) : new Set<number>();
      const added = docs.filter((_, i) => !dup.has(i)).map((d) => d.ref);
      count += added.length;
      if (lastResort) {
        await lastResorts.replaceOne(
          { _id: owner.deviceId },
          { userId: owner.userId, ref: lastResort.ref, data: new Binary(lastResort.data), addedAt: at },
          { upsert: true },
        );
      }
      return { added, count };
    },
    async countKeyPackages(deviceId) {
      const [count, last] = await Promise.all([packages.countDocuments({ deviceId }), lastResorts.countDocuments({ _id: deviceId })]);
      return { count, lastResort: last > 0 };
    },
    async claimKeyPackages(deviceIds) {
      const unique = [...new Set(deviceIds)];
      const out: ClaimedKeyPackage[] = [];
      for (let i = 0; i < unique.length; i += PARALLEL) {
        for (const c of await Promise.all(unique.slice(i, i + PARALLEL).map(claimOne))) if (c) out.push(c);
      }
      return out;
    },
    async deleteDeviceKeys(deviceId) {
      const r = await Promise.all([
        identities.deleteOne({ _id: deviceId }), packages.deleteMany({ deviceId }), lastResorts.deleteOne({ _id: deviceId }),
      ]);
      return r.reduce((n, x) => n + x.deletedCount, 0);
    },
    async deleteKeysOf(userId) {
      const r = await Promise.all([identities.deleteMany({ userId }), packages.deleteMany({ userId }), lastResorts.deleteMany({ userId })]);
      return r.reduce((n, x) => n + x.deletedCount, 0);
    },
  };
  return {
    store,
    indexes: () => Promise.all([
      identities.createIndexes([{ key: { userId: 1 }, name: 'user' }]),
      packages.createIndexes([
        // claimKeyPackages: a device's oldest package; countKeyPackages.
        { key: { deviceId: 1, addedAt: 1, order: 1 }, name: 'device_age' },
        { key: { userId: 1 }, name: 'user' },
      ]),
      lastResorts.createIndexes([{ key: { userId: 1 }, name: 'user' }]),
    ]),
  };
}
