/**
 * Back-pressure for the durable path. The broker acknowledges a publish (the sent tick) once its
 * ingest batch is in Redis, which is quick whatever the workers are doing; without a gate an
 * overload grows the `persist` queue, Redis' memory and every message's latency without bound.
 *
 * The gate looks at the age of the oldest waiting `persist` job. While it is older than
 * `maxBacklogMs`, a new batch waits (so its PUBACKs wait, and MQTT's in-flight window slows the
 * senders down) until the backlog is young again, but never longer than `maxHoldMs`: if the
 * workers are gone altogether, each broker still lets one batch through per `maxHoldMs`, so the
 * backlog grows slowly instead of every sender stalling. Holding a batch loses nothing: the
 * publishes are not acknowledged yet, and a client that disconnects resends them.
 */
import type { Queue } from 'bullmq';

export interface IngestGateOptions {
  /** Hold new batches while the oldest waiting job is older than this; 0 = no gate. @defaultValue 2000 */
  maxBacklogMs: number;
  /** Longest a batch is held. @defaultValue 10000 */
  maxHoldMs: number;
  /** How often the backlog is looked at while batches are coming in. @defaultValue 100 */
  checkEveryMs: number;
}

export const DEFAULT_INGEST_GATE: Readonly<IngestGateOptions> = Object.freeze({ maxBacklogMs: 2000, maxHoldMs: 10_000, checkEveryMs: 100 });

export interface IngestGate {
  /** Resolves when a new batch may be written. */
  wait(): Promise<void>;
  /** How many batches were held, and for how long in all (for logs and tests). */
  readonly stats: { held: number; heldMs: number };
}

/** Age of the oldest waiting job of `queue`, in ms (0 when none waits). */
export async function oldestWaitingAgeMs(queue: Queue, now = Date.now()): Promise<number> {
  const [id] = await queue.getRanges(['wait'], 0, 0, true);
  if (!id) return 0;
  const client = await queue.getBackend().client;
  const ts = Number(await client.hget(queue.toKey(id), 'timestamp'));
  return Number.isFinite(ts) && ts > 0 ? Math.max(0, now - ts) : 0;
}

/** Told when the backlog crosses `maxBacklogMs` either way (for a log line). */
export type BacklogListener = (over: boolean, ageMs: number) => void;

export function createIngestGate(
  queues: readonly Queue[],
  options: Partial<IngestGateOptions> = {},
  onChange: BacklogListener = () => undefined,
  now: () => number = Date.now,
): IngestGate {
  const opts = { ...DEFAULT_INGEST_GATE, ...options };
  const stats = { held: 0, heldMs: 0 };
  let over = false;
  let checkedAt = -Infinity;
  let checking: Promise<void> | null = null;

  const refresh = (): Promise<void> => {
    checking ??= Promise.all(queues.map((q) => oldestWaitingAgeMs(q, now())))
      .then((ages) => {
        const age = Math.max(0, ...ages);
        const was = over;
        over = age > opts.maxBacklogMs;
        if (over !== was) onChange(over, age);
      })
      // Redis unreachable: let the write itself fail (and the PUBACK be withheld) as it would anyway.
      .catch(() => { over = false; })
      .finally(() => {
        checkedAt = now();
        checking = null;
      });
    return checking;
  };
  const fresh = (): boolean => now() - checkedAt < opts.checkEveryMs;

  return {
    stats,
    async wait() {
      if (opts.maxBacklogMs <= 0) return;
      // Not awaited: a batch never waits for the look itself; the next one sees its answer.
      if (!fresh()) void refresh();
      if (!over) return;
      const start = now();
      stats.held++;
      while (over && now() - start < opts.maxHoldMs) {
        await new Promise((r) => setTimeout(r, opts.checkEveryMs));
        if (!fresh()) await refresh();
      }
      stats.heldMs += now() - start;
    },
  };
}
