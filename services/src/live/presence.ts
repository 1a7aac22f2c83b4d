/**
 * Presence in Redis, cluster-wide: a user is online while any of his device connections has an
 * unexpired entry. Each entry is one connection (`<deviceId> <nodeId> <connection>`), so
 * - a connection taken over on another node is a new entry: the old node's late clean-up removes
 *   only its own, never the new one;
 * - entries expire: every broker node refreshes its connections' entries (LiveSink.refresh), and
 *   one that stops (a crash, a partition) leaves entries whose time runs out; any node's next
 *   refresh reaps them and reports the users who went offline with it. Nothing stays online
 *   because a node died.
 * Keys: `<p>:pres:<userId>` (a sorted set of that user's entries by expiry), `<p>:pres` (every
 * entry, `<userId> <entry>`, by expiry: what the reaper scans), `<p>:seen:<userId>` (last seen,
 * epoch ms), `<p>:pv:<userId>` (a counter bumped by every online/offline transition: the version
 * carried by `presence` envelopes, so a watcher never takes an older state over a newer one when
 * two announcements race). Each transition runs as one Lua script, so two nodes never both see
 * "first online" or "last offline" for one change.
 */
import type { Redis } from 'ioredis';
import type { LiveConnection } from '../../../broker/src/index.js';

export interface PresenceOptions {
  /** How long an entry lives without a refresh (ms). */
  ttlMs: number;
  /** Most expired entries one reap takes. @defaultValue 1000 */
  reapBatch: number;
}

export interface UserPresence {
  online: boolean;
  /** Epoch ms of the last disconnect; null when never seen (or online since ever). */
  lastSeen: number | null;
  /** The transition counter (0 before the first). */
  version: number;
}

/** A transition: the user went online or offline, as the `version`th change. */
export interface PresenceChange {
  userId: string;
  version: number;
  /** Set when offline. */
  lastSeen?: number;
}

export interface RedisPresence {
  /** Records the connection; the change when the user was offline before. */
  connect(c: LiveConnection, now: number): Promise<PresenceChange | null>;
  /** Removes the connection's own entry; the change when that left the user offline. */
  disconnect(c: LiveConnection, now: number): Promise<PresenceChange | null>;
  /** Extends these connections' entries; returns the users who were reaped meanwhile and are back. */
  refresh(connections: LiveConnection[], now: number): Promise<PresenceChange[]>;
  /** Removes expired entries (of nodes that stopped); returns the users now offline. */
  reap(now: number): Promise<PresenceChange[]>;
  get(userIds: string[], now: number): Promise<Map<string, UserPresence>>;
  /** Removes every key of the user (account deletion). */
  forget(userId: string): Promise<void>;
}

// KEYS: user, all, version. Returns the new version when the user came online, else 0.
const CONNECT = `
local before = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[4], '+inf')
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
if before > 0 then return 0 end
return redis.call('INCR', KEYS[3])`;

// KEYS: user, all, seen, version. Returns the new version when the user went offline, else 0.
const DISCONNECT = `
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if removed == 0 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
redis.call('SET', KEYS[3], ARGV[3])
return redis.call('INCR', KEYS[4])`;

// ARGV: prefix, now, expiresAt, keyTtl, then userId, entry pairs. Returns userId, version pairs.
const REFRESH = `
local back = {}
for i = 5, #ARGV, 2 do
  local k = ARGV[1] .. ':pres:' .. ARGV[i]
  if not redis.call('ZSCORE', k, ARGV[i + 1]) then
    if redis.call('ZCOUNT', k, '(' .. ARGV[2], '+inf') == 0 then
      back[#back + 1] = ARGV[i]
      back[#back + 1] = redis.call('INCR', ARGV[1] .. ':pv:' .. ARGV[i])
    end
  end
  redis.call('ZADD', k, ARGV[3], ARGV[i + 1])
  redis.call('PEXPIRE', k, ARGV[4])
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[i] .. ' ' .. ARGV[i + 1])
end
return back`;

// ARGV: prefix, now, limit, ttl. Returns userId, lastSeen, version triples. An entry whose user key
// is gone (expired during a long outage of every node) counts like one still there.
const REAP = `
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
local out = {}
for i = 1, #gone, 2 do
  local m = gone[i]
  redis.call('ZREM', KEYS[1], m)
  local sp = string.find(m, ' ', 1, true)
  if sp then
    local user = string.sub(m, 1, sp - 1)
    local k = ARGV[1] .. ':pres:' .. user
    redis.call('ZREM', k, string.sub(m, sp + 1))
    redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[2])
    if redis.call('ZCARD', k) == 0 then
      local seen = tostring(tonumber(gone[i + 1]) - tonumber(ARGV[4]))
      redis.call('SET', ARGV[1] .. ':seen:' .. user, seen)
      out[#out + 1] = user
      out[#out + 1] = seen
      out[#out + 1] = redis.call('INCR', ARGV[1] .. ':pv:' .. user)
    end
  end
end
return out`;

export const DEFAULT_PRESENCE_OPTIONS: Readonly<PresenceOptions> = Object.freeze({ ttlMs: 30_000, reapBatch: 1000 });

export function createRedisPresence(redis: Redis, prefix: string, options: Partial<PresenceOptions> = {}): RedisPresence {
  const opts = { ...DEFAULT_PRESENCE_OPTIONS, ...options };
  const userKey = (userId: string): string => `${prefix}:pres:${userId}`;
  const allKey = `${prefix}:pres`;
  const seenKey = (userId: string): string => `${prefix}:seen:${userId}`;
  const versionKey = (userId: string): string => `${prefix}:pv:${userId}`;
  const entry = (c: LiveConnection): string => `${c.deviceId} ${c.nodeId} ${c.connection}`;
  // An abandoned user key (all of its entries expired and never reaped) disappears by itself.
  const keyTtl = String(opts.ttlMs * 4);

  return {
    async connect(c, now) {
      const v = Number(await redis.eval(CONNECT, 3, userKey(c.userId), allKey, versionKey(c.userId), entry(c), `${c.userId} ${entry(c)}`, String(now + opts.ttlMs), String(now), keyTtl));
      return v > 0 ? { userId: c.userId, version: v } : null;
    },
    async disconnect(c, now) {
      const v = Number(await redis.eval(DISCONNECT, 4, userKey(c.userId), allKey, seenKey(c.userId), versionKey(c.userId), entry(c), `${c.userId} ${entry(c)}`, String(now)));
      return v > 0 ? { userId: c.userId, version: v, lastSeen: now } : null;
    },
    async refresh(connections, now) {
      if (connections.length === 0) return [];
      // Bounded script arguments per call, however many connections the node holds. All calls are
      // written at once: a disconnect handled after them cannot be undone by a later chunk.
      const chunks: Array<Promise<unknown>> = [];
      for (let i = 0; i < connections.length; i += 2000) {
        const args = [prefix, String(now), String(now + opts.ttlMs), keyTtl];
        for (const c of connections.slice(i, i + 2000)) args.push(c.userId, entry(c));
        chunks.push(redis.eval(REFRESH, 1, allKey, ...args));
      }
      const back: PresenceChange[] = [];
      for (const out of (await Promise.all(chunks)) as string[][]) {
        for (let i = 0; i + 1 < out.length; i += 2) back.push({ userId: out[i]!, version: Number(out[i + 1]) });
      }
      return back;
    },
    async reap(now) {
      const out = (await redis.eval(REAP, 1, allKey, prefix, String(now), String(opts.reapBatch), String(opts.ttlMs))) as string[];
      const gone: PresenceChange[] = [];
      for (let i = 0; i + 2 < out.length; i += 3) gone.push({ userId: out[i]!, lastSeen: Number(out[i + 1]), version: Number(out[i + 2]) });
      return gone;
    },
    async get(userIds, now) {
      const result = new Map<string, UserPresence>();
      if (userIds.length === 0) return result;
      const p = redis.pipeline();
      for (const u of userIds) p.zcount(userKey(u), `(${now}`, '+inf');
      for (const u of userIds) p.get(seenKey(u));
      for (const u of userIds) p.get(versionKey(u));
      const replies = (await p.exec()) ?? [];
      const n = userIds.length;
      userIds.forEach((u, i) => {
        const count = Number(replies[i]?.[1] ?? 0);
        const seen = replies[n + i]?.[1];
        const version = replies[2 * n + i]?.[1];
        result.set(u, { online: count > 0, lastSeen: typeof seen === 'string' ? Number(seen) : null, version: typeof version === 'string' ? Number(version) : 0 });
      });
      return result;
    },
    async forget(userId) {
      const entries = await redis.zrange(userKey(userId), '0', '-1');
      const m = redis.multi().del(userKey(userId), seenKey(userId), versionKey(userId));
      if (entries.length) m.zrem(allKey, ...entries.map((e) => `${userId} ${e}`));
      await m.exec();
    },
  };
}
