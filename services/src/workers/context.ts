import type { Logger } from 'pino';
import type { Store } from '../store/types.js';
import type { InboxPublisher } from '../delivery/publisher.js';

/** What every job processor may use. */
export interface WorkerContext {
  store: Store;
  publisher: InboxPublisher;
  log: Logger;
  now(): number;
  /** Messages older than this are removed by cleanup. */
  retentionMs: number;
}
