/**
 * Process figures from /proc (Linux): CPU time (utime + stime of every thread of the process) and
 * resident memory, plus a description of the machine for the report.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';

let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch { /* 100 on every Linux we know */ }

/** CPU milliseconds (user + system) the process has used so far; NaN if it is gone. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clkTck;
  } catch {
    return NaN;
  }
}

/** Resident set size in bytes; NaN if the process is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

export interface ProcRef {
  /** What it is in the report: broker, workers, redis, mosquitto, ... */
  role: string;
  pid: number;
}

export type CpuSnapshot = Map<number, number>;

export function cpuSnapshot(procs: ProcRef[]): CpuSnapshot {
  return new Map(procs.map((p) => [p.pid, cpuMs(p.pid)]));
}

/** CPU ms per role between two snapshots. */
export function cpuDelta(procs: ProcRef[], a: CpuSnapshot, b: CpuSnapshot): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of procs) out[p.role] = (out[p.role] ?? 0) + ((b.get(p.pid) ?? NaN) - (a.get(p.pid) ?? NaN));
  return out;
}

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  kernel: string;
  mosquitto: string;
  redis: string;
  openFilesLimit: string;
  /** /proc/loadavg's 1, 5 and 15 minute load averages when the run started. */
  loadAtStart: string;
}

/** The 1, 5 and 15 minute load averages (runnable tasks), e.g. "0.52 0.40 0.31". */
export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return 'n/a';
  }
}

function cmd(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (err) {
    const out = (err as { stdout?: string }).stdout;
    return typeof out === 'string' ? out.trim() : '';
  }
}

export function machine(mosquittoBin: string | null): Machine {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const m = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m?.[1]) cpuModel = m[1].trim();
  } catch { /* keep os.cpus() */ }
  const mosq = mosquittoBin ? (/mosquitto version (\S+)/.exec(cmd(mosquittoBin, ['-h']))?.[1] ?? '?') : 'not found';
  const redis = /v=(\S+)/.exec(cmd('redis-server', ['--version']))?.[1] ?? '?';
  return {
    cpuModel,
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: release(),
    mosquitto: mosq,
    redis,
    openFilesLimit: cmd('bash', ['-c', 'ulimit -n; ulimit -Hn']).split('\n').join(' soft / ') + ' hard',
    loadAtStart: loadAverage(),
  };
}
