/**
 * The dashboard's overview, read from Redis by any API process: the nodes' reports (node-report.ts),
 * the BullMQ queue counts and the most recent failed jobs. Ages are measured on Redis' clock (the
 * report key's remaining TTL, the node set's scores), so a node whose clock is off is not shown as
 * stale. Queue counts and failed jobs are read only while the queues' Redis connection is up, and
 * waited for at most `timeoutMs` (BullMQ commands wait for Redis forever): null then, never 0.
 * The API shares one computation between concurrent requests and reuses it for a second
 * (`sharedOverview`).
 */
import type { Redis } from 'ioredis';
import { Queue, type RedisClient } from 'bullmq';
import { nodeReport, type FailedJob, type NodeReport, type NodeView, type Overview, type QueueView } from './admin-types.js';
import { mergeBuckets, percentiles } from './histogram.js';
import { nodesKey, reportKey } from './node-report.js';

export interface ClusterQueues {
  /** The ordered persist shards: their unfinished jobs are the messages accepted and not stored yet. */
  persist: readonly Queue[];
  others: readonly Queue[];
}

/** The queues as the dashboard lists them, from the platform's `Queues` (every queue it opens, persist shards first). */
export function clusterQueues(q: { persist: readonly Queue[] }): ClusterQueues {
  const others = Object.entries(q)
    .filter(([k, v]) => k !== 'persist' && v instanceof Queue)
    .map(([, v]) => v as unknown as Queue);
  return { persist: q.persist, others };
}

export interface ClusterViewDeps {
  redis: Redis;
  prefix: string;
  queues: ClusterQueues;
  /** @defaultValue 1500 */
  timeoutMs?: number;
  /** Failed jobs listed. @defaultValue 10 */
  recentFailed?: number;
}

/** A node is stale once its report is older than this many report intervals. */
const STALE_INTERVALS = 2.5;
const REASON_MAX = 300;

/** Live, stale or gone, from its report (null: expired) and the report's age. */
export function nodeState(report: NodeReport | null, ageMs: number): NodeView['state'] {
  if (!report) return 'gone';
  return ageMs > STALE_INTERVALS * report.intervalMs ? 'stale' : 'live';
}

/** A failed job's error message as the dashboard shows it: one line, short, URLs cut to their origin. */
export function safeReason(reason: string | undefined): string {
  const oneLine = (reason ?? '').replace(/\s+/g, ' ').trim();
  const noUrls = oneLine.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi, (url) => {
    try {
      return `${new URL(url).origin}/…`;
    } catch {
      return '<url>';
    }
  });
  return noUrls.length > REASON_MAX ? `${noUrls.slice(0, REASON_MAX - 1)}…` : noUrls;
}

const withTimeout = <T>(p: Promise<T>, ms: number): Promise<T | null> =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    p.then((v) => { clearTimeout(timer); resolve(v); }, () => { clearTimeout(timer); resolve(null); });
  });

async function readNodes(redis: Redis, prefix: string): Promise<{ now: number; nodes: NodeView[] }> {
  const head = await redis.multi().time().zrange(nodesKey(prefix), '0', '-1', 'WITHSCORES').exec();
  const [sec, micro] = head?.[0]?.[1] as [string, string];
  const now = Number(sec) * 1000 + Math.floor(Number(micro) / 1000);
  const flat = (head?.[1]?.[1] ?? []) as string[];
  const ids: Array<{ nodeId: string; lastAt: number }> = [];
  for (let i = 0; i + 1 < flat.length; i += 2) ids.push({ nodeId: flat[i]!, lastAt: Number(flat[i + 1]) });
  if (ids.length === 0) return { now, nodes: [] };
  const p = redis.pipeline();
  for (const { nodeId } of ids) p.get(reportKey(prefix, nodeId)).pttl(reportKey(prefix, nodeId));
  const replies = (await p.exec()) ?? [];
  const nodes = ids.map(({ nodeId, lastAt }, i): NodeView => {
    const raw = replies[2 * i]?.[1];
    const pttl = Number(replies[2 * i + 1]?.[1] ?? -2);
    let report: NodeReport | null = null;
    if (typeof raw === 'string') {
      // A report of another version (a rolling upgrade) that does not parse shows as gone, not as an error.
      try {
        const parsed = nodeReport.safeParse(JSON.parse(raw));
        if (parsed.success) report = parsed.data;
      } catch { /* not JSON */ }
    }
    const ageMs = Math.max(0, report && pttl >= 0 ? report.ttlMs - pttl : now - lastAt);
    return { nodeId, state: nodeState(report, ageMs), ageMs: Math.round(ageMs), report };
  });
  // Brokers first, then by id: a stable order for the table.
  nodes.sort((a, b) => Number(b.report?.roles.includes('broker') ?? false) - Number(a.report?.roles.includes('broker') ?? false) || a.nodeId.localeCompare(b.nodeId));
  return { now, nodes };
}

/**
 * The queues' own Redis connection when it is up, else null. BullMQ's connection retries every
 * command forever (maxRetriesPerRequest null): a command sent while Redis is away waits in the
 * client's offline queue, so every overview polled during an outage would add its commands to a
 * pile that floods Redis on reconnect. Those reads are skipped instead (shown as "—").
 */
async function readyClients(queues: readonly Queue[]): Promise<RedisClient[] | null> {
  const clients = await Promise.all(queues.map((q) => q.getBackend().client));
  return clients.every((c) => c.status === 'ready') ? clients : null;
}

async function readQueues(queues: ClusterQueues, timeoutMs: number): Promise<{ persist: QueueView[]; others: QueueView[] } | null> {
  const count = async (q: Queue): Promise<QueueView> => {
    const c = await q.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed');
    return { name: q.name, waiting: c.waiting ?? 0, active: c.active ?? 0, delayed: c.delayed ?? 0, prioritized: c.prioritized ?? 0, failed: c.failed ?? 0 };
  };
  return withTimeout((async () => {
    if (!(await readyClients([...queues.persist, ...queues.others]))) return null;
    return {
      persist: await Promise.all(queues.persist.map(count)),
      others: await Promise.all(queues.others.map(count)),
    };
  })(), timeoutMs);
}

/**
 * The most recent failed jobs of each queue, newest first: their ids from the queue's failed set,
 * then only the fields shown (HMGET), never the job's data (device ids, message bodies, push
 * endpoints), which is not even read.
 */
async function readFailed(queues: readonly Queue[], limit: number, timeoutMs: number): Promise<FailedJob[] | null> {
  return withTimeout((async () => {
    const clients = await readyClients(queues);
    if (!clients) return null;
    const perQueue = await Promise.all(queues.map(async (q, i) => {
      const ids = await q.getRanges(['failed'], 0, limit - 1, false);
      if (ids.length === 0) return [];
      const client = clients[i]!;
      // Sent together (one write), each answered with the four fields only.
      // Attempts are `atm` in the job's hash (older BullMQ: `attemptsMade`), as BullMQ reads them.
      const replies = await Promise.all(ids.map((id) => client.hmget(q.toKey(id), 'name', 'failedReason', 'finishedOn', 'atm', 'attemptsMade')));
      return ids.flatMap((id, j): FailedJob[] => {
        const [name, reason, finishedOn, atm, attemptsMade] = replies[j] ?? [];
        const attempts = atm ?? attemptsMade;
        // Removed meanwhile (its 7 days were up): not listed.
        if (name === null || name === undefined) return [];
        const at = Number(finishedOn);
        return [{
          queue: q.name, name, id, reason: safeReason(reason ?? undefined),
          at: finishedOn && Number.isFinite(at) ? at : null, attempts: Math.max(0, Math.floor(Number(attempts) || 0)),
        }];
      });
    }));
    return perQueue.flat().sort((a, b) => (b.at ?? 0) - (a.at ?? 0)).slice(0, limit);
  })(), timeoutMs);
}

/**
 * One overview computation shared by the requests that come while it runs, and its result reused
 * for `ttlMs` (every open dashboard polls every 2 s, and each computation reads every node report
 * and every queue). A failure is not kept: the next request tries again.
 */
export function sharedOverview(read: () => Promise<Overview>, ttlMs = 1000, now: () => number = Date.now): () => Promise<Overview> {
  let running: Promise<Overview> | null = null;
  let last: { at: number; value: Overview } | null = null;
  return () => {
    if (last && now() - last.at < ttlMs) return Promise.resolve(last.value);
    running ??= read().then(
      (value) => { last = { at: now(), value }; running = null; return value; },
      (err: unknown) => { running = null; throw err; },
    );
    return running;
  };
}

export async function readOverview(deps: ClusterViewDeps): Promise<Overview> {
  const timeoutMs = deps.timeoutMs ?? 1500;
  const all = [...deps.queues.persist, ...deps.queues.others];
  const [{ now, nodes }, queues, recent] = await Promise.all([
    readNodes(deps.redis, deps.prefix),
    readQueues(deps.queues, timeoutMs),
    readFailed(all, deps.recentFailed ?? 10, timeoutMs),
  ]);
  const reporting = nodes.filter((n) => n.report && n.state !== 'gone');
  const live = reporting.filter((n) => n.state === 'live');
  const sum = (f: (r: NodeReport) => number, list = reporting): number => list.reduce((s, n) => s + f(n.report!), 0);
  const latency = percentiles(mergeBuckets(live.map((n) => n.report!.latency)));
  const queueList = queues ? [...queues.persist, ...queues.others] : null;
  const unfinished = (q: QueueView): number => q.waiting + q.active + q.delayed + q.prioritized;
  return {
    now,
    nodes,
    cluster: {
      nodes: reporting.length,
      connections: sum((r) => r.connections),
      pending: sum((r) => r.pending),
      totals: {
        publishes: sum((r) => r.totals.publishes), deliveries: sum((r) => r.totals.deliveries),
        accepted: sum((r) => r.totals.accepted), delivered: sum((r) => r.totals.delivered),
      },
      rates: {
        publishes: sum((r) => r.rates.publishes, live), deliveries: sum((r) => r.rates.deliveries, live),
        accepted: sum((r) => r.rates.accepted, live), delivered: sum((r) => r.rates.delivered, live),
      },
      latency,
      // Null, never 0, when the queues could not be read: "—" on the page.
      persistBacklog: queues ? queues.persist.reduce((s, q) => s + unfinished(q), 0) : null,
    },
    queues,
    failedJobs: queueList && recent ? { total: queueList.reduce((s, q) => s + q.failed, 0), recent } : null,
  };
}
