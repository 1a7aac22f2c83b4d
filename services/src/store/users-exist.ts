/**
 * The existence check of the users a request names (contacts added, a user blocked, group members
 * added), shared by the HTTP routes and the group rules: E_USER_NOT_FOUND naming the first five
 * unknown ones, in the order given.
 */
import { ParleyError } from '@parley/client-sdk/protocol';
import type { AccountStore } from './types.js';

/** Look-ups in flight at once: a list of 1,000 users must not open 1,000 store queries together. */
export const USER_CHECK_CONCURRENCY = 16;

export async function requireUsersExist(store: Pick<AccountStore, 'getUser'>, userIds: readonly string[]): Promise<void> {
  const found = new Array<boolean>(userIds.length).fill(false);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < userIds.length) {
      const i = next++;
      found[i] = (await store.getUser(userIds[i]!)) !== null;
    }
  };
  await Promise.all(Array.from({ length: Math.min(USER_CHECK_CONCURRENCY, userIds.length) }, worker));
  const missing = userIds.filter((_u, i) => !found[i]);
  if (missing.length) throw new ParleyError('E_USER_NOT_FOUND', missing.slice(0, 5).join(','));
}
