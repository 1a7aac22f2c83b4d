/**
 * BullMQ queues: names, job payloads, and the IngestSink the broker writes through.
 *
 * - `persist-0` … `persist-<N-1>`: batches of new messages, spread over N ordered queues by a
 *   hash of the chat (`IngestMessage.k`). Each queue runs with global concurrency 1, so a chat's
 *   seqs follow the order its messages were accepted in, while different chats are stored by
 *   different workers at once (docs/ARCHITECTURE.md, "Ordering").
 * - `fanout`: deliveries of stored messages to a large chat's devices, one bounded chunk of
 *   devices per job, concurrent; a big group never holds up the ordered queues. Also the other
 *   jobs that fan one change out to many: status posts, and a device's identity change written
 *   into each of its user's chats.
 * - `events`: delivered acks and read receipts; order-independent, concurrent.
 * - `maintenance`: the repeatable cleanup job.
 * - `media`: thumbnails of uploaded images (sharp), a couple at a time per process.
 */
import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type { IngestGate } from './ingest-gate.js';
import { groupBy } from './group-by.js';
import type { IdentityChange } from '@parley/client-sdk/protocol';
import type { IngestAck, IngestMessage, IngestRead, IngestSink } from '../../broker/src/index.js';

export const QUEUE = { persist: 'persist', fanout: 'fanout', events: 'events', maintenance: 'maintenance', media: 'media', push: 'push' } as const;
export const JOB = {
  persist: 'persist', fanout: 'fanout', acks: 'acks', reads: 'reads', cleanup: 'cleanup', thumbnail: 'thumbnail', push: 'push', statusFanout: 'statusFanout',
  identityEvents: 'identityEvents',
} as const;

/** A chunk of a fan-out: messages `fromSeq..toSeq` of a chat to its devices after `afterDevice`. */
export interface FanoutJob {
  chatId: string;
  fromSeq: number;
  toSeq: number;
  /** The chunk starts after this deviceId ('' = the first). */
  afterDevice: string;
}

/**
 * Wake-ups of a chat's recipient devices that were connected nowhere when its messages were
 * delivered (services/src/workers/push.ts). `attempt` > 0: a retry of one device's wake-up.
 */
export interface PushJob {
  chatId: string;
  deviceIds: string[];
  attempt?: number;
}

/**
 * A device's MLS identity was published for the first time, changed, or went with the device's
 * revocation: an `identity` event goes into every chat of its user (workers/identity-events.ts).
 * `changedAt`: the identity's (added, changed) or the revocation's (removed) time.
 */
export interface IdentityEventsJob {
  userId: string;
  deviceId: string;
  change: IdentityChange;
  changedAt: number;
}

export interface JobData {
  persist: { items: IngestMessage[] };
  fanout: FanoutJob;
  acks: { items: IngestAck[] };
  reads: { items: IngestRead[] };
  cleanup: Record<string, never>;
  thumbnail: { attachmentId: string };
  push: PushJob;
  statusFanout: { statusId: string; removed: boolean; afterUser: string; exceptDevice: string };
  identityEvents: IdentityEventsJob;
}

export interface QueueSettings {
  connection: ConnectionOptions;
  /** Redis key prefix of every queue. @defaultValue 'parley' */
  prefix: string;
  /** How many ordered persist queues. @defaultValue 8 */
  persistShards: number;
  /**
   * The 'error' listener of each queue and worker, by name (services/src/redis/error-log.ts).
   * @defaultValue queues ignore them, workers log them at `error` (BullMQ reconnects by itself)
   */
  onError?: (source: string) => (err: Error) => void;
}

/** Failed jobs retry with back-off; completed ones are dropped at once (the store is the record). */
export const JOB_OPTIONS: JobsOptions = Object.freeze({
  attempts: 10,
  backoff: { type: 'exponential', delay: 200 },
  removeOnComplete: true,
  removeOnFail: { age: 7 * 86_400 },
});

export interface Queues {
  /** The ordered persist queues, by shard. */
  persist: readonly Queue[];
  fanout: Queue;
  events: Queue;
  maintenance: Queue;
  /** Media processing (thumbnails): CPU-heavy, so few at a time per process. */
  media: Queue;
  /** Push wake-ups of offline devices: network-bound, many at a time. */
  push: Queue;
  close(): Promise<void>;
}

export const persistQueueName = (shard: number): string => `${QUEUE.persist}-${shard}`;

/** FNV-1a over the ordering key: stable across processes and releases, spreads chat ids evenly. */
export function shardOf(key: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shards;
}

export function openQueues(s: QueueSettings): Queues {
  const mk = (name: string): Queue => {
    const q = new Queue(name, { connection: s.connection, prefix: s.prefix, defaultJobOptions: JOB_OPTIONS });
    // Without a listener BullMQ console.errors every failed reconnect while Redis is away.
    q.on('error', s.onError?.(`queue ${name}`) ?? (() => undefined));
    return q;
  };
  const persist = Array.from({ length: s.persistShards }, (_, i) => mk(persistQueueName(i)));
  const fanout = mk(QUEUE.fanout);
  const events = mk(QUEUE.events);
  const maintenance = mk(QUEUE.maintenance);
  const media = mk(QUEUE.media);
  const push = mk(QUEUE.push);
  return {
    persist, fanout, events, maintenance, media, push,
    async close() {
      await Promise.all([...persist, fanout, events, maintenance, media, push].map((q) => q.close()));
    },
  };
}

/**
 * Queues fan-out jobs, durably (resolves once they are in Redis). A chunk re-run after a crash
 * queues its successor again: the job id makes that a no-op while the successor still exists.
 */
export async function enqueueFanout(q: Queues, jobs: FanoutJob[]): Promise<void> {
  await q.fanout.addBulk(jobs.map((data) => ({
    name: JOB.fanout, data, opts: { jobId: `fanout-${data.chatId}-${data.fromSeq}-${data.toSeq}-${data.afterDevice || '0'}` },
  })));
}

/**
 * Queues push jobs. A retry (one device) waits `delayMs`. Push jobs that fail before sending
 * (the store or Redis unavailable) are retried a few times by BullMQ; a wake-up is worth little
 * once the device has come back by itself.
 */
export async function enqueuePush(q: Queues, jobs: PushJob[], delayMs = 0): Promise<void> {
  await q.push.addBulk(jobs.map((data) => ({
    name: JOB.push, data, opts: { attempts: 3, ...(delayMs > 0 ? { delay: delayMs } : {}) },
  })));
}

/**
 * The broker's ingest, as BullMQ jobs: one job per group-commit batch and shard. New messages
 * pass the back-pressure `gate` first (services/src/ingest-gate.ts); receipts never wait.
 */
export function queueIngestSink(q: Queues, gate?: IngestGate): IngestSink {
  return {
    async messages(items) {
      await gate?.wait();
      const byShard = groupBy(items, (item) => shardOf(item.k, q.persist.length));
      await Promise.all([...byShard].map(([shard, list]) =>
        q.persist[shard]!.add(JOB.persist, { items: list } satisfies JobData['persist'])));
    },
    async acks(items) { await q.events.add(JOB.acks, { items } satisfies JobData['acks']); },
    async reads(items) { await q.events.add(JOB.reads, { items } satisfies JobData['reads']); },
  };
}
