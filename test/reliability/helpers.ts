/**
 * Shared pieces of the reliability suite (docs/RELIABILITY.md): Parley roles as child processes
 * (`spawnRole`), an SMS webhook that captures codes, raw MQTT sockets, TCP proxies that can cut a
 * device's network, a log capture with production's redaction, a seeded PRNG, and RSS sampling.
 * Everything binds 127.0.0.1 and every process or server started here has a stop/close.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqttPacket, { type IConnackPacket, type IConnectPacket, type Packet } from 'mqtt-packet';
import { pino, type Logger } from 'pino';
import { REDACT } from '../../services/src/platform.js';
import { freePort, startRedisServer, type RedisServer } from '../../services/src/redis/spawn.js';
import { postJson, until } from '../helpers/platform.js';

export { until, postJson };

/** The repository root. */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `parley-${prefix}-`));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// --- taking turns --------------------------------------------------------------------------

/**
 * Runs `fn` while holding a machine-wide lock file, so that the CPU-heavy scenarios (chaos, and
 * overload, which measures latency) do not run at the same time on a small machine when vitest
 * runs files in parallel. A lock left by a dead process is taken over.
 */
export async function exclusive<T>(name: string, fn: () => Promise<T>, waitMs = 300_000): Promise<T> {
  const path = join(tmpdir(), `parley-reliability-${name}.lock`);
  await until(() => {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return true;
    } catch {
      let holder: number;
      try { holder = Number(readFileSync(path, 'utf8')); } catch { return false; }
      let alive = true;
      try { process.kill(holder, 0); } catch { alive = false; }
      if (!alive || !Number.isInteger(holder)) { try { unlinkSync(path); } catch { /* raced */ } }
      return false;
    }
  }, waitMs, `the ${name} lock`);
  try {
    return await fn();
  } finally {
    try { unlinkSync(path); } catch { /* gone */ }
  }
}

// --- roles as child processes ------------------------------------------------------------------

export interface RoleProcess {
  readonly name: string;
  /** pid of the current incarnation. */
  readonly pid: number | undefined;
  /** How many times it was started. */
  readonly starts: number;
  /** Exits nobody asked for (a crash): the code or signal of each. */
  readonly crashes: string[];
  /** Everything the current and earlier incarnations printed (last ~1 MB). */
  output(): string;
  /** Resolves once the current incarnation printed its URLs (services/src/main.ts). */
  waitReady(timeoutMs?: number): Promise<void>;
  /** Sends a signal (kill -9 by default) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts a new incarnation with the same environment and waits until it is ready. */
  restart(): Promise<void>;
  /** SIGTERM (clean shutdown), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** Resident set size of the current incarnation, in bytes (Linux /proc). */
  rss(): number;
  /**
   * With `memoryProbe`: the process' memory right after a full garbage collection. `live` is what
   * it really holds: V8 heap in use plus Buffers and other memory outside the heap.
   */
  memory(): Promise<NodeJS.MemoryUsage & { live: number }>;
}

export interface SpawnOptions {
  /** Preload test/reliability/memory-probe.ts with --expose-gc, for `memory()`. */
  memoryProbe?: boolean;
}

const READY_LINE = 'Press Ctrl-C to stop.';

/**
 * Runs `services/src/main.ts` with PARLEY_ROLES=`roles` and `env` (merged over this process'
 * environment) and waits until it is ready.
 */
export async function spawnRole(roles: string, env: Record<string, string>, name = roles, opts: SpawnOptions = {}): Promise<RoleProcess> {
  let child: ChildProcess | undefined;
  let out = '';
  let readyAt = -1;
  let starts = 0;
  let expectingExit = false;
  const crashes: string[] = [];
  const append = (s: string): void => {
    out += s;
    if (out.length > 1_000_000) out = out.slice(-800_000);
  };

  const start = (): void => {
    expectingExit = false;
    starts++;
    const thisStart = starts;
    const probe = opts.memoryProbe ? ['--expose-gc', '--import', './test/reliability/memory-probe.ts'] : [];
    const c = spawn(process.execPath, ['--conditions=parley-source', '--import', 'tsx', ...probe, 'services/src/main.ts'], {
      cwd: REPO,
      env: { ...process.env, PARLEY_HOST: '127.0.0.1', ...env, PARLEY_ROLES: roles },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    let seen = '';
    c.stdout!.setEncoding('utf8').on('data', (d: string) => {
      append(d);
      if (readyAt < thisStart) {
        seen += d;
        if (seen.includes(READY_LINE)) readyAt = thisStart;
      }
    });
    c.stderr!.setEncoding('utf8').on('data', (d: string) => append(d));
    c.on('exit', (code, signal) => {
      append(`\n[${name} #${thisStart} exited: ${signal ?? code}]\n`);
      if (!expectingExit) crashes.push(String(signal ?? code));
    });
  };

  const exited = (c: ChildProcess): Promise<void> =>
    c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', () => r()));

  const rp: RoleProcess = {
    name,
    get pid() { return child?.pid; },
    get starts() { return starts; },
    crashes,
    output: () => out,
    async waitReady(timeoutMs = 30_000) {
      const c = child!;
      const n = starts;
      await until(() => {
        if (c.exitCode !== null || c.signalCode !== null) throw new Error(`${name} exited before it was ready:\n${out.slice(-3000)}`);
        return readyAt >= n;
      }, timeoutMs, `${name} ready`);
    },
    async kill(signal = 'SIGKILL') {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      expectingExit = true;
      c.kill(signal);
      await exited(c);
    },
    async restart() {
      await rp.kill('SIGKILL');
      start();
      await rp.waitReady();
    },
    async stop(graceMs = 15_000) {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      expectingExit = true;
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
      await exited(c);
      clearTimeout(t);
    },
    rss() {
      return child?.pid ? rssOf(child.pid) : 0;
    },
    async memory() {
      if (!opts.memoryProbe || !child) throw new Error(`${name} was not started with memoryProbe`);
      const mark = out.length;
      child.kill('SIGUSR2');
      let line: string | undefined;
      await until(() => {
        line = /\[memory\] (\{.*\})/.exec(out.slice(mark))?.[1];
        return line !== undefined;
      }, 10_000, `${name} memory report`);
      const m = JSON.parse(line!) as NodeJS.MemoryUsage;
      return { ...m, live: m.heapUsed + m.external };
    },
  };
  start();
  await rp.waitReady();
  return rp;
}

/** One Parley process with every role, its private Redis and an SMS webhook: see `startNode`. */
export interface SingleNode {
  dir: string;
  redis: RedisServer;
  sms: SmsWebhook;
  node: RoleProcess;
  mqttPort: number;
  mqttUrl: string;
  httpUrl: string;
  /** Stops the node, Redis and the webhook, and removes the data directory. */
  stop(): Promise<void>;
}

/**
 * Starts `broker,api,workers` in one child process on free loopback ports, with a private Redis
 * and the SMS webhook, plus `env` (limits and the like) over those defaults.
 */
export async function startNode(prefix: string, env: Record<string, string>, opts: SpawnOptions & { name?: string } = {}): Promise<SingleNode> {
  const dir = tempDir(prefix);
  const redis = await startRedisServer({ dir: join(dir, 'redis') });
  const sms = await startSmsWebhook();
  const mqttPort = await freePort();
  const http = await freePort();
  let node: RoleProcess | undefined;
  const stop = async (): Promise<void> => {
    await node?.stop();
    await redis.stop();
    await sms.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    node = await spawnRole('broker,api,workers', {
      PARLEY_DATA_DIR: dir,
      PARLEY_REDIS_URL: redis.url,
      PARLEY_MQTT_PORT: String(mqttPort),
      PARLEY_WS_PORT: '0',
      PARLEY_HTTP_PORT: String(http),
      PARLEY_SMS: 'webhook',
      PARLEY_SMS_WEBHOOK_URL: sms.url,
      ...env,
    }, opts.name ?? 'platform', opts);
  } catch (err) {
    await stop();
    throw err;
  }
  return { dir, redis, sms, node, mqttPort, mqttUrl: `mqtt://127.0.0.1:${mqttPort}`, httpUrl: `http://127.0.0.1:${http}`, stop };
}

/** VmRSS of a process, in bytes (0 when it is gone). */
export function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

// --- SMS webhook --------------------------------------------------------------------------------

export interface SmsWebhook {
  url: string;
  /** Last code sent to each phone. */
  codes: Map<string, string>;
  /** Every text received. */
  texts: string[];
  close(): Promise<void>;
}

/** An HTTP server that plays the SMS provider for PARLEY_SMS=webhook. */
export async function startSmsWebhook(): Promise<SmsWebhook> {
  const codes = new Map<string, string>();
  const texts: string[] = [];
  const srv: HttpServer = createHttpServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => {
      try {
        const { to, text } = JSON.parse(body) as { to: string; text: string };
        texts.push(text);
        const m = /\b(\d{6})\b/.exec(text);
        if (m?.[1]) codes.set(to, m[1]);
        res.writeHead(204).end();
      } catch {
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/sms`,
    codes,
    texts,
    close: () => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); }),
  };
}

export interface Account {
  userId: string;
  deviceId: string;
  token: string;
  phone: string;
}

/** Registers a phone through the HTTP API, reading the code from the webhook. */
export async function registerVia(httpUrl: string, sms: SmsWebhook, phone: string): Promise<Account> {
  const r1 = await postJson(`${httpUrl}/v1/register`, { phone });
  if (r1.status !== 202) throw new Error(`register ${phone}: ${r1.status} ${JSON.stringify(r1.json)}`);
  await until(() => sms.codes.has(phone), 10_000, `SMS code for ${phone}`);
  const code = sms.codes.get(phone);
  sms.codes.delete(phone);
  const r2 = await postJson(`${httpUrl}/v1/verify`, { phone, code });
  if (r2.status !== 200) throw new Error(`verify ${phone}: ${r2.status} ${JSON.stringify(r2.json)}`);
  return { ...(r2.json as Omit<Account, 'phone'>), phone };
}

/** Links a companion device to the account that owns `token`. */
export async function linkVia(httpUrl: string, token: string, userId: string): Promise<Account> {
  const r = await postJson(`${httpUrl}/v1/devices`, {}, token);
  if (r.status !== 201) throw new Error(`link: ${r.status} ${JSON.stringify(r.json)}`);
  return { ...(r.json as Omit<Account, 'phone'>), userId, phone: '' };
}

let phoneSeq = 0;
/** A unique E.164 number per call (process id and a counter, under a per-file prefix). */
export function phoneFor(prefix: number): string {
  phoneSeq++;
  return `+1${String(prefix).padStart(3, '0')}${String(process.pid % 10_000).padStart(4, '0')}${String(phoneSeq).padStart(4, '0')}`;
}

// --- raw MQTT -----------------------------------------------------------------------------------

export type { Packet };

export interface RawMqtt {
  socket: Socket;
  /** Packets received, parsed. */
  packets: Packet[];
  /** Bytes received. */
  bytes: number;
  closed: boolean;
  /** Resolves when the server closes (or the socket errors). */
  whenClosed: Promise<void>;
  send(p: Packet | Buffer): void;
  /** Resolves with the first received packet (from `from` on) matching `pred`. */
  next(pred: (p: Packet) => boolean, timeoutMs?: number, from?: number): Promise<Packet>;
  close(): void;
}

/** A raw TCP connection that speaks MQTT through mqtt-packet and never acknowledges anything by itself. */
export async function rawMqtt(port: number, opts: { readable?: boolean } = {}): Promise<RawMqtt> {
  const socket = netConnect(port, '127.0.0.1');
  await new Promise<void>((res, rej) => {
    socket.once('connect', () => res());
    socket.once('error', rej);
  });
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  let markClosed: () => void = () => undefined;
  const raw: RawMqtt = {
    socket,
    packets: [],
    bytes: 0,
    closed: false,
    whenClosed: new Promise<void>((r) => (markClosed = r)),
    send(p) {
      if (!socket.destroyed) socket.write(Buffer.isBuffer(p) ? p : mqttPacket.generate(p));
    },
    async next(pred, timeoutMs = 10_000, from = 0) {
      let found: Packet | undefined;
      await until(() => {
        found = raw.packets.slice(from).find(pred);
        return found !== undefined;
      }, timeoutMs, 'an MQTT packet');
      return found!;
    },
    close() {
      socket.destroy();
    },
  };
  parser.on('packet', (p: Packet) => raw.packets.push(p));
  parser.on('error', () => undefined);
  socket.on('error', () => undefined);
  socket.on('close', () => {
    raw.closed = true;
    markClosed();
  });
  if (opts.readable === false) socket.pause();
  else socket.on('data', (d: Buffer) => {
    raw.bytes += d.length;
    parser.parse(d);
  });
  return raw;
}

export function connectPacket(deviceId: string, token: string, extra: Partial<IConnectPacket> = {}): IConnectPacket {
  return {
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, keepalive: 60,
    clientId: deviceId, username: deviceId, password: Buffer.from(token), ...extra,
  };
}

/** Connects raw, checks CONNACK 0, and subscribes to the device's inbox (QoS 1) unless told not to. */
export async function rawDevice(port: number, acc: Pick<Account, 'deviceId' | 'token'>, opts: { subscribe?: boolean; readable?: boolean } = {}): Promise<RawMqtt> {
  const raw = await rawMqtt(port);
  raw.send(connectPacket(acc.deviceId, acc.token));
  const ack = await raw.next((p) => p.cmd === 'connack');
  if ((ack as IConnackPacket).returnCode !== 0) throw new Error(`CONNACK ${(ack as IConnackPacket).returnCode}`);
  if (opts.subscribe !== false) {
    raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `inbox/${acc.deviceId}`, qos: 1 }] });
    await raw.next((p) => p.cmd === 'suback');
  }
  if (opts.readable === false) {
    raw.socket.removeAllListeners('data');
    raw.socket.pause();
  }
  return raw;
}

// --- TCP proxies: a device's network, which a test can cut --------------------------------------

export interface Proxy {
  port: number;
  /** Connections currently open through it. */
  readonly open: number;
  /** Drops every connection now (the device sees its network fail; nothing is sent). */
  cut(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of `targetPort`. `tap`, when given, sees every PUBLISH the server sends
 * through it (parsed), with the number of the connection it came on.
 */
export async function startProxy(targetPort: number, tap?: (p: Packet, conn: number) => void): Promise<Proxy> {
  const pairs = new Set<[Socket, Socket]>();
  let conns = 0;
  const srv = createNetServer((down) => {
    const up = netConnect(targetPort, '127.0.0.1');
    if (tap) {
      const n = ++conns;
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      parser.on('packet', (p: Packet) => { if (p.cmd === 'publish') tap(p, n); });
      parser.on('error', () => undefined);
      up.on('data', (d: Buffer) => parser.parse(d));
    }
    const pair: [Socket, Socket] = [down, up];
    pairs.add(pair);
    const drop = (): void => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const cut = (): void => {
    for (const [d, u] of [...pairs]) {
      d.destroy();
      u.destroy();
    }
    pairs.clear();
  };
  return {
    port: (srv.address() as AddressInfo).port,
    get open() { return pairs.size; },
    cut,
    close() {
      cut();
      return new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

// --- logs -------------------------------------------------------------------------------------

export interface LogCapture {
  logger: Logger;
  /** Every line written so far. */
  text(): string;
  /** Parsed lines. */
  lines(): Array<Record<string, unknown>>;
}

/** A pino logger configured like production's (services/src/platform.ts: same redaction), writing into memory. */
export function captureLogs(level: Logger['level'] = 'debug'): LogCapture {
  const chunks: string[] = [];
  const dest = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  const logger = pino({ level, redact: { paths: REDACT, censor: '[redacted]' } }, dest);
  const text = (): string => chunks.join('');
  return {
    logger,
    text,
    lines: () => text().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

// --- randomness -------------------------------------------------------------------------------

/** mulberry32: a small seeded PRNG, so a failing fuzz case can be replayed from its seed. */
export function prng(seed: number): { next(): number; int(n: number): number; pick<T>(xs: readonly T[]): T; bytes(n: number): Buffer } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next,
    int,
    pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!,
    bytes(n) {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
  };
}
