/**
 * Fixed-window counters in Redis, shared by every process of the cluster. Used for code requests
 * (per phone and per address), verification attempts and failed logins.
 */
import type { Redis } from 'ioredis';

export interface RateLimiter {
  /** Counts one hit; true while the key is within `limit` hits per `windowSec`. */
  hit(key: string, limit: number, windowSec: number): Promise<boolean>;
  /** Whether the key is already over its limit, without counting. */
  over(key: string, limit: number): Promise<boolean>;
  /**
   * Counts one hit (or `weight` hits: a request that asks for many things at once) and answers the
   * count in the window, this hit included, and the seconds until the window ends, atomically (one
   * round trip): of concurrent hits, each gets its own count.
   */
  take(key: string, windowSec: number, weight?: number): Promise<Window>;
  /** The count so far and the seconds until its window ends, without counting (0 and 0 when none). */
  peek(key: string): Promise<Window>;
}

export interface Window {
  count: number;
  /** Seconds until the window ends (at least 1 while it runs). */
  resetSec: number;
}

const windowOf = (count: unknown, ttl: unknown): Window =>
  ({ count: Number(count ?? 0), resetSec: Number(count ?? 0) > 0 ? Math.max(1, Number(ttl)) : 0 });

export function redisRateLimiter(redis: Redis, prefix: string): RateLimiter {
  return {
    async hit(key, limit, windowSec) {
      const k = `${prefix}:rl:${key}`;
      const [[, count]] = (await redis.multi().incr(k).expire(k, windowSec, 'NX').exec()) as [[unknown, number], unknown];
      return count <= limit;
    },
    async over(key, limit) {
      const v = await redis.get(`${prefix}:rl:${key}`);
      return v !== null && Number(v) >= limit;
    },
    async take(key, windowSec, weight = 1) {
      const k = `${prefix}:rl:${key}`;
      const r = (await redis.multi().incrby(k, weight).expire(k, windowSec, 'NX').ttl(k).exec()) as Array<[unknown, number]>;
      return windowOf(r[0]?.[1], r[2]?.[1]);
    },
    async peek(key) {
      const k = `${prefix}:rl:${key}`;
      const r = (await redis.multi().get(k).ttl(k).exec()) as Array<[unknown, unknown]>;
      return windowOf(r[0]?.[1], r[1]?.[1]);
    },
  };
}
