/**
 * Account deletion (issue 12, item 7): everything of a user goes, in an order that leaves nothing
 * half-deleted able to act (docs/ARCHITECTURE.md, "Account deletion"):
 *
 * 1. Every device of his is revoked (its token stops working at once) and disconnected on every
 *    broker node (REVOKE_CHANNEL); we wait, briefly, until none has a route any more.
 * 2. He leaves every group he is in, each with a `left` message (the last admin leaving promotes
 *    the oldest member; a group left empty is deleted), and each direct chat with someone else
 *    is closed with a `left` message (the other keeps its history, nobody can write to it).
 * 3. Then the data, each port forgetting its part: his status posts, his media (objects in the
 *    BlobStore first, then their rows: an interruption leaves a row to retry, never an orphan
 *    object), profile and privacy, contacts and blocks both ways, push registrations, his devices'
 *    MLS identities and key packages, and the
 *    core (AccountStore.deleteUser: user, devices, pending registration, grants, memberships,
 *    watermarks, and his messages not yet delivered to every recipient).
 * 4. Then Redis: presence and watches (forgetLive), device routes, MQTT sessions, rate-limit
 *    counters, the deletion code (account/redis-account.ts).
 *
 * Idempotent: a deletion that stopped part-way (a crash, a store error) is finished by running it
 * again. Until then his devices are revoked, so nothing of his can act; his phone can register
 * again, which finds the same user (with no devices) and can ask for the deletion again.
 */
import type { Logger } from 'pino';
import { ParleyError } from '@parley/client-sdk/protocol';
import type { Store, UserDeletion } from '../store/types.js';
import type { BlobStore } from '../media/blob-store.js';
import type { Groups } from '../groups/groups.js';
import type { AccountRedis, ForgetTarget } from './redis-account.js';

export interface AccountDeletionDeps {
  store: Store;
  blobs: BlobStore;
  groups: Pick<Groups, 'leave' | 'closeDirect'>;
  redis: AccountRedis;
  /** Disconnects a (revoked) device on every broker node. */
  revoke(deviceId: string): Promise<void>;
  /** Forgets the user's presence, last seen, watches and typing state (services/src/live/). */
  forgetLive(userId: string, deviceIds: string[]): Promise<void>;
  /** More Redis keys of the user that other modules keep (removed with the rest). */
  extraRedisKeys?(target: ForgetTarget): string[];
  log: Logger;
  now(): number;
}

/** What a deletion did (logged; returned to tests). */
export interface DeletionReport extends UserDeletion {
  groupsLeft: number;
  directChatsClosed: number;
  attachments: number;
  /** Attachments his status posts referenced (removed with his other attachments). */
  statusMedia: number;
  pushRegistrations: number;
  /** Rows of the key directory (identities, key packages, last-resort packages) of his devices. */
  keys: number;
  /** Every device was seen disconnected before the data went (false: some broker node was slow to close one). */
  disconnected: boolean;
}

/** How long step 1 waits for the broker nodes to close the revoked connections. */
const DISCONNECT_WAIT_MS = 5000;
/** Attachments (and chats) read per store query. */
const PAGE = 200;

export async function deleteAccount(deps: AccountDeletionDeps, userId: string): Promise<DeletionReport> {
  const { store, log } = deps;
  const user = await store.getUser(userId);
  const devices = await store.listAllDevices(userId);
  const deviceIds = devices.map((d) => d.deviceId);

  // 1. Nothing of his acts any more.
  const t = deps.now();
  for (const d of devices) {
    if (d.revokedAt === null) await store.revokeDevice(d.deviceId, t);
    await deps.revoke(d.deviceId);
  }
  const disconnected = await deps.redis.waitDisconnected(deviceIds, DISCONNECT_WAIT_MS);
  if (!disconnected) log.warn({ userId }, 'account deletion: a device still had a route after revocation; its route is removed anyway');

  // 2. Leave his chats, so that the others are told (and a group keeps an admin).
  let groupsLeft = 0;
  let directChatsClosed = 0;
  for (const { chat, member } of await store.listChats(userId, Number.MAX_SAFE_INTEGER)) {
    if (member.leftSeq !== null || chat.deletedAt !== null) continue;
    try {
      if (chat.kind === 'group') {
        await deps.groups.leave(chat.chatId, userId);
        groupsLeft++;
      } else if (await deps.groups.closeDirect(chat.chatId, userId)) {
        directChatsClosed++;
      }
    } catch (err) {
      // Left or deleted meanwhile (by another admin, or a concurrent deletion): nothing to leave.
      if (!(err instanceof ParleyError && ['E_NOT_MEMBER', 'E_CHAT_DELETED', 'E_CHAT_NOT_FOUND'].includes(err.code))) throw err;
    }
  }

  // 3. His data, port by port; the core last (it holds the user, so a retry finds him).
  const statusMedia = await store.deleteStatusesOf(userId);
  let attachments = await removeMedia(deps, userId);
  await store.deleteProfile(userId);
  await store.forgetRelations(userId);
  const pushRegistrations = await store.deletePushRegistrationsOf(userId);
  let keys = await store.deleteKeysOf(userId);
  const core = await store.deleteUser(userId);
  // Once more: an upload (media, key packages) that a request authenticated before the revocation
  // was still creating.
  attachments += await removeMedia(deps, userId);
  keys += await store.deleteKeysOf(userId);

  // 4. Redis.
  const target: ForgetTarget = { userId, phone: user?.phone ?? '', deviceIds };
  await deps.forgetLive(userId, deviceIds);
  await deps.redis.forget(target, deps.extraRedisKeys?.(target) ?? []);

  const report: DeletionReport = {
    ...core, groupsLeft, directChatsClosed, attachments, statusMedia: statusMedia.length, pushRegistrations, keys, disconnected,
  };
  log.info({ userId, deletion: report }, 'account deleted');
  return report;
}

/** Removes every attachment of the user: its objects first, then its row and links. Returns how many. */
async function removeMedia(deps: Pick<AccountDeletionDeps, 'store' | 'blobs'>, userId: string): Promise<number> {
  let n = 0;
  for (;;) {
    // Always from the start: the rows of a page are gone once it is done.
    const page = await deps.store.attachmentsOf(userId, '', PAGE);
    for (const a of page) {
      if (a.uploadId) await deps.blobs.abortUpload(a.key, a.uploadId);
      await deps.blobs.remove([a.key, ...(a.thumbKey ? [a.thumbKey] : [])]);
      await deps.store.deleteAttachment(a.attachmentId);
      n++;
    }
    if (page.length < PAGE) return n;
  }
}
