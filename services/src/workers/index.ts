/**
 * The worker role: one processor per job name and a small table that maps names to processors.
 */
import { Job, Worker, type Queue } from 'bullmq';
import { JOB, QUEUE, type JobData, type QueueSettings, type Queues } from '../queues.js';
import type { WorkerContext } from './context.js';
import { processPersist } from './persist.js';
import { processAcks, processReads } from './receipts.js';
import { processFanout } from './fanout.js';
import { processCleanup } from './cleanup.js';
import { processThumbnail } from './thumbnail.js';
import { processPush } from './push.js';
import { processStatusFanout } from './status-fanout.js';
import { processIdentityEvents } from './identity-events.js';

/**
 * A processor's return value is the job's BullMQ return value: `persist` and `fanout` report what
 * they did (and which worker process did it), which tests and benchmarks read from the queue's
 * completed events.
 */
type Processor = (ctx: WorkerContext, job: Job) => Promise<unknown>;

/** Most waiting `persist` jobs read in one round trip when draining a backlog. */
const DRAIN_PAGE_JOBS = 32;

export const PROCESSORS: Readonly<Record<string, Processor>> = Object.freeze({
  [JOB.persist]: (ctx, job) => processPersist(ctx, (job.data as JobData['persist']).items),
  [JOB.acks]: (ctx, job) => processAcks(ctx, (job.data as JobData['acks']).items),
  [JOB.reads]: (ctx, job) => processReads(ctx, (job.data as JobData['reads']).items),
  [JOB.fanout]: (ctx, job) => processFanout(ctx, job.data as JobData['fanout']),
  [JOB.cleanup]: (ctx) => processCleanup(ctx),
  [JOB.thumbnail]: (ctx, job) => processThumbnail(ctx, (job.data as JobData['thumbnail']).attachmentId),
  [JOB.push]: (ctx, job) => processPush(ctx, job.data as JobData['push']),
  [JOB.statusFanout]: (ctx, job) => processStatusFanout(ctx, job.data as JobData['statusFanout']),
  [JOB.identityEvents]: (ctx, job) => processIdentityEvents(ctx, job.data as JobData['identityEvents']),
});

export interface WorkerOptions {
  /** Concurrent `events` jobs, and concurrent `fanout` jobs, per process. @defaultValue 8 */
  concurrency: number;
  /** How often cleanup runs. @defaultValue 3_600_000 */
  cleanupEveryMs: number;
  /**
   * A job whose worker died is retried after this long. Short, because a killed worker holds up
   * the ordered `persist` queue until then. @defaultValue 5000
   */
  lockDurationMs: number;
  /**
   * A `persist` job also takes up to this many messages from the jobs waiting behind it, so a
   * backlog is stored in one transaction instead of one job (and its fixed cost) at a time;
   * 0 = one job at a time. @defaultValue 2000
   */
  persistDrainItems: number;
  /** Concurrent `push` jobs per process (network-bound: each waits on push services). @defaultValue 16 */
  pushConcurrency: number;
}

export const DEFAULT_WORKER_OPTIONS: Readonly<WorkerOptions> = Object.freeze({
  concurrency: 8,
  cleanupEveryMs: 3_600_000,
  lockDurationMs: 5000,
  persistDrainItems: 2000,
  pushConcurrency: 16,
});

/**
 * Processes a `persist` job together with the oldest jobs waiting behind it in its queue (in
 * acceptance order), then removes those from the queue. Safe because each persist queue runs one
 * job at a time across the cluster: while this job is active no worker can take a waiting one. If this fails, the taken
 * jobs are still waiting and run again; if the process dies after storing but before removing
 * them, running them again is harmless (the store deduplicates by clientMsgId and only delivers
 * what was not queued yet).
 */
async function persistWithBacklog(ctx: WorkerContext, queue: Queue, job: Job, maxItems: number): Promise<unknown> {
  const items = [...(job.data as JobData['persist']).items];
  const taken: string[] = [];
  // Jobs are group-commit batches of similar size under load: read about as many as could fit,
  // oldest first (ids only, then each job's data once), and stop at the first that does not.
  let room = maxItems - items.length;
  let offset = 0;
  while (room > 0) {
    const want = Math.min(DRAIN_PAGE_JOBS, Math.max(1, Math.ceil(room / Math.max(1, items.length / (taken.length + 1)))));
    const ids = await queue.getRanges(['wait'], offset, offset + want - 1, true);
    offset += ids.length;
    const jobs = await Promise.all(ids.filter((id) => id !== job.id).map((id) => Job.fromId(queue, id)));
    let full = false;
    for (const w of jobs) {
      if (!w?.id || w.name !== JOB.persist) continue;
      const more = (w.data as JobData['persist']).items;
      if (more.length > room) {
        full = true;
        break;
      }
      items.push(...more);
      taken.push(w.id);
      room -= more.length;
    }
    if (full || ids.length < want) break;
  }
  const result = await processPersist(ctx, items);
  if (taken.length) {
    await Promise.all(taken.map((id) => queue.remove(id)));
    ctx.log.debug({ jobs: taken.length + 1, messages: items.length }, 'persist drained a backlog');
  }
  return result;
}

export interface Workers {
  close(): Promise<void>;
}

/** Job outcomes for metrics (services/src/metrics/ implements it). */
export interface JobObserver {
  /**
   * A job ended: `retried` when it failed and BullMQ will run it again, `failed` when it failed for
   * good. `seconds`: from when this attempt started.
   */
  finished(name: string, outcome: 'completed' | 'failed' | 'retried', seconds: number | undefined): void;
}

export async function startWorkers(
  ctx: WorkerContext,
  settings: QueueSettings,
  queues: Queues,
  options: Partial<WorkerOptions> = {},
  observer?: JobObserver,
): Promise<Workers> {
  const opts = { ...DEFAULT_WORKER_OPTIONS, ...options };
  const run = async (job: Job): Promise<unknown> => {
    const p = PROCESSORS[job.name];
    if (!p) throw new Error(`no processor for job ${job.name}`);
    return p(ctx, job);
  };
  const runPersist = (queue: Queue) => (job: Job): Promise<unknown> =>
    job.name === JOB.persist && opts.persistDrainItems > 0 ? persistWithBacklog(ctx, queue, job, opts.persistDrainItems) : run(job);
  const common = {
    connection: settings.connection,
    prefix: settings.prefix,
    lockDuration: opts.lockDurationMs,
    stalledInterval: Math.max(1000, Math.floor(opts.lockDurationMs / 2)),
    maxStalledCount: 100,
  };
  // One job at a time per persist queue across the whole cluster keeps each chat's seqs in
  // acceptance order; the queues (shards of the chats) run in parallel.
  await Promise.all(queues.persist.map((q) => q.setGlobalConcurrency(1)));
  const workers = [
    ...queues.persist.map((q) => new Worker(q.name, runPersist(q), { ...common, concurrency: 1 })),
    new Worker(QUEUE.fanout, run, { ...common, concurrency: opts.concurrency }),
    new Worker(QUEUE.events, run, { ...common, concurrency: opts.concurrency }),
    new Worker(QUEUE.maintenance, run, { ...common, concurrency: 1 }),
    // Image decoding takes a core and memory per job: two at a time per process.
    new Worker(QUEUE.media, run, { ...common, concurrency: 2 }),
    new Worker(QUEUE.push, run, { ...common, concurrency: opts.pushConcurrency }),
  ];
  const took = (job: Job): number | undefined => (job.processedOn ? (Date.now() - job.processedOn) / 1000 : undefined);
  for (const w of workers) {
    w.on('failed', (job, err) => {
      ctx.log.warn({ job: job?.name, attempts: job?.attemptsMade, err: err.message }, 'job failed');
      // attemptsMade already counts this attempt when `failed` is emitted (BullMQ 5).
      if (job) observer?.finished(job.name, job.attemptsMade < (job.opts.attempts ?? 1) ? 'retried' : 'failed', took(job));
    });
    if (observer) w.on('completed', (job) => observer.finished(job.name, 'completed', took(job)));
    w.on('error', settings.onError?.(`worker ${w.name}`) ?? ((err) => ctx.log.error({ err: err.message }, 'worker error')));
  }
  await queues.maintenance.upsertJobScheduler('cleanup', { every: opts.cleanupEveryMs }, { name: JOB.cleanup, data: {} });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  return {
    async close() {
      await Promise.all(workers.map((w) => w.close()));
    },
  };
}
