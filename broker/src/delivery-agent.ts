/**
 * The delivery agent: hands each connected device its chats' messages in seq order, without gaps
 * and without repeats, reading from the store where the live stream has a hole.
 *
 * Chat messages (`msg` envelopes) are positional: the store holds each once, and a device's
 * progress in a chat is one watermark. Nothing keeps a per-device copy of them. So:
 * - **Connect** (`clientReady`): the agent reads what the device has not acknowledged from the
 *   store (`pending`, over all its chats, by watermark) and sends it, then what arrived live
 *   meanwhile. Live messages for the device wait from `authenticate` on, so none overtakes the
 *   catch-up; the subscription exists before the store is read, so nothing falls between them.
 * - **Live**: per chat, the agent remembers the last seq it handed to the socket. The next seq goes
 *   straight through (no I/O); one at or below it is a repeat (a retried fan-out, a catch-up that
 *   overlapped the live stream) and is dropped; one above it leaves a gap, which is read from the
 *   store first (`pendingInChat`: the device's own messages are not in its stream, so a gap may
 *   hold nothing). The first message of a chat on a connection starts from the stored watermark.
 * - **Sync**: a device's `sync` (all chats, or one chat after a seq) is answered here, from the
 *   store, followed by `synced`.
 * Work for one device runs one step at a time (a promise chain), in arrival order; the common
 * case (the next seq, nothing queued) never waits on it.
 */
import type { Client } from 'aedes';
import type { Logger } from 'pino';
import {
  decode, encode, inboxTopic, liveTopic, peekKind, peekPosition, type Envelope, type MsgEnvelope, type StoredEnvelope,
} from '@parley/client-sdk/protocol';
import { interceptDelivery, isSubscribed, unrouted, type AedesPacket, type Deliver, type DeliverCallback } from './aedes-internals.js';
import { NO_OBSERVER, type BrokerObserver, type PositionReader, type StoredChatMessage } from './ingest.js';

const noop = (): void => undefined;

export interface DeliveryAgentOptions {
  /** Messages read from the store per query during a catch-up or gap fill. @defaultValue 1000 */
  pageSize: number;
}

export const DEFAULT_AGENT_OPTIONS: Readonly<DeliveryAgentOptions> = Object.freeze({ pageSize: 1000 });

export interface DeliveryAgent {
  /** From `authenticate`: takes over the client's deliveries; live messages wait for the catch-up. */
  attach(client: Client): void;
  /**
   * From `clientReady`: once `routed` resolves (this node is recorded as the device's, so new
   * deliveries come here) and the device is subscribed to its inbox, catch up from the store, then
   * let the live stream through.
   */
  ready(client: Client, routed: Promise<void>): void;
  /** The client subscribed to a topic (Aedes' `subscribe` event). */
  subscribed(client: Client, topic: string): void;
  /** A live delivery from the workers for this connected client (an encoded envelope). */
  deliver(client: Client, payload: Uint8Array): void;
  /**
   * An ephemeral envelope (typing, presence, keys) for the client's `live/` topic: written at QoS 0 at
   * once, never queued behind a catch-up, dropped when the client is not subscribed there.
   */
  live(client: Client, payload: Uint8Array): void;
  /** A device asked for a sync (all chats, or one chat after a seq). */
  sync(client: Client, chatId?: string, after?: number): void;
  /** Every connected device catches up again, then gets `synced` (after the cluster bus lost messages). */
  resyncAll(): void;
}

interface DeviceState {
  client: Client;
  /** Aedes' own deliverQoS: writes the packet to the socket. */
  send: Deliver;
  /** The device is ready and routed here. */
  readied: () => void;
  /** The device is subscribed to its inbox. */
  inboxed: () => void;
  /** chatId -> the last seq handed to the socket (or known to be the device's own). */
  last: Map<string, number>;
  /** Steps waiting or running; while > 0 every live message queues behind them. */
  queued: number;
  chain: Promise<void>;
  closed: boolean;
}

export const toMsgEnvelope = (m: StoredChatMessage): MsgEnvelope => ({
  kind: 'msg', chatId: m.chatId, seq: m.seq, from: m.senderUserId, fromDevice: m.senderDeviceId, ts: m.ts, body: m.body,
  ...(m.event ? { event: m.event } : {}),
  ...(m.media ? { media: m.media } : {}),
});

export function createDeliveryAgent(
  store: PositionReader, log: Logger, options: Partial<DeliveryAgentOptions> = {}, observer: BrokerObserver = NO_OBSERVER,
): DeliveryAgent {
  const opts = { ...DEFAULT_AGENT_OPTIONS, ...options };
  const devices = new WeakMap<Client, DeviceState>();
  const connected = new Set<DeviceState>();

  const packetOf = (deviceId: string, env: Envelope): AedesPacket => ({
    cmd: 'publish', topic: inboxTopic(deviceId), payload: Buffer.from(encode(env)), qos: 1, retain: false, dup: false,
  });

  /** Writes one packet; resolves once Aedes has written it to the socket (or dropped it). */
  const write = (s: DeviceState, packet: AedesPacket): Promise<void> =>
    new Promise((res) => s.send(packet, () => res()));

  /**
   * Runs a step after the device's earlier ones; a failure is logged and the device reconnects.
   * `cb` (a live packet's Aedes callback) is always called, even when the step does not run:
   * the cluster bus waits for it.
   */
  function step(s: DeviceState, fn: () => Promise<void>, cb?: DeliverCallback): void {
    s.queued++;
    s.chain = s.chain.then(async () => {
      if (s.closed) return cb?.();
      try {
        await fn();
      } catch (err) {
        cb?.();
        // The store is unreachable: close the connection, so the device reconnects and its
        // catch-up runs again then. Nothing is lost: the watermark has not moved.
        log.warn({ err, clientId: s.client.id }, 'delivery from the store failed; closing the connection');
        s.closed = true;
        s.client.close();
      }
    }).finally(() => { s.queued--; });
  }

  /** Sends stored messages the device has not had on this connection, in order. */
  async function sendStored(s: DeviceState, page: StoredChatMessage[], force = false): Promise<number> {
    let n = 0;
    const writes: Array<Promise<void>> = [];
    for (const m of page) {
      const last = s.last.get(m.chatId);
      if (!force && last !== undefined && m.seq <= last) continue;
      if (last === undefined || m.seq > last) s.last.set(m.chatId, m.seq);
      writes.push(write(s, packetOf(s.client.id, toMsgEnvelope(m))));
      n++;
    }
    // Waiting for the socket writes of a page before reading the next bounds memory on a long catch-up.
    await Promise.all(writes);
    return n;
  }

  /** Catch-up over all chats from the stored watermarks. `force` resends what this connection already had. */
  async function catchUp(s: DeviceState, force: boolean): Promise<number> {
    let n = 0;
    let after: { chatId: string; seq: number } | null = null;
    for (;;) {
      const page: StoredChatMessage[] = await store.pending(s.client.id, after, opts.pageSize);
      n += await sendStored(s, page, force);
      const lastMsg: StoredChatMessage | undefined = page.at(-1);
      if (page.length < opts.pageSize || !lastMsg) return n;
      after = { chatId: lastMsg.chatId, seq: lastMsg.seq };
    }
  }

  /** Sends the device's messages of one chat in (afterSeq, beforeSeq). */
  async function fill(s: DeviceState, chatId: string, afterSeq: number, beforeSeq: number): Promise<number> {
    let n = 0;
    let after = afterSeq;
    for (;;) {
      const page = await store.pendingInChat(s.client.id, chatId, after, beforeSeq, opts.pageSize);
      n += await sendStored(s, page);
      const lastMsg = page.at(-1);
      if (page.length < opts.pageSize || !lastMsg) return n;
      after = lastMsg.seq;
    }
  }

  /**
   * The device's own sync of one chat: everything after `after`, even what was sent before. Its own
   * messages come as `stored` (clientMsgId and seq): if a `stored` was lost, the device would
   * otherwise wait forever on a seq nobody sends it.
   */
  async function resendChat(s: DeviceState, chatId: string, after: number): Promise<number> {
    const p = await store.progress(s.client.id, chatId);
    if (!p) return 0;
    let n = 0;
    let from = Math.max(after, p.sinceSeq);
    for (;;) {
      const page = await store.history(chatId, from, opts.pageSize);
      const writes: Array<Promise<void>> = [];
      // A former member gets nothing after the message that removed it.
      const end = p.untilSeq ?? Infinity;
      for (const m of page) {
        if (m.seq > end) break;
        const env: Envelope = m.senderDeviceId === s.client.id
          ? { kind: 'stored', clientMsgId: m.clientMsgId, chatId: m.chatId, seq: m.seq, ts: m.ts }
          : toMsgEnvelope(m);
        writes.push(write(s, packetOf(s.client.id, env)));
        if (env.kind === 'msg') n++;
        if ((s.last.get(chatId) ?? 0) < m.seq) s.last.set(chatId, m.seq);
      }
      await Promise.all(writes);
      const lastMsg = page.at(-1);
      if (page.length < opts.pageSize || !lastMsg) return n;
      from = lastMsg.seq;
    }
  }

  /** A live chat message whose position needs the store (unknown chat, or a gap before it). */
  async function placeLive(s: DeviceState, env: { chatId: string; seq: number }, packet: AedesPacket, cb: DeliverCallback): Promise<void> {
    let last = s.last.get(env.chatId);
    if (last === undefined) {
      const p = await store.progress(s.client.id, env.chatId);
      // Not a recipient there (a stale subscription, a revoked membership): drop it.
      if (!p || (p.untilSeq !== null && env.seq > p.untilSeq)) return cb();
      // A gap fill or catch-up queued before this step may have moved it already.
      last = s.last.get(env.chatId) ?? p.deliveredSeq;
      s.last.set(env.chatId, last);
    }
    if (env.seq <= last) return cb();
    if (env.seq > last + 1) await fill(s, env.chatId, last, env.seq);
    s.last.set(env.chatId, env.seq);
    s.send(unrouted(packet), cb);
  }

  /** Own messages are not in the device's stream: a `stored` right after the last seq moves it on. */
  function noteStored(s: DeviceState, env: StoredEnvelope): void {
    const seqs = [env.seq, ...(env.more ?? []).map((m) => m.seq)].sort((a, b) => a - b);
    let last = s.last.get(env.chatId);
    if (last === undefined) return;
    for (const q of seqs) if (q === last + 1) last = q;
    s.last.set(env.chatId, last);
  }

  function onDeliver(s: DeviceState, packet: AedesPacket, cb: DeliverCallback): void {
    const original = s.send;
    const payload = packet.payload;
    const kind = payload instanceof Uint8Array ? peekKind(payload) : null;
    if (kind !== 'msg') {
      if (kind === 'stored') {
        try { noteStored(s, decode(payload) as StoredEnvelope); } catch { /* not ours to judge */ }
      }
      original(packet, cb);
      return;
    }
    // Workers write every msg as `encode` does, so its position is read without decoding it.
    const pos = peekPosition(payload);
    if (!pos) return cb();
    if (s.queued === 0) {
      const last = s.last.get(pos.chatId);
      if (last !== undefined && pos.seq === last + 1) {
        s.last.set(pos.chatId, pos.seq);
        original(unrouted(packet), cb);
        return;
      }
      if (last !== undefined && pos.seq <= last) return cb();
    }
    step(s, () => placeLive(s, pos, packet, cb), cb);
  }

  return {
    attach(client) {
      if (devices.has(client)) return;
      let readied!: () => void;
      let inboxed!: () => void;
      const gates = Promise.all([new Promise<void>((r) => (readied = r)), new Promise<void>((r) => (inboxed = r))]);
      const s: DeviceState = {
        client, send: () => undefined, readied, inboxed, last: new Map(), queued: 0, chain: Promise.resolve(), closed: false,
      };
      const original = interceptDelivery(client, (packet, cb) => onDeliver(s, packet, cb));
      if (!original) return;
      // Every write to the socket goes through s.send: counted there, by envelope kind.
      s.send = (packet, cb) => {
        const kind = packet.payload instanceof Uint8Array ? peekKind(packet.payload) : null;
        observer.delivered(kind ?? 'other');
        original(packet, cb);
      };
      devices.set(client, s);
      // The catch-up is the first step: every live message queues behind it until it is done.
      step(s, async () => {
        await gates;
        if (s.closed) return;
        const n = await catchUp(s, false);
        if (n > 0) log.debug({ clientId: client.id, messages: n }, 'caught up from the store');
      });
      const conn = (client as unknown as { conn?: { once(ev: 'close', fn: () => void): void } }).conn;
      conn?.once('close', () => {
        s.closed = true;
        connected.delete(s);
        // Held steps now only call their callbacks: the packets are not lost, the store has them.
        readied();
        inboxed();
      });
    },
    ready(client, routed) {
      const s = devices.get(client);
      if (!s || s.closed) return;
      connected.add(s);
      routed.then(() => s.readied(), (err: unknown) => {
        // Without a route, live deliveries would not find this node: let the device reconnect.
        log.warn({ err, clientId: client.id }, 'could not record where the device is connected; closing the connection');
        s.closed = true;
        client.close();
        s.readied();
      });
      if (isSubscribed(client, inboxTopic(client.id))) s.inboxed();
    },
    subscribed(client, topic) {
      if (topic === inboxTopic(client.id)) devices.get(client)?.inboxed();
    },
    deliver(client, payload) {
      const s = devices.get(client);
      // Not subscribed (yet): the catch-up, which waits for the subscription, reads it from the store.
      if (!s || s.closed || !isSubscribed(client, inboxTopic(client.id))) return;
      onDeliver(s, { cmd: 'publish', topic: inboxTopic(client.id), payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), qos: 1, retain: false, dup: false }, noop);
    },
    live(client, payload) {
      const s = devices.get(client);
      const topic = liveTopic(client.id);
      if (!s || s.closed || !isSubscribed(client, topic)) return;
      s.send({ cmd: 'publish', topic, payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), qos: 0, retain: false, dup: false }, noop);
    },
    sync(client, chatId, after) {
      const s = devices.get(client);
      if (!s || s.closed) return;
      step(s, async () => {
        const count = chatId !== undefined ? await resendChat(s, chatId, after ?? 0) : await catchUp(s, true);
        await write(s, packetOf(client.id, { kind: 'synced', count, ...(chatId !== undefined ? { chatId } : {}) }));
      });
    },
    resyncAll() {
      // `synced` tells the SDK to resend its sends still without `stored` (that may have been lost too).
      for (const s of connected) {
        step(s, async () => {
          const count = await catchUp(s, false);
          await write(s, packetOf(s.client.id, { kind: 'synced', count }));
        });
      }
    },
  };
}
