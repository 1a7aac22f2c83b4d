/**
 * Scenario 4: idle connections per broker process and memory per connection. Client source
 * addresses are spread over 127.0.0.2-17 so the ephemeral port range is no limit; several load
 * generator processes hold the connections (each process may open only so many files).
 */
import { execFileSync } from 'node:child_process';
import { int, kib, mib, ms, num } from '../lib/format.js';
import type { ConnClient, ConnsResult, ConnsSpec } from '../lib/loadgen-spec.js';
import { cpuMs, rssBytes } from '../lib/proc.js';
import { redisStats } from '../lib/redis-stats.js';
import { registerMany } from '../lib/register.js';
import type { ParleyTarget, Target } from '../lib/servers.js';
import type { BenchContext, Cell, Scenario, TargetKind } from '../lib/types.js';

const TARGET_CONNS = 50_000;
const PER_LOADGEN = 5000;
const ADDRESSES = Array.from({ length: 16 }, (_, i) => `127.0.0.${i + 2}`);

/** The open-files limit every process here inherits (soft; the hard limit caps raising it). */
function fileLimit(): { soft: number; hard: number } {
  try {
    const [s, h] = execFileSync('bash', ['-c', 'ulimit -Sn; ulimit -Hn'], { encoding: 'utf8' }).trim().split('\n');
    const n = (v: string | undefined): number => (v === 'unlimited' ? Infinity : Number(v));
    return { soft: n(s), hard: n(h) };
  } catch {
    return { soft: 1024, hard: 1024 };
  }
}

interface ConnOutcome {
  label: string;
  kind: Target['kind'];
  requested: number;
  established: number;
  failed: number;
  connectMs: number;
  rssBefore: number;
  rssAfter: number;
  perConn: number;
  /** Broker CPU per connection set up (CONNECT + auth + SUBSCRIBE), µs. */
  cpuPerConnUs: number;
  redisPerConn?: number;
  registered?: number;
  registerMs?: number;
  firstError?: string;
}

const settle = (msDelay: number): Promise<void> => new Promise((r) => setTimeout(r, msDelay));

async function connsOne(ctx: BenchContext, t: Target, n: number): Promise<ConnOutcome> {
  let clients: ConnClient[];
  let registered: number | undefined;
  let registerMs: number | undefined;
  let firstError: string | undefined;
  if (t.kind === 'parley') {
    const p = t as ParleyTarget;
    ctx.log(`  registering ${int(n)} devices over HTTP ...`);
    const reg = await registerMany(p.httpUrl, ctx.sms, n, {
      concurrency: 16, deadlineMs: ctx.pick(300_000, 40_000),
      onProgress: (d) => ctx.log(`   ${int(d)} registered`),
    });
    registered = reg.devices.length;
    registerMs = reg.ms;
    if (reg.firstError) firstError = `registration: ${reg.firstError}`;
    ctx.log(`  registered ${int(registered)} in ${ms(reg.ms)} ms (${int(registered / (reg.ms / 1000))}/s)`);
    clients = reg.devices.map((d) => ({ clientId: d.deviceId, username: d.deviceId, password: d.token, topic: `inbox/${d.deviceId}` }));
  } else {
    const id = Math.random().toString(36).slice(2, 7);
    clients = Array.from({ length: n }, (_, i) => ({ clientId: `idle-${id}-${i}`, topic: `inbox/idle-${id}-${i}` }));
  }
  await settle(ctx.pick(2000, 1000));
  const redisUrl = t.kind === 'parley' ? (t as ParleyTarget).redisUrl : undefined;
  const redisBefore = redisUrl ? (await redisStats(redisUrl)).usedMemory : NaN;
  const rssBefore = rssBytes(t.brokerPid);
  const cpuBefore = cpuMs(t.brokerPid);

  const nProcs = Math.max(1, Math.ceil(clients.length / PER_LOADGEN));
  const established: number[] = [];
  let resolveAll: () => void = () => undefined;
  const allUp = new Promise<void>((r) => (resolveAll = r));
  const runs = Array.from({ length: nProcs }, (_, i) => {
    const spec: ConnsSpec = {
      mode: 'conns', host: t.host, port: t.port, localAddresses: ADDRESSES,
      clients: clients.filter((_, k) => k % nProcs === i),
      concurrency: 64, keepalive: 120, clean: false,
      timeoutMs: ctx.pick(240_000, 40_000), holdMaxMs: ctx.pick(400_000, 90_000),
    };
    return ctx.loadgen<ConnsResult>(spec, (e) => {
      if (e.event === 'established') {
        established.push(e.established);
        if (established.length === nProcs) resolveAll();
      }
    }, spec.timeoutMs + spec.holdMaxMs + 30_000);
  });
  // A load generator that dies early never reports; its result promise rejects instead.
  await Promise.race([allUp, Promise.all(runs.map((r) => r.result)).then(() => undefined)]);
  const cpuAfter = cpuMs(t.brokerPid);
  await settle(ctx.pick(3000, 1500));
  const rssAfter = rssBytes(t.brokerPid);
  const redisAfter = redisUrl ? (await redisStats(redisUrl)).usedMemory : NaN;
  for (const r of runs) r.send('close');
  const results = await Promise.all(runs.map((r) => r.result));
  const est = results.reduce((s, r) => s + r.established, 0);
  firstError ??= results.find((r) => r.firstError)?.firstError;
  return {
    label: t.label, kind: t.kind, requested: n, established: est,
    failed: results.reduce((s, r) => s + r.failed, 0),
    connectMs: Math.max(...results.map((r) => r.connectMs)),
    rssBefore, rssAfter, perConn: est ? (rssAfter - rssBefore) / est : NaN,
    cpuPerConnUs: est ? ((cpuAfter - cpuBefore) * 1000) / est : NaN,
    ...(redisUrl ? { redisPerConn: est ? (redisAfter - redisBefore) / est : NaN } : {}),
    ...(registered !== undefined ? { registered, registerMs } : {}),
    ...(firstError ? { firstError } : {}),
  };
}

export const connections: Scenario = {
  name: 'connections',
  title: '4. Idle connections and memory per connection',
  about:
    'Load generator processes open MQTT connections (CONNECT with clean = false, then SUBSCRIBE to ' +
    'the device\'s own `inbox/` at QoS 1, keepalive 120 s), with source addresses spread over ' +
    '127.0.0.2–127.0.0.17, and hold them idle. **Memory per connection** = growth of the broker ' +
    'process\' resident set (RSS) / connections; kernel socket buffers are not in RSS for any broker. ' +
    'For Parley every connection is a real device: it is registered through the HTTP API first ' +
    '(register + verify with the captured SMS code) and authenticates with its token; the broker ' +
    'process is measured alone (the API and the workers run in their own processes), and the growth ' +
    'of Redis\' `used_memory` (the persistent sessions and subscriptions) is shown separately.',
  async run(ctx) {
    const lim = fileLimit();
    // The broker holds one descriptor per connection: stay under the limit it inherits.
    const cap = Math.max(100, Math.min(lim.soft, lim.hard) - 600);
    const wanted = ctx.pick(TARGET_CONNS, 500);
    const n = Math.min(wanted, cap);
    const limited = n < wanted;
    const kinds: TargetKind[] = ['mosquitto', 'aedes', 'parley'];
    const out: ConnOutcome[] = [];
    for (const k of kinds) {
      ctx.log(` connections ${int(n)}: ${k}`);
      const r = await ctx.withTarget(k, (t) => connsOne(ctx, t, n), { fresh: true });
      ctx.log(`  ${int(r.established)} established in ${ms(r.connectMs)} ms; ${kib(r.perConn)} per connection`);
      out.push(r);
    }
    const parley = out.find((x) => x.kind === 'parley');
    const rows: Cell[][] = out.map((x) => [
      x.label, int(x.established), int(x.failed), ms(x.connectMs), int(x.established / (x.connectMs / 1000)),
      num(x.cpuPerConnUs, 0), mib(x.rssBefore), mib(x.rssAfter), kib(x.perConn),
      x.redisPerConn !== undefined ? kib(x.redisPerConn) : '',
      mib(x.rssBefore + TARGET_CONNS * x.perConn),
    ]);
    const notes: string[] = [];
    if (limited) {
      notes.push(
        `**${int(TARGET_CONNS)} connections could not be opened on this machine**: every process here ` +
        `inherits an open-files limit of ${lim.soft} (hard limit ${lim.hard}, which a process without ` +
        `CAP_SYS_RESOURCE cannot raise), and a broker needs one descriptor per connection. The run ` +
        `measures ${int(n)} connections per broker; the "at ${int(TARGET_CONNS)}" column is an ` +
        `**extrapolation** (baseline RSS + ${int(TARGET_CONNS)} × measured per-connection growth), not a measurement.`,
      );
    }
    if (parley?.registered !== undefined) {
      notes.push(
        `Parley needed ${int(parley.registered)} registered devices: registering them over HTTP took ` +
        `${ms(parley.registerMs)} ms (${int(parley.registered / ((parley.registerMs ?? 1) / 1000))} devices/s, ` +
        'two requests each, 16 at a time).',
      );
    }
    for (const x of out) if (x.firstError) notes.push(`${x.label}: first error: \`${x.firstError.slice(0, 200)}\``);
    return {
      summary: out.map((x) => `${x.label}: ${int(x.established)} idle connections, ${kib(x.perConn)} RSS each${x.redisPerConn !== undefined ? ` (+${kib(x.redisPerConn)} in Redis)` : ''}`),
      tables: [{
        title: `${int(n)} idle connections per broker process${limited ? ` (limited by the open-files limit; ${int(TARGET_CONNS)} extrapolated)` : ''}`,
        columns: ['broker', 'established', 'failed', 'connect all ms', 'connects/s', 'broker CPU µs/connect', 'RSS before', 'RSS after', 'RSS per connection', 'Redis per connection', `RSS at ${int(TARGET_CONNS)} (extrapolated)`],
        rows,
      }],
      charts: [{
        file: 'connections', title: `Memory per idle connection (KiB of broker RSS; ${int(n)} connections)`, unit: 'KiB',
        categories: out.map((x) => x.label),
        series: [
          { name: 'broker RSS per connection', values: out.map((x) => x.perConn / 1024) },
          { name: 'Redis memory per connection', values: out.map((x) => (x.redisPerConn !== undefined ? x.redisPerConn / 1024 : null)) },
        ],
        target: { value: 20_000 / 1024, label: 'target: 20 KB' },
      }],
      targets: [
        {
          target: `${int(TARGET_CONNS)} idle connections on one broker process`,
          measured: parley
            ? `${int(parley.established)} of ${int(n)} attempted` +
              (limited ? ` (open-files limit ${lim.hard}: ${int(TARGET_CONNS)} not attemptable here; extrapolated RSS at ${int(TARGET_CONNS)}: ${mib(parley.rssBefore + TARGET_CONNS * parley.perConn)})` : '') +
              (n < wanted || wanted >= TARGET_CONNS ? '' : ` (quick mode: ${int(TARGET_CONNS)} not attempted)`)
            : 'n/a',
          met: parley && n >= TARGET_CONNS ? parley.established >= TARGET_CONNS : null,
        },
        {
          target: '≤ 20 KB of memory per idle connection',
          measured: parley ? `${kib(parley.perConn)} broker RSS${parley.redisPerConn !== undefined ? ` + ${kib(parley.redisPerConn)} Redis` : ''} (Mosquitto ${kib(out.find((x) => x.kind === 'mosquitto')?.perConn)})` : 'n/a',
          // RSS can fall while connections are added (a garbage collection): no figure then.
          met: parley && parley.perConn > 0 ? parley.perConn <= 20_000 : null,
        },
      ],
      notes,
      data: { limit: lim, requested: n, outcomes: out },
    };
  },
};
