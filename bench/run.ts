/**
 * `npm run bench` — runs every scenario in bench/scenarios/ against Mosquitto, plain Aedes and
 * Parley, then writes docs/BENCHMARKS.md and docs/bench-*.svg (quick mode: bench/results/ unless
 * --write) and prints a summary. The raw figures of every run go to bench/results/*.json.
 *
 *   --quick          small counts, under two minutes (CI)
 *   --write          with --quick: write docs/ anyway
 *   --only a,b       run only these scenarios
 *   --render <json>  no measurement: re-render the report from a results file of an earlier run
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analysis } from './analysis.js';
import { createContext } from './lib/context.js';
import { loadAverage, machine, type Machine } from './lib/proc.js';
import { startSmsCatcher } from './lib/register.js';
import { renderMarkdown, status, type RunRecord } from './lib/report.js';
import { ROOT, findMosquitto, killAllChildren } from './lib/servers.js';
import { barChartSvg } from './lib/svg.js';
import type { ScenarioReport } from './lib/types.js';
import { SCENARIOS } from './scenarios/index.js';

interface Args {
  quick: boolean;
  write: boolean;
  only: string[] | null;
  render: string | null;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: argv.includes('--quick'), write: argv.includes('--write'), only: null, render: null };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i]!;
    if (x === '--only') a.only = (argv[i + 1] ?? '').split(',').filter(Boolean);
    else if (x.startsWith('--only=')) a.only = x.slice(7).split(',').filter(Boolean);
    else if (x === '--render') a.render = argv[i + 1] ?? null;
    else if (x === '--help' || x === '-h') {
      console.log('usage: npm run bench [-- --quick] [--write] [--only relay,latency,drain,connections,wire,cost,group,mixed,shards,media,live,e2ee] [--render results.json]');
      process.exit(0);
    }
  }
  return a;
}

/** What a results file holds: enough to render the report again. */
interface SavedRun {
  date: string;
  quick: boolean;
  command: string;
  totalMs: number;
  machine: Machine;
  loadAtEnd: string;
  scenarios: Array<{ name: string; ms: number; load: string; error?: string; report?: ScenarioReport }>;
}

function writeReport(saved: SavedRun, toDocs: boolean): string {
  const outDir = toDocs ? join(ROOT, 'docs') : join(ROOT, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const records: RunRecord[] = [];
  for (const s of saved.scenarios) {
    const scenario = SCENARIOS.find((x) => x.name === s.name);
    if (!scenario) continue;
    records.push({ scenario, ms: s.ms, load: s.load, ...(s.error ? { error: s.error } : {}), ...(s.report ? { report: s.report } : {}) });
  }
  const chartFile = (id: string): string => `bench-${id}.svg`;
  for (const r of records) for (const c of r.report?.charts ?? []) writeFileSync(join(outDir, chartFile(c.file)), barChartSvg(c));
  const md = renderMarkdown({
    quick: saved.quick, command: saved.command, date: new Date(saved.date), totalMs: saved.totalMs,
    machine: saved.machine, loadAtEnd: saved.loadAtEnd, records, chartFile, analysis: analysis(records),
  });
  const file = join(outDir, 'BENCHMARKS.md');
  writeFileSync(file, md);
  return file;
}

async function measure(args: Args): Promise<SavedRun> {
  const t0 = Date.now();
  const log = (msg: string): void => {
    const s = ((Date.now() - t0) / 1000).toFixed(1).padStart(6);
    console.log(`[${s}s] ${msg}`);
  };
  const bin = findMosquitto();
  if (!bin) throw new Error('mosquitto not found: run `bash scripts/ensure-deps.sh --bench` (installs it with apt)');
  const selected = args.only ? SCENARIOS.filter((s) => args.only!.includes(s.name)) : [...SCENARIOS];
  if (args.only && selected.length !== args.only.length) {
    throw new Error(`unknown scenario in --only; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  }
  const tmp = mkdtempSync(join(tmpdir(), 'parley-bench-'));
  const sms = await startSmsCatcher();
  const cleanup = (): void => {
    killAllChildren();
    rmSync(tmp, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      console.error(`\n${sig}: stopping every broker and load generator this run started`);
      cleanup();
      process.exit(130);
    });
  }
  const m = machine(bin);
  log(`Parley benchmarks (${args.quick ? 'quick' : 'full'}): ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, Mosquitto ${m.mosquitto}, Redis ${m.redis}`);
  const { ctx, close: closeContext } = createContext({ quick: args.quick, tmp, sms, mosquittoBin: bin, log });

  const scenarios: SavedRun['scenarios'] = [];
  try {
    for (const s of selected) {
      const load = loadAverage();
      log(`${s.title} (load average ${load})`);
      const ts = Date.now();
      try {
        const report = await s.run(ctx);
        scenarios.push({ name: s.name, ms: Date.now() - ts, load, report });
      } catch (err) {
        const msg = err instanceof Error ? (err.stack ?? err.message) : String(err);
        log(`  FAILED: ${msg}`);
        scenarios.push({ name: s.name, ms: Date.now() - ts, load, error: msg });
      }
      log(`  (${((Date.now() - ts) / 1000).toFixed(1)} s)`);
    }
  } finally {
    await closeContext().catch((err: unknown) => log(`stopping shared brokers: ${String(err)}`));
    await sms.close();
    cleanup();
  }
  const command = (args.quick ? `npm run bench -- --quick${args.write ? ' --write' : ''}` : 'npm run bench') +
    (args.only ? ` --only ${args.only.join(',')}` : '');
  return {
    date: new Date().toISOString(), quick: args.quick, command, totalMs: Date.now() - t0, machine: m,
    loadAtEnd: loadAverage(), scenarios,
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.render) {
    const saved = JSON.parse(readFileSync(args.render, 'utf8')) as SavedRun;
    console.log(`Report: ${writeReport(saved, !saved.quick || args.write)}`);
    return;
  }
  const t0 = Date.now();
  const saved = await measure(args);
  const resultsDir = join(ROOT, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  const jsonFile = join(resultsDir, `${saved.date.replace(/[:.]/g, '-').slice(0, 19)}-${saved.quick ? 'quick' : 'full'}.json`);
  writeFileSync(jsonFile, JSON.stringify(saved, null, 1));
  const mdFile = writeReport(saved, !args.quick || args.write);

  console.log('\n=== Summary ===');
  for (const s of saved.scenarios) {
    const title = SCENARIOS.find((x) => x.name === s.name)?.title ?? s.name;
    console.log(`${title} (${(s.ms / 1000).toFixed(1)} s)`);
    if (s.error) console.log(`  FAILED: ${s.error.split('\n')[0]}`);
    for (const l of s.report?.summary ?? []) console.log(`  ${l}`);
  }
  const targets = saved.scenarios.flatMap((s) => s.report?.targets ?? []);
  if (targets.length) {
    console.log('\nTargets:');
    for (const t of targets) console.log(`  [${status(t).replace(/\*/g, '')}] ${t.target}: ${t.measured}`);
  }
  console.log(`\nReport: ${mdFile}\nRaw figures: ${jsonFile}\nTotal: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const failed = saved.scenarios.filter((s) => s.error).length;
  if (failed) {
    console.log(`${failed} scenario(s) failed`);
    process.exitCode = 1;
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    killAllChildren();
    process.exit(1);
  },
);
