/**
 * The scenario contract. A scenario is one file in bench/scenarios/ exporting a `Scenario`, listed
 * in bench/scenarios/index.ts. `run(ctx)` starts the brokers it needs through the context (which
 * always stops them), drives them with load generator processes, and returns rows for the report.
 */
import type { ChildProcess } from 'node:child_process';
import type { LoadgenEvent, Spec } from './loadgen-spec.js';
import type { SmsCatcher } from './register.js';
import type { ParleyTarget, Target } from './servers.js';

export type Cell = string | number | null;

export interface Table {
  title?: string;
  columns: string[];
  rows: Cell[][];
}

/** A grouped bar chart: one group per category, one bar per series. Written as docs/bench-<file>.svg. */
export interface BarChart {
  file: string;
  title: string;
  unit: string;
  categories: string[];
  series: Array<{ name: string; values: Array<number | null> }>;
  /** Draw a dashed line at the target value. */
  target?: { value: number; label: string };
  /** Logarithmic value axis (for figures that differ by orders of magnitude). */
  log?: boolean;
}

/** One of the targets, and where this run stands. `met` null = could not be measured. */
export interface TargetCheck {
  target: string;
  measured: string;
  met: boolean | null;
}

export interface ScenarioReport {
  /** One-line results for the console summary. */
  summary: string[];
  tables: Table[];
  charts?: BarChart[];
  targets?: TargetCheck[];
  /** Markdown paragraphs shown under the tables (findings, caveats). */
  notes?: string[];
  /** Raw figures, kept in the JSON results file (and read by the analysis). */
  data?: Record<string, unknown>;
}

export interface Scenario {
  /** Short id: `--only <name>` selects it. */
  name: string;
  title: string;
  /** Markdown: what is measured and how. */
  about: string;
  run(ctx: BenchContext): Promise<ScenarioReport>;
}

export type TargetKind = 'mosquitto' | 'aedes' | 'parley' | 'parley-single' | 'parley-shards';

export interface LoadgenRun<R> {
  child: ChildProcess;
  pid: number;
  result: Promise<R>;
  /** Writes a line to the load generator's stdin. */
  send(line: string): void;
}

export interface BenchContext {
  quick: boolean;
  /** `full` in the full run, `quick` in --quick. */
  pick<T>(full: T, quick: T): T;
  log(msg: string): void;
  /** A temp dir for this run (removed at the end). */
  tmp: string;
  sms: SmsCatcher;
  /**
   * Starts a broker, runs `fn`, and stops the broker whatever happens. In quick mode one Parley
   * serves every scenario unless `fresh` is set (a scenario that measures its memory needs one).
   */
  withTarget<T>(kind: 'parley' | 'parley-single' | 'parley-shards', fn: (t: ParleyTarget) => Promise<T>, opts?: { fresh?: boolean }): Promise<T>;
  withTarget<T>(kind: TargetKind, fn: (t: Target) => Promise<T>, opts?: { fresh?: boolean }): Promise<T>;
  /** Starts a load generator process on `spec`; `onEvent` sees its events as they come. */
  loadgen<R>(spec: Spec, onEvent?: (e: LoadgenEvent) => void, timeoutMs?: number): LoadgenRun<R>;
  /** Computes once per run: lets one scenario reuse another's measurement of the same thing. */
  memo<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /** What `memo` holds under `key`, if some scenario computed it earlier in this run. */
  peek<T>(key: string): Promise<T> | undefined;
}
