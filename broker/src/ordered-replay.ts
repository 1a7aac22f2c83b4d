/**
 * Queued messages first, then live ones, when a device with a persistent session reconnects.
 *
 * Aedes restores a returning client's subscriptions and registers it *before* it replays the
 * QoS 1 packets queued for it while it was away (connect.js: restoreSubs, registerClient,
 * doConnack, then emptyQueue). A message published during that window is written to the socket
 * at once, ahead of older queued ones. Devices order by seq, but a device that knows nothing yet of
 * that chat (a new chat, or an SDK without persisted state) takes the first seq it sees as the
 * start and drops the older ones as duplicates: the chaos test (test/reliability/chaos.test.ts)
 * lost messages this way at the application level.
 *
 * `holdLive(client)` (called in `authenticate`, before the subscriptions are restored) makes the
 * client's QoS > 0 live deliveries wait in memory; `releaseLive(client)` (on `clientReady`, which
 * Aedes emits once the queue replay has been written) hands them on in their original order. A
 * connection that closes before that drops what it held: those packets are in the client's queue
 * in Redis (they were enqueued before they were emitted) and are replayed on the next connection.
 */
import type { Client } from 'aedes';

type Deliver = (packet: unknown, cb: (err?: Error | null) => void) => void;

interface Held {
  original: Deliver;
  queue: Array<[unknown, (err?: Error | null) => void]>;
}

const held = new WeakMap<Client, Held>();

export function holdLive(client: Client): void {
  const c = client as unknown as { deliverQoS: Deliver; conn: { once(ev: 'close', fn: () => void): void } };
  if (held.has(client) || typeof c.deliverQoS !== 'function') return;
  const h: Held = { original: c.deliverQoS, queue: [] };
  held.set(client, h);
  c.deliverQoS = (packet, cb) => {
    if (held.get(client) === h) h.queue.push([packet, cb]);
    else h.original(packet, cb);
  };
  // Closed before it was ready: release the callbacks (the packets stay queued in Redis).
  c.conn.once('close', () => {
    if (held.get(client) !== h) return;
    held.delete(client);
    for (const [, cb] of h.queue.splice(0)) cb();
  });
}

export function releaseLive(client: Client): void {
  const h = held.get(client);
  if (!h) return;
  held.delete(client);
  for (const [packet, cb] of h.queue.splice(0)) h.original(packet, cb);
}
