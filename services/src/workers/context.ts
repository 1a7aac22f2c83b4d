import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import type { PushSenders } from '../push/sender.js';
import type { Store } from '../store/types.js';
import type { InboxPublisher } from '../delivery/publisher.js';
import type { FanoutJob, PushJob } from '../queues.js';
import type { BlobStore } from '../media/blob-store.js';
import type { StatusFanoutJob } from '../status/status.js';

/** What the `push` job and its trigger (persist, fanout) use. */
export interface PushWorkerContext {
  senders: PushSenders;
  /** Routes (`<prefix>:at:<deviceId>`, delivery/bus.ts) and the per device and chat rate limit. */
  redis: Redis;
  prefix: string;
  /** At most one wake-up per device and chat in this long (0 = no limit). */
  minIntervalMs: number;
  ttlSec: number;
  /** Sends per device and wake-up, retries included. */
  maxAttempts: number;
  /** First retry delay, doubled each time (a Retry-After asking for longer wins). */
  retryBaseMs: number;
  /** Queues push jobs (a retry after `delayMs`). */
  enqueue(jobs: PushJob[], delayMs?: number): Promise<void>;
}

/** What the workers report for metrics (services/src/metrics/ implements it). */
export interface WorkerObserver {
  /** A chat's new messages went to `devices` devices: by `persist` itself, or one `fanout` chunk. */
  fanout(path: 'inline' | 'chunk', devices: number): void;
  /** Messages the broker received at `receivedAt` (epoch ms) are stored and on their way to the devices. */
  ingested(receivedAt: readonly number[]): void;
}

/** What every job processor may use. */
export interface WorkerContext {
  store: Store;
  publisher: InboxPublisher;
  log: Logger;
  now(): number;
  /** This worker process (its role id), reported in job results. */
  workerId: string;
  /** Messages older than this are removed by cleanup. */
  retentionMs: number;
  /** Devices per fan-out job; chats with at most this many are delivered by `persist` itself. */
  fanoutChunk: number;
  /** Media processing (thumbnails); absent where a process has no media store. */
  media?: { blobs: BlobStore; maxPixels: number; timeoutSec: number };
  /** Push wake-ups of offline devices (push.ts); absent: none are queued. */
  push?: PushWorkerContext;
  /** Queues status fan-out jobs (durably). */
  enqueueStatusFanout(jobs: StatusFanoutJob[]): Promise<void>;
  /** Queues fan-out jobs (durably: resolves once they are in Redis). */
  enqueueFanout(jobs: FanoutJob[]): Promise<void>;
  /** Metrics; absent: nothing is reported. */
  observer?: WorkerObserver;
}
