/**
 * Who may see a status post now (services/src/status/status.ts explains the rules): one function,
 * used by the status routes and by the media download check (services/src/media/attachments.ts).
 */
import { userPairKey, type RelationStore, type StatusPost, type StatusStore } from '../store/types.js';

/** What visibility checks read. */
export type StatusReader = Pick<StatusStore, 'getStatus' | 'inStatusAudience'> & Pick<RelationStore, 'blockedPairs'>;

/** Whether a or b blocked the other: one query for both directions. */
async function blockedEitherWay(store: Pick<RelationStore, 'blockedPairs'>, a: string, b: string): Promise<boolean> {
  return (await store.blockedPairs([[a, b]])).has(userPairKey(a, b));
}

/**
 * The post if `viewerUserId` may see it at `now`: its author, or someone of its audience not
 * blocked either way, while it is neither expired nor removed. null otherwise (also for an
 * unknown id: nobody learns what exists). The media download check uses this too.
 */
export async function visibleStatus(store: StatusReader, statusId: string, viewerUserId: string, now: number): Promise<StatusPost | null> {
  const p = await store.getStatus(statusId);
  if (!p || p.removedAt !== null || p.expiresAt <= now) return null;
  if (p.authorUserId === viewerUserId) return p;
  if (!(await store.inStatusAudience(statusId, viewerUserId))) return null;
  if (await blockedEitherWay(store, p.authorUserId, viewerUserId)) return null;
  return p;
}

