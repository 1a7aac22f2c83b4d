/**
 * Prometheus metrics (prom-client): one Registry per platform (one per process outside tests),
 * every Parley metric named `parley_*`, Node's process metrics under their usual names. The
 * broker and the workers report through small observer ports (broker/src/ingest.ts
 * `BrokerObserver`, workers `WorkerObserver` and `JobObserver`), so prom-client stays here.
 * The names are listed in docs/ARCHITECTURE.md ("Metrics"); labels carry kinds, job and queue
 * names and store operations, never ids or secrets.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Queue } from 'bullmq';
import type { BrokerObserver } from '../../../broker/src/index.js';
import type { WorkerObserver } from '../workers/context.js';
import type { JobObserver } from '../workers/index.js';

/** Message latencies: a PUBACK in milliseconds, a delivery to an offline device in hours. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600];
const OP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5];
const JOB_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const FANOUT_BUCKETS = [1, 2, 5, 10, 20, 50, 128, 256, 512, 1024, 4096];
/** BullMQ job states reported per queue. */
const QUEUE_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'failed'] as const;

export interface MetricsOptions {
  /** Longest a scrape waits for Redis (queue depths, ping); slower values are left as they were. @defaultValue 1000 */
  scrapeTimeoutMs: number;
}

export const DEFAULT_METRICS_OPTIONS: Readonly<MetricsOptions> = Object.freeze({ scrapeTimeoutMs: 1000 });

export interface Metrics {
  readonly registry: Registry;
  readonly broker: BrokerObserver;
  readonly workers: WorkerObserver;
  readonly jobs: JobObserver;
  /** A Redis client reported an error (`client`: which one, e.g. `main`, `bus`). */
  redisError(client: string): void;
  /** The private redis-server was restarted by its supervisor. */
  redisRestarted(): void;
  /** Times every method of `store` (operation = method name) and counts the ones that throw or reject. */
  instrumentStore<T extends object>(store: T): T;
  /** Queue depths, read with getJobCounts on each scrape. */
  watchQueues(queues: readonly Queue[]): void;
  /** Connected MQTT clients, read on each scrape. */
  watchConnections(count: () => number): void;
  /** Chat messages handed to connections and not acknowledged yet, read on each scrape. */
  watchInFlight(count: () => number): void;
  /** Redis round-trip time, measured by a PING on each scrape. */
  watchRedis(ping: () => Promise<unknown>): void;
  /** The Prometheus text exposition. */
  scrape(): Promise<{ contentType: string; body: string }>;
}

const withTimeout = <T>(p: Promise<T>, ms: number): Promise<T | undefined> =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    p.then((v) => { clearTimeout(timer); resolve(v); }, () => { clearTimeout(timer); resolve(undefined); });
  });

export function createMetrics(options: Partial<MetricsOptions> = {}): Metrics {
  const opts = { ...DEFAULT_METRICS_OPTIONS, ...options };
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  let connections: (() => number) | null = null;
  let inFlight: (() => number) | null = null;
  let queues: readonly Queue[] = [];
  let ping: (() => Promise<unknown>) | null = null;

  new Gauge({
    name: 'parley_mqtt_connections', help: 'Authenticated MQTT connections on this broker node', registers,
    collect() { this.set(connections ? connections() : 0); },
  });
  new Gauge({
    name: 'parley_mqtt_inflight_messages', help: 'Chat messages handed to device connections on this node and not acknowledged yet', registers,
    collect() { this.set(inFlight ? inFlight() : 0); },
  });
  const published = new Counter({
    name: 'parley_mqtt_publishes_total', help: 'PUBLISHes received from devices, by envelope kind (invalid: refused before one was known)',
    labelNames: ['kind'], registers,
  });
  const delivered = new Counter({
    name: 'parley_mqtt_deliveries_total', help: 'Envelopes handed to device connections, by kind', labelNames: ['kind'], registers,
  });
  const sentLatency = new Histogram({
    name: 'parley_sent_latency_seconds', help: 'A device PUBLISH to its PUBACK (for send: the sent tick), by envelope kind',
    labelNames: ['kind'], buckets: LATENCY_BUCKETS, registers,
  });
  const ingestLatency = new Histogram({
    name: 'parley_ingest_latency_seconds',
    help: 'Broker receive of a message to stored and handed to delivery (live devices of small chats; fan-out jobs of large ones)',
    buckets: LATENCY_BUCKETS, registers,
  });
  const deliveryLatency = new Histogram({
    name: 'parley_delivery_latency_seconds',
    help: 'A chat message stored to the recipient device\'s PUBACK (the delivered tick); offline devices count with their wait',
    buckets: LATENCY_BUCKETS, registers,
  });
  const fanout = new Histogram({
    name: 'parley_fanout_devices', help: 'Devices a chat\'s new messages go to: per persist batch (inline) or per fan-out chunk',
    labelNames: ['path'], buckets: FANOUT_BUCKETS, registers,
  });
  new Gauge({
    name: 'parley_queue_jobs', help: 'BullMQ jobs per queue and state (read on scrape; the same in every process)',
    labelNames: ['queue', 'state'], registers,
    async collect() {
      const counts = await Promise.all(queues.map((q) => withTimeout(q.getJobCounts(...QUEUE_STATES), opts.scrapeTimeoutMs)));
      counts.forEach((c, i) => {
        if (!c) return; // Redis slow or away: the last values stay
        for (const state of QUEUE_STATES) this.set({ queue: queues[i]!.name, state }, c[state] ?? 0);
      });
    },
  });
  const jobs = new Counter({
    name: 'parley_jobs_total', help: 'Jobs ended in this process, by job name and outcome (completed, retried, failed)',
    labelNames: ['job', 'outcome'], registers,
  });
  const jobSeconds = new Histogram({
    name: 'parley_job_duration_seconds', help: 'Job attempts, by job name and outcome', labelNames: ['job', 'outcome'], buckets: JOB_BUCKETS, registers,
  });
  const storeSeconds = new Histogram({
    name: 'parley_store_operation_seconds', help: 'Store calls, by operation', labelNames: ['op'], buckets: OP_BUCKETS, registers,
  });
  const storeErrors = new Counter({
    name: 'parley_store_errors_total', help: 'Store calls that failed, by operation', labelNames: ['op'], registers,
  });
  const redisErrors = new Counter({
    name: 'parley_redis_errors_total', help: 'Errors reported by Redis clients (connection losses included), by client', labelNames: ['client'], registers,
  });
  const redisRestarts = new Counter({
    name: 'parley_redis_restarts_total', help: 'Restarts of the private redis-server by its supervisor', registers,
  });
  new Gauge({
    name: 'parley_redis_ping_seconds', help: 'Redis PING round trip, measured on scrape (-1: no answer within the scrape timeout)', registers,
    async collect() {
      if (!ping) return;
      const start = performance.now();
      const ok = await withTimeout(ping().then(() => true), opts.scrapeTimeoutMs);
      this.set(ok ? (performance.now() - start) / 1000 : -1);
    },
  });
  // Series that exist from the first scrape, so rates start from zero.
  redisRestarts.inc(0);

  const timed = (op: string, fn: (...args: unknown[]) => unknown, self: object) => (...args: unknown[]): unknown => {
    const start = performance.now();
    const done = (failed: boolean): void => {
      storeSeconds.observe({ op }, (performance.now() - start) / 1000);
      if (failed) storeErrors.inc({ op });
    };
    let result: unknown;
    try {
      result = fn.apply(self, args);
    } catch (err) {
      done(true);
      throw err;
    }
    if (result instanceof Promise) {
      return result.then((v: unknown) => { done(false); return v; }, (err: unknown) => { done(true); throw err; });
    }
    done(false);
    return result;
  };

  return {
    registry,
    broker: {
      published: (kind) => published.inc({ kind }),
      acknowledged: (kind, ms) => sentLatency.observe({ kind }, ms / 1000),
      delivered: (kind) => delivered.inc({ kind }),
      deliveryAcked: (storedAt) => {
        const s = (Date.now() - storedAt) / 1000;
        if (s >= 0) deliveryLatency.observe(s);
      },
    },
    workers: {
      fanout: (path, devices) => fanout.observe({ path }, devices),
      ingested: (receivedAt) => {
        const now = Date.now();
        for (const t of receivedAt) if (now >= t) ingestLatency.observe((now - t) / 1000);
      },
    },
    jobs: {
      finished(name, outcome, seconds) {
        jobs.inc({ job: name, outcome });
        if (seconds !== undefined) jobSeconds.observe({ job: name, outcome }, seconds);
      },
    },
    redisError: (client) => redisErrors.inc({ client }),
    redisRestarted: () => redisRestarts.inc(),
    instrumentStore<T extends object>(store: T): T {
      const wrapped = new Map<PropertyKey, unknown>();
      return new Proxy(store, {
        get(target, prop, receiver) {
          const v: unknown = Reflect.get(target, prop, receiver);
          if (typeof v !== 'function' || typeof prop !== 'string') return v;
          let w = wrapped.get(prop);
          if (!w) wrapped.set(prop, (w = timed(prop, v as (...args: unknown[]) => unknown, target)));
          return w;
        },
      });
    },
    watchQueues(list) { queues = list; },
    watchConnections(count) { connections = count; },
    watchInFlight(count) { inFlight = count; },
    watchRedis(fn) { ping = fn; },
    async scrape() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
