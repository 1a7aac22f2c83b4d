/**
 * Scenario 7: a 1,024-member group. Every member connected (one device each); one member sends.
 * (a) Latency: one message every 200 ms; per message, publish to the LAST of its deliveries.
 * (b) Throughput: as fast as a window of 50 messages not yet delivered everywhere allows; group
 * deliveries per second. Parley against Mosquitto (one publisher, every member subscribed to one
 * topic), same load generator, same method.
 */
import { core, int, ms, num, ratio } from '../lib/format.js';
import { phase, setupGroup, startGroupLoad, type GroupOutcome } from '../lib/group-run.js';
import type { GroupPhase } from '../lib/loadgen-spec.js';
import type { BarChart, BenchContext, Cell, Scenario, TargetKind } from '../lib/types.js';

export const GROUP_INTERVAL_MS = 200;
export const GROUP_WINDOW = 50;
export const GROUP_PAYLOAD = 200;

export function groupSize(ctx: BenchContext): number {
  return ctx.pick(1024, 256);
}

interface GroupOptions {
  members: number;
  warmup: number;
  latencyMessages: number;
  window: number;
  throughputMs: number;
}

export const group: Scenario = {
  name: 'group',
  title: '7. Group fan-out (1,024 members)',
  about:
    'A group of 1,024 members (quick mode: 256), one device each, **all connected** (1,024 MQTT ' +
    'connections held by one load generator process with the bench\'s minimal client, source addresses ' +
    'spread over 127.0.0.2–17). Parley: the members, their devices and the group chat are made in the ' +
    'platform\'s SQLite file through the store port (groups have no HTTP API yet); each device subscribes ' +
    'to its `inbox/` (QoS 1), member 0 publishes `send` envelopes to the chat on its `outbox/`, and the ' +
    'other 1,023 devices are the receivers (a group larger than `PARLEY_FANOUT_CHUNK` = 128 devices goes ' +
    'through chunked `fanout` jobs). Mosquitto: the 1,024 connections subscribe to one topic at QoS 1 and ' +
    'one of them publishes on it at QoS 1, so each message has 1,024 deliveries (the publisher\'s own copy ' +
    'included). After a warm-up of 5 messages (quick: 2): ' +
    '**(a) latency**: one message every 200 ms, 50 of them (quick: 5), open loop; for each message the ' +
    'time from its publish to the **last** of its deliveries (all measured by one clock, in the load ' +
    'generator, so it includes the load generator reading 1,024 sockets). **(b) throughput**: the ' +
    'publisher sends as fast as a window of 50 messages allows, a message leaving the window once every ' +
    'receiver has it (so the brokers\' queues stay bounded; the QoS 1 PUBACK window is the same 50), for ' +
    '10 s (quick: 2 s), then the run waits for the rest; **group deliveries per second** = deliveries ' +
    '(messages × receivers that got them) / (first publish to last delivery). Server CPU is every server ' +
    'process (Parley: broker, workers, API, Redis) over each phase.',
  async run(ctx) {
    const o: GroupOptions = {
      members: groupSize(ctx), warmup: ctx.pick(5, 2), latencyMessages: ctx.pick(50, 5), window: GROUP_WINDOW,
      throughputMs: ctx.pick(10_000, 2000),
    };
    const phases: GroupPhase[] = [
      { name: 'warmup', kind: 'paced', intervalMs: GROUP_INTERVAL_MS, count: o.warmup },
      { name: 'latency', kind: 'paced', intervalMs: GROUP_INTERVAL_MS, count: o.latencyMessages },
      { name: 'throughput', kind: 'window', window: o.window, durationMs: o.throughputMs },
    ];
    const kinds: TargetKind[] = ['mosquitto', 'parley'];
    const out: GroupOutcome[] = [];
    for (const k of kinds) {
      ctx.log(` group of ${int(o.members)}: ${k}`);
      const r = await ctx.withTarget(k, async (t) => {
        const setup = await setupGroup(t, o.members);
        if (setup.setupMs > 500) ctx.log(`  ${int(o.members)} members, devices and the group made in the store in ${ms(setup.setupMs)} ms`);
        const load = startGroupLoad(ctx, t, setup, phases, { payloadBytes: GROUP_PAYLOAD, maxMessages: 20_000, drainTimeoutMs: ctx.pick(60_000, 20_000) });
        await load.established;
        return load.done;
      });
      const lat = phase(r, 'latency');
      const thr = phase(r, 'throughput');
      ctx.log(`  ${int(r.members)} connected in ${ms(r.connectMs)} ms; to the last of ${int(r.receivers)}: p50 ${ms(lat?.toLast.p50)} ms, ` +
        `p99 ${ms(lat?.toLast.p99)} ms; ${int(thr?.rate)} deliveries/s (${num(thr?.msgRate, 1)} msg/s)`);
      out.push(r);
    }
    const mosq = out.find((x) => x.kind === 'mosquitto');
    const parley = out.find((x) => x.kind === 'parley');
    const pl = phase(parley, 'latency');
    const pt = phase(parley, 'throughput');
    const mt = phase(mosq, 'throughput');

    const latRows: Cell[][] = out.map((x) => {
      const p = phase(x, 'latency');
      return [
        x.label, int(x.members), int(x.receivers), p ? `${int(p.complete)} of ${int(p.sent)}` : 'n/a',
        ms(p?.toLast.p50), ms(p?.toLast.p99), ms(p?.toLast.max), ms(p?.toFirst.p50), ms(p?.each.p50),
        p ? int(p.duplicates) : '', p ? int(p.outOfOrder) : '', ms(x.connectMs),
      ];
    });
    const thrRows: Cell[][] = out.map((x) => {
      const p = phase(x, 'throughput');
      const perDeliveryUs = p && p.delivered ? (p.serverCpuMs * 1000) / p.delivered : NaN;
      return [
        x.label, int(p?.sent), int(p?.delivered), `**${int(p?.rate)}**`, num(p?.msgRate, 1), ratio(p?.rate, mt?.rate),
        ms(p?.toLast.p50), core(p?.serverCpuMs, p?.wallMs ?? 0), num(perDeliveryUs, 1), core(p?.loadgenCpuMs, p?.wallMs ?? 0),
        x.kind === 'parley' && p && p.sent ? num(p.receipts / p.sent, 1) : '',
        p && p.complete < p.sent ? `no (${int(p.expected - p.delivered)} missing)` : 'yes',
      ];
    });
    const charts: BarChart[] = [
      {
        file: 'group-latency', title: `Group of ${int(o.members)}: publish to the last delivery (ms, log scale; lower is better)`, unit: 'ms', log: true,
        categories: ['p50', 'p99'],
        series: out.map((x) => ({ name: x.label, values: [phase(x, 'latency')?.toLast.p50 ?? NaN, phase(x, 'latency')?.toLast.p99 ?? NaN] })),
        target: { value: 100, label: 'target p50: 100 ms' },
      },
      {
        file: 'group-throughput', title: `Group of ${int(o.members)}: deliveries per second (higher is better)`, unit: 'deliveries/s',
        categories: out.map((x) => x.label),
        series: [{ name: 'group deliveries/s', values: out.map((x) => phase(x, 'throughput')?.rate ?? NaN) }],
        ...(mt ? { target: { value: 0.5 * mt.rate, label: 'target: 0.5× Mosquitto' } } : {}),
      },
    ];
    const notes: string[] = [];
    for (const x of out) {
      const p = phase(x, 'throughput');
      if (p && p.wallMs > 0 && p.loadgenCpuMs / p.wallMs > 0.85) {
        notes.push(`During ${x.label}'s throughput phase the load generator was busy ${core(p.loadgenCpuMs, p.wallMs)} of a core ` +
          '(reading and acknowledging every delivery on its 1,024 sockets): that figure is a lower bound, limited by the load generator as much as by the broker.');
      }
      for (const ph of x.phases) {
        if (ph.duplicates || ph.outOfOrder || ph.complete < ph.sent) {
          notes.push(`**${x.label}, ${ph.name}: ${int(ph.complete)} of ${int(ph.sent)} messages reached every receiver, ` +
            `${int(ph.expected - ph.delivered)} deliveries missing, ${int(ph.duplicates)} duplicates, ${int(ph.outOfOrder)} out of order.**`);
        }
      }
    }
    if (parley && pt && pt.sent) {
      notes.push(`Parley's publisher got ${int(pt.receipts)} \`tally\` envelopes (delivered/read by N of the other members) and ` +
        `${int(pt.stored)} \`stored\` notices for ${int(pt.sent)} messages in the throughput phase: one \`tally\` per sender concerned ` +
        'per batch of delivery acks, and one `stored` per sending device and chat per `persist` batch, so neither grows with the group.');
    }
    return {
      summary: out.map((x) => {
        const l = phase(x, 'latency');
        const t = phase(x, 'throughput');
        return `${x.label}: group of ${int(x.members)}, publish to last delivery p50 ${ms(l?.toLast.p50)} ms, p99 ${ms(l?.toLast.p99)} ms; ` +
          `${int(t?.rate)} deliveries/s${x.kind === 'parley' && mt ? ` (${ratio(t?.rate, mt.rate)} Mosquitto)` : ''}`;
      }),
      tables: [
        {
          title: `(a) Latency: one message every ${GROUP_INTERVAL_MS} ms, ${o.latencyMessages} messages, ${GROUP_PAYLOAD}-byte payloads, QoS 1; ` +
            'time from the publish to the last, the first and every delivery',
          columns: ['broker', 'members connected', 'receivers per message', 'messages complete', 'to last p50 ms', 'to last p99 ms', 'to last max ms',
            'to first p50 ms', 'each delivery p50 ms', 'duplicates', 'out of order', 'connect all ms'],
          rows: latRows,
        },
        {
          title: `(b) Throughput: a window of ${o.window} messages not yet delivered everywhere, ${o.throughputMs / 1000} s of publishing`,
          columns: ['broker', 'messages', 'deliveries', 'deliveries/s', 'messages/s (to everyone)', 'vs Mosquitto', 'to last p50 ms',
            'server CPU', 'server CPU µs/delivery', 'load generator CPU', 'tallies to the sender per message', 'all delivered'],
          rows: thrRows,
        },
      ],
      charts,
      targets: [
        {
          target: `group of ${int(o.members)}: publish to last delivery p50 ≤ 100 ms`,
          measured: pl ? `${ms(pl.toLast.p50)} ms (Mosquitto ${ms(phase(mosq, 'latency')?.toLast.p50)} ms)` : 'n/a',
          met: pl && pl.complete > 0 ? pl.toLast.p50 <= 100 : null,
        },
        {
          target: `group of ${int(o.members)}: publish to last delivery p99 ≤ 250 ms`,
          measured: pl ? `${ms(pl.toLast.p99)} ms (Mosquitto ${ms(phase(mosq, 'latency')?.toLast.p99)} ms)` : 'n/a',
          met: pl && pl.complete > 0 ? pl.toLast.p99 <= 250 && pl.complete === pl.sent : null,
        },
        {
          target: 'group deliveries/s ≥ 0.5× Mosquitto',
          measured: pt && mt ? `${int(pt.rate)} vs ${int(mt.rate)} deliveries/s = ${ratio(pt.rate, mt.rate)}` : 'n/a',
          met: pt && mt ? pt.rate >= 0.5 * mt.rate : null,
        },
      ],
      notes,
      data: { options: o, outcomes: out },
    };
  },
};
