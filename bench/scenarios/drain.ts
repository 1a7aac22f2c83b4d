/**
 * Scenario 3: offline drain. A device with a persistent session (clean = false, QoS 1) is away
 * while messages queue for it; then it reconnects. Measured: CONNECT to the last queued message.
 * Parley (engine v2) has no per-device queue: the device catches up from the store by watermark.
 */
import { core, int, ms } from '../lib/format.js';
import type { DrainResult, DrainSpec } from '../lib/loadgen-spec.js';
import { cpuDelta, cpuSnapshot, type CpuSnapshot, type ProcRef } from '../lib/proc.js';
import { registerMany } from '../lib/register.js';
import type { ParleyTarget, Target } from '../lib/servers.js';
import type { BenchContext, Cell, Scenario, TargetKind } from '../lib/types.js';

interface DrainOutcome extends DrainResult {
  label: string;
  kind: Target['kind'];
  serverCpuMs: number;
  cpuMs: Record<string, number>;
  windowMs: number;
}

async function drainOne(ctx: BenchContext, t: Target, count: number): Promise<DrainOutcome> {
  const at = { host: t.host, port: t.port };
  let spec: DrainSpec;
  const base = { mode: 'drain' as const, count, payloadBytes: 200, window: 50, timeoutMs: ctx.pick(180_000, 60_000) };
  if (t.kind === 'parley') {
    const reg = await registerMany((t as ParleyTarget).httpUrl, ctx.sms, 2, { concurrency: 2, deadlineMs: 30_000 });
    const [a, b] = reg.devices;
    if (!a || !b) throw new Error(`registration failed: ${reg.firstError ?? ''}`);
    spec = {
      ...base, flavor: 'parley',
      pub: { ...at, clientId: a.deviceId, username: a.deviceId, password: a.token },
      sub: { ...at, clientId: b.deviceId, username: b.deviceId, password: b.token },
      pubTopic: `outbox/${a.deviceId}`, pubInbox: `inbox/${a.deviceId}`, subTopic: `inbox/${b.deviceId}`, to: b.userId,
    };
  } else {
    const id = Math.random().toString(36).slice(2, 8);
    spec = {
      ...base, flavor: 'raw',
      pub: { ...at, clientId: `drain-pub-${id}` }, sub: { ...at, clientId: `drain-sub-${id}` },
      pubTopic: `bench/drain/${id}`, subTopic: `bench/drain/${id}`,
    };
  }
  const procs: ProcRef[] = t.procs;
  const m: { a?: CpuSnapshot; b?: CpuSnapshot; ta: number; tb: number } = { ta: 0, tb: 0 };
  const run = ctx.loadgen<DrainResult>(spec, (e) => {
    if (e.event === 'measure-start') {
      m.a = cpuSnapshot(procs);
      m.ta = Date.now();
    }
    if (e.event === 'measure-end') {
      m.b = cpuSnapshot(procs);
      m.tb = Date.now();
    }
  }, base.timeoutMs * 2 + 60_000);
  const r = await run.result;
  const cpu = m.a && m.b ? cpuDelta(procs, m.a, m.b) : {};
  return { ...r, label: t.label, kind: t.kind, cpuMs: cpu, serverCpuMs: Object.values(cpu).reduce((s, v) => s + v, 0), windowMs: m.tb - m.ta };
}

export const drain: Scenario = {
  name: 'drain',
  title: '3. Offline drain',
  about:
    'A subscriber creates a persistent session (clean = false, QoS 1 subscription) and disconnects; ' +
    'a publisher then sends the messages (for Parley: `send` envelopes from another user, and the ' +
    'run waits until the sender has a `stored` notice for every one, so all are stored in SQLite for ' +
    'the recipient). The recipient reconnects; the clock runs from its CONNECT to the last ' +
    'message. Mosquitto keeps its queue in memory (`persistence false`, `max_queued_messages 0` = ' +
    'unlimited; the default limit is 1,000) and sends at most 20 QoS 1 messages in flight ' +
    '(its default `max_inflight_messages`). Parley (delivery engine v2) keeps no per-device queue: ' +
    'the message is stored once in its chat, and on connect the broker\'s delivery agent reads ' +
    'everything after the device\'s watermark from the store (pages of 500) and writes it to the ' +
    'socket; the device\'s PUBACKs become `acks` jobs that move its watermark.',
  async run(ctx) {
    const count = ctx.pick(10_000, 2000);
    const kinds: TargetKind[] = ['mosquitto', 'aedes', 'parley'];
    const out: DrainOutcome[] = [];
    for (const k of kinds) {
      ctx.log(` drain ${count}: ${k}`);
      const r = await ctx.withTarget(k, (t) => drainOne(ctx, t, count));
      ctx.log(`  drained ${int(r.received)} in ${ms(r.drainMs)} ms`);
      out.push(r);
    }
    const rate = (x: DrainOutcome): number => (x.drainMs > 0 ? x.received / (x.drainMs / 1000) : NaN);
    const rows: Cell[][] = out.map((x) => [
      x.label, int(x.received), x.sessionPresent ? 'yes' : 'no', ms(x.connackMs), ms(x.firstMs), ms(x.drainMs), int(rate(x)),
      core(x.serverCpuMs, x.windowMs), ms(x.publishMs), x.kind === 'parley' ? ms(x.queuedMs) : '',
    ]);
    const mosq = out.find((x) => x.kind === 'mosquitto');
    const parley = out.find((x) => x.kind === 'parley');
    return {
      summary: out.map((x) => `${x.label}: ${int(x.received)}/${int(x.count)} queued messages drained in ${ms(x.drainMs)} ms (${int(rate(x))} msg/s)`),
      tables: [{
        title: `${int(count)} queued QoS 1 messages of ~200 bytes`,
        columns: ['broker', 'received', 'session present', 'CONNACK ms', 'first message ms', 'drain ms', 'msg/s', 'server CPU during drain', 'publishing took ms', 'all stored after ms'],
        rows,
      }],
      charts: [{
        file: 'drain', title: `Offline drain: ${int(count)} queued messages (seconds, log scale; lower is better)`, unit: 's', log: true,
        categories: out.map((x) => x.label),
        series: [{ name: 'reconnect to last message', values: out.map((x) => x.drainMs / 1000) }],
      }],
      notes: [
        parley && mosq
          ? `Parley drains ${int(rate(parley))} msg/s against Mosquitto's ${int(rate(mosq))} msg/s. Parley's ` +
            'catch-up reads the device\'s undelivered messages from SQLite in pages of 500 (one query per page, ' +
            'over all its chats by watermark) and waits for each page\'s socket writes before reading the next; ' +
            'nothing was queued per device in Redis. Every PUBACK goes into an `acks` job that moves the ' +
            'delivered watermark and sends a delivered receipt to the sender.'
          : '',
      ].filter(Boolean),
      data: { count, outcomes: out },
    };
  },
};
