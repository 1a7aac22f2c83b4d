/**
 * `identityEvents`: a device's MLS identity was published for the first time (`added`), replaced by
 * other bytes (`changed`: the "security code changed" notice) or removed with the device
 * (`removed`): an `identity` event (codec.ts) goes into every chat its user is a current member
 * of, groups and direct chats alike, as a server-written message of that chat (`from` = the
 * user, no sending device; ChatStore.commitGroupChange with no membership change, as a group's
 * changes). So it travels in each chat's seq stream and every member device, the user's own
 * included, sees it in order with the messages: that is how the SDK knows when to re-key the
 * chat's MLS group.
 *
 * A job, not inline in the request: each event is its own atomic commit (a seq and the chat's
 * version, retried on a concurrent change) and its own fan-out, one per chat, so a user in a few
 * thousand chats would hold `PUT /v1/keys/identity` or a revocation for seconds. The cost stays
 * one event per chat. A re-run (a crash, a failed commit) writes nothing twice: each event's
 * clientMsgId is derived from (chat, device, change, time), and a commit finds one already stored.
 *
 * `added` and `changed` wait for the device's key packages: the others act on the event by
 * claiming one to add the device to their MLS groups, and a device publishes its identity before
 * its packages (a new identity drops the old ones: they carry the old credential). So when the
 * device holds none, the job is queued delayed (IDENTITY_EVENTS_HOLD_MS) and its first upload
 * promotes it; a device that never uploads gets its events after the delay all the same.
 *
 * - A stale `added` / `changed` job stops: once the device's identity is no longer the one the
 *   job was made for (published again with other bytes, revoked, the account deleted), the newer
 *   change has its own job. Checked before each chat, so two quick changes rarely interleave.
 * - A direct chat with a user blocked either way gets nothing (the key directory gives neither
 *   anything of the other); a chat the user left, or a deleted one, neither.
 * - Account deletion writes none: it revokes the devices in the store directly and the user
 *   leaves every chat (`left` messages) before his keys go; a job that runs later finds no
 *   identity and no chats.
 */
import { createHash } from 'node:crypto';
import { Job } from 'bullmq';
import type { ChatEvent } from '@parley/client-sdk/protocol';
import { JOB, type IdentityEventsJob, type Queues } from '../queues.js';
import { StoreError, userPairKey, type Store, type StoredMessage, type SystemMessage } from '../store/types.js';
import type { WorkerContext } from './context.js';
import { fanoutJobs } from './fanout.js';

export type { IdentityEventsJob } from '../queues.js';

/** How many times one chat's event is planned again after a concurrent change of the chat. */
const MAX_ATTEMPTS = 5;

/** How long `added` / `changed` events wait at most for the device's first key packages. */
export const IDENTITY_EVENTS_HOLD_MS = 30_000;

/** The job id: the same change queued twice (a retried request) is one job while it waits. */
export const identityEventsJobId = (j: Pick<IdentityEventsJob, 'deviceId' | 'change' | 'changedAt'>): string =>
  `identity-${j.deviceId}-${j.change}-${j.changedAt}`;

/** What the API queues identity events with. */
export interface IdentityEventsQueue {
  /**
   * Queues the events of one identity change (durably: resolves once the job is in Redis). `hold`:
   * the device has no key package yet; the events wait for `release` (at most IDENTITY_EVENTS_HOLD_MS).
   */
  enqueue(job: IdentityEventsJob, opts?: { hold?: boolean }): Promise<void>;
  /** The device uploaded key packages: the held events of its identity (published at `changedAt`) go now. */
  release(deviceId: string, changedAt: number): Promise<void>;
}

export function identityEventsQueue(q: Pick<Queues, 'fanout'>): IdentityEventsQueue {
  return {
    async enqueue(job, opts = {}) {
      await q.fanout.add(JOB.identityEvents, job, { jobId: identityEventsJobId(job), ...(opts.hold ? { delay: IDENTITY_EVENTS_HOLD_MS } : {}) });
    },
    async release(deviceId, changedAt) {
      for (const change of ['added', 'changed'] as const) {
        const held = await Job.fromId(q.fanout, identityEventsJobId({ deviceId, change, changedAt }));
        // A failed promotion (another upload promoted it first, Redis failing) leaves a job that
        // runs anyway, at the latest when its delay ends.
        if (held && (await held.isDelayed())) await held.promote().catch(() => undefined);
      }
    },
  };
}

/**
 * The event's clientMsgId in one chat: `i` and 23 characters of a hash of what it says. System
 * message ids are unique across chats, hence the chat in it; the same for every run of the job.
 */
const eventMsgId = (chatId: string, j: IdentityEventsJob): string =>
  `i${createHash('sha256').update(`${chatId}|${j.deviceId}|${j.change}|${j.changedAt}`).digest('base64url').slice(0, 23)}`;

/** What a job did: the job's return value. */
export interface IdentityEventsResult {
  /** The user's current chats. */
  chats: number;
  /** Events stored (or found stored by an earlier run) and handed to the fan-out. */
  written: number;
  /** Stopped because a newer change replaced this one. */
  stale: boolean;
  by: string;
}

export async function processIdentityEvents(ctx: WorkerContext, job: IdentityEventsJob): Promise<IdentityEventsResult> {
  const { store } = ctx;
  const event: ChatEvent = { type: 'identity', device: job.deviceId, change: job.change };
  // A removal is final; an identity is current while its device is active and it is still the one
  // published at changedAt (the device is revoked in the store before its keys go).
  const current = async (): Promise<boolean> => {
    if (job.change === 'removed') return true;
    const [[identity], device] = await Promise.all([store.getIdentities([job.deviceId]), store.getDevice(job.deviceId)]);
    return identity !== undefined && identity.userId === job.userId && identity.changedAt === job.changedAt && device?.revokedAt === null;
  };
  const chats = (await store.listChats(job.userId, Number.MAX_SAFE_INTEGER))
    .filter(({ chat, member }) => member.leftSeq === null && chat.deletedAt === null)
    .map(({ chat }) => chat);
  const peers = new Map<string, string>();
  for (const chat of chats) {
    if (chat.kind !== 'direct') continue;
    const other = (await store.getMembers(chat.chatId)).find((m) => m.userId !== job.userId);
    if (other) peers.set(chat.chatId, other.userId);
  }
  const blocked = peers.size > 0
    ? await store.blockedPairs([...new Set(peers.values())].map((p): [string, string] => [job.userId, p]))
    : new Set<string>();

  let written = 0;
  for (const chat of chats) {
    const peer = peers.get(chat.chatId);
    if (peer !== undefined && blocked.has(userPairKey(job.userId, peer))) continue;
    if (!(await current())) {
      ctx.log.debug({ deviceId: job.deviceId, change: job.change, written }, 'identity events: a newer change replaced this one');
      return { chats: chats.length, written, stale: true, by: ctx.workerId };
    }
    const message = await commitEvent(store, chat.chatId, job.userId, {
      senderUserId: job.userId, clientMsgId: eventMsgId(chat.chatId, job), event, ts: ctx.now(),
    });
    if (!message) continue;
    await ctx.enqueueFanout(fanoutJobs(message.chatId, [message.seq]));
    written++;
  }
  ctx.log.debug({ deviceId: job.deviceId, change: job.change, chats: chats.length, written }, 'identity events written');
  return { chats: chats.length, written, stale: false, by: ctx.workerId };
}

/**
 * Stores the event in the chat with its next seq, changing nothing else (the chat's version moves,
 * as with any change: one planned on the older version plans again). Null when the user is no
 * longer a member or the chat is gone.
 */
async function commitEvent(store: Store, chatId: string, userId: string, message: SystemMessage): Promise<StoredMessage | null> {
  for (let attempt = 1; ; attempt++) {
    const chat = await store.getChat(chatId);
    if (!chat || chat.deletedAt !== null || !(await store.getMember(chatId, userId))) return null;
    try {
      return await store.commitGroupChange({ chatId, version: chat.version, message });
    } catch (err) {
      // A concurrent change of the chat (a group change, another device's event): plan again.
      // Past the attempts the job fails and BullMQ runs it again; what it wrote stays written once.
      if (err instanceof StoreError && err.code === 'CONFLICT' && attempt < MAX_ATTEMPTS) continue;
      throw err;
    }
  }
}
