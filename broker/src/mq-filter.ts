/**
 * Keeps server-bound publishes off the cluster bus. Aedes routes every accepted PUBLISH through
 * its mqemitter; with mqemitter-redis that is a Redis PUBLISH fanned out to every node, although
 * nobody may subscribe to `outbox/` or `receipts/` (the ACL forbids it) and the broker has already
 * handed them to the queue inside authorizePublish. Dropping them here saves one Redis round trip
 * and N node wake-ups per message.
 */
import { isServerBound } from '@parley/client-sdk/protocol';

/** Topic that refused publishes are re-pointed to so that Aedes routes them nowhere. */
export const SINK_TOPIC = '$parley/sink';

interface Emitter {
  emit(packet: { topic: string }, cb?: (err?: Error) => void): void;
  [key: string]: unknown;
}

export function filterServerBound<T extends object>(mq: T): T {
  const inner = mq as unknown as Emitter;
  return new Proxy(mq, {
    get(target, prop, receiver) {
      if (prop === 'emit') {
        return (packet: { topic: string }, cb?: (err?: Error) => void) => {
          if (packet.topic === SINK_TOPIC || isServerBound(packet.topic)) {
            if (cb) queueMicrotask(() => cb());
            return;
          }
          inner.emit(packet, cb);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
