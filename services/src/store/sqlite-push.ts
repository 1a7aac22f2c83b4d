/**
 * SQLite adapter of the PushStore port, on the database of sqlite.ts (table `push_registrations`
 * in its SCHEMA_V5, push section). Statements are prepared lazily: the table exists only after the
 * store's init(). The registration itself is kept as JSON beside its kind and address (endpoint or
 * token), which are unique together.
 */
import type Database from 'better-sqlite3';
import { pushAddress, type DevicePush, type PushKind, type PushRegistration, type PushStore } from './types.js';

interface PushRow { device_id: string; user_id: string; kind: PushKind; address: string; registration: string; at: number }

const toPush = (r: PushRow): DevicePush => ({
  deviceId: r.device_id, userId: r.user_id, registration: JSON.parse(r.registration) as PushRegistration, at: r.at,
});

export function createSqlitePushStore(db: Database.Database): PushStore {
  let q: ReturnType<typeof prepare> | null = null;
  const st = (): ReturnType<typeof prepare> => (q ??= prepare());

  function prepare() {
    return {
      // The address moves to this device: another device holding it loses its registration.
      dropAddress: db.prepare<[PushKind, string, string]>(
        'DELETE FROM push_registrations WHERE kind = ? AND address = ? AND device_id <> ?'),
      put: db.prepare<[string, string, PushKind, string, string, number]>(
        `INSERT INTO push_registrations (device_id, user_id, kind, address, registration, at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (device_id) DO UPDATE SET user_id = excluded.user_id, kind = excluded.kind, address = excluded.address,
           registration = excluded.registration, at = excluded.at`),
      ofDevices: db.prepare<[string], PushRow>(
        'SELECT * FROM push_registrations WHERE device_id IN (SELECT value FROM json_each(?)) ORDER BY device_id'),
      del: db.prepare<[string]>('DELETE FROM push_registrations WHERE device_id = ?'),
      delAt: db.prepare<[string, string]>('DELETE FROM push_registrations WHERE device_id = ? AND address = ?'),
      delOfUser: db.prepare<[string]>('DELETE FROM push_registrations WHERE user_id = ?'),
    };
  }

  const put = db.transaction((p: DevicePush) => {
    const s = st();
    const address = pushAddress(p.registration);
    s.dropAddress.run(p.registration.kind, address, p.deviceId);
    s.put.run(p.deviceId, p.userId, p.registration.kind, address, JSON.stringify(p.registration), p.at);
  });

  return {
    async putPushRegistration(p) {
      put.immediate(p);
    },
    async getPushRegistrations(deviceIds) {
      if (deviceIds.length === 0) return [];
      return st().ofDevices.all(JSON.stringify([...new Set(deviceIds)])).map(toPush);
    },
    async deletePushRegistration(deviceId, address) {
      const s = st();
      return (address === undefined ? s.del.run(deviceId) : s.delAt.run(deviceId, address)).changes > 0;
    },
    async deletePushRegistrationsOf(userId) {
      return st().delOfUser.run(userId).changes;
    },
  };
}
