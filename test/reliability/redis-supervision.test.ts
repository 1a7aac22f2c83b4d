/**
 * The embedded Redis is supervised (issue 13, item 1): kill -9 of the platform's private
 * redis-server under traffic, and the platform restarts it (same port, same AOF) and serves again
 * within 5 s; nothing acknowledged is lost, the application sees nothing twice, and the restart is
 * counted. An external Redis is not supervised: the platform reports not-ready while it is down and
 * recovers by itself when it returns. The supervisor on its own: a restart keeps the data; stop()
 * and kill() end supervision. No Redis client's 'error' event may go unhandled (console output).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { Redis } from 'ioredis';
import { startRedisServer, type RedisRestart, type RedisServer } from '../../services/src/redis/spawn.js';
import { postJson, restartablePort, startTestPlatform, uniquePhone, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, type Recorded } from '../helpers/sdk.js';

const RECOVERY_MS = 5000;

/** Lines that an 'error' event without a listener prints (ioredis, BullMQ). */
const UNHANDLED = /Unhandled error event|ECONNREFUSED|ECONNRESET|Connection is closed/;

/** The pid's command line, read from /proc: proves it is a redis-server, and that it is alive. */
function commandOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return undefined;
  }
}

/** Collects what console.error/warn print (an unhandled 'error' event of ioredis or BullMQ). */
function capturePrinted(): string[] {
  const printed: string[] = [];
  for (const level of ['error', 'warn'] as const) {
    const original = console[level].bind(console);
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      printed.push(args.map((a) => (a instanceof Error ? a.message : String(a))).join(' '));
      original(...args);
    });
  }
  return printed;
}

interface Traffic {
  a: Recorded;
  b: Recorded;
  alice: Registered;
  bob: Registered;
  /** Two devices sending to each other until `stop()`; then checks every acknowledged message arrived once. */
  stop(): Promise<number>;
}

async function startTraffic(tp: TestPlatform): Promise<Traffic> {
  const alice = await tp.register();
  const bob = await tp.register();
  const a = device(tp.mqttUrl, alice);
  const b = device(tp.mqttUrl, bob);
  await Promise.all([a.client.connect(), b.client.connect()]);
  // Each device sends to the other, one PUBACK at a time; `acked` holds the texts the server
  // acknowledged (durable from then on).
  const acked = new Map<Recorded, string[]>([[a, []], [b, []]]);
  let sending = true;
  const sender = async (from: Recorded, to: string, name: string): Promise<void> => {
    for (let i = 0; sending; i++) {
      const text = `${name}-${i}`;
      await from.client.send(to, text);
      acked.get(from)!.push(text);
    }
  };
  const running = Promise.all([sender(a, bob.userId, 'a'), sender(b, alice.userId, 'b')]);
  await until(() => b.messages.length >= 50 && a.messages.length >= 50, 30_000, 'traffic flowing');
  return {
    a, b, alice, bob,
    async stop() {
      sending = false;
      await running;
      const missing = (from: Recorded, at: Recorded): string[] => {
        const got = new Set(at.messages.map((m) => m.text));
        return acked.get(from)!.filter((t) => !got.has(t));
      };
      await until(() => missing(a, b).length === 0 && missing(b, a).length === 0, 30_000, 'every acknowledged message delivered');
      for (const rec of [a, b]) {
        const ids = rec.messages.map((m) => m.msgId);
        expect(new Set(ids).size).toBe(ids.length);
      }
      return acked.get(a)!.length + acked.get(b)!.length;
    },
  };
}

/**
 * A new message is delivered, and an API call that needs Redis (registration's rate limiter)
 * answers, by `deadline`; resolves with the time both were done, after the traffic resumed.
 */
async function serving(tp: TestPlatform, t: Traffic, deadline: number): Promise<number> {
  const probe = `probe-${Date.now()}`;
  await t.a.client.send(t.bob.userId, probe);
  await until(() => t.b.messages.some((m) => m.text === probe), deadline - Date.now(), 'a message delivered');
  await until(async () => (await postJson(`${tp.httpUrl}/v1/register`, { phone: uniquePhone() })).status === 202,
    deadline - Date.now(), 'the API');
  const servedAt = Date.now();
  // The traffic resumed by itself on both sides (the BullMQ workers store and fan out again).
  const before = [t.a.messages.length, t.b.messages.length];
  await until(() => t.a.messages.length >= before[0]! + 20 && t.b.messages.length >= before[1]! + 20, 15_000, 'traffic resumed');
  return servedAt;
}

describe('a platform with its private Redis', () => {
  let tp: TestPlatform | undefined;
  afterEach(async () => {
    vi.restoreAllMocks();
    await closeAll();
    await tp?.close();
    tp = undefined;
  });

  it('serves again within 5 s after kill -9 of redis-server under traffic, losing nothing acknowledged, showing nothing twice', async () => {
    const printed = capturePrinted();
    tp = await startTestPlatform();
    const server = tp.platform.redis!;
    expect(server).toBeDefined();
    const restarts: RedisRestart[] = [];
    server.onRestart((r) => restarts.push(r));
    const traffic = await startTraffic(tp);

    const pid = server.pid!;
    expect(commandOf(pid)).toContain('redis-server');
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');

    // Restarted and counted.
    await until(() => server.restarts === 1, RECOVERY_MS, 'redis-server restarted');
    expect(server.pid).not.toBe(pid);
    expect(commandOf(server.pid!)).toContain('redis-server');
    expect(restarts).toEqual([expect.objectContaining({ restarts: 1, pid: server.pid, signal: 'SIGKILL' })]);

    const servedAt = await serving(tp, traffic, killedAt + RECOVERY_MS);
    const total = await traffic.stop();
    expect(total).toBeGreaterThan(100);
    expect(server.restarts).toBe(1);
    // Counted in /metrics too.
    expect(await (await fetch(`${tp.httpUrl}/metrics`)).text()).toMatch(/^parley_redis_restarts_total 1$/m);
    // No client's 'error' event went unhandled.
    expect(printed.filter((l) => UNHANDLED.test(l))).toEqual([]);
    console.info(`redis supervision: redis back ${restarts[0]!.downMs} ms and serving ${servedAt - killedAt} ms after kill -9; ${total} acknowledged messages, all delivered once`);
  });
});

describe('a platform with an external Redis', () => {
  let tp: TestPlatform | undefined;
  let redis: RedisServer | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    vi.restoreAllMocks();
    await closeAll();
    await tp?.close();
    tp = undefined;
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('does not supervise it, waits while it is down and recovers by itself when it returns', async () => {
    const printed = capturePrinted();
    dir = mkdtempSync(join(tmpdir(), 'parley-redis-ext-'));
    const opts = { dir: join(dir, 'redis'), port: await restartablePort() };
    redis = await startRedisServer(opts);
    tp = await startTestPlatform({ PARLEY_REDIS_URL: redis.url });
    expect(tp.platform.redis).toBeUndefined();
    const traffic = await startTraffic(tp);

    const readyz = async (): Promise<number> => (await fetch(`${tp!.httpUrl}/readyz`)).status;
    expect(await readyz()).toBe(200);
    const killedAt = Date.now();
    await redis.kill();
    // Down: the platform says it is not ready.
    await until(async () => (await readyz()) === 503, 10_000, 'not ready');
    const downMs = Date.now() - killedAt;
    redis = await startRedisServer(opts); // what an operator's supervisor would do: same port and AOF
    const backAt = Date.now();
    const servingMs = (await serving(tp, traffic, backAt + 10_000)) - backAt;
    expect(await readyz()).toBe(200);
    const total = await traffic.stop();
    expect(total).toBeGreaterThan(100);
    expect(printed.filter((l) => UNHANDLED.test(l))).toEqual([]);
    console.info(`external redis: down ${downMs} ms; serving ${servingMs} ms after it returned; ${total} acknowledged messages, all delivered once`);
  });

  it('shuts down in bounded time while its Redis is away (BullMQ and ioredis would wait for it forever)', async () => {
    dir = mkdtempSync(join(tmpdir(), 'parley-redis-ext-'));
    redis = await startRedisServer({ dir: join(dir, 'redis'), port: await restartablePort() });
    const platform = await startTestPlatform({ PARLEY_REDIS_URL: redis.url });
    let closed = false;
    try {
      const alice = await platform.register();
      expect(alice.token).toBeTruthy();
      await redis.kill();
      const t0 = Date.now();
      await platform.close();
      closed = true;
      // Within the shutdown budget (14 s), well before main.ts's 20 s hard stop.
      expect(Date.now() - t0).toBeLessThan(15_000);
    } finally {
      if (!closed) await platform.close();
    }
  }, 40_000);
});

describe('the supervisor', () => {
  const dirs: string[] = [];
  const servers: RedisServer[] = [];
  const tempDir = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'parley-redis-sup-'));
    dirs.push(d);
    return d;
  };
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('restarts a killed server on the same port with its data, and counts it', async () => {
    const server = await startRedisServer({ dir: tempDir(), supervise: true });
    servers.push(server);
    const c = new Redis(server.url, { maxRetriesPerRequest: null });
    c.on('error', () => undefined); // reconnects by itself
    try {
      await c.set('k', 'v');
      const pid = server.pid!;
      process.kill(pid, 'SIGKILL');
      await until(() => server.restarts === 1, RECOVERY_MS, 'restart');
      expect(server.pid).not.toBe(pid);
      expect(await c.get('k')).toBe('v'); // same port, and the AOF replayed
      process.kill(server.pid!, 'SIGKILL');
      await until(() => server.restarts === 2, RECOVERY_MS, 'second restart');
      expect(await c.get('k')).toBe('v');
    } finally {
      c.disconnect();
    }
  });

  it('refuses to start on a port another redis-server holds instead of using that server', async () => {
    const first = await startRedisServer({ dir: tempDir() });
    servers.push(first);
    const second = startRedisServer({ dir: tempDir(), port: first.port });
    second.then((s) => servers.push(s), () => undefined); // stopped in afterAll should it start
    await expect(second).rejects.toThrow(/taken by another redis-server|exited at start/);
  });

  it('does not restart after stop() or kill(), nor without `supervise`', async () => {
    const stopped = await startRedisServer({ dir: tempDir(), supervise: true });
    const stoppedPid = stopped.pid!;
    await stopped.stop();
    const killed = await startRedisServer({ dir: tempDir(), supervise: true });
    servers.push(killed);
    await killed.kill();
    const plain = await startRedisServer({ dir: tempDir() });
    servers.push(plain);
    const plainPid = plain.pid!;
    process.kill(plainPid, 'SIGKILL');
    await until(() => commandOf(plainPid) === undefined || commandOf(plainPid) === '', 5000, 'the unsupervised server gone');
    // stop() and kill() end supervision before the exit; `plain` has no supervisor: nothing
    // answers on their ports.
    for (const s of [stopped, killed, plain]) {
      expect(s.restarts).toBe(0);
      const c = new Redis(s.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      c.on('error', () => undefined);
      await expect(c.connect()).rejects.toThrow();
      c.disconnect();
    }
    expect(commandOf(stoppedPid)).toBeFalsy();
  });
});
