/**
 * One relay measurement against one broker: N publisher/subscriber pairs driven by load generator
 * processes, CPU of every server process and of the load generators, and (for Parley) the Redis
 * command counts, all between the load generators' measure-start and measure-end events.
 * Used by the relay, latency and cost scenarios.
 */
import { Hist, type LatencySummary } from './hist.js';
import type { LoadgenEvent, Pair, RelayResult, RelaySpec } from './loadgen-spec.js';
import { cpuDelta, cpuSnapshot, type CpuSnapshot, type ProcRef } from './proc.js';
import { redisDelta, redisStats, type RedisDelta, type RedisStats } from './redis-stats.js';
import { registerMany } from './register.js';
import type { ParleyTarget, Target } from './servers.js';
import type { BenchContext } from './types.js';

export interface RelayOptions {
  pairs: number;
  payloadBytes: number;
  window: number;
  /** Total msg/s; absent = as fast as the window allows. */
  rate?: number;
  warmupMs: number;
  durationMs: number;
  drainTimeoutMs: number;
  /** Load generator processes the pairs are spread over. @defaultValue 1 */
  procs?: number;
}

export interface RelayOutcome {
  label: string;
  kind: Target['kind'];
  sent: number;
  acked: number;
  received: number;
  duplicates: number;
  /** Parley: later seq, earlier send time (per-chat order broken by the store); see RelayResult. */
  misordered: number;
  /** Messages sent in the warm-up (not in `sent`). */
  warmupSent: number;
  skipped: number;
  /** Messages delivered per second over the measured window (publishing, then draining). */
  rate: number;
  /** Messages published per second while publishing. */
  pubRate: number;
  elapsedMs: number;
  latency: LatencySummary;
  /** Publish to PUBACK. */
  ackLatency: LatencySummary;
  /** CPU ms per server role in the window. */
  cpuMs: Record<string, number>;
  serverCpuMs: number;
  loadgenCpuMs: number;
  /** Server CPU µs per delivered message. */
  cpuPerMsgUs: number;
  redis?: RedisDelta & { perMsg: number };
  /** All `pairs` completed (everything sent was received). */
  complete: boolean;
}

export async function relayRun(ctx: BenchContext, target: Target, o: RelayOptions): Promise<RelayOutcome> {
  const pairs = await makePairs(ctx, target, o.pairs);
  const nProcs = Math.max(1, Math.min(o.procs ?? 1, pairs.length));
  const groups: Pair[][] = Array.from({ length: nProcs }, () => []);
  pairs.forEach((p, i) => groups[i % nProcs]!.push(p));

  const redisUrl = target.kind === 'parley' ? (target as ParleyTarget).redisUrl : undefined;
  const m: { started: number; ended: number; cpuA?: CpuSnapshot; cpuB?: CpuSnapshot; redisA?: Promise<RedisStats>; redisB?: Promise<RedisStats> } = {
    started: 0, ended: 0,
  };
  const allProcs: ProcRef[] = [...target.procs];
  const runs = groups.map((g) => {
    const spec: RelaySpec = {
      mode: 'relay', flavor: target.kind === 'parley' ? 'parley' : 'raw', pairs: g,
      payloadBytes: o.payloadBytes, window: o.window, ...(o.rate !== undefined ? { rate: o.rate / nProcs } : {}),
      warmupMs: o.warmupMs, durationMs: o.durationMs, drainTimeoutMs: o.drainTimeoutMs, clean: target.kind !== 'parley',
    };
    const onEvent = (e: LoadgenEvent): void => {
      if (e.event === 'measure-start' && ++m.started === 1) {
        m.cpuA = cpuSnapshot(allProcs);
        if (redisUrl) m.redisA = redisStats(redisUrl);
      }
      if (e.event === 'measure-end' && ++m.ended === nProcs) {
        m.cpuB = cpuSnapshot(allProcs);
        if (redisUrl) m.redisB = redisStats(redisUrl);
      }
    };
    return ctx.loadgen<RelayResult>(spec, onEvent, o.warmupMs + o.durationMs + 2 * o.drainTimeoutMs + 120_000);
  });
  const results = await Promise.all(runs.map((r) => r.result));
  if (!m.cpuA || !m.cpuB) throw new Error('load generator never reported its measurement window');
  const cpu = cpuDelta(allProcs, m.cpuA, m.cpuB);
  const hist = new Hist();
  const ackHist = new Hist();
  for (const r of results) {
    hist.merge(r.latency);
    ackHist.merge(r.ackLatency);
  }
  const sum = (f: (r: RelayResult) => number): number => results.reduce((s, r) => s + f(r), 0);
  const received = sum((r) => r.received);
  const sent = sum((r) => r.sent);
  const elapsedMs = Math.max(...results.map((r) => r.elapsedMs));
  const publishMs = Math.max(...results.map((r) => r.publishMs));
  const loadgenCpuMs = sum((r) => r.cpuMs);
  const serverCpuMs = Object.values(cpu).reduce((s, v) => s + v, 0);
  let redis: RelayOutcome['redis'];
  if (m.redisA && m.redisB) {
    const d = redisDelta(await m.redisA, await m.redisB);
    redis = { ...d, perMsg: received ? d.total / received : NaN };
  }
  return {
    label: target.label, kind: target.kind, sent, acked: sum((r) => r.acked), received,
    duplicates: sum((r) => r.duplicates), misordered: sum((r) => r.misordered), warmupSent: sum((r) => r.warmupSent), skipped: sum((r) => r.skipped),
    rate: received / (elapsedMs / 1000), pubRate: sent / (publishMs / 1000), elapsedMs,
    latency: hist.summary(), ackLatency: ackHist.summary(), cpuMs: cpu, serverCpuMs, loadgenCpuMs,
    cpuPerMsgUs: received ? (serverCpuMs * 1000) / received : NaN,
    ...(redis ? { redis } : {}),
    complete: received >= sent,
  };
}

/** Endpoints for `n` pairs. Parley: 2n registered users; A_i sends to B_i's userId. */
export async function makePairs(ctx: BenchContext, target: Target, n: number): Promise<Pair[]> {
  const at = { host: target.host, port: target.port };
  if (target.kind !== 'parley') {
    const run = Math.random().toString(36).slice(2, 8);
    return Array.from({ length: n }, (_, i) => ({
      pub: { ...at, clientId: `pub-${run}-${i}` },
      sub: { ...at, clientId: `sub-${run}-${i}` },
      pubTopic: `bench/${run}/${i}`,
      subTopic: `bench/${run}/${i}`,
    }));
  }
  const t = target as ParleyTarget;
  const reg = await registerMany(t.httpUrl, ctx.sms, 2 * n, { concurrency: 8, deadlineMs: 120_000 });
  if (reg.devices.length < 2 * n) throw new Error(`registered only ${reg.devices.length} of ${2 * n} users: ${reg.firstError ?? ''}`);
  return Array.from({ length: n }, (_, i) => {
    const a = reg.devices[2 * i]!;
    const b = reg.devices[2 * i + 1]!;
    return {
      pub: { ...at, clientId: a.deviceId, username: a.deviceId, password: a.token },
      sub: { ...at, clientId: b.deviceId, username: b.deviceId, password: b.token },
      pubTopic: `outbox/${a.deviceId}`,
      pubInbox: `inbox/${a.deviceId}`,
      subTopic: `inbox/${b.deviceId}`,
      to: b.userId,
    };
  });
}
