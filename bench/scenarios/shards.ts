/**
 * Scenario 9: the persist shards shared by two worker processes. Parley as one `broker,api`
 * process and two `workers` processes on one Redis; 20 direct chats send at once. Measured: the
 * share of the stored messages each worker process handled (from the persist queues' completed
 * jobs, whose return value names the process) and per-chat order at the receivers.
 */
import { QueueEvents } from 'bullmq';
import { PERSIST_SHARDS } from '../lib/context.js';
import { core, int, ms, num, ratio } from '../lib/format.js';
import { relayRun, type RelayOptions, type RelayOutcome } from '../lib/relay-run.js';
import type { ParleyTarget } from '../lib/servers.js';
import type { Cell, Scenario } from '../lib/types.js';
import { persistQueueName } from '../../services/src/queues.js';
import type { PersistResult } from '../../services/src/workers/persist.js';
import { RELAY_MEMO } from './relay.js';

const sleep = (msDelay: number): Promise<void> => new Promise((r) => setTimeout(r, msDelay));

interface WorkerShare {
  role: string;
  pid: number;
  jobs: number;
  messages: number;
}

interface ShardsOutcome {
  relay: RelayOutcome;
  workers: WorkerShare[];
  /** Per shard: jobs and messages by worker role. */
  shards: Array<{ shard: number; jobs: number; messages: number; byRole: Record<string, number> }>;
  stored: number;
  sentTotal: number;
  /** `by` values that matched no process the bench started. */
  unknown: number;
  waitedMs: number;
}

export const shards: Scenario = {
  name: 'shards',
  title: '9. Persist shards over two worker processes',
  about:
    'Parley started as separate processes on one Redis: one `broker,api` process and **two `workers` ' +
    `processes** (PARLEY_ROLES), with ${PERSIST_SHARDS} persist shards (\`persist-0\` … \`persist-${PERSIST_SHARDS - 1}\`, ` +
    'each run one job at a time across the cluster). 20 pairs of registered users (20 direct chats) send ' +
    'at once, as fast as a window of 50 unacknowledged publishes per sender allows, as in scenario 1 ' +
    '(quick mode: shorter). **Share per worker** = messages stored by that process / all messages stored, ' +
    'read from every persist queue\'s `completed` events (BullMQ `QueueEvents`; a `persist` job returns ' +
    '`{messages, by}`, `by` naming the worker process; a job that also took the jobs waiting behind it ' +
    'counts all their messages), warm-up included. **Order**: each receiver checks that seqs only ' +
    'increase and that a higher seq never carries an earlier send time (the send time is in the body): ' +
    '"out of order" counts both. Mosquitto has no equivalent: Parley only.',
  async run(ctx) {
    const o: RelayOptions = {
      pairs: 20, payloadBytes: 200, window: 50,
      warmupMs: ctx.pick(2000, 1000), durationMs: ctx.pick(10_000, 2000), drainTimeoutMs: ctx.pick(90_000, 15_000),
    };
    ctx.log(` shards: ${o.pairs} direct chats, two worker processes`);
    const r = await ctx.withTarget('parley-shards', async (t: ParleyTarget): Promise<ShardsOutcome> => {
      const completed: Array<PersistResult & { shard: number }> = [];
      const listeners: QueueEvents[] = [];
      try {
        for (let shard = 0; shard < PERSIST_SHARDS; shard++) {
          const e = new QueueEvents(persistQueueName(shard), { connection: { url: t.redisUrl }, prefix: 'parley' });
          e.on('completed', ({ returnvalue }) => {
            const v = (typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue) as PersistResult | null;
            if (v && typeof v.messages === 'number') completed.push({ ...v, shard });
          });
          listeners.push(e);
        }
        await Promise.all(listeners.map((e) => e.waitUntilReady()));
        const relay = await relayRun(ctx, t, o);
        // The completed events trail the deliveries a little.
        const sentTotal = relay.sent + relay.warmupSent;
        const t0 = Date.now();
        const stored = (): number => completed.reduce((s, c) => s + c.messages, 0);
        while (stored() < sentTotal && Date.now() - t0 < 15_000) await sleep(50);
        const waitedMs = Date.now() - t0;
        const byPid = new Map(t.procs.map((p) => [p.pid, p.role]));
        const roleOf = (by: string): string => byPid.get(Number(by.slice(by.lastIndexOf(':') + 1))) ?? `other (${by})`;
        const workers = new Map<string, WorkerShare>();
        for (const p of t.procs.filter((x) => x.role.startsWith('workers'))) workers.set(p.role, { role: p.role, pid: p.pid, jobs: 0, messages: 0 });
        const perShard = Array.from({ length: PERSIST_SHARDS }, (_, shard) => ({ shard, jobs: 0, messages: 0, byRole: {} as Record<string, number> }));
        let unknown = 0;
        for (const c of completed) {
          const role = roleOf(c.by);
          if (!workers.has(role)) {
            unknown++;
            workers.set(role, { role, pid: NaN, jobs: 0, messages: 0 });
          }
          const w = workers.get(role)!;
          w.jobs++;
          w.messages += c.messages;
          const s = perShard[c.shard]!;
          s.jobs++;
          s.messages += c.messages;
          s.byRole[role] = (s.byRole[role] ?? 0) + c.messages;
        }
        return { relay, workers: [...workers.values()], shards: perShard, stored: stored(), sentTotal, unknown, waitedMs };
      } finally {
        await Promise.all(listeners.map((e) => e.close().catch(() => undefined)));
      }
    });

    const { relay } = r;
    const share = (w: WorkerShare): number => (r.stored > 0 ? w.messages / r.stored : NaN);
    const pct = (v: number): string => (Number.isFinite(v) ? `${Math.round(v * 100)}%` : 'n/a');
    const outOfOrder = relay.misordered + relay.duplicates;
    const balanced = r.workers.length === 2 && r.workers.every((w) => share(w) >= 0.35 && share(w) <= 0.65);
    ctx.log(`  ${r.workers.map((w) => `${w.role} ${pct(share(w))}`).join(', ')} of ${int(r.stored)} stored; ${int(relay.rate)} msg/s delivered; out of order: ${int(outOfOrder)}`);
    const single = (await ctx.peek<RelayOutcome[]>(RELAY_MEMO))?.find((x) => x.label === 'Parley');
    const roles = ['broker', ...r.workers.map((w) => w.role), 'redis'];
    const notes: string[] = [];
    if (outOfOrder > 0) {
      notes.push(`**Per-chat order broken: ${int(relay.misordered)} messages arrived with a higher seq but an earlier send time, and ` +
        `${int(relay.duplicates)} with a seq at or below one the receiver already had.**`);
    }
    if (relay.received < relay.sent) notes.push(`**${int(relay.sent - relay.received)} of ${int(relay.sent)} messages did not arrive.**`);
    if (r.stored !== r.sentTotal) {
      notes.push(`The persist jobs reported ${int(r.stored)} messages stored for ${int(r.sentTotal)} sent (warm-up included)` +
        (r.stored < r.sentTotal ? ` after waiting ${ms(r.waitedMs)} ms for their completed events.` : ': a retried batch counts its messages again.'));
    }
    if (r.unknown > 0) notes.push(`${int(r.unknown)} persist jobs were completed by a process the bench did not start.`);
    const usedShards = r.shards.filter((s) => s.messages > 0).length;
    notes.push(`${int(o.pairs)} chats fell into ${usedShards} of the ${PERSIST_SHARDS} shards (FNV-1a of the chat key); ` +
      'a shard\'s jobs go to whichever worker process asks first, so the split follows the shards\' loads and the processes\' timing.');
    return {
      summary: [
        `two worker processes: ${r.workers.map((w) => `${w.role} ${pct(share(w))}`).join(', ')} of ${int(r.stored)} stored messages; ` +
        `${int(relay.rate)} msg/s delivered; ${int(outOfOrder)} out of order`,
      ],
      tables: [
        {
          title: `${o.pairs} direct chats, ${o.payloadBytes}-byte payloads, QoS 1, ${o.window} in flight per sender, ${o.durationMs / 1000} s of publishing; two worker processes`,
          columns: ['worker process', 'persist jobs', 'messages stored', 'share', 'CPU over the measured window'],
          rows: r.workers.map((w): Cell[] => [w.role, int(w.jobs), int(w.messages), `**${pct(share(w))}**`, core(relay.cpuMs[w.role], relay.elapsedMs)]),
        },
        {
          title: 'Delivery',
          columns: ['delivered msg/s', 'p50 ms', 'p99 ms', 'messages', 'all delivered', 'out of order (later seq, earlier send)', 'repeated or backwards seqs',
            'vs one worker process (scenario 1)', 'server CPU µs/msg', ...roles.map((x) => `${x} CPU`)],
          rows: [[
            int(relay.rate), ms(relay.latency.p50), ms(relay.latency.p99), int(relay.received), relay.complete ? 'yes' : `no (${int(relay.sent - relay.received)} missing)`,
            int(relay.misordered), int(relay.duplicates), single ? ratio(relay.rate, single.rate) : 'n/a', num(relay.cpuPerMsgUs, 0),
            ...roles.map((x) => core(relay.cpuMs[x], relay.elapsedMs)),
          ]],
        },
        {
          title: 'Messages stored per shard, by worker process',
          columns: ['shard', 'persist jobs', 'messages', ...r.workers.map((w) => w.role)],
          rows: r.shards.filter((s) => s.jobs > 0).map((s): Cell[] => [
            `\`${persistQueueName(s.shard)}\``, int(s.jobs), int(s.messages), ...r.workers.map((w) => int(s.byRole[w.role] ?? 0)),
          ]),
        },
      ],
      charts: [{
        file: 'shards', title: 'Share of stored messages per worker process (%)', unit: '%',
        categories: r.workers.map((w) => w.role),
        series: [{ name: 'share of stored messages', values: r.workers.map((w) => share(w) * 100) }],
        target: { value: 50, label: 'even split' },
      }],
      targets: [
        {
          target: 'two worker processes: each stores 35–65 % of the messages',
          measured: `${r.workers.map((w) => `${w.role} ${pct(share(w))}`).join(', ')} of ${int(r.stored)}`,
          met: r.stored > 0 ? balanced : null,
        },
        {
          target: 'per-chat order kept with two worker processes (0 out of order)',
          measured: `${int(outOfOrder)} out of order in ${int(relay.received)} messages over ${o.pairs} chats`,
          met: relay.received > 0 ? outOfOrder === 0 : null,
        },
      ],
      notes,
      data: { options: o, outcome: { ...r, relay: { rate: relay.rate, latency: relay.latency, sent: relay.sent, received: relay.received, misordered: relay.misordered, duplicates: relay.duplicates, cpuMs: relay.cpuMs, cpuPerMsgUs: relay.cpuPerMsgUs } } },
    };
  },
};
