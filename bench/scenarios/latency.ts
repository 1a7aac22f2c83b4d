/**
 * Scenario 2: latency under steady load. A fixed total rate (1,000 msg/s) spread over the pairs,
 * open loop (sends follow the clock, not the acknowledgements), for a fixed time.
 */
import { int, ms, ratio } from '../lib/format.js';
import { relayRun, type RelayOptions, type RelayOutcome } from '../lib/relay-run.js';
import type { BenchContext, Cell, Scenario, TargetKind } from '../lib/types.js';

export const RATE = 1000;
/** A rate Parley sustains on a small machine: its pipeline latency without a growing queue. */
export const LOW_RATE = 100;

export function steadyOptions(ctx: BenchContext, rate = RATE): RelayOptions {
  return {
    pairs: 20, payloadBytes: 200, rate, window: 1000,
    warmupMs: ctx.pick(3000, 1000), durationMs: ctx.pick(20_000, 5000), drainTimeoutMs: ctx.pick(60_000, 10_000),
  };
}

/** The steady-rate measurement of one broker, shared with the cost scenario. */
export function steadyRun(ctx: BenchContext, kind: TargetKind, rate = RATE): Promise<RelayOutcome> {
  return ctx.memo(`steady:${kind}:${rate}`, () => {
    ctx.log(` steady ${rate} msg/s: ${kind}`);
    return ctx.withTarget(kind, (t) => relayRun(ctx, t, steadyOptions(ctx, rate)));
  });
}

export function steadyKinds(ctx: BenchContext): TargetKind[] {
  return ctx.pick(['mosquitto', 'aedes', 'parley'], ['mosquitto', 'parley']);
}

export const latency: Scenario = {
  name: 'latency',
  title: '2. Latency under steady load',
  about:
    'The same pairs publish at a fixed total rate of 1,000 msg/s (open loop: sends follow the clock ' +
    'and do not wait for PUBACKs, up to a cap of in-flight publishes) for a fixed time after a ' +
    'warm-up. Latency runs from the send time written into each payload (Parley: into the text body) ' +
    'to the moment the receiving device has the message; for Parley that includes the group commit, ' +
    'the BullMQ job, the SQLite transaction and the cluster-bus publish to the broker node that holds ' +
    'the recipient (delivery engine v2: no per-device copy in Redis).',
  async run(ctx) {
    const o = steadyOptions(ctx);
    const out: RelayOutcome[] = [];
    const runs: Array<[TargetKind, number]> = steadyKinds(ctx).map((k) => [k, RATE]);
    if (!ctx.quick) runs.push(['parley', LOW_RATE]);
    for (const [k, rate] of runs) {
      const r = { ...(await steadyRun(ctx, k, rate)) };
      if (rate !== RATE) r.label = `${r.label} @ ${rate} msg/s`;
      ctx.log(`  ${r.label}: p50 ${ms(r.latency.p50)} ms, p99 ${ms(r.latency.p99)} ms, p99.9 ${ms(r.latency.p999)} ms`);
      out.push(r);
    }
    const parley = out.find((x) => x.kind === 'parley');
    const mosq = out.find((x) => x.kind === 'mosquitto');
    const rows: Cell[][] = out.map((x) => [
      x.label, int(x.rate), ms(x.latency.p50), ms(x.latency.p90), ms(x.latency.p99), ms(x.latency.p999), ms(x.latency.max),
      ms(x.ackLatency.p50), ms(x.ackLatency.p99), int(x.received), int(x.skipped), ratio(x.latency.p99, mosq?.latency.p99),
    ]);
    return {
      summary: out.map((x) => `${x.label}${x.label.includes('@') ? '' : ` @ ${o.rate} msg/s`}: p50 ${ms(x.latency.p50)} ms, p99 ${ms(x.latency.p99)} ms, p99.9 ${ms(x.latency.p999)} ms`),
      tables: [{
        title: `${o.rate} msg/s over ${o.pairs} pairs for ${o.durationMs / 1000} s, QoS 1, ${o.payloadBytes}-byte payloads` +
          (ctx.quick ? '' : `; Parley also at ${LOW_RATE} msg/s`) + '. PUBACK = publish to PUBACK at the sender (Parley: the sent tick, durable in Redis)',
        columns: ['broker', 'delivered msg/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'PUBACK p50 ms', 'PUBACK p99 ms', 'messages', 'sends skipped (cap)', 'p99 vs Mosquitto'],
        rows,
      }],
      charts: [{
        file: 'latency', title: `Latency at a steady ${o.rate} msg/s (ms, log scale)`, unit: 'ms', log: true,
        categories: ['p50', 'p90', 'p99', 'p99.9'],
        series: out.map((x) => ({ name: x.label, values: [x.latency.p50, x.latency.p90, x.latency.p99, x.latency.p999] })),
      }],
      targets: [
        {
          target: 'p50 ≤ 5 ms at 1,000 msg/s',
          measured: parley ? `${ms(parley.latency.p50)} ms (Mosquitto ${ms(mosq?.latency.p50)} ms)` : 'n/a',
          met: parley ? parley.latency.p50 <= 5 : null,
        },
        {
          target: 'p99 ≤ 50 ms at 1,000 msg/s',
          measured: parley ? `${ms(parley.latency.p99)} ms (Mosquitto ${ms(mosq?.latency.p99)} ms)` : 'n/a',
          met: parley ? parley.latency.p99 <= 50 : null,
        },
      ],
      data: { options: o, outcomes: out },
    };
  },
};
