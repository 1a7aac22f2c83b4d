/**
 * SQLite adapter of the KeyStore port (the MLS key directory), on the database of sqlite.ts (its
 * SCHEMA_V6: `key_identities`, `key_packages`, `key_last_resort`). Every byte string is stored as
 * a BLOB and never looked into. A pool's order is its rowid (insertion order), so a claim takes
 * the oldest package. Writes that read first (the pool's cap, a claim) run `.immediate()`: the
 * write lock is taken before the read, so two processes on the file cannot both take one package.
 */
import type Database from 'better-sqlite3';
import type { ClaimedKeyPackage, DeviceIdentity, KeyPackage, KeyStore } from './types.js';

interface IdentityRow {
  device_id: string; user_id: string; credential: Buffer; signature_key: Buffer; changed_at: number; changed: number;
}

/** A plain Uint8Array over its own copy (what the Mongo adapter gives back too). */
const bytes = (b: Buffer): Uint8Array => new Uint8Array(b);
const buf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

const toIdentity = (r: IdentityRow): DeviceIdentity => ({
  deviceId: r.device_id, userId: r.user_id, credential: bytes(r.credential), signatureKey: bytes(r.signature_key),
  changedAt: r.changed_at, changed: r.changed === 1,
});

export function createSqliteKeyStore(db: Database.Database): KeyStore {
  let q: ReturnType<typeof prepare> | null = null;
  const st = (): ReturnType<typeof prepare> => (q ??= prepare());

  function prepare() {
    return {
      identity: db.prepare<[string], IdentityRow>('SELECT * FROM key_identities WHERE device_id = ?'),
      identities: db.prepare<[string], IdentityRow>(
        'SELECT * FROM key_identities WHERE device_id IN (SELECT value FROM json_each(?))'),
      putIdentity: db.prepare<[string, string, Buffer, Buffer, number, number]>(
        `INSERT INTO key_identities (device_id, user_id, credential, signature_key, changed_at, changed) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (device_id) DO UPDATE SET user_id = excluded.user_id, credential = excluded.credential,
           signature_key = excluded.signature_key, changed_at = excluded.changed_at, changed = excluded.changed`),
      count: db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM key_packages WHERE device_id = ?'),
      addPackage: db.prepare<[string, string, string, Buffer, number]>(
        'INSERT OR IGNORE INTO key_packages (device_id, ref, user_id, data, added_at) VALUES (?, ?, ?, ?, ?)'),
      putLastResort: db.prepare<[string, string, string, Buffer, number]>(
        `INSERT INTO key_last_resort (device_id, ref, user_id, data, added_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (device_id) DO UPDATE SET ref = excluded.ref, user_id = excluded.user_id, data = excluded.data, added_at = excluded.added_at`),
      hasLastResort: db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM key_last_resort WHERE device_id = ?'),
      // The oldest package of the device, taken out in the same statement that finds it.
      takeOldest: db.prepare<[string], { ref: string; data: Buffer }>(
        `DELETE FROM key_packages WHERE rowid = (SELECT rowid FROM key_packages WHERE device_id = ? ORDER BY rowid LIMIT 1)
         RETURNING ref, data`),
      lastResort: db.prepare<[string], { ref: string; data: Buffer }>('SELECT ref, data FROM key_last_resort WHERE device_id = ?'),
      delDevice: [
        db.prepare<[string]>('DELETE FROM key_identities WHERE device_id = ?'),
        db.prepare<[string]>('DELETE FROM key_packages WHERE device_id = ?'),
        db.prepare<[string]>('DELETE FROM key_last_resort WHERE device_id = ?'),
      ],
      delUser: [
        db.prepare<[string]>('DELETE FROM key_identities WHERE user_id = ?'),
        db.prepare<[string]>('DELETE FROM key_packages WHERE user_id = ?'),
        db.prepare<[string]>('DELETE FROM key_last_resort WHERE user_id = ?'),
      ],
    };
  }

  const putIdentity = db.transaction((i: Omit<DeviceIdentity, 'changedAt' | 'changed'>, at: number): DeviceIdentity => {
    const s = st();
    const before = s.identity.get(i.deviceId);
    const same = before !== undefined && buf(i.credential).equals(before.credential) && buf(i.signatureKey).equals(before.signature_key);
    const changedAt = same ? before.changed_at : at;
    const changed = before !== undefined && !same;
    s.putIdentity.run(i.deviceId, i.userId, buf(i.credential), buf(i.signatureKey), changedAt, changed ? 1 : 0);
    // Key packages carry the credential they were made with: after a new identity, the old ones
    // would add the device with keys it may no longer hold.
    if (changed) for (const del of s.delDevice.slice(1)) del.run(i.deviceId);
    return { ...i, changedAt, changed };
  });

  const add = db.transaction((
    owner: { deviceId: string; userId: string }, packages: KeyPackage[], lastResort: KeyPackage | null, at: number, max: number,
  ) => {
    const s = st();
    let count = s.count.get(owner.deviceId)?.n ?? 0;
    const added: string[] = [];
    for (const p of packages) {
      if (count >= max) break;
      if (s.addPackage.run(owner.deviceId, p.ref, owner.userId, buf(p.data), at).changes > 0) {
        added.push(p.ref);
        count++;
      }
    }
    if (lastResort) s.putLastResort.run(owner.deviceId, lastResort.ref, owner.userId, buf(lastResort.data), at);
    return { added, count };
  });

  const claim = db.transaction((deviceIds: string[]): ClaimedKeyPackage[] => {
    const s = st();
    const out: ClaimedKeyPackage[] = [];
    for (const deviceId of new Set(deviceIds)) {
      const taken = s.takeOldest.get(deviceId);
      if (taken) {
        const remaining = s.count.get(deviceId)?.n ?? 0;
        out.push({ deviceId, ref: taken.ref, data: bytes(taken.data), lastResort: false, remaining });
        continue;
      }
      const last = s.lastResort.get(deviceId);
      if (last) out.push({ deviceId, ref: last.ref, data: bytes(last.data), lastResort: true, remaining: 0 });
    }
    return out;
  });

  const deleteAll = db.transaction((stmts: Database.Statement<[string]>[], key: string): number =>
    stmts.reduce((n, stmt) => n + stmt.run(key).changes, 0));

  return {
    async putIdentity(identity, at) {
      return putIdentity.immediate(identity, at);
    },
    async getIdentities(deviceIds) {
      if (deviceIds.length === 0) return [];
      return st().identities.all(JSON.stringify([...new Set(deviceIds)])).map(toIdentity);
    },
    async addKeyPackages(owner, packages, lastResort, at, max) {
      return add.immediate(owner, packages, lastResort, at, max);
    },
    async countKeyPackages(deviceId) {
      const s = st();
      return { count: s.count.get(deviceId)?.n ?? 0, lastResort: (s.hasLastResort.get(deviceId)?.n ?? 0) > 0 };
    },
    async claimKeyPackages(deviceIds) {
      if (deviceIds.length === 0) return [];
      return claim.immediate(deviceIds);
    },
    async deleteDeviceKeys(deviceId) {
      return deleteAll.immediate(st().delDevice, deviceId);
    },
    async deleteKeysOf(userId) {
      return deleteAll.immediate(st().delUser, userId);
    },
  };
}
