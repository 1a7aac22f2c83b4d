/**
 * The account area's Redis side: deletion codes, and forgetting every Redis key of a deleted user.
 *
 * Deletion codes: `<prefix>:delcode:<userId>`, a hash { h: HMAC of the code, a: failed attempts }
 * that expires with the code (PEXPIRE), so an unused code leaves nothing behind.
 *
 * Forgetting (account deletion), key by key — no keyspace scan (O(all keys), too slow for a
 * request on a production Redis); test/integration/account-deletion.test.ts scans the whole
 * keyspace after a deletion, so a key added elsewhere and not forgotten here fails it:
 * - device routes `<prefix>:at:<deviceId>` (services/src/delivery/bus.ts): waited for (the broker
 *   node removes it when the revoked connection closes), then removed in any case;
 * - the devices' MQTT sessions in aedes-persistence-redis (its keys have no prefix, see
 *   node_modules/aedes-persistence-redis/asyncPersistence.js): the subscriptions `client:<id>` and
 *   the `clients` set entry, the queue `outgoing:<id>` (each queued packet's shared
 *   `packet:<broker>:<counter>` copy loses one reference and goes with its last, QoS 2 entries
 *   `outgoing:<id>:<broker>:<counter>` go), `incoming:<id>`, and the will `will:<broker>:<id>`
 *   with its `will` list entry. Every node keeps the subscriptions in memory too (QlobberSub,
 *   updated by aedes-persistence's broadcast on the cluster bus): the removal is broadcast the
 *   same way (`$SYS/sub/rm`), so no node queues a packet for those devices again;
 * - rate-limit counters keyed by him (`<prefix>:rl:<key>`: rateLimitKeys below), and his devices'
 *   push wake-up limits (`<prefix>:wake:<deviceId>`, services/src/workers/push.ts), the last error
 *   each device was sent (`<prefix>:lasterr:<deviceId>`, services/src/admin/last-error.ts; its
 *   devices are remembered, hashed, for 10 minutes in `<prefix>:lasterr-deleted` so that a note
 *   written in the background after this does not re-create the key), plus any key the caller
 *   names (`extraKeys`).
 */
import type { Redis } from 'ioredis';
import { wakeKey } from '../workers/push.js';
import { DELETED_DEVICES_MS, deletedDeviceMember, deletedDevicesKey, lastErrorKey } from '../admin/last-error.js';

/** What deletion forgets: the user, his phone and every device he ever had. */
export interface ForgetTarget {
  userId: string;
  phone: string;
  deviceIds: string[];
}

export interface AccountRedis {
  putDeletionCode(userId: string, codeHash: string, ttlMs: number): Promise<void>;
  /** The pending code (its hash and failed attempts), or null when none or expired. */
  getDeletionCode(userId: string): Promise<{ codeHash: string; attempts: number } | null>;
  /** Counts a failed attempt; returns the new count (0 when no code is pending). */
  bumpDeletionAttempts(userId: string): Promise<number>;
  /** Removes the pending code; true when this call removed it (one caller wins). */
  takeDeletionCode(userId: string): Promise<boolean>;
  /** Waits (up to `timeoutMs`) until none of the devices has a route, i.e. is connected to a broker node; false on timeout. */
  waitDisconnected(deviceIds: string[], timeoutMs: number): Promise<boolean>;
  /** Removes every Redis key of the user listed above (and `extraKeys`). Idempotent. */
  forget(target: ForgetTarget, extraKeys?: string[]): Promise<void>;
}

/** The cluster bus (mqemitter-redis): what aedes-persistence broadcasts subscription changes on. */
export interface BusEmitter {
  emit(packet: { topic: string; payload: Buffer }, cb: (err?: Error) => void): void;
}

/** `make()` on the first call, the same value after. */
export function once<T>(make: () => T): () => T {
  let v: { value: T } | null = null;
  return () => (v ??= { value: make() }).value;
}

/** aedes-persistence's topic for "these subscriptions of this client are gone" (broadcastPersistence.js). */
const SUB_REMOVED = '$SYS/sub/rm';

/**
 * Drops one reference to a queued packet (what aedes-persistence-redis does when a client
 * acknowledges it): KEYS[1] the client's queue entry, KEYS[2] the shared packet, KEYS[3] its count.
 */
const RELEASE_PACKET = `
if KEYS[1] ~= KEYS[2] then redis.call('DEL', KEYS[1]) end
local left = redis.call('DECR', KEYS[3])
if left <= 0 then redis.call('DEL', KEYS[2], KEYS[3]) end
return left`;

/**
 * The rate-limit counters named by a user, his phone or his devices (`<prefix>:rl:<key>`), with
 * the module that counts each: a module that adds a per-user key adds it here (the deletion test's
 * keyspace scan finds one that is missing).
 */
export function rateLimitKeys(prefix: string, t: ForgetTarget): string[] {
  const rl = (k: string): string => `${prefix}:rl:${k}`;
  return [
    // api/app.ts: link codes, code requests per phone.
    rl(`linkcode:${t.userId}`), rl(`code:phone:${t.phone}`),
    // api/account.ts
    rl(`delcode:${t.userId}`), rl(`export:${t.userId}`),
    // social/contact-limits.ts (rate-limiter-flexible: `<keyPrefix>:<key>`)
    rl(`contacts:user:${t.userId}`),
    // status/status.ts
    rl(`status:post:${t.userId}`),
    // auth/device-auth.ts, api/push.ts and api/keys.ts, per device
    ...t.deviceIds.flatMap((d) => [rl(`login:dev:${d}`), rl(`push:reg:${d}`), rl(`keys:claim:${d}`)]),
  ];
}

export function redisAccount(redis: Redis, prefix: string, bus: () => BusEmitter): AccountRedis {
  const codeKey = (userId: string): string => `${prefix}:delcode:${userId}`;
  const routeKey = (deviceId: string): string => `${prefix}:at:${deviceId}`;

  const broadcastRemoved = (clientId: string, topics: string[]): Promise<void> =>
    new Promise((resolve, reject) => {
      const payload = Buffer.from(JSON.stringify({ clientId, subs: topics.map((topic) => ({ topic })) }));
      bus().emit({ topic: SUB_REMOVED, payload }, (err) => (err ? reject(err) : resolve()));
    });

  /** One device's MQTT session, as aedes-persistence-redis lays it out. */
  async function forgetSession(deviceId: string): Promise<void> {
    const id = encodeURIComponent(deviceId);
    const topics = await redis.hkeys(`client:${id}`);
    for (const entry of await redis.lrange(`outgoing:${id}`, 0, -1)) {
      // `packet:<broker>:<counter>`, or QoS 2's `outgoing:<id>:<broker>:<counter>` naming the same packet.
      const [broker, counter] = entry.split(':').slice(-2);
      const packet = `packet:${broker}:${counter}`;
      await redis.eval(RELEASE_PACKET, 3, entry, packet, `${packet}:offlineCount`);
    }
    const wills = (await redis.lrange('will', 0, -1)).filter((k) => k.endsWith(`:${id}`) && k.startsWith('will:'));
    const m = redis.multi().del(`client:${id}`, `outgoing:${id}`, `incoming:${id}`).srem('clients', deviceId);
    for (const w of wills) m.lrem('will', 0, w).del(w);
    await m.exec();
    if (topics.length) await broadcastRemoved(deviceId, topics);
  }

  return {
    async putDeletionCode(userId, codeHash, ttlMs) {
      const k = codeKey(userId);
      await redis.multi().del(k).hset(k, { h: codeHash, a: 0 }).pexpire(k, ttlMs).exec();
    },
    async getDeletionCode(userId) {
      const v = await redis.hgetall(codeKey(userId));
      return v.h ? { codeHash: v.h, attempts: Number(v.a ?? 0) } : null;
    },
    async bumpDeletionAttempts(userId) {
      const k = codeKey(userId);
      // Only while the code exists: HINCRBY on a missing key would create one without an expiry.
      const n = await redis.eval(`if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HINCRBY', KEYS[1], 'a', 1) end return 0`, 1, k);
      return Number(n);
    },
    async takeDeletionCode(userId) {
      return (await redis.del(codeKey(userId))) === 1;
    },
    async waitDisconnected(deviceIds, timeoutMs) {
      if (deviceIds.length === 0) return true;
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const routes = await redis.mget(deviceIds.map(routeKey));
        if (routes.every((r) => r === null)) return true;
        if (Date.now() > deadline) return false;
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async forget(target, extraKeys = []) {
      for (const d of target.deviceIds) await forgetSession(d);
      const m = redis.multi();
      if (target.deviceIds.length > 0) {
        // With the DEL, atomically: a last error noted after it is dropped (admin/last-error.ts).
        const deleted = deletedDevicesKey(prefix);
        const now = Date.now();
        m.zadd(deleted, ...target.deviceIds.flatMap((d) => [now, deletedDeviceMember(d)]))
          .zremrangebyscore(deleted, '-inf', now - DELETED_DEVICES_MS)
          .pexpire(deleted, DELETED_DEVICES_MS);
      }
      m.del(
        codeKey(target.userId), ...target.deviceIds.map(routeKey), ...target.deviceIds.map((d) => wakeKey(prefix, d)),
        ...target.deviceIds.map((d) => lastErrorKey(prefix, d)),
        ...rateLimitKeys(prefix, target), ...extraKeys,
      );
      const failed = ((await m.exec()) ?? []).find(([err]) => err);
      if (failed) throw failed[0];
    },
  };
}
