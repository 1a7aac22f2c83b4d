/**
 * The worker role: one processor per job name and a small table that maps names to processors.
 */
import { Worker, type Job } from 'bullmq';
import { JOB, QUEUE, type JobData, type QueueSettings, type Queues } from '../queues.js';
import type { WorkerContext } from './context.js';
import { processPersist } from './persist.js';
import { processAcks, processReads } from './receipts.js';
import { processSync } from './sync.js';
import { processCleanup } from './cleanup.js';

type Processor = (ctx: WorkerContext, job: Job) => Promise<void>;

export const PROCESSORS: Readonly<Record<string, Processor>> = Object.freeze({
  [JOB.persist]: (ctx, job) => processPersist(ctx, (job.data as JobData['persist']).items),
  [JOB.acks]: (ctx, job) => processAcks(ctx, (job.data as JobData['acks']).items),
  [JOB.reads]: (ctx, job) => processReads(ctx, (job.data as JobData['reads']).items),
  [JOB.sync]: (ctx, job) => processSync(ctx, (job.data as JobData['sync']).items),
  [JOB.cleanup]: (ctx) => processCleanup(ctx),
});

export interface WorkerOptions {
  /** Concurrent `events` jobs per process. @defaultValue 8 */
  concurrency: number;
  /** How often cleanup runs. @defaultValue 3_600_000 */
  cleanupEveryMs: number;
  /**
   * A job whose worker died is retried after this long. Short, because a killed worker holds up
   * the ordered `persist` queue until then. @defaultValue 5000
   */
  lockDurationMs: number;
}

export const DEFAULT_WORKER_OPTIONS: Readonly<WorkerOptions> = Object.freeze({
  concurrency: 8,
  cleanupEveryMs: 3_600_000,
  lockDurationMs: 5000,
});

export interface Workers {
  close(): Promise<void>;
}

export async function startWorkers(
  ctx: WorkerContext,
  settings: QueueSettings,
  queues: Queues,
  options: Partial<WorkerOptions> = {},
): Promise<Workers> {
  const opts = { ...DEFAULT_WORKER_OPTIONS, ...options };
  const run = async (job: Job): Promise<void> => {
    const p = PROCESSORS[job.name];
    if (!p) throw new Error(`no processor for job ${job.name}`);
    await p(ctx, job);
  };
  const common = {
    connection: settings.connection,
    prefix: settings.prefix,
    lockDuration: opts.lockDurationMs,
    stalledInterval: Math.max(1000, Math.floor(opts.lockDurationMs / 2)),
    maxStalledCount: 100,
  };
  // One persist job at a time across the whole cluster keeps each chat's seq in acceptance order.
  await queues.persist.setGlobalConcurrency(1);
  const workers = [
    new Worker(QUEUE.persist, run, { ...common, concurrency: 1 }),
    new Worker(QUEUE.events, run, { ...common, concurrency: opts.concurrency }),
    new Worker(QUEUE.maintenance, run, { ...common, concurrency: 1 }),
  ];
  for (const w of workers) {
    w.on('failed', (job, err) => ctx.log.warn({ job: job?.name, attempts: job?.attemptsMade, err: err.message }, 'job failed'));
    w.on('error', (err) => ctx.log.error({ err: err.message }, 'worker error'));
  }
  await queues.maintenance.upsertJobScheduler('cleanup', { every: opts.cleanupEveryMs }, { name: JOB.cleanup, data: {} });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  return {
    async close() {
      await Promise.all(workers.map((w) => w.close()));
    },
  };
}
