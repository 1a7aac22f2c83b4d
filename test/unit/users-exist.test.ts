/**
 * The shared user-existence check (services/src/store/users-exist.ts) of the contacts and block
 * routes and the group rules: E_USER_NOT_FOUND naming the unknown users in the order given, with
 * a bounded number of look-ups in flight however many users are named.
 */
import { describe, expect, it } from 'vitest';
import { ParleyError } from '@parley/client-sdk';
import { USER_CHECK_CONCURRENCY, requireUsersExist } from '../../services/src/store/users-exist.js';
import type { User } from '../../services/src/store/types.js';

function fakeStore(known: Set<string>) {
  let inFlight = 0;
  const stats = { calls: 0, maxInFlight: 0 };
  return {
    stats,
    async getUser(userId: string): Promise<User | null> {
      stats.calls++;
      stats.maxInFlight = Math.max(stats.maxInFlight, ++inFlight);
      await new Promise((r) => setImmediate(r));
      inFlight--;
      return known.has(userId) ? ({ userId } as User) : null;
    },
  };
}

describe('requireUsersExist', () => {
  it('passes when all exist, asking each once, at most USER_CHECK_CONCURRENCY at a time', async () => {
    const ids = Array.from({ length: 1000 }, (_, i) => `u${i}`);
    const store = fakeStore(new Set(ids));
    await requireUsersExist(store, ids);
    expect(store.stats.calls).toBe(1000);
    expect(store.stats.maxInFlight).toBe(USER_CHECK_CONCURRENCY);
    await requireUsersExist(store, []);
    expect(store.stats.calls).toBe(1000);
  });

  it('refuses with E_USER_NOT_FOUND naming the first five unknown users, in the order given', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `u${i}`);
    const missing = ['u3', 'u50', 'u51', 'u120', 'u150', 'u199'];
    const store = fakeStore(new Set(ids.filter((u) => !missing.includes(u))));
    const err = await requireUsersExist(store, ids).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ParleyError);
    expect(err).toMatchObject({ code: 'E_USER_NOT_FOUND', detail: missing.slice(0, 5).join(',') });
    expect(store.stats.maxInFlight).toBeLessThanOrEqual(USER_CHECK_CONCURRENCY);
  });
});
