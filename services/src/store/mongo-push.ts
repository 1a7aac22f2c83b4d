/**
 * MongoDB adapter of the PushStore port: collection `pushRegistrations`, one document per device
 * (`_id` = deviceId), a unique index on (kind, address) and one on the user (account deletion).
 *
 * Putting a registration is two steps without a transaction: the address is first taken from any
 * other device, then this device's document is replaced (upsert). A concurrent put of the same
 * address by another device can make the second step hit the unique index: the steps are then
 * run again (the later writer wins, as in SQLite).
 */
import type { Db, MongoServerError } from 'mongodb';
import { pushAddress, type DevicePush, type PushKind, type PushRegistration, type PushStore } from './types.js';

interface PushDoc {
  _id: string;
  userId: string;
  kind: PushKind;
  address: string;
  registration: PushRegistration;
  at: number;
}

const isDuplicateKey = (err: unknown): boolean => (err as MongoServerError | undefined)?.code === 11000;

export function createMongoPushStore(db: Db): { store: PushStore; indexes(): Promise<unknown> } {
  const regs = db.collection<PushDoc>('pushRegistrations');
  const store: PushStore = {
    async putPushRegistration(p: DevicePush) {
      const address = pushAddress(p.registration);
      // The registration as a JSON copy (what SQLite stores): a key left undefined is dropped, where
      // the driver would store it as null (ignoreUndefined is off) and read it back as null.
      const registration = JSON.parse(JSON.stringify(p.registration)) as PushRegistration;
      const doc: PushDoc = { _id: p.deviceId, userId: p.userId, kind: p.registration.kind, address, registration, at: p.at };
      for (let attempt = 0; ; attempt++) {
        await regs.deleteMany({ kind: doc.kind, address, _id: { $ne: p.deviceId } });
        try {
          await regs.replaceOne({ _id: p.deviceId }, doc, { upsert: true });
          return;
        } catch (err) {
          if (!isDuplicateKey(err) || attempt >= 3) throw err;
        }
      }
    },
    async getPushRegistrations(deviceIds) {
      if (deviceIds.length === 0) return [];
      const docs = await regs.find({ _id: { $in: [...new Set(deviceIds)] } }).sort({ _id: 1 }).toArray();
      return docs.map((d) => ({ deviceId: d._id, userId: d.userId, registration: d.registration, at: d.at }));
    },
    async deletePushRegistration(deviceId, address) {
      const r = await regs.deleteOne(address === undefined ? { _id: deviceId } : { _id: deviceId, address });
      return r.deletedCount > 0;
    },
    async deletePushRegistrationsOf(userId) {
      return (await regs.deleteMany({ userId })).deletedCount;
    },
  };
  return {
    store,
    indexes: () => regs.createIndexes([
      { key: { kind: 1, address: 1 }, name: 'address_unique', unique: true },
      { key: { userId: 1 }, name: 'user' },
    ]),
  };
}
