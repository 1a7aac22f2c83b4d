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
 * epoch ms). Each transition runs as one Lua script, so two nodes never both see "first online"
 * or "last offline" for one change.
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
}

export interface RedisPresence {
  /** Records the connection; true when the user was offline before. */
  connect(c: LiveConnection, now: number): Promise<boolean>;
  /** Removes the connection's own entry; true when that left the user offline. */
  disconnect(c: LiveConnection, now: number): Promise<boolean>;
  /** Extends these connections' entries; returns users who were reaped meanwhile and are back. */
  refresh(connections: LiveConnection[], now: number): Promise<string[]>;
  /** Removes expired entries (of nodes that stopped); returns the users now offline, with their last seen. */
  reap(now: number): Promise<Array<{ userId: string; lastSeen: number }>>;
  get(userIds: string[], now: number): Promise<Map<string, UserPresence>>;
  /** Removes every key of the user (account deletion). */
  forget(userId: string): Promise<void>;
}

const CONNECT = `
local before = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[4], '+inf')
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return before`;

const DISCONNECT = `
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if removed == 0 then return -1 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then redis.call('SET', KEYS[3], ARGV[3]) end
return left`;

// ARGV: prefix, now, expiresAt, keyTtl, then userId, entry pairs.
const REFRESH = `
local back = {}
for i = 5, #ARGV, 2 do
  local k = ARGV[1] .. ':pres:' .. ARGV[i]
  if not redis.call('ZSCORE', k, ARGV[i + 1]) then
    if redis.call('ZCOUNT', k, '(' .. ARGV[2], '+inf') == 0 then back[#back + 1] = ARGV[i] end
  end
  redis.call('ZADD', k, ARGV[3], ARGV[i + 1])
  redis.call('PEXPIRE', k, ARGV[4])
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[i] .. ' ' .. ARGV[i + 1])
end
return back`;

// ARGV: prefix, now, limit, ttl. Returns userId, lastSeen pairs.
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
    if redis.call('ZREM', k, string.sub(m, sp + 1)) == 1 then
      redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[2])
      if redis.call('ZCARD', k) == 0 then
        local seen = tostring(tonumber(gone[i + 1]) - tonumber(ARGV[4]))
        redis.call('SET', ARGV[1] .. ':seen:' .. user, seen)
        out[#out + 1] = user
        out[#out + 1] = seen
      end
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
  const entry = (c: LiveConnection): string => `${c.deviceId} ${c.nodeId} ${c.connection}`;
  // An abandoned user key (all of its entries expired and never reaped) disappears by itself.
  const keyTtl = String(opts.ttlMs * 4);

  return {
    async connect(c, now) {
      const before = await redis.eval(CONNECT, 2, userKey(c.userId), allKey, entry(c), `${c.userId} ${entry(c)}`, String(now + opts.ttlMs), String(now), keyTtl);
      return Number(before) === 0;
    },
    async disconnect(c, now) {
      const left = await redis.eval(DISCONNECT, 3, userKey(c.userId), allKey, seenKey(c.userId), entry(c), `${c.userId} ${entry(c)}`, String(now));
      return Number(left) === 0;
    },
    async refresh(connections, now) {
      if (connections.length === 0) return [];
      const back: string[] = [];
      // Bounded script arguments per call, however many connections the node holds.
      for (let i = 0; i < connections.length; i += 2000) {
        const args = [prefix, String(now), String(now + opts.ttlMs), keyTtl];
        for (const c of connections.slice(i, i + 2000)) args.push(c.userId, entry(c));
        back.push(...((await redis.eval(REFRESH, 1, allKey, ...args)) as string[]));
      }
      return [...new Set(back)];
    },
    async reap(now) {
      const out = (await redis.eval(REAP, 1, allKey, prefix, String(now), String(opts.reapBatch), String(opts.ttlMs))) as string[];
      const gone: Array<{ userId: string; lastSeen: number }> = [];
      for (let i = 0; i + 1 < out.length; i += 2) gone.push({ userId: out[i]!, lastSeen: Number(out[i + 1]) });
      return gone;
    },
    async get(userIds, now) {
      const result = new Map<string, UserPresence>();
      if (userIds.length === 0) return result;
      const p = redis.pipeline();
      for (const u of userIds) p.zcount(userKey(u), `(${now}`, '+inf');
      for (const u of userIds) p.get(seenKey(u));
      const replies = (await p.exec()) ?? [];
      userIds.forEach((u, i) => {
        const count = Number(replies[i]?.[1] ?? 0);
        const seen = replies[userIds.length + i]?.[1];
        result.set(u, { online: count > 0, lastSeen: typeof seen === 'string' ? Number(seen) : null });
      });
      return result;
    },
    async forget(userId) {
      const entries = await redis.zrange(userKey(userId), '0', '-1');
      const m = redis.multi().del(userKey(userId), seenKey(userId));
      if (entries.length) m.zrem(allKey, ...entries.map((e) => `${userId} ${e}`));
      await m.exec();
    },
  };
}
