/**
 * Summarises V8 CPU profiles (from `BENCH_CPU_PROF=<dir> npm run bench -- ...`): self time by
 * package or source area, and the hottest functions. Usage:
 *   node --conditions=parley-source --import tsx bench/profile-top.ts [--from <s>] <file.cpuprofile> [more ...]
 * --from skips the first seconds of each profile (start-up: module loading and compilation).
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function area(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm?.[1]) return nm[1];
  if (url.startsWith('node:')) return url.replace(/^node:(internal\/)?/, 'node:');
  const src = /\/(broker\/src|services\/src\/[^/]+|client-sdk\/src)\//.exec(url);
  if (src?.[1]) return src[1];
  return url.replace(/^file:\/\//, '');
}

export function summarise(file: string, top = 25, fromSec = 0): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let t = 0;
  p.samples.forEach((id, i) => {
    const d = p.timeDeltas[i] ?? 0;
    t += d;
    if (t >= fromSec * 1e6) self.set(id, (self.get(id) ?? 0) + d);
  });
  const total = [...self.values()].reduce((s, v) => s + v, 0);
  const idle = [...self.entries()].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((s, [, v]) => s + v, 0);
  const busy = total - idle;
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n || n.callFrame.functionName === '(idle)') continue;
    const a = area(n.callFrame.url, n.callFrame.functionName);
    areas.set(a, (areas.get(a) ?? 0) + us);
    const key = `${n.callFrame.functionName || '(anonymous)'}  ${a}:${n.callFrame.lineNumber + 1}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const pct = (v: number): string => `${((v / busy) * 100).toFixed(1).padStart(5)}%`;
  const out = [`${file}: ${(busy / 1e6).toFixed(2)} s busy of ${(total / 1e6).toFixed(2)} s profiled`, '  by area (self time):'];
  for (const [a, v] of [...areas].sort((x, y) => y[1] - x[1]).slice(0, 20)) out.push(`   ${pct(v)}  ${a}`);
  out.push('  hottest functions (self time):');
  for (const [f, v] of [...fns].sort((x, y) => y[1] - x[1]).slice(0, top)) out.push(`   ${pct(v)}  ${f}`);
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  let from = 0;
  const i = args.indexOf('--from');
  if (i >= 0) {
    from = Number(args[i + 1] ?? 0);
    args.splice(i, 2);
  }
  if (!args.length) {
    console.error('usage: bench/profile-top.ts [--from <s>] <file.cpuprofile> ...');
    process.exit(2);
  }
  for (const f of args) console.log(summarise(f, 25, from) + '\n');
}
