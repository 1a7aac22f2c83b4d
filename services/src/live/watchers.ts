/**
 * Who is watching what, in Redis: a device watches the chats on its screen (the `watch`
 * envelope), which makes it a watcher of each chat (typing) and of the other member of each
 * direct chat (presence). Entries expire unless the device repeats its watch (the SDK does, every
 * WATCH_TTL_MS * 3/4), so a device that vanished stops costing anything within a minute.
 * Keys: `<p>:watch:c:<chatId>` and `<p>:watch:u:<userId>` (sorted sets of `<userId> <deviceId>`
 * by expiry), `<p>:watching:<deviceId>` (the device's current watch, to undo on replacement).
 */
import type { Redis } from 'ioredis';

export interface Watcher {
  userId: string;
  deviceId: string;
}

export interface Watchers {
  /** Replaces the device's watch: these chats (typing) and these users (presence). */
  set(viewer: Watcher, chatIds: string[], userIds: string[], now: number): Promise<void>;
  ofChat(chatId: string, now: number): Promise<Watcher[]>;
  ofUser(userId: string, now: number): Promise<Watcher[]>;
  /** Removes the user's keys and his devices' watches (account deletion). */
  forget(userId: string, deviceIds: string[]): Promise<void>;
}

interface Current {
  c: string[];
  u: string[];
}

export function createRedisWatchers(redis: Redis, prefix: string, ttlMs: number): Watchers {
  const chatKey = (chatId: string): string => `${prefix}:watch:c:${chatId}`;
  const userKey = (userId: string): string => `${prefix}:watch:u:${userId}`;
  const watchingKey = (deviceId: string): string => `${prefix}:watching:${deviceId}`;
  const member = (w: Watcher): string => `${w.userId} ${w.deviceId}`;

  const current = async (deviceId: string): Promise<Current> => {
    const raw = await redis.get(watchingKey(deviceId));
    if (!raw) return { c: [], u: [] };
    try {
      const v = JSON.parse(raw) as Current;
      return { c: Array.isArray(v.c) ? v.c : [], u: Array.isArray(v.u) ? v.u : [] };
    } catch {
      return { c: [], u: [] };
    }
  };

  const list = async (key: string, now: number): Promise<Watcher[]> => {
    const members = await redis.zrangebyscore(key, `(${now}`, '+inf');
    const out: Watcher[] = [];
    for (const m of members) {
      const sp = m.indexOf(' ');
      if (sp > 0) out.push({ userId: m.slice(0, sp), deviceId: m.slice(sp + 1) });
    }
    return out;
  };

  return {
    async set(viewer, chatIds, userIds, now) {
      const old = await current(viewer.deviceId);
      const m = redis.multi();
      const me = member(viewer);
      for (const c of old.c) if (!chatIds.includes(c)) m.zrem(chatKey(c), me);
      for (const u of old.u) if (!userIds.includes(u)) m.zrem(userKey(u), me);
      const until = now + ttlMs;
      for (const key of [...chatIds.map(chatKey), ...userIds.map(userKey)]) {
        m.zadd(key, until, me).zremrangebyscore(key, '-inf', now).pexpire(key, ttlMs);
      }
      if (chatIds.length || userIds.length) m.set(watchingKey(viewer.deviceId), JSON.stringify({ c: chatIds, u: userIds }), 'PX', ttlMs);
      else m.del(watchingKey(viewer.deviceId));
      await m.exec();
    },
    ofChat: (chatId, now) => list(chatKey(chatId), now),
    ofUser: (userId, now) => list(userKey(userId), now),
    async forget(userId, deviceIds) {
      const m = redis.multi().del(userKey(userId));
      for (const d of deviceIds) {
        const old = await current(d);
        const me = member({ userId, deviceId: d });
        for (const c of old.c) m.zrem(chatKey(c), me);
        for (const u of old.u) m.zrem(userKey(u), me);
        m.del(watchingKey(d));
      }
      await m.exec();
    },
  };
}
