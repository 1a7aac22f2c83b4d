/**
 * Before/after figures. `keyFigures` reduces a run to the handful of numbers that tell whether a
 * change to the durable path helped; bench/baseline.json holds them for the last run before the
 * changes listed there, so every report can show the effect next to its own figures. Each row also
 * carries the run's own ratio to Mosquitto where one exists, because absolute figures move with
 * the machine's load between runs and the ratio does not (as much).
 */
import type { RunRecord } from './report.js';

export interface KeyFigures {
  relayRate?: number;
  relayVsMosquitto?: number;
  relayCpuUs?: number;
  steadyRate?: number;
  steadyP50?: number;
  steadyP99?: number;
  steadyAckP50?: number;
  lowP50?: number;
  lowP99?: number;
  costUs?: number;
  costVsMosquitto?: number;
  redisPerMsg?: number;
  drainMs?: number;
  wireBytes?: number;
  wireStalled?: number;
  connKiB?: number;
  groupP50?: number;
  groupP99?: number;
  groupVsMosquitto?: number;
  mixedP50?: number;
}

export interface Baseline {
  /** When the baseline run was made, and on which tree. */
  date: string;
  tree: string;
  /** What changed since (one line each), for the report. */
  changes: string[];
  figures: KeyFigures;
}

interface O {
  label: string;
  kind?: string;
  rate?: number;
  cpuPerMsgUs?: number;
  latency?: { p50: number; p99: number };
  ackLatency?: { p50: number };
  redis?: { perMsg: number };
  drainMs?: number;
  perConn?: number;
}

const outcomes = (records: RunRecord[], name: string): O[] =>
  ((records.find((r) => r.scenario.name === name)?.report?.data?.outcomes as O[] | undefined) ?? []);

const div = (a?: number, b?: number): number | undefined => (a !== undefined && b ? a / b : undefined);

interface G {
  kind: string;
  phases: Array<{ name: string; rate: number; toLast: { p50: number; p99: number } }>;
}

export function keyFigures(records: RunRecord[]): KeyFigures {
  const groups = (records.find((r) => r.scenario.name === 'group')?.report?.data?.outcomes as G[] | undefined) ?? [];
  const gPhase = (kind: string, name: string) => groups.find((g) => g.kind === kind)?.phases.find((p) => p.name === name);
  const mixed = (records.find((r) => r.scenario.name === 'mixed')?.report?.data?.outcomes as Array<{ kind: string; withGroup: { latency: { p50: number } } }> | undefined) ?? [];
  const relay = outcomes(records, 'relay');
  const steady = outcomes(records, 'latency');
  const cost = outcomes(records, 'cost');
  const rP = relay.find((o) => o.label === 'Parley');
  const rM = relay.find((o) => o.label === 'Mosquitto');
  const sP = steady.find((o) => o.label === 'Parley');
  const sLow = steady.find((o) => o.label.startsWith('Parley @'));
  const cP = cost.find((o) => o.label === 'Parley');
  const cM = cost.find((o) => o.label === 'Mosquitto');
  const wire = records.find((r) => r.scenario.name === 'wire')?.report?.data as { total?: number; stalledPackets?: number } | undefined;
  return {
    relayRate: rP?.rate,
    relayVsMosquitto: div(rP?.rate, rM?.rate),
    relayCpuUs: rP?.cpuPerMsgUs,
    steadyRate: sP?.rate,
    steadyP50: sP?.latency?.p50,
    steadyP99: sP?.latency?.p99,
    steadyAckP50: sP?.ackLatency?.p50,
    lowP50: sLow?.latency?.p50,
    lowP99: sLow?.latency?.p99,
    costUs: cP?.cpuPerMsgUs,
    costVsMosquitto: div(cP?.cpuPerMsgUs, cM?.cpuPerMsgUs),
    redisPerMsg: cP?.redis?.perMsg,
    drainMs: outcomes(records, 'drain').find((o) => o.kind === 'parley')?.drainMs,
    wireBytes: wire?.total,
    wireStalled: wire?.stalledPackets,
    connKiB: div(outcomes(records, 'connections').find((o) => o.kind === 'parley')?.perConn, 1024),
    groupP50: gPhase('parley', 'latency')?.toLast.p50,
    groupP99: gPhase('parley', 'latency')?.toLast.p99,
    groupVsMosquitto: div(gPhase('parley', 'throughput')?.rate, gPhase('mosquitto', 'throughput')?.rate),
    mixedP50: mixed.find((x) => x.kind === 'parley')?.withGroup.latency.p50,
  };
}

/** Rows of the before/after table: what, unit formatter, and whether lower is better. */
export const FIGURE_ROWS: ReadonlyArray<{ key: keyof KeyFigures; what: string; lowerIsBetter: boolean; fmt: 'int' | 'ms' | 'x' | 'n1' }> = [
  { key: 'relayRate', what: 'relay: Parley delivered msg/s (scenario 1)', lowerIsBetter: false, fmt: 'int' },
  { key: 'relayVsMosquitto', what: 'relay: Parley ÷ Mosquitto, same run', lowerIsBetter: false, fmt: 'x' },
  { key: 'relayCpuUs', what: 'relay: server CPU µs per delivered message', lowerIsBetter: true, fmt: 'int' },
  { key: 'steadyRate', what: 'offered 1,000 msg/s: delivered msg/s (scenario 2)', lowerIsBetter: false, fmt: 'int' },
  { key: 'steadyP50', what: 'offered 1,000 msg/s: p50 ms', lowerIsBetter: true, fmt: 'ms' },
  { key: 'steadyP99', what: 'offered 1,000 msg/s: p99 ms', lowerIsBetter: true, fmt: 'ms' },
  { key: 'steadyAckP50', what: 'offered 1,000 msg/s: sent tick (PUBACK) p50 ms', lowerIsBetter: true, fmt: 'ms' },
  { key: 'lowP50', what: 'offered 100 msg/s: p50 ms', lowerIsBetter: true, fmt: 'ms' },
  { key: 'lowP99', what: 'offered 100 msg/s: p99 ms', lowerIsBetter: true, fmt: 'ms' },
  { key: 'costUs', what: 'server CPU µs per message at 1,000 msg/s (scenario 6)', lowerIsBetter: true, fmt: 'int' },
  { key: 'costVsMosquitto', what: 'the same ÷ Mosquitto, same run', lowerIsBetter: true, fmt: 'x' },
  { key: 'redisPerMsg', what: 'Redis commands per message at 1,000 msg/s', lowerIsBetter: true, fmt: 'n1' },
  { key: 'drainMs', what: 'offline drain of 10,000 messages, ms (scenario 3)', lowerIsBetter: true, fmt: 'int' },
  { key: 'wireBytes', what: 'bytes on the wire for one message and its ticks (scenario 5)', lowerIsBetter: true, fmt: 'int' },
  { key: 'wireStalled', what: 'broker packets stalled ≥ 20 ms between TCP segments (scenario 5)', lowerIsBetter: true, fmt: 'int' },
  { key: 'connKiB', what: 'broker KiB per idle connection (scenario 4)', lowerIsBetter: true, fmt: 'n1' },
  { key: 'groupP50', what: 'group of 1,024: publish to last delivery p50 ms (scenario 7)', lowerIsBetter: true, fmt: 'ms' },
  { key: 'groupP99', what: 'group of 1,024: publish to last delivery p99 ms', lowerIsBetter: true, fmt: 'ms' },
  { key: 'groupVsMosquitto', what: 'group deliveries/s ÷ Mosquitto, same run', lowerIsBetter: false, fmt: 'x' },
  { key: 'mixedP50', what: '1:1 p50 ms next to a busy group (scenario 8)', lowerIsBetter: true, fmt: 'ms' },
];
