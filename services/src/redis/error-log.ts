/**
 * One place for the 'error' events of the platform's Redis clients (ioredis, BullMQ, the MQTT
 * cluster bus, the MQTT persistence). An emitter's 'error' without a listener throws (ioredis
 * prints "[ioredis] Unhandled error event", BullMQ `console.error`s): every client gets this
 * handler. While Redis is away every client fails on each reconnect attempt, so each source logs
 * its first error, then at most one line per interval with how many it held back.
 */

/** A pino logger fits. */
export interface ErrorLog {
  warn(obj: object, msg: string): void;
}

export interface RedisErrorLogOptions {
  /** At most one line per source per interval. @defaultValue 10_000 */
  intervalMs?: number;
  /** @defaultValue Date.now */
  now?: () => number;
}

/** `handler(source)` is the 'error' listener for the client named `source`. */
export type RedisErrorHandler = (source: string) => (err: Error) => void;

export function redisErrorLog(log: ErrorLog, opts: RedisErrorLogOptions = {}): RedisErrorHandler {
  const intervalMs = opts.intervalMs ?? 10_000;
  const now = opts.now ?? Date.now;
  const state = new Map<string, { last: number; held: number }>();
  return (source) => (err) => {
    const t = now();
    const s = state.get(source);
    if (s && t - s.last < intervalMs) {
      s.held++;
      return;
    }
    // Connection errors are expected while Redis restarts: the clients reconnect by themselves.
    log.warn({ source, err: err.message, ...(s?.held ? { suppressed: s.held } : {}) }, 'redis client error');
    state.set(source, { last: t, held: 0 });
  };
}
