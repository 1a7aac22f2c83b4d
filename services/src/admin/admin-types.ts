/**
 * The admin dashboard's data, declared once (zod): what every process writes to Redis as its node
 * report (node-report.ts), what the admin API answers (routes.ts), and what the page reads (page/
 * dashboard.ts imports the types only, so no zod reaches the browser). Services-side on purpose:
 * the client SDK carries no admin operation.
 */
import { z } from 'zod';
import { isId, ID_PREFIX } from '@parley/client-sdk/protocol';

const count = z.number().int().min(0);
const rate = z.number().min(0);
/** Seconds, or null when the interval had no sample. */
const seconds = z.number().min(0).nullable();

/** Cumulative counters of one process since it started, read from its prom-client registry. */
export const nodeTotals = z.object({
  /** PUBLISHes from devices, every kind (`parley_mqtt_publishes_total`). */
  publishes: count,
  /** Envelopes handed to device connections, every kind (`parley_mqtt_deliveries_total`). */
  deliveries: count,
  /** Chat messages accepted: `send` PUBACKs, the sent ticks (`parley_sent_latency_seconds_count{kind="send"}`). */
  accepted: count,
  /** Chat messages the devices here acknowledged: the delivered ticks (`parley_delivery_latency_seconds_count`). */
  delivered: count,
});

/** A delivery latency histogram over one interval: per-bucket counts (not cumulative), the last one above every bound. */
export const latencyWindow = z.object({
  /** Bucket upper bounds in seconds, ascending (the metric's own). */
  bounds: z.array(z.number()).max(64),
  /** `bounds.length + 1` counts; the last is the overflow above the largest bound. */
  counts: z.array(count).max(65),
  p50: seconds,
  p95: seconds,
  p99: seconds,
});

export const ROLE_NAMES = ['broker', 'api', 'workers'] as const;

/** What each process writes to Redis every report interval (a key with a TTL, see node-report.ts). */
export const nodeReport = z.object({
  /** The broker's node id when it runs the broker role (routes and presence name it), else `host:pid`. */
  nodeId: z.string().min(1).max(200),
  roles: z.array(z.enum(ROLE_NAMES)).max(3),
  host: z.string().max(255),
  pid: z.number().int(),
  /** Epoch ms (the node's clock). */
  startedAt: z.number(),
  reportedAt: z.number(),
  version: z.string().max(64),
  /** How often the node reports, and how long its report lives in Redis without the next one. */
  intervalMs: z.number().int().positive(),
  ttlMs: z.number().int().positive(),
  /** Authenticated MQTT connections now (broker role). */
  connections: count,
  /** Chat messages handed to connections here and not acknowledged yet (QoS 1 in flight). */
  pending: count,
  totals: nodeTotals,
  /** Per second over `windowMs`, the time since the node's previous report. */
  rates: z.object({ publishes: rate, deliveries: rate, accepted: rate, delivered: rate }),
  windowMs: z.number().int().min(0),
  /** Delivery latency (stored to the device's PUBACK) over the same window. */
  latency: latencyWindow,
});
export type NodeReport = z.infer<typeof nodeReport>;

/**
 * A node as the dashboard sees it: `live` (reported within 2.5 intervals), `stale` (its last
 * report is older but has not expired: the node may be stuck or partitioned), `gone` (the report
 * expired: the node stopped; it is listed until a minute after its last report).
 */
export const nodeView = z.object({
  nodeId: z.string(),
  state: z.enum(['live', 'stale', 'gone']),
  /** Since its last report, by Redis' clock (nodes' clocks may differ). */
  ageMs: z.number().int().min(0),
  report: nodeReport.nullable(),
});
export type NodeView = z.infer<typeof nodeView>;

export const queueView = z.object({
  name: z.string(),
  waiting: count,
  active: count,
  delayed: count,
  prioritized: count,
  failed: count,
});
export type QueueView = z.infer<typeof queueView>;

/** A job that failed for good. Its data is never shown: jobs carry device ids, message bodies, push endpoints. */
export const failedJob = z.object({
  queue: z.string(),
  name: z.string(),
  id: z.string(),
  /** The error message, cut short, with URLs reduced to their origin (push endpoints are capabilities). */
  reason: z.string(),
  /** Epoch ms when it failed for good. */
  at: z.number().nullable(),
  attempts: count,
});
export type FailedJob = z.infer<typeof failedJob>;

/** GET /admin/api/overview */
export const overview = z.object({
  /** Redis' clock, epoch ms: the page's time axis. */
  now: z.number(),
  nodes: z.array(nodeView),
  /** Live and stale nodes summed (rates and latency: live nodes only, their last window). */
  cluster: z.object({
    nodes: count,
    connections: count,
    pending: count,
    totals: nodeTotals,
    rates: z.object({ publishes: rate, deliveries: rate, accepted: rate, delivered: rate }),
    latency: z.object({ p50: seconds, p95: seconds, p99: seconds }),
    /**
     * Accepted and not stored yet: jobs of the persist queues not finished (waiting, active,
     * delayed, prioritized). Null when the queues could not be read (Redis away or slow), never 0.
     */
    persistBacklog: count.nullable(),
  }),
  /**
   * BullMQ job counts: the ordered persist shards (in shard order) and the other queues. Null when
   * the queues' Redis connection was down or did not answer in time.
   */
  queues: z.object({ persist: z.array(queueView), others: z.array(queueView) }).nullable(),
  /** Null as `queues`. */
  failedJobs: z.object({ total: count, recent: z.array(failedJob) }).nullable(),
});
export type Overview = z.infer<typeof overview>;

/** GET /admin/api/clients/:deviceId */
export const clientView = z.object({
  deviceId: z.string(),
  userId: z.string(),
  name: z.string(),
  createdAt: z.number(),
  /** Epoch ms of the revocation; null while the device may connect. */
  revokedAt: z.number().nullable(),
  /** Where the device is connected now (its delivery route), or null. */
  connection: z.object({
    nodeId: z.string(),
    /** Epoch ms when it connected there (null for a route written by an older node). */
    since: z.number().nullable(),
  }).nullable(),
  /** Chat messages stored for the device and not acknowledged by it, counted up to a bound (`more`: there are more). */
  queued: z.object({ count, more: z.boolean() }),
  /** The last error Parley sent the device (an error envelope, or a refused login), kept for 7 days. */
  lastError: z.object({ code: z.string(), at: z.number() }).nullable(),
});
export type ClientView = z.infer<typeof clientView>;

/** Request schemas. */
export const adminSchemas = {
  /** `:deviceId` of the client routes. */
  clientParams: z.object({
    deviceId: z.string().refine((d) => isId(d) && d.startsWith(ID_PREFIX.device), 'a deviceId'),
  }).strict(),
  /** The POST actions take no body (an empty object at most). */
  action: z.object({}).strict(),
  /** No query on the overview. */
  noQuery: z.object({}).strict(),
};

export interface ActionResult {
  deviceId: string;
  /** disconnect: whether it had a connection when asked; revoke: always true. */
  done: boolean;
}
