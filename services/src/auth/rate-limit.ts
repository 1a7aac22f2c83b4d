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
}

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
  };
}
