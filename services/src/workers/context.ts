import type { Logger } from 'pino';
import type { Store } from '../store/types.js';
import type { InboxPublisher } from '../delivery/publisher.js';
import type { FanoutJob } from '../queues.js';
import type { BlobStore } from '../media/blob-store.js';

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
  // [presence] context above this line
  // [social] context above this line
  // [push] context above this line
  // [status] context above this line
  // [account] context above this line
  /** Queues fan-out jobs (durably: resolves once they are in Redis). */
  enqueueFanout(jobs: FanoutJob[]): Promise<void>;
}
