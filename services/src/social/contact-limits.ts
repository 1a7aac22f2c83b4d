/**
 * Contacts discovery's limits against enumeration, with `rate-limiter-flexible` on the platform's
 * Redis (so they hold across every API node): phone hashes per user per day, and look-up requests
 * per client address per hour. A hash is no secret (a country's numbers can be hashed in minutes),
 * so these limits are the defence: they bound how much of the directory one account, or one
 * address with many accounts, can test.
 */
import type { Redis } from 'ioredis';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';

export interface ContactLimits {
  hashesPerUserPerDay: number;
  requestsPerAddressPerHour: number;
}

export type LimitVerdict = { ok: true } | { ok: false; retryAfterSec: number; scope: 'user' | 'address' };

export interface ContactLimiter {
  /** Counts one look-up of `hashes` hashes by `userId` from `address`; refused once over a limit. */
  consume(userId: string, address: string, hashes: number): Promise<LimitVerdict>;
}

export function redisContactLimiter(redis: Redis, prefix: string, limits: ContactLimits): ContactLimiter {
  const perUser = new RateLimiterRedis({
    storeClient: redis, keyPrefix: `${prefix}:rl:contacts:user`, points: limits.hashesPerUserPerDay, duration: 86_400,
  });
  const perAddress = new RateLimiterRedis({
    storeClient: redis, keyPrefix: `${prefix}:rl:contacts:ip`, points: limits.requestsPerAddressPerHour, duration: 3_600,
  });
  const refused = (err: unknown, scope: 'user' | 'address'): LimitVerdict => {
    // Anything but a RateLimiterRes is Redis failing: the caller answers E_UNAVAILABLE.
    if (!(err instanceof RateLimiterRes)) throw err;
    return { ok: false, retryAfterSec: Math.max(1, Math.ceil(err.msBeforeNext / 1000)), scope };
  };
  return {
    async consume(userId, address, hashes) {
      // The address first: a refused request costs the user nothing of his daily allowance.
      try {
        await perAddress.consume(address, 1);
      } catch (err) {
        return refused(err, 'address');
      }
      try {
        await perUser.consume(userId, hashes);
      } catch (err) {
        return refused(err, 'user');
      }
      return { ok: true };
    },
  };
}
