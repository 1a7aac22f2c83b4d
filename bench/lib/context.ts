/**
 * The BenchContext the runner hands to every scenario: brokers that are always stopped, load
 * generator processes with a hard deadline, the SMS catcher for registrations, and a per-run memo.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { LoadgenEvent, Spec } from './loadgen-spec.js';
import type { SmsCatcher } from './register.js';
import {
  spawnNodeTs, startAedesPlain, startMosquitto, startParley, stopChild, type Target,
} from './servers.js';
import type { BenchContext, LoadgenRun, TargetKind } from './types.js';

export interface ContextOptions {
  quick: boolean;
  tmp: string;
  sms: SmsCatcher;
  mosquittoBin: string;
  log: (msg: string) => void;
}

let specCounter = 0;

/** The persist shards of the `parley-shards` layout (Parley's default, set explicitly so the bench knows it). */
export const PERSIST_SHARDS = 8;

/**
 * In quick mode one Parley instance serves every scenario (its start-up is most of a quick
 * scenario's time); the full run starts a fresh one for each measurement.
 */
export function createContext(o: ContextOptions): { ctx: BenchContext; close(): Promise<void> } {
  const memo = new Map<string, Promise<unknown>>();
  const shared = new Map<TargetKind, Promise<Target>>();
  const start = (kind: TargetKind): Promise<Target> => {
    switch (kind) {
      case 'mosquitto': return startMosquitto(o.tmp, o.mosquittoBin);
      case 'aedes': return startAedesPlain();
      case 'parley': return startParley(o.tmp, { topology: 'split', smsUrl: o.sms.url });
      case 'parley-single': return startParley(o.tmp, { topology: 'single', smsUrl: o.sms.url });
      case 'parley-shards': return startParley(o.tmp, { topology: 'shards', smsUrl: o.sms.url, env: { PARLEY_PERSIST_SHARDS: String(PERSIST_SHARDS) } });
    }
  };
  const ctx: BenchContext = {
    quick: o.quick,
    pick: (full, quick) => (o.quick ? quick : full),
    log: o.log,
    tmp: o.tmp,
    sms: o.sms,
    async withTarget<T>(kind: TargetKind, fn: (t: never) => Promise<T>, opts: { fresh?: boolean } = {}): Promise<T> {
      const t0 = Date.now();
      if (o.quick && kind === 'parley' && !opts.fresh) {
        let p = shared.get(kind);
        if (!p) {
          p = start(kind);
          shared.set(kind, p);
          const target = await p;
          o.log(`  ${target.label} up in ${Date.now() - t0} ms (port ${target.port}; kept for the other quick scenarios)`);
        }
        return fn((await p) as never);
      }
      const target = await start(kind);
      o.log(`  ${target.label} up in ${Date.now() - t0} ms (port ${target.port})`);
      try {
        return await fn(target as never);
      } finally {
        await target.stop();
      }
    },
    loadgen<R>(spec: Spec, onEvent?: (e: LoadgenEvent) => void, timeoutMs = 300_000): LoadgenRun<R> {
      const file = join(o.tmp, `spec-${process.pid}-${++specCounter}.json`);
      writeFileSync(file, JSON.stringify(spec));
      const child = spawnNodeTs('bench/loadgen.ts', [file], {});
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString()).slice(-4000);
      });
      const result = new Promise<R>((resolve, reject) => {
        let done = false;
        const timer = setTimeout(() => {
          if (done) return;
          done = true;
          void stopChild(child, 2000);
          reject(new Error(`load generator (${spec.mode}) exceeded ${timeoutMs} ms`));
        }, timeoutMs);
        const rl = createInterface({ input: child.stdout! });
        rl.on('line', (line) => {
          let msg: Record<string, unknown>;
          try {
            msg = JSON.parse(line) as Record<string, unknown>;
          } catch {
            return;
          }
          if ('event' in msg) onEvent?.(msg as unknown as LoadgenEvent);
          else if ('result' in msg && !done) {
            done = true;
            clearTimeout(timer);
            resolve(msg.result as R);
          } else if ('error' in msg && !done) {
            done = true;
            clearTimeout(timer);
            reject(new Error(`load generator: ${String(msg.error)}`));
          }
        });
        // 'close', not 'exit': a load generator writes its result and exits at once, and 'exit' can
        // come before the last stdout line has been read (a lost result, seen in a full run).
        child.once('close', (code) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          reject(new Error(`load generator exited (${code}) without a result\n${stderr}`));
        });
      });
      return {
        child,
        pid: child.pid!,
        result,
        send: (line) => {
          child.stdin?.write(line + '\n');
        },
      };
    },
    memo<T>(key: string, fn: () => Promise<T>): Promise<T> {
      let p = memo.get(key) as Promise<T> | undefined;
      if (!p) {
        p = fn();
        memo.set(key, p);
      }
      return p;
    },
    peek<T>(key: string): Promise<T> | undefined {
      return memo.get(key) as Promise<T> | undefined;
    },
  } as BenchContext;
  return {
    ctx,
    async close() {
      for (const p of shared.values()) await (await p.catch(() => null))?.stop();
      shared.clear();
    },
  };
}
