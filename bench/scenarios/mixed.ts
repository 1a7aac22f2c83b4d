/**
 * Scenario 8: a 1:1 conversation next to a busy group. One pair at 20 msg/s alone, then the same
 * while a 1,024-member group (all connected) gets a message every 200 ms: does the group's fan-out
 * delay the 1:1 chat?
 */
import { core, int, ms, ratio } from '../lib/format.js';
import { phase, setupGroup, startGroupLoad, type GroupOutcome } from '../lib/group-run.js';
import type { GroupPhase } from '../lib/loadgen-spec.js';
import { relayRun, type RelayOptions, type RelayOutcome } from '../lib/relay-run.js';
import type { Cell, Scenario, TargetKind } from '../lib/types.js';
import { GROUP_INTERVAL_MS, GROUP_PAYLOAD, groupSize } from './group.js';

export const PAIR_RATE = 20;

interface MixedOutcome {
  label: string;
  kind: string;
  alone: RelayOutcome;
  withGroup: RelayOutcome;
  group: GroupOutcome;
}

export const mixed: Scenario = {
  name: 'mixed',
  title: '8. A 1:1 chat next to a busy group',
  about:
    `One publisher/subscriber pair sends ${PAIR_RATE} msg/s of ${GROUP_PAYLOAD}-byte QoS 1 messages at a fixed rate ` +
    '(Parley: two registered users in a direct chat, as in scenario 2), first **alone**, then **with group ' +
    'traffic**: a group of 1,024 members (quick mode: 256), all connected, gets one message every 200 ms ' +
    '(5 msg/s, so about 5,000 deliveries/s) from one of them, set up as in scenario 7 and started (with a ' +
    'warm-up) before the pair\'s run begins. Latency is one-way: from the send time in each payload to the ' +
    'receiving device, for the 1:1 messages only; the group\'s own time to its last delivery is shown next ' +
    'to it. Mosquitto: the pair on its own topic, the group as 1,024 subscribers of another.',
  async run(ctx) {
    const members = groupSize(ctx);
    const pair: RelayOptions = {
      pairs: 1, payloadBytes: GROUP_PAYLOAD, rate: PAIR_RATE, window: 100,
      warmupMs: ctx.pick(2000, 1000), durationMs: ctx.pick(20_000, 3000), drainTimeoutMs: ctx.pick(20_000, 10_000),
    };
    const phases: GroupPhase[] = [
      { name: 'warmup', kind: 'paced', intervalMs: GROUP_INTERVAL_MS, count: 3 },
      { name: 'background', kind: 'paced-until-stop', intervalMs: GROUP_INTERVAL_MS, maxMs: 600_000 },
    ];
    const kinds: TargetKind[] = ['mosquitto', 'parley'];
    const out: MixedOutcome[] = [];
    for (const k of kinds) {
      ctx.log(` mixed: ${k}`);
      const r = await ctx.withTarget(k, async (t): Promise<MixedOutcome> => {
        const alone = await relayRun(ctx, t, pair);
        ctx.log(`  1:1 alone: p50 ${ms(alone.latency.p50)} ms, p99 ${ms(alone.latency.p99)} ms`);
        const setup = await setupGroup(t, members);
        const load = startGroupLoad(ctx, t, setup, phases, { payloadBytes: GROUP_PAYLOAD, maxMessages: 20_000, drainTimeoutMs: ctx.pick(60_000, 20_000) });
        let withGroup: RelayOutcome;
        try {
          await load.phaseStarted('background');
          withGroup = await relayRun(ctx, t, pair);
        } finally {
          load.stop();
        }
        const group = await load.done;
        const bg = phase(group, 'background');
        ctx.log(`  1:1 with the group: p50 ${ms(withGroup.latency.p50)} ms, p99 ${ms(withGroup.latency.p99)} ms (PUBACK p50 ${ms(withGroup.ackLatency.p50)} ms); ` +
          `group: ${int(bg?.sent)} messages, to the last of ${int(group.receivers)} p50 ${ms(bg?.toLast.p50)} ms`);
        return { label: t.label, kind: t.kind, alone, withGroup, group };
      });
      out.push(r);
    }
    const parley = out.find((x) => x.kind === 'parley');
    const rows: Cell[][] = out.map((x) => {
      const bg = phase(x.group, 'background');
      return [
        x.label, ms(x.alone.latency.p50), ms(x.alone.latency.p99), `**${ms(x.withGroup.latency.p50)}**`, ms(x.withGroup.latency.p99),
        ms(x.withGroup.latency.max), ratio(x.withGroup.latency.p50, x.alone.latency.p50),
        `${ms(x.alone.ackLatency.p50)} / ${ms(x.withGroup.ackLatency.p50)}`,
        `${int(x.withGroup.received)} of ${int(x.withGroup.sent)}`,
        bg ? `${int(bg.complete)} of ${int(bg.sent)}` : 'n/a', int(bg?.rate), ms(bg?.toLast.p50), ms(bg?.toLast.p99),
        core(bg?.serverCpuMs, bg?.wallMs ?? 0),
      ];
    });
    const notes: string[] = [];
    for (const x of out) {
      const bg = phase(x.group, 'background');
      if (bg && (bg.complete < bg.sent || bg.duplicates || bg.outOfOrder)) {
        notes.push(`**${x.label}: the group got ${int(bg.complete)} of ${int(bg.sent)} messages to every member ` +
          `(${int(bg.expected - bg.delivered)} deliveries missing, ${int(bg.duplicates)} duplicates, ${int(bg.outOfOrder)} out of order).**`);
      }
      if (x.withGroup.received < x.withGroup.sent || x.alone.received < x.alone.sent) {
        notes.push(`**${x.label}: the pair lost messages (alone ${int(x.alone.received)} of ${int(x.alone.sent)}, with the group ${int(x.withGroup.received)} of ${int(x.withGroup.sent)}).**`);
      }
    }
    return {
      summary: out.map((x) => `${x.label}: 1:1 p50 ${ms(x.alone.latency.p50)} ms alone, ${ms(x.withGroup.latency.p50)} ms next to a ${int(x.group.members)}-member group at 5 msg/s ` +
        `(p99 ${ms(x.alone.latency.p99)} → ${ms(x.withGroup.latency.p99)} ms)`),
      tables: [{
        title: `1:1 at ${PAIR_RATE} msg/s for ${pair.durationMs / 1000} s, alone and next to a ${int(members)}-member group getting 5 msg/s`,
        columns: ['broker', '1:1 alone p50 ms', '1:1 alone p99 ms', '1:1 with group p50 ms', '1:1 with group p99 ms', '1:1 with group max ms',
          'p50 with ÷ alone', '1:1 PUBACK p50 ms, alone / with', '1:1 delivered', 'group messages complete', 'group deliveries/s', 'group to last p50 ms', 'group to last p99 ms',
          'server CPU with the group'],
        rows,
      }],
      charts: [{
        file: 'mixed', title: `1:1 latency at ${PAIR_RATE} msg/s, alone and next to a ${int(members)}-member group (ms, log scale)`, unit: 'ms', log: true,
        categories: ['p50 alone', 'p50 with group', 'p99 alone', 'p99 with group'],
        series: out.map((x) => ({ name: x.label, values: [x.alone.latency.p50, x.withGroup.latency.p50, x.alone.latency.p99, x.withGroup.latency.p99] })),
        target: { value: 10, label: 'target p50: 10 ms' },
      }],
      targets: [{
        target: `1:1 p50 ≤ 10 ms while a ${int(members)}-member group gets 5 msg/s`,
        measured: parley
          ? `${ms(parley.withGroup.latency.p50)} ms (alone ${ms(parley.alone.latency.p50)} ms; Mosquitto ${ms(out.find((x) => x.kind === 'mosquitto')?.withGroup.latency.p50)} ms)`
          : 'n/a',
        met: parley && parley.withGroup.received > 0 ? parley.withGroup.latency.p50 <= 10 : null,
      }],
      notes,
      data: {
        options: { members, pair, groupIntervalMs: GROUP_INTERVAL_MS },
        outcomes: out.map((x) => ({
          label: x.label, kind: x.kind,
          alone: { latency: x.alone.latency, ackLatency: x.alone.ackLatency, sent: x.alone.sent, received: x.alone.received, cpuMs: x.alone.cpuMs, elapsedMs: x.alone.elapsedMs },
          withGroup: { latency: x.withGroup.latency, ackLatency: x.withGroup.ackLatency, sent: x.withGroup.sent, received: x.withGroup.received, cpuMs: x.withGroup.cpuMs, elapsedMs: x.withGroup.elapsedMs },
          group: x.group,
          p50Ratio: x.withGroup.latency.p50 / x.alone.latency.p50,
          groupRate: phase(x.group, 'background')?.rate,
        })),
      },
    };
  },
};
