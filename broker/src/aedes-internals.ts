/**
 * Everything Parley does to Aedes' internals, in one place, checked against the Aedes version it
 * was written for (test/unit/aedes-internals.test.ts pins the behaviour relied on here).
 *
 * 1. `interceptDelivery(client, fn)` replaces a connected client's `deliverQoS`, the function
 *    Aedes calls for every QoS > 0 packet routed to it (lib/client.js), so the delivery agent can
 *    put chat messages in order, hold them during a catch-up, and fill gaps from the store.
 * 2. `liveOnlyPersistence(persistence, isLiveOnly)` keeps *live-only* packets (`msg`, which every
 *    device can re-read from the store by its watermark, and `stored` and `synced`: see
 *    LIVE_ONLY_KINDS) out of aedes-persistence-redis: no copy is enqueued per offline subscriber
 *    (`outgoingEnqueueCombi`, aedes.js enqueueOffline) and the in-flight record written before
 *    each QoS 1 send (`outgoingUpdate`, cleared by the PUBACK through `outgoingClearMessageId`)
 *    lives in this process' memory instead of Redis. Everything else (sessions, subscriptions,
 *    the other envelopes) keeps using Redis unchanged. Measured effect in docs/BENCHMARKS.md.
 *    `inFlightMessages(persistence, client)` reads those records back (the node's pending count).
 * 3. `connectedClient(aedes, id)` / `connectedClients(aedes)`: the `clients` table (revocation,
 *    live delivery by device id, route repair);
 *    `isSubscribed(client, topic)`: the client's subscription table.
 */
import type { Aedes, Client } from 'aedes';
import { INBOX, peekKind, type Envelope } from '@parley/client-sdk/protocol';

/** The Aedes version these patches were written and tested against. */
export const AEDES_VERSION = '1.2.0';

export type DeliverCallback = (err?: Error | null) => void;
export type Deliver = (packet: AedesPacket, cb: DeliverCallback) => void;

/** The fields of an Aedes packet Parley reads or sets. */
export interface AedesPacket {
  cmd: 'publish';
  topic: string;
  payload: Buffer | Uint8Array;
  qos: 0 | 1 | 2;
  retain: boolean;
  dup: boolean;
  messageId?: number;
  /** Set by Aedes on routed packets; its per-client de-duplication compares the counter. */
  brokerId?: string;
  brokerCounter?: number;
}

/**
 * Routes the client's QoS > 0 deliveries through `fn`; returns the original function, to call for
 * what `fn` lets through (null if this Aedes has no such function). Aedes assigns `deliverQoS` per
 * client in its constructor and passes it by reference when subscriptions are restored or made,
 * so this must run before that: in `authenticate`, which precedes both (lib/handlers/connect.js).
 */
export function interceptDelivery(client: Client, fn: (packet: AedesPacket, cb: DeliverCallback) => void): Deliver | null {
  const c = client as unknown as { deliverQoS?: Deliver };
  const original = c.deliverQoS;
  if (typeof original !== 'function') return null;
  c.deliverQoS = fn;
  return original;
}

/**
 * A copy of a routed packet without Aedes' broker id and counter: the agent may hand packets on
 * out of their arrival order (after a store read), and Aedes would then drop one whose counter is
 * below the last it saw from the same publisher (lib/client.js dedupe). The agent's own per-chat
 * seq check replaces that de-duplication for chat messages.
 */
export function unrouted(packet: AedesPacket): AedesPacket {
  return { cmd: 'publish', topic: packet.topic, payload: packet.payload, qos: packet.qos, retain: false, dup: false };
}

type PersistenceFn = (...args: unknown[]) => Promise<unknown>;

interface ClientRef { id?: string }

/**
 * Wraps aedes-persistence-redis (or any Aedes persistence) so live-only packets never reach it.
 * A connection's in-flight live-only packets are kept per client object: a new connection starts
 * with none, which is right, because whatever was in flight is re-read from the store.
 */
export function liveOnlyPersistence<T extends object>(persistence: T, isLiveOnly: (packet: AedesPacket) => boolean): T {
  /**
   * Per client object: live-only packets in flight by messageId, and how many session packets
   * in flight use each messageId. The two can share an id: on reconnect Aedes replays the
   * session's queued packets with the ids they had on the earlier connection (lib/handlers/
   * connect.js emptyQueue, QoSPacket keeps `original.messageId`), while new packets get ids from
   * the new client's counter, starting at 1. The replayed ones are written first, so a PUBACK for
   * a shared id answers the session packet first; taking it for the live-only one would move a
   * device's watermark over a message still in its socket buffer.
   */
  const inflight = new WeakMap<object, { live: Map<number, AedesPacket>; session: Map<number, number> }>();
  const of = (client: unknown) => {
    let f = inflight.get(client as object);
    if (!f) inflight.set(client as object, (f = { live: new Map(), session: new Map() }));
    return f;
  };
  const inner = persistence as unknown as Record<string, PersistenceFn>;
  const overrides: Record<string, PersistenceFn> = {
    async outgoingEnqueueCombi(subs, packet) {
      if (isLiveOnly(packet as AedesPacket)) return undefined;
      return inner.outgoingEnqueueCombi!.call(persistence, subs, packet);
    },
    async outgoingEnqueue(sub, packet) {
      if (isLiveOnly(packet as AedesPacket)) return undefined;
      return inner.outgoingEnqueue!.call(persistence, sub, packet);
    },
    async outgoingUpdate(client, packet) {
      const p = packet as AedesPacket;
      if (p.messageId === undefined) return inner.outgoingUpdate!.call(persistence, client, packet);
      const f = of(client);
      if (!isLiveOnly(p)) {
        f.session.set(p.messageId, (f.session.get(p.messageId) ?? 0) + 1);
        return inner.outgoingUpdate!.call(persistence, client, packet);
      }
      f.live.set(p.messageId, p);
      return undefined;
    },
    async outgoingClearMessageId(client, packet) {
      const id = (packet as AedesPacket).messageId;
      const f = inflight.get(client as object);
      if (id !== undefined && f) {
        const n = f.session.get(id) ?? 0;
        if (n > 0) {
          if (n === 1) f.session.delete(id);
          else f.session.set(id, n - 1);
        } else {
          const mine = f.live.get(id);
          if (mine) {
            f.live.delete(id);
            return mine;
          }
        }
      }
      return inner.outgoingClearMessageId!.call(persistence, client as ClientRef, packet);
    },
  };
  const wrapped = new Proxy(persistence, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && prop in overrides) return overrides[prop];
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  inFlightCounters.set(wrapped, (client) => {
    const f = inflight.get(client);
    if (!f) return 0;
    let n = 0;
    for (const p of f.live.values()) if (p.payload instanceof Uint8Array && peekKind(p.payload) === 'msg') n++;
    return n;
  });
  return wrapped;
}

/** Per wrapped persistence: a connection's chat messages in flight (read when a node reports, not on the delivery path). */
const inFlightCounters = new WeakMap<object, (client: object) => number>();

/**
 * Chat messages (`msg`) written to this connection and not yet acknowledged (its PUBACK clears
 * them), from the records `liveOnlyPersistence` keeps; 0 for another persistence.
 */
export function inFlightMessages(persistence: unknown, client: Client): number {
  return inFlightCounters.get(persistence as object)?.(client) ?? 0;
}

/**
 * Envelopes on a device inbox that need no copy in the device's Redis session, because the device
 * gets them again another way if this one is lost with its connection: `msg` (the store gives it
 * again by position, on the next catch-up), `stored` (the SDK resends what was not answered after
 * reconnecting; the store answers again, idempotently) and `synced` (a new catch-up runs on every
 * connect). `receipt`, `tally` and `error` still wait in the session while a device is away.
 */
export const LIVE_ONLY_KINDS: ReadonlySet<Envelope['kind']> = new Set(['msg', 'stored', 'synced']);

export function isLiveOnlyPacket(packet: AedesPacket): boolean {
  if (!packet.topic.startsWith(INBOX) || !(packet.payload instanceof Uint8Array)) return false;
  const kind = peekKind(packet.payload);
  return kind !== null && LIVE_ONLY_KINDS.has(kind);
}

/** Whether the client holds a subscription to exactly this topic (Aedes' per-client table). */
export function isSubscribed(client: Client, topic: string): boolean {
  const subs = (client as unknown as { subscriptions?: Record<string, unknown> }).subscriptions;
  return subs !== undefined && Object.prototype.hasOwnProperty.call(subs, topic);
}

const clientsOf = (aedes: Aedes): Record<string, Client | undefined> => (aedes as unknown as { clients: Record<string, Client | undefined> }).clients;

/** The client connected to this node under that id, if any. */
export function connectedClient(aedes: Aedes, id: string): Client | undefined {
  return clientsOf(aedes)[id];
}

/** Every client connected to this node. */
export function connectedClients(aedes: Aedes): Client[] {
  return Object.values(clientsOf(aedes)).filter((c): c is Client => c !== undefined);
}
