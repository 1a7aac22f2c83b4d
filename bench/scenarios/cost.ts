/**
 * Scenario 6: cost per message. Server-side CPU (every broker, worker and Redis process) per
 * delivered message at the steady 1,000 msg/s of scenario 2 (the same measurement, reused when that
 * scenario ran in this run), next to Mosquitto's; and what Parley asks of Redis per message.
 */
import { int, num, ratio } from '../lib/format.js';
import type { RelayOutcome } from '../lib/relay-run.js';
import type { BarChart, Cell, Scenario, Table } from '../lib/types.js';
import { steadyKinds, steadyOptions, steadyRun } from './latency.js';
import { RELAY_MEMO } from './relay.js';

const ROLES = ['mosquitto', 'aedes', 'broker', 'workers', 'redis', 'parley', 'api'];

export const cost: Scenario = {
  name: 'cost',
  title: '6. Cost per message',
  about:
    'Server CPU time (user + system, from `/proc/<pid>/stat`, of every server process: Mosquitto; or ' +
    'Parley\'s broker, workers, API and Redis processes) over the measured window, divided by the ' +
    'messages delivered in it, at the steady 1,000 msg/s of scenario 2. For Parley each delivered ' +
    'message also carries its protocol\'s other work: the `stored` notice to the sender, the ' +
    'recipient\'s PUBACK turned into an `acks` job and a delivered `receipt` to the sender. Redis ' +
    'commands per message come from `INFO commandstats` before and after (commands run inside ' +
    'BullMQ\'s Lua scripts are counted as well as the EVALSHA that ran them).',
  async run(ctx) {
    const o = steadyOptions(ctx);
    const out: RelayOutcome[] = [];
    for (const k of steadyKinds(ctx)) out.push(await steadyRun(ctx, k));
    const mosq = out.find((x) => x.kind === 'mosquitto');
    const parley = out.find((x) => x.kind === 'parley');
    const usedRoles = ROLES.filter((r) => out.some((x) => x.cpuMs[r] !== undefined));
    const perMsg = (x: RelayOutcome, role: string): string => (x.cpuMs[role] !== undefined && x.received ? num((x.cpuMs[role]! * 1000) / x.received, 1) : '');
    const rows: Cell[][] = out.map((x) => [
      x.label, int(x.received), ...usedRoles.map((r) => perMsg(x, r)), `**${num(x.cpuPerMsgUs, 1)}**`, ratio(x.cpuPerMsgUs, mosq?.cpuPerMsgUs),
      x.redis ? num(x.redis.perMsg, 1) : '', x.redis ? int(x.redis.netIn / x.received) : '', x.redis ? int(x.redis.netOut / x.received) : '',
    ]);
    const tables: Table[] = [{
      title: `Server CPU µs per delivered message at ${o.rate} msg/s (${o.durationMs / 1000} s)`,
      columns: ['broker', 'messages', ...usedRoles.map((r) => `${r} µs`), 'server µs/msg', 'vs Mosquitto', 'Redis commands/msg', 'Redis bytes in/msg', 'Redis bytes out/msg'],
      rows,
    }];
    if (parley?.redis) {
      const top = parley.redis.byCommand.slice(0, 16);
      tables.push({
        title: `Parley: Redis commands per delivered message, by command (top ${top.length} of ${parley.redis.byCommand.length}; ${num(parley.redis.perMsg, 1)} in all)`,
        columns: ['command', 'calls per message', 'calls in the window'],
        rows: top.map(([c, n]) => [`\`${c}\``, num(n / parley.received, 2), int(n)]),
      });
    }
    const saturated = await ctx.peek<RelayOutcome[]>(RELAY_MEMO);
    if (saturated) {
      const sm = saturated.find((x) => x.kind === 'mosquitto');
      tables.push({
        title: 'The same at full load (scenario 1\'s windowed relay)',
        columns: ['broker', 'messages', 'delivered msg/s', 'server µs/msg', 'vs Mosquitto', 'Redis commands/msg'],
        rows: saturated.map((x) => [x.label, int(x.received), int(x.rate), num(x.cpuPerMsgUs, 1), ratio(x.cpuPerMsgUs, sm?.cpuPerMsgUs), x.redis ? num(x.redis.perMsg, 1) : '']),
      });
    }
    const charts: BarChart[] = [{
      file: 'cost', title: `Server CPU per delivered message at ${o.rate} msg/s (µs, log scale; lower is better)`, unit: 'µs', log: true,
      categories: out.map((x) => x.label),
      series: [{ name: 'server CPU µs per message', values: out.map((x) => x.cpuPerMsgUs) }],
      ...(mosq ? { target: { value: 4 * mosq.cpuPerMsgUs, label: 'target: 4× Mosquitto' } } : {}),
    }];
    if (parley?.redis) {
      const top = parley.redis.byCommand.slice(0, 10);
      charts.push({
        file: 'redis-commands', title: `Parley: Redis commands per delivered message (${num(parley.redis.perMsg, 1)} in all)`, unit: 'calls/msg',
        categories: top.map(([c]) => c.replace(/\|.*/, '')),
        series: [{ name: 'calls per delivered message', values: top.map(([, n]) => n / parley.received) }],
      });
    }
    return {
      summary: out.map((x) => `${x.label}: ${num(x.cpuPerMsgUs, 1)} µs server CPU per message${x.redis ? `, ${num(x.redis.perMsg, 1)} Redis commands per message` : ''}`),
      tables,
      charts,
      targets: [{
        target: 'server CPU per delivered message ≤ 4× Mosquitto',
        measured: parley && mosq ? `${num(parley.cpuPerMsgUs, 1)} vs ${num(mosq.cpuPerMsgUs, 1)} µs = ${ratio(parley.cpuPerMsgUs, mosq.cpuPerMsgUs)}` : 'n/a',
        met: parley && mosq ? parley.cpuPerMsgUs <= 4 * mosq.cpuPerMsgUs : null,
      }],
      data: { options: o, outcomes: out.map((x) => ({ label: x.label, cpuMs: x.cpuMs, received: x.received, cpuPerMsgUs: x.cpuPerMsgUs, redis: x.redis })) },
    };
  },
};
