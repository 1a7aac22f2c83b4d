/**
 * BullMQ queues: names, job payloads, and the IngestSink the broker writes through.
 *
 * - `persist`: batches of new messages. Processed with global concurrency 1 so seqs follow the
 *   order in which brokers accepted the messages (each job is a whole group-commit batch, so one
 *   consumer is not a throughput limit: see docs/BENCHMARKS.md).
 * - `events`: delivered acks, read receipts and sync requests; order-independent, concurrent.
 * - `maintenance`: the repeatable cleanup job.
 */
import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type { IngestGate } from './ingest-gate.js';
import type { IngestAck, IngestMessage, IngestRead, IngestSink, IngestSync } from '../../broker/src/index.js';

export const QUEUE = { persist: 'persist', events: 'events', maintenance: 'maintenance' } as const;
export const JOB = { persist: 'persist', acks: 'acks', reads: 'reads', sync: 'sync', cleanup: 'cleanup' } as const;

export interface JobData {
  persist: { items: IngestMessage[] };
  acks: { items: IngestAck[] };
  reads: { items: IngestRead[] };
  sync: { items: IngestSync[] };
  cleanup: Record<string, never>;
}

export interface QueueSettings {
  connection: ConnectionOptions;
  /** Redis key prefix of every queue. @defaultValue 'parley' */
  prefix: string;
}

/** Failed jobs retry with back-off; completed ones are dropped at once (the store is the record). */
export const JOB_OPTIONS: JobsOptions = Object.freeze({
  attempts: 10,
  backoff: { type: 'exponential', delay: 200 },
  removeOnComplete: true,
  removeOnFail: { age: 7 * 86_400 },
});

export interface Queues {
  persist: Queue;
  events: Queue;
  maintenance: Queue;
  close(): Promise<void>;
}

export function openQueues(s: QueueSettings): Queues {
  const mk = (name: string): Queue => new Queue(name, { connection: s.connection, prefix: s.prefix, defaultJobOptions: JOB_OPTIONS });
  const persist = mk(QUEUE.persist);
  const events = mk(QUEUE.events);
  const maintenance = mk(QUEUE.maintenance);
  return {
    persist, events, maintenance,
    async close() {
      await Promise.all([persist.close(), events.close(), maintenance.close()]);
    },
  };
}

/**
 * The broker's ingest, as BullMQ jobs: one job per group-commit batch. New messages pass the
 * back-pressure `gate` first (services/src/ingest-gate.ts); receipts and syncs never wait.
 */
export function queueIngestSink(q: Queues, gate?: IngestGate): IngestSink {
  return {
    async messages(items) {
      await gate?.wait();
      await q.persist.add(JOB.persist, { items } satisfies JobData['persist']);
    },
    async acks(items) { await q.events.add(JOB.acks, { items } satisfies JobData['acks']); },
    async reads(items) { await q.events.add(JOB.reads, { items } satisfies JobData['reads']); },
    async syncs(items) { await q.events.add(JOB.sync, { items } satisfies JobData['sync']); },
  };
}
