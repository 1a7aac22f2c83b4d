/**
 * Every process (any roles) reports itself to Redis for the dashboard, every `intervalMs`:
 * - `<prefix>:report:<nodeId>`: its report (admin-types.ts `NodeReport`, JSON), expiring after
 *   `ttlMs` unless the next one replaces it; a node that stops (crash, partition) thus vanishes
 *   by itself;
 * - `<prefix>:nodes`: a sorted set of node ids by the time of their last report (Redis' clock, so
 *   nodes' clocks do not matter), pruned of nodes silent for `forgetMs`: until then the dashboard
 *   lists a node whose report expired as gone.
 * The numbers come from the process' prom-client registry (metric-read.ts): cumulative totals,
 * and, computed here from the previous report's snapshot, the rates and the delivery latency
 * histogram of the interval since (so every API process shows the same figures, from one key per
 * node). A clean shutdown removes the node at once.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { NodeReport } from './admin-types.js';
import { intervalBuckets, percentiles, type CumulativeHistogram } from './histogram.js';
import { countOf, histogramOf, sumOf } from './metric-read.js';

/** The metrics a report reads (docs/ARCHITECTURE.md, "Metrics and health"). */
const METRIC = {
  connections: 'parley_mqtt_connections',
  inFlight: 'parley_mqtt_inflight_messages',
  publishes: 'parley_mqtt_publishes_total',
  deliveries: 'parley_mqtt_deliveries_total',
  sentLatency: 'parley_sent_latency_seconds',
  deliveryLatency: 'parley_delivery_latency_seconds',
} as const;

export const nodesKey = (prefix: string): string => `${prefix}:nodes`;
export const reportKey = (prefix: string, nodeId: string): string => `${prefix}:report:${nodeId}`;

export interface NodeReporterOptions {
  /** @defaultValue 2000 */
  intervalMs: number;
  /** How long a report lives without the next one. @defaultValue 10000 */
  ttlMs: number;
  /** How long a silent node stays in the node set (listed as gone). @defaultValue 60000 */
  forgetMs: number;
}

export const DEFAULT_NODE_REPORTER_OPTIONS: Readonly<NodeReporterOptions> = Object.freeze({ intervalMs: 2000, ttlMs: 10_000, forgetMs: 60_000 });

export interface NodeIdentity {
  nodeId: string;
  roles: NodeReport['roles'];
  host: string;
  pid: number;
  startedAt: number;
  version: string;
}

export interface NodeReporter {
  /** Writes a report now (tests and start-up); the timer keeps going. */
  reportNow(): Promise<void>;
  /** Stops reporting and removes the node's report and entry. */
  close(): Promise<void>;
}

interface Snapshot {
  at: number;
  publishes: number;
  deliveries: number;
  accepted: number;
  delivered: number;
  latency: CumulativeHistogram | null;
}

// KEYS: report, nodes. ARGV: report, ttl ms, nodeId, forget ms. Redis' clock scores the node set.
const WRITE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]))
return now`;

const perSecond = (delta: number, ms: number): number => (ms > 0 ? Math.max(0, delta) / (ms / 1000) : 0);

export function startNodeReporter(
  deps: { redis: Redis; prefix: string; registry: Registry; identity: NodeIdentity; log: Logger; now?: () => number },
  options: Partial<NodeReporterOptions> = {},
): NodeReporter {
  const opts = { ...DEFAULT_NODE_REPORTER_OPTIONS, ...options };
  const { redis, prefix, registry, identity } = deps;
  const now = deps.now ?? Date.now;
  const key = reportKey(prefix, identity.nodeId);
  // Rates of the first report run from the start of the process.
  let previous: Snapshot = { at: identity.startedAt, publishes: 0, deliveries: 0, accepted: 0, delivered: 0, latency: null };
  let closed = false;
  let running: Promise<void> | null = null;
  let failures = 0;

  const snapshot = async (): Promise<Snapshot> => {
    const [publishes, deliveries, accepted, latency] = await Promise.all([
      sumOf(registry, METRIC.publishes),
      sumOf(registry, METRIC.deliveries),
      countOf(registry, METRIC.sentLatency, (l) => l.kind === 'send'),
      histogramOf(registry, METRIC.deliveryLatency),
    ]);
    return { at: now(), publishes, deliveries, accepted, delivered: latency.total, latency };
  };

  const build = async (): Promise<NodeReport> => {
    const s = await snapshot();
    const [connections, pending] = await Promise.all([sumOf(registry, METRIC.connections), sumOf(registry, METRIC.inFlight)]);
    const windowMs = Math.max(0, s.at - previous.at);
    const buckets = s.latency ? intervalBuckets(previous.latency, s.latency) : { bounds: [], counts: [0] };
    const report: NodeReport = {
      ...identity,
      roles: [...identity.roles],
      reportedAt: s.at,
      intervalMs: opts.intervalMs,
      ttlMs: opts.ttlMs,
      connections,
      pending,
      totals: { publishes: s.publishes, deliveries: s.deliveries, accepted: s.accepted, delivered: s.delivered },
      rates: {
        publishes: perSecond(s.publishes - previous.publishes, windowMs),
        deliveries: perSecond(s.deliveries - previous.deliveries, windowMs),
        accepted: perSecond(s.accepted - previous.accepted, windowMs),
        delivered: perSecond(s.delivered - previous.delivered, windowMs),
      },
      windowMs,
      latency: { ...buckets, ...percentiles(buckets) },
    };
    previous = s;
    return report;
  };

  const tick = (): Promise<void> => {
    // One report at a time: a slow Redis must not pile them up.
    running ??= (async () => {
      try {
        const report = await build();
        if (closed) return;
        await redis.eval(WRITE, 2, key, nodesKey(prefix), JSON.stringify(report), String(opts.ttlMs), identity.nodeId, String(opts.forgetMs));
        failures = 0;
      } catch (err) {
        // Redis away: its clients log that already; the node shows as stale, then gone, meanwhile.
        if (failures++ === 0) deps.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not write the node report');
      } finally {
        running = null;
      }
    })();
    return running;
  };

  const timer = setInterval(() => { void tick(); }, opts.intervalMs);
  timer.unref();

  return {
    reportNow: tick,
    async close() {
      closed = true;
      clearInterval(timer);
      // At most a second: with Redis away the report expires by itself, and the shutdown steps
      // after this one (workers finishing their jobs) need the time more.
      let timeout: NodeJS.Timeout | undefined;
      await Promise.race([
        (async () => {
          await running;
          await redis.multi().del(key).zrem(nodesKey(prefix), identity.nodeId).exec();
        })().catch(() => undefined),
        new Promise<void>((r) => { timeout = setTimeout(r, 1000); }),
      ]);
      clearTimeout(timeout);
    },
  };
}
