/**
 * The brokers under test, each started as child processes so their CPU and memory can be read by
 * pid: Mosquitto (the reference), plain Aedes in memory (bench/aedes-plain.ts), and Parley (its real
 * entry point, services/src/main.ts) either as one process (`npm start`'s layout, roles=all, with
 * its private redis-server) or split into broker, api and workers processes on one Redis that the
 * bench starts with the same settings (AOF, appendfsync everysec).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { freePort, startRedisServer, type RedisServer } from '../../services/src/redis/spawn.js';
import type { ProcRef } from './proc.js';

export const ROOT = resolve(import.meta.dirname, '..', '..');
const NODE_TS = ['--conditions=parley-source', '--import', 'tsx'];

/** Every child this process started, so they can all be stopped on exit (by pid, nothing broader). */
const children = new Set<ChildProcess>();

function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}

/** Grandchildren we know by pid (redis-server instances), killed with the children. */
const pids = new Set<number>();

export function trackPid(pid: number | undefined): void {
  if (pid) pids.add(pid);
}

export function killAllChildren(): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch { /* gone */ }
  }
  pids.clear();
  for (const c of children) {
    if (c.pid && c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch { /* gone */ }
    }
  }
}

function exited(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((r) => c.once('exit', () => r()));
}

export async function stopChild(c: ChildProcess, graceMs = 15_000): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
  await exited(c);
  clearTimeout(t);
}

/**
 * BENCH_CPU_PROF=<dir>: Parley's processes write V8 CPU profiles there when they stop (for finding
 * where the time goes; open them in Chrome DevTools or summarise with bench/profile-top.ts).
 */
const PROFILE_DIR = process.env.BENCH_CPU_PROF;

export function spawnNodeTs(script: string, args: string[], env: Record<string, string>, profile = false): ChildProcess {
  const prof = profile && PROFILE_DIR ? [`--cpu-prof`, `--cpu-prof-dir=${resolve(PROFILE_DIR)}`] : [];
  return track(spawn(process.execPath, [...prof, ...NODE_TS, script, ...args], {
    cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'],
  }));
}

/** Waits for a stdout line matching `re`; rejects on exit or timeout (stderr in the message). */
function waitForLine(c: ChildProcess, re: RegExp, timeoutMs: number, what: string): Promise<RegExpExecArray> {
  return new Promise((res, rej) => {
    let err = '';
    c.stderr?.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    const rl = createInterface({ input: c.stdout! });
    const timer = setTimeout(() => rej(new Error(`${what}: no "${re.source}" within ${timeoutMs} ms\n${err}`)), timeoutMs);
    rl.on('line', (l) => {
      const m = re.exec(l);
      if (m) {
        clearTimeout(timer);
        res(m);
      }
    });
    c.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`${what} exited (${code}) before it was ready\n${err}`));
    });
  });
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = netConnect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Target {
  /** mosquitto | aedes | parley */
  kind: 'mosquitto' | 'aedes' | 'parley';
  /** Shown in tables. */
  label: string;
  host: string;
  port: number;
  /** Every server-side process whose CPU counts. */
  procs: ProcRef[];
  /** The process that holds the MQTT connections. */
  brokerPid: number;
  stop(): Promise<void>;
}

export interface ParleyTarget extends Target {
  kind: 'parley';
  topology: 'single' | 'split' | 'shards';
  httpUrl: string;
  redisUrl: string;
  /** PARLEY_DATA_DIR: parley.sqlite is here (the bench makes group members in bulk in the store). */
  dataDir: string;
}

export function findMosquitto(): string | null {
  try {
    const p = execFileSync('bash', ['-c', 'command -v mosquitto'], { encoding: 'utf8' }).trim();
    if (p) return p;
  } catch { /* not on PATH */ }
  for (const p of ['/usr/sbin/mosquitto', '/usr/local/sbin/mosquitto', '/usr/bin/mosquitto']) if (existsSync(p)) return p;
  return null;
}

export interface MosquittoConfig {
  /** QoS 1 messages queued per client beyond those in flight; 0 = unlimited. */
  maxQueued: number;
  /** Extra mosquitto.conf lines (experiments). */
  extra?: string[];
}

/**
 * Mosquitto with its defaults except: loopback listener, anonymous access, no persistence file
 * (its queues live in memory), and a queue limit large enough for the offline-drain scenario
 * (the default is 1,000 per client).
 */
export async function startMosquitto(tmp: string, bin: string, cfg: MosquittoConfig = { maxQueued: 0 }): Promise<Target> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmp, 'mosq-'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'persistence false',
    `max_queued_messages ${cfg.maxQueued}`,
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    ...(cfg.extra ?? []),
  ].join('\n') + '\n');
  const c = track(spawn(bin, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let err = '';
  c.stderr?.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-2000);
  });
  await Promise.race([
    waitForPort(port, 10_000),
    exited(c).then(() => {
      throw new Error(`mosquitto exited at start: ${err}`);
    }),
  ]);
  return {
    kind: 'mosquitto', label: 'Mosquitto', host: '127.0.0.1', port,
    procs: [{ role: 'mosquitto', pid: c.pid! }], brokerPid: c.pid!,
    async stop() {
      await stopChild(c, 5000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startAedesPlain(): Promise<Target> {
  const c = spawnNodeTs('bench/aedes-plain.ts', [], { BENCH_HOST: '127.0.0.1', BENCH_PORT: '0' });
  const m = await waitForLine(c, /^listening (\d+)$/, 30_000, 'aedes-plain');
  return {
    kind: 'aedes', label: 'Aedes (in memory)', host: '127.0.0.1', port: Number(m[1]),
    procs: [{ role: 'aedes', pid: c.pid! }], brokerPid: c.pid!,
    async stop() {
      await stopChild(c, 5000);
    },
  };
}

export interface ParleyOptions {
  /**
   * single: one process with every role (`npm start`). split: broker, api and workers processes.
   * shards: one `broker,api` process and two `workers` processes sharing the persist shards.
   */
  topology: 'single' | 'split' | 'shards';
  /** The SMS webhook of the runner (codes are captured there). */
  smsUrl: string;
  env?: Record<string, string>;
}

async function redisPid(url: string): Promise<number> {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    const info = await r.info('server');
    return Number(/process_id:(\d+)/.exec(info)?.[1] ?? NaN);
  } finally {
    r.disconnect();
  }
}

/** Starts Parley from services/src/main.ts with a fresh data dir and free ports. */
export async function startParley(tmp: string, o: ParleyOptions): Promise<ParleyTarget> {
  const dataDir = mkdtempSync(join(tmp, 'parley-'));
  const base: Record<string, string> = {
    PARLEY_DATA_DIR: dataDir,
    PARLEY_HOST: '127.0.0.1',
    PARLEY_MQTT_PORT: '0',
    PARLEY_WS_PORT: '0',
    PARLEY_HTTP_PORT: '0',
    PARLEY_LOG_LEVEL: 'warn',
    PARLEY_SMS: 'webhook',
    PARLEY_SMS_WEBHOOK_URL: o.smsUrl,
    PARLEY_SECRET: randomBytes(24).toString('base64url'),
    // Bulk registration from one address: lift the code-request limits for the bench only.
    PARLEY_CODE_RATE_PER_IP: '100000000',
    PARLEY_CODE_RATE_PER_PHONE: '1000',
    // The idle-connections scenario measures how many connections one process holds: lift the
    // per-node admission limit (default 10,000). Every other limit keeps its default.
    PARLEY_MAX_CONNECTIONS: '0',
    PARLEY_PUBLISH_RATE: '0',
    ...o.env,
  };
  const started: ChildProcess[] = [];
  const problems = { count: 0, lines: [] as string[] };
  let redis: RedisServer | undefined;
  let rpid: number | undefined;
  const cleanup = async (): Promise<void> => {
    await Promise.all(started.map((c) => stopChild(c)));
    if (problems.count > 0) {
      const dir = join(ROOT, 'bench', 'results', 'logs');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `parley-${new Date().toISOString().replace(/[:.]/g, '-')}.log`);
      writeFileSync(file, problems.lines.join('\n') + '\n');
      process.stdout.write(`  parley logged ${problems.count} warnings/errors (first ${problems.lines.length} in ${file})\n`);
    }
    await redis?.stop();
    pids.delete(redis?.pid ?? -1);
    if (rpid) {
      // Parley stops its private Redis itself; make sure of it if Parley had to be killed.
      try {
        process.kill(rpid, 'SIGKILL');
      } catch { /* already gone: the normal case */ }
      pids.delete(rpid);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const ready = /^\s*MQTT over TCP\s+mqtt:\/\/([\d.]+):(\d+)|^\s*HTTP API\s+(http:\/\/[\d.:]+)|^\s*Redis\s+(redis:\/\/[\d.:]+)|^Press Ctrl-C/;
  const startRole = async (roles: string, env: Record<string, string>): Promise<{ c: ChildProcess; mqtt?: number; http?: string; redis?: string }> => {
    const c = spawnNodeTs('services/src/main.ts', [], { ...base, ...env, PARLEY_ROLES: roles }, true);
    started.push(c);
    const out: { c: ChildProcess; mqtt?: number; http?: string; redis?: string } = { c };
    const rl = createInterface({ input: c.stdout! });
    let err = '';
    c.stderr?.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    // Parley logs at warn: keep what it says (bounded) so a failing run can be explained.
    rl.on('line', (l) => {
      if (!l.startsWith('{')) return;
      const level = Number(/"level":(\d+)/.exec(l)?.[1] ?? 0);
      if (level >= 40) {
        problems.count++;
        if (problems.lines.length < 200) problems.lines.push(`[${roles}] ${l}`);
      }
    });
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`parley (${roles}) not ready after 60 s\n${err}`)), 60_000);
      rl.on('line', (l) => {
        const m = ready.exec(l);
        if (!m) return;
        if (m[2]) out.mqtt = Number(m[2]);
        if (m[3]) out.http = m[3];
        if (m[4]) out.redis = m[4];
        if (l.startsWith('Press Ctrl-C')) {
          clearTimeout(timer);
          res();
        }
      });
      c.once('exit', (code) => {
        clearTimeout(timer);
        rej(new Error(`parley (${roles}) exited (${code}) at start\n${err}`));
      });
    });
    // Keep draining stderr so a chatty process never blocks on a full pipe.
    return out;
  };

  try {
    if (o.topology === 'single') {
      const all = await startRole('all', {});
      if (!all.mqtt || !all.http || !all.redis) throw new Error('parley did not print its URLs');
      rpid = await redisPid(all.redis);
      trackPid(rpid);
      return {
        kind: 'parley', topology: 'single', label: 'Parley (1 process)', host: '127.0.0.1', port: all.mqtt,
        httpUrl: all.http, redisUrl: all.redis, dataDir, brokerPid: all.c.pid!,
        procs: [{ role: 'parley', pid: all.c.pid! }, { role: 'redis', pid: rpid }],
        stop: cleanup,
      };
    }
    redis = await startRedisServer({ dir: join(dataDir, 'redis'), appendfsync: 'everysec' });
    trackPid(redis.pid);
    const env = { PARLEY_REDIS_URL: redis.url };
    if (o.topology === 'shards') {
      // The broker creates the schema first; then both worker processes join the same queues.
      const front = await startRole('broker,api', env);
      if (!front.mqtt || !front.http) throw new Error('parley did not print its URLs');
      const [wa, wb] = await Promise.all([startRole('workers', env), startRole('workers', env)]);
      return {
        kind: 'parley', topology: 'shards', label: 'Parley (2 worker processes)', host: '127.0.0.1', port: front.mqtt,
        httpUrl: front.http, redisUrl: redis.url, dataDir, brokerPid: front.c.pid!,
        procs: [
          { role: 'broker', pid: front.c.pid! },
          { role: 'workers A', pid: wa.c.pid! },
          { role: 'workers B', pid: wb.c.pid! },
          { role: 'redis', pid: redis.pid! },
        ],
        stop: cleanup,
      };
    }
    const [workers, broker, api] = await Promise.all([startRole('workers', env), startRole('broker', env), startRole('api', env)]);
    if (!broker.mqtt || !api.http) throw new Error('parley did not print its URLs');
    return {
      kind: 'parley', topology: 'split', label: 'Parley', host: '127.0.0.1', port: broker.mqtt,
      httpUrl: api.http, redisUrl: redis.url, dataDir, brokerPid: broker.c.pid!,
      procs: [
        { role: 'broker', pid: broker.c.pid! },
        { role: 'workers', pid: workers.c.pid! },
        { role: 'redis', pid: redis.pid! },
        { role: 'api', pid: api.c.pid! },
      ],
      stop: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
