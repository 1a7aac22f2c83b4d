/**
 * Makes bench/baseline.json (the "before" of the report's before/after table) from the raw results
 * of a full `npm run bench` run (bench/results/*-full.json), usually one made on the tree before a
 * change to the delivery path:
 *
 *   node --conditions=parley-source --import tsx scripts/bench-baseline.ts RESULTS.json "tree description" "change" ["change" ...]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { keyFigures, type Baseline } from '../bench/lib/history.js';
import type { RunRecord } from '../bench/lib/report.js';
import { SCENARIOS } from '../bench/scenarios/index.js';

const [file, tree, ...changes] = process.argv.slice(2);
if (!file || !tree) {
  console.error('usage: scripts/bench-baseline.ts RESULTS.json "tree" "change" ...');
  process.exit(2);
}
const saved = JSON.parse(readFileSync(file, 'utf8')) as { date: string; scenarios: Array<{ name: string; ms: number; load: string; report?: unknown }> };
const records: RunRecord[] = [];
for (const s of saved.scenarios) {
  const scenario = SCENARIOS.find((x) => x.name === s.name);
  if (scenario && s.report) records.push({ scenario, ms: s.ms, load: s.load, report: s.report } as RunRecord);
}
const figures = Object.fromEntries(Object.entries(keyFigures(records)).filter(([, v]) => v !== undefined && Number.isFinite(v)));
const d = new Date(saved.date);
const baseline: Baseline = { date: `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`, tree, changes, figures };
writeFileSync(new URL('../bench/baseline.json', import.meta.url), JSON.stringify(baseline, null, 2) + '\n');
console.log(JSON.stringify(baseline, null, 2));
