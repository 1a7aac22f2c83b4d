/**
 * A private redis-server: own port, own directory, AOF on. `npm start` keeps its directory under
 * the data dir so queued messages survive a restart; tests give it a temp dir and remove it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';

/** What the supervisor reports; a pino logger fits. */
export interface SupervisorLog {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface RedisServerOptions {
  /** Directory for the AOF and config. */
  dir: string;
  /** 0 picks a free port. @defaultValue 0 */
  port?: number;
  /** @defaultValue 'everysec' */
  appendfsync?: 'everysec' | 'always' | 'no';
  /** Remove `dir` on stop (tests). @defaultValue false */
  removeDirOnStop?: boolean;
  /** redis-server binary. @defaultValue 'redis-server' */
  binary?: string;
  /**
   * Restart the server, same directory (it replays its AOF) and port, whenever it exits without
   * `stop()` or `kill()`. @defaultValue false
   */
  supervise?: boolean;
  /** Where the supervisor says that the server died and came back. @defaultValue silent */
  log?: SupervisorLog;
}

/** One restart by the supervisor. */
export interface RedisRestart {
  /** Restarts so far, this one included. */
  restarts: number;
  /** The new server's pid. */
  pid: number | undefined;
  /** From the exit of the old server to the new one answering PING. */
  downMs: number;
  /** How the old server ended. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

export interface RedisServer {
  url: string;
  port: number;
  /** The pid of the running server (a new one after each restart). */
  readonly pid: number | undefined;
  /** How many times the supervisor restarted the server (0 unless `supervise`). */
  readonly restarts: number;
  /** Calls `listener` after each restart, once the new server answers; returns an unsubscribe. */
  onRestart(listener: (r: RedisRestart) => void): () => void;
  /** Graceful SHUTDOWN (AOF flushed), then SIGKILL after a deadline. Ends supervision. */
  stop(): Promise<void>;
  /** kill -9, for fault-injection tests; ends supervision (the test restarts it if it wants). */
  kill(): Promise<void>;
}

/**
 * A port that is free now, for a server that binds it later (a private Redis, a process restarted
 * on the same port). Chosen at random below Linux's ephemeral range (32768-60999), where the OS
 * never hands out ports for `listen(0)` or outgoing connections, so nothing else on the machine
 * takes it in between (a port from `listen(0)` could be given to another socket the next moment).
 * Another caller of this function may still pick it: `range` keeps callers apart (tests that stop
 * a server and start it again on the same port use a range of their own).
 */
export async function freePort(host = '127.0.0.1', range: { from: number; to: number } = { from: 20_000, to: 31_999 }): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = range.from + Math.floor(Math.random() * (range.to - range.from + 1));
    const ok = await new Promise<boolean>((res) => {
      const srv = createServer();
      srv.once('error', () => res(false));
      srv.listen(port, host, () => srv.close(() => res(true)));
    });
    if (ok) return port;
    if (attempt > 200) throw new Error('no free port found');
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((res) => child.once('exit', () => res()));
}

/** Running servers of this process: killed if the process exits without stopping them. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function killOnExit(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Covers process.exit() and fatal errors; not SIGKILL of this process (the pidfile check
  // below cleans that up on the next start with the same directory).
  process.on('exit', () => {
    // SIGTERM: Redis flushes its AOF and exits on its own after this process is gone.
    for (const c of running) c.kill('SIGTERM');
  });
}

/**
 * A redis-server left running on this directory by a process that was killed, found through its
 * pidfile, and recognised by its working directory (Redis runs in its `dir`), so a reused pid is
 * never someone else's server.
 */
async function stopStale(dir: string): Promise<void> {
  const pidfile = join(dir, 'redis.pid');
  if (!existsSync(pidfile)) return;
  const pid = Number(readFileSync(pidfile, 'utf8').trim());
  if (!Number.isSafeInteger(pid) || pid <= 1) return;
  const ours = ((): boolean => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('redis-server') && readlinkSync(`/proc/${pid}/cwd`) === dir;
    } catch {
      return false; // not running (or not Linux: nothing to do safely)
    }
  })();
  if (!ours) return;
  process.kill(pid, 'SIGTERM');
  // A referenced timer: at start-up nothing else may keep the event loop alive yet.
  for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 50));
}

export async function startRedisServer(opts: RedisServerOptions): Promise<RedisServer> {
  const dir = resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const pidfile = join(dir, 'redis.pid');
  await stopStale(dir);
  const port = opts.port && opts.port > 0 ? opts.port : await freePort();
  const conf = join(dir, 'redis.conf');
  // AOF: appendfsync everysec loses at most ~1 s of acknowledged writes on a machine crash (not on
  // a process crash: the OS still has the page cache); `always` loses none at a throughput cost.
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      'appendonly yes',
      `appendfsync ${opts.appendfsync ?? 'everysec'}`,
      'save ""',
      'daemonize no',
      `pidfile ${pidfile}`,
      'protected-mode yes',
      'maxmemory-policy noeviction',
      'loglevel warning',
      `logfile ${join(dir, 'redis.log')}`,
    ].join('\n') + '\n',
  );
  const binary = opts.binary ?? 'redis-server';
  const url = `redis://127.0.0.1:${port}`;

  /** Starts a server on `conf` and resolves once it answers PING. */
  const launch = async (): Promise<ChildProcess> => {
    // Its own process group: Ctrl-C in a terminal signals the whole foreground group, and Redis
    // must outlive the platform's shutdown (the last batches and acks still go to it), so only this
    // process stops it, last, with SHUTDOWN.
    const c = spawn(binary, [conf], { stdio: 'ignore', detached: true });
    killOnExit(c);
    const spawnError = new Promise<never>((_, rej) =>
      c.once('error', (err) => rej(new Error(`cannot start ${binary}: ${err.message}`))),
    );
    try {
      await Promise.race([waitForPing(url, 15_000, c.pid), spawnError, exited(c).then(() => {
        throw new Error(`redis-server exited at start; see ${join(dir, 'redis.log')}`);
      })]);
    } catch (err) {
      c.kill('SIGKILL');
      throw err;
    }
    return c;
  };

  let child = await launch();
  /** Set by stop() and kill(): an exit from now on is wanted. */
  let ended = false;
  let restarts = 0;
  let reviving: Promise<void> | undefined;
  const listeners = new Set<(r: RedisRestart) => void>();

  // The supervisor: an exit nobody asked for (kill -9, OOM killer, a crash) starts the same
  // server again at once, then with back-off while it keeps failing (a broken AOF, the port taken).
  const revive = async (exitCode: number | null, signal: NodeJS.Signals | null): Promise<void> => {
    const diedAt = Date.now();
    opts.log?.error({ exitCode, signal, dir, port }, 'private redis-server exited; restarting it');
    for (let attempt = 0; !ended; attempt++) {
      try {
        const c = await launch();
        if (ended) {
          c.kill('SIGTERM');
          return;
        }
        child = c;
        watch(c);
        restarts++;
        const r: RedisRestart = { restarts, pid: c.pid, downMs: Date.now() - diedAt, exitCode, signal };
        opts.log?.info({ ...r, port }, 'private redis-server restarted');
        for (const l of listeners) l(r);
        return;
      } catch (err) {
        opts.log?.error({ err: (err as Error).message, attempt, dir, port }, 'private redis-server did not restart; retrying');
        await delay(Math.min(100 * 2 ** attempt, 5000));
      }
    }
  };
  const watch = (c: ChildProcess): void => {
    if (!opts.supervise) return;
    c.once('exit', (code, signal) => {
      if (ended) return;
      reviving = revive(code, signal).finally(() => { reviving = undefined; });
    });
  };
  watch(child);

  const stopChild = async (signal: NodeJS.Signals | 'shutdown'): Promise<void> => {
    ended = true;
    await reviving;
    const c = child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    if (signal === 'shutdown') {
      const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
      client.on('error', () => undefined); // failures surface as rejections below
      try {
        await client.connect();
        await client.call('SHUTDOWN').catch(() => undefined);
      } catch {
        c.kill('SIGTERM');
      } finally {
        client.disconnect();
      }
      const done = await Promise.race([exited(c).then(() => true), delay(5000).then(() => false)]);
      if (!done) c.kill('SIGKILL');
    } else {
      c.kill(signal);
    }
    await exited(c);
  };

  return {
    url,
    port,
    get pid() { return child.pid; },
    get restarts() { return restarts; },
    onRestart(listener) {
      listeners.add(listener);
      return () => { listeners.delete(listener); };
    },
    async stop() {
      await stopChild('shutdown');
      if (opts.removeDirOnStop && existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    },
    async kill() {
      await stopChild('SIGKILL');
    },
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

async function waitForPing(url: string, timeoutMs: number, pid?: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // No ready check: while Redis loads its AOF it would wait ~1 s before asking again; a PING
    // during loading fails (LOADING) and is simply repeated here.
    const c = new Redis(url, {
      lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, enableReadyCheck: false, retryStrategy: () => null,
    });
    c.on('error', () => undefined);
    let answeredBy: number | undefined;
    try {
      await c.connect();
      const pong = await c.ping();
      // The answer must come from the server just started: if the port was taken in between (by
      // another process's server), this one fails to bind and exits, and the platform must not
      // quietly use someone else's Redis.
      // A Redis-compatible server that does not say its pid is taken to be ours (undefined).
      const said = pid !== undefined ? /process_id:(\d+)/.exec(await c.info('server'))?.[1] : undefined;
      answeredBy = said !== undefined ? Number(said) : undefined;
      c.disconnect();
      if (pong === 'PONG' && (answeredBy === undefined || answeredBy === pid)) return;
    } catch {
      c.disconnect();
    }
    if (answeredBy !== undefined && answeredBy !== pid) {
      throw new Error(`${url} is taken by another redis-server (pid ${answeredBy})`);
    }
    if (Date.now() > deadline) throw new Error(`redis at ${url} did not answer within ${timeoutMs} ms`);
    await delay(25);
  }
}
