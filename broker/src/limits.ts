/**
 * What one client may cost a broker node, and the MQTT 3.1.1 framing checks Aedes (and its parser,
 * mqtt-packet) leave out. Everything here is per node and in memory; docs/RELIABILITY.md says
 * which limit answers which abuse, and docs/CONFIG.md names the variables.
 *
 * - `guard(stream)`: wraps a connection before `aedes.handle` sees it. It reads each packet's fixed
 *   header and closes the connection as soon as a remaining length is over `maxPacketBytes` (so
 *   nothing that large is ever buffered), and checks what MQTT 3.1.1 requires that mqtt-packet
 *   does not: well-formed UTF-8 without U+0000 in topics and strings [MQTT-1.5.3-1, -2], fixed
 *   remaining lengths of PUBACK/PINGREQ/DISCONNECT…, non-zero packet identifiers [MQTT-2.3.1-1],
 *   CONNACK 0x01 for an unsupported protocol level [MQTT-3.1.2-2] and 0x02 for an empty client id
 *   without a clean session [MQTT-3.1.3-8].
 * - `admit(client)`: at most `maxConnections` authenticated clients per node (CONNACK 3 beyond).
 * - `allowPublish(client)`: a token bucket of `publishRatePerSec` (burst `publishBurst`) per
 *   client id (reconnecting does not refill it); a client over it is disconnected without a
 *   PUBACK (a well-behaved client resends after reconnecting, with the same clientMsgId).
 * - `forwarded` / `acked`: a connection with more than `maxInflight` QoS 1 packets forwarded live
 *   and not yet PUBACKed, that then acknowledges nothing for `drainTimeoutMs` (at least 1 s), is
 *   disconnected; its queue stays in Redis and is resent when it comes back. (Aedes itself has no
 *   outgoing in-flight window; a device catching up on a burst acknowledges as it goes and is
 *   never cut.)
 * - `clientError`: logs the disconnections Aedes makes itself (drain timeout).
 * - `drainTimeoutMs` goes to Aedes: a client whose socket does not drain within it is closed.
 */
import { Duplex } from 'node:stream';
import { isUtf8 } from 'node:buffer';
import type { Aedes, Client } from 'aedes';
import type { Logger } from 'pino';

export interface BrokerLimits {
  /** Authenticated clients per node; 0 = no limit. @defaultValue 10000 */
  maxConnections: number;
  /** Largest MQTT remaining length accepted; a larger packet closes the connection. @defaultValue 132096 */
  maxPacketBytes: number;
  /** Publishes per second per client id (token refill rate); 0 = no limit. @defaultValue 1000 */
  publishRatePerSec: number;
  /** Token bucket size: the burst one client id may send at once. @defaultValue 10000 */
  publishBurst: number;
  /**
   * QoS 1 packets forwarded to one connection and not yet acknowledged before the connection is
   * watched: over it and acknowledging nothing for drainTimeoutMs, it is cut; 0 = no limit.
   * @defaultValue 1000
   */
  maxInflight: number;
  /** A client whose socket does not drain within this is closed (Aedes' drainTimeout). @defaultValue 10000 */
  drainTimeoutMs: number;
}

export const DEFAULT_LIMITS: Readonly<BrokerLimits> = Object.freeze({
  maxConnections: 10_000,
  maxPacketBytes: 2 * 65536 + 1024,
  publishRatePerSec: 1000,
  publishBurst: 10_000,
  maxInflight: 1000,
  drainTimeoutMs: 10_000,
});

export interface Limits {
  readonly options: Readonly<BrokerLimits>;
  /** The stream to hand to `aedes.handle` instead of `conn`. */
  guard(conn: Duplex): Duplex;
  /** Whether one more client may log in on this node (a session take-over always may). */
  admit(client: Client): boolean;
  /** Takes one token; false = over the rate (the caller disconnects). */
  allowPublish(client: Client): boolean;
  /** Aedes' authorizeForward: counts QoS 1 packets handed to a connection. */
  forwarded(client: Client, packet: { qos: number }): void;
  /** A PUBACK from the client. */
  acked(client: Client | undefined): void;
  /** Aedes' clientError: logs the disconnections Aedes makes itself (drain timeout). */
  clientError(client: Client | undefined, err: Error): void;
}

interface Bucket {
  tokens: number;
  at: number;
}

interface Flight {
  n: number;
  /** performance.now() of the last PUBACK. */
  lastAck: number;
  watching: boolean;
}

export function createLimits(options: Partial<BrokerLimits>, aedes: () => Aedes, log: Logger): Limits {
  const opts: BrokerLimits = { ...DEFAULT_LIMITS, ...options };
  /**
   * Buckets by client id, not by connection: a flooder that reconnects does not get a fresh burst.
   * Full buckets (idle clients) are dropped when the map grows, so it stays small.
   */
  const buckets = new Map<string, Bucket>();
  /** QoS 1 packets forwarded live and not yet acknowledged, per connection. */
  const inflight = new WeakMap<Client, Flight>();
  // Over the cap is not enough: a device that is catching up on a burst acknowledges as it goes.
  // It is cut when it stays over the cap without acknowledging anything for this long.
  const stallMs = Math.max(1000, opts.drainTimeoutMs || 10_000);
  const cut = new WeakSet<Client>();

  /** Closes a client once (after the current Aedes callback has returned). */
  const disconnect = (client: Client, msg: string, extra: Record<string, unknown>): void => {
    if (cut.has(client)) return;
    cut.add(client);
    log.warn({ clientId: client.id, ...extra }, msg);
    setImmediate(() => client.close());
  };

  /** Over the cap since `since`: cut it if it acknowledged nothing in `stallMs`, else look again. */
  const watch = (client: Client, f: Flight, since: number): void => {
    f.watching = true;
    setTimeout(() => {
      f.watching = false;
      if ((client as unknown as { closed?: boolean }).closed || f.n <= opts.maxInflight) return;
      if (f.lastAck > since) return watch(client, f, performance.now());
      disconnect(client, 'too many unacknowledged messages; disconnecting', { inflight: f.n, max: opts.maxInflight, stalledMs: stallMs });
    }, stallMs).unref();
  };

  return {
    options: opts,
    guard(conn) {
      return new MqttGuard(conn, opts.maxPacketBytes, (why, detail) => {
        log.warn({ remoteAddress: (conn as { remoteAddress?: string }).remoteAddress, why, ...detail }, 'malformed MQTT; connection closed');
      });
    },
    admit(client) {
      const a = aedes();
      if (opts.maxConnections <= 0 || a.connectedClients < opts.maxConnections) return true;
      if ((a as unknown as { clients: Record<string, unknown> }).clients[client.id]) return true;
      log.warn({ clientId: client.id, max: opts.maxConnections }, 'connection limit reached; CONNACK 3');
      return false;
    },
    allowPublish(client) {
      if (opts.publishRatePerSec <= 0) return true;
      const now = performance.now();
      let b = buckets.get(client.id);
      if (!b) {
        if (buckets.size >= 10_000) {
          for (const [id, x] of buckets) {
            if (x.tokens + ((now - x.at) / 1000) * opts.publishRatePerSec >= opts.publishBurst) buckets.delete(id);
          }
        }
        buckets.set(client.id, (b = { tokens: opts.publishBurst, at: now }));
      }
      b.tokens = Math.min(opts.publishBurst, b.tokens + ((now - b.at) / 1000) * opts.publishRatePerSec);
      b.at = now;
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return true;
      }
      disconnect(client, 'publish rate limit exceeded; disconnecting', { ratePerSec: opts.publishRatePerSec, burst: opts.publishBurst });
      return false;
    },
    forwarded(client, packet) {
      if (opts.maxInflight <= 0 || packet.qos === 0 || !client) return;
      // Aedes calls authorizeForward for the queue it replays on reconnect too (those packets are
      // QoSPackets, with a writeCallback): a device catching up on a large backlog is not abusing
      // anything, so only live forwards count. PUBACKs of replayed packets still count down.
      if ('writeCallback' in packet) return;
      let f = inflight.get(client);
      if (!f) inflight.set(client, (f = { n: 0, lastAck: 0, watching: false }));
      f.n++;
      if (f.n > opts.maxInflight && !f.watching) watch(client, f, performance.now());
    },
    acked(client) {
      if (!client) return;
      const f = inflight.get(client);
      if (!f) return;
      if (f.n > 0) f.n--;
      f.lastAck = performance.now();
    },
    clientError(client, err) {
      if (err.message === 'drain timeout') {
        log.warn({ clientId: client?.id, drainTimeoutMs: opts.drainTimeoutMs }, 'socket did not drain in time; disconnected');
      }
    },
  };
}

// --- the MQTT 3.1.1 framing guard ---------------------------------------------------------------

/** A packet the guard refuses: close, optionally after a CONNACK with this return code. */
interface Refusal {
  why: string;
  connack?: 1 | 2;
}

const CONNECT = 1;
const PUBLISH = 3;
const PUBREL = 6;
const SUBSCRIBE = 8;
const UNSUBSCRIBE = 10;
const PINGREQ = 12;
const DISCONNECT = 14;

/**
 * A Duplex between the socket and Aedes. Writes go straight to the socket (with its back-pressure,
 * so Aedes' drainTimeout still works); reads are whole, checked packets. At most one packet of at
 * most `maxPacketBytes` (plus its header) is held here; Aedes' parser buffers the rest as before.
 */
class MqttGuard extends Duplex {
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  /** Bytes of an incomplete packet, and how many that packet needs in all (0 = not known yet). */
  #pending: Buffer[] = [];
  #pendingLen = 0;
  #need = 0;
  #connected = false;
  #refused = false;

  constructor(
    private readonly conn: Duplex,
    private readonly maxPacketBytes: number,
    private readonly report: (why: string, detail: Record<string, unknown>) => void,
  ) {
    super({ allowHalfOpen: false });
    const c = conn as Duplex & { remoteAddress?: string; remotePort?: number };
    this.remoteAddress = c.remoteAddress;
    this.remotePort = c.remotePort;
    conn.on('data', (chunk: Buffer) => this.#onData(chunk));
    conn.on('end', () => this.push(null));
    conn.on('error', (err) => this.destroy(err));
    conn.on('close', () => this.destroy());
  }

  override _read(): void {
    this.conn.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.conn.destroyed) return cb(new Error('connection closed'));
    if (this.conn.write(chunk)) cb();
    else this.conn.once('drain', () => cb());
  }

  /**
   * mqtt-packet writes one packet as several small chunks and relies on the socket to batch them.
   * Passed on one by one through this stream, with Nagle's algorithm on, the tail of each packet
   * waited for the client's delayed ACK (~40 ms per packet, measured by the benchmarks). Corking
   * hands whatever Aedes wrote in one turn to the socket as one write.
   */
  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    if (this.conn.destroyed) return cb(new Error('connection closed'));
    const ok = this.conn.write(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)));
    if (ok) cb();
    else this.conn.once('drain', () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.conn.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.#refused) this.conn.destroy();
    cb(err);
  }

  #onData(chunk: Buffer): void {
    if (this.#refused) return;
    // The rest of a large packet: keep the pieces until it is complete (no copying meanwhile).
    if (this.#pendingLen > 0 && this.#pendingLen + chunk.length < this.#need) {
      this.#pending.push(chunk);
      this.#pendingLen += chunk.length;
      return;
    }
    const buf = this.#pendingLen > 0 ? Buffer.concat([...this.#pending, chunk]) : chunk;
    this.#pending = [];
    this.#pendingLen = 0;
    this.#need = 0;
    let off = 0;
    for (;;) {
      const head = readFixedHeader(buf, off);
      if (head === 'incomplete') break;
      if (head === 'bad') return this.#refuse(buf, off, { why: 'malformed remaining length [MQTT-2.2.3]' });
      if (head.length > this.maxPacketBytes) {
        // Refused on its header: the body is never buffered.
        return this.#refuse(buf, off, { why: `packet of ${head.length} bytes over the limit of ${this.maxPacketBytes}` });
      }
      const end = head.bodyAt + head.length;
      if (end > buf.length) {
        this.#need = end - off;
        break;
      }
      const refusal = this.#check(head.type, head.flags, buf.subarray(head.bodyAt, end));
      if (refusal) return this.#refuse(buf, off, refusal);
      off = end;
    }
    if (off < buf.length) {
      this.#pending = [buf.subarray(off)];
      this.#pendingLen = buf.length - off;
    }
    if (off > 0 && !this.push(off === buf.length ? buf : buf.subarray(0, off))) this.conn.pause();
  }

  /** Passes on the packets before the bad one, answers with a CONNACK if asked, and closes. */
  #refuse(buf: Buffer, off: number, r: Refusal): void {
    this.#refused = true;
    this.#pending = [];
    this.#pendingLen = 0;
    this.report(r.why, { connack: r.connack });
    if (off > 0) this.push(buf.subarray(0, off));
    if (r.connack !== undefined) {
      // CONNACK, then close [MQTT-3.2.2-5]. Aedes never saw this CONNECT.
      this.conn.end(Buffer.from([0x20, 0x02, 0x00, r.connack]));
      setTimeout(() => this.conn.destroy(), 2000).unref();
    } else {
      this.conn.destroy();
    }
    this.destroy();
  }

  #check(type: number, flags: number, body: Buffer): Refusal | null {
    if (!this.#connected) {
      // [MQTT-3.1.0-1] the first packet must be CONNECT.
      if (type !== CONNECT) return { why: 'first packet is not CONNECT [MQTT-3.1.0-1]' };
      this.#connected = true;
      return checkConnect(flags, body);
    }
    switch (type) {
      case CONNECT:
        return { why: 'second CONNECT [MQTT-3.1.0-2]' };
      case PUBLISH:
        return checkPublish(flags, body);
      case 4: case 5: case 7: // PUBACK, PUBREC, PUBCOMP
        return flags === 0 && body.length === 2 ? null : { why: 'bad PUBACK/PUBREC/PUBCOMP [MQTT-2.2.2-2, MQTT-3.4.1]' };
      case PUBREL:
        return flags === 2 && body.length === 2 ? null : { why: 'bad PUBREL [MQTT-3.6.1-1]' };
      case SUBSCRIBE:
      case UNSUBSCRIBE:
        return checkSubscribe(type, flags, body);
      case PINGREQ:
      case DISCONNECT:
        return flags === 0 && body.length === 0 ? null : { why: 'bad PINGREQ/DISCONNECT [MQTT-2.2.2-2]' };
      default:
        // CONNACK, SUBACK, UNSUBACK, PINGRESP go server -> client only; 0 and 15 are reserved.
        return { why: `packet type ${type} is not client-to-server [MQTT-2.2.1, MQTT-4.8.0-1]` };
    }
  }
}

type FixedHeader = { type: number; flags: number; length: number; bodyAt: number };

/** The fixed header at `off`: packet type, flags, remaining length [MQTT-2.2.3] and where the body starts. */
function readFixedHeader(buf: Buffer, off: number): FixedHeader | 'incomplete' | 'bad' {
  if (buf.length - off < 2) return 'incomplete';
  const b0 = buf[off]!;
  let length = 0;
  let mul = 1;
  for (let i = 1; i <= 4; i++) {
    if (off + i >= buf.length) return 'incomplete';
    const byte = buf[off + i]!;
    length += (byte & 0x7f) * mul;
    if ((byte & 0x80) === 0) return { type: b0 >> 4, flags: b0 & 0x0f, length, bodyAt: off + i + 1 };
    mul *= 128;
  }
  return 'bad'; // a fifth length byte
}

/** A reader over one packet body; every read is bounds-checked. */
class Reader {
  pos = 0;
  constructor(readonly b: Buffer) {}
  get left(): number {
    return this.b.length - this.pos;
  }
  byte(): number | null {
    return this.pos < this.b.length ? this.b[this.pos++]! : null;
  }
  u16(): number | null {
    if (this.left < 2) return null;
    const v = this.b.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  bytes(): Buffer | null {
    const n = this.u16();
    if (n === null || this.left < n) return null;
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}

/** A UTF-8 encoded string as MQTT requires: well-formed, no U+0000 [MQTT-1.5.3-1, MQTT-1.5.3-2]. */
function goodString(s: Buffer): boolean {
  return isUtf8(s) && !s.includes(0);
}

function checkConnect(flags: number, body: Buffer): Refusal | null {
  if (flags !== 0) return { why: 'CONNECT flags [MQTT-2.2.2-2]' };
  const r = new Reader(body);
  const name = r.bytes();
  if (!name) return { why: 'CONNECT too short' };
  const protocol = name.toString('latin1');
  // [MQTT-3.1.2-1] a protocol name that is not MQTT (or 3.1's MQIsdp): close without CONNACK.
  if (protocol !== 'MQTT' && protocol !== 'MQIsdp') return { why: 'bad protocol name [MQTT-3.1.2-1]' };
  const level = r.byte();
  if (level === null) return { why: 'CONNECT too short' };
  // [MQTT-3.1.2-2] an unsupported protocol level: CONNACK 0x01, then close.
  if (level !== 4 && level !== 3) return { why: `protocol level ${level} [MQTT-3.1.2-2]`, connack: 1 };
  const cf = r.byte();
  const keepalive = r.u16();
  if (cf === null || keepalive === null) return { why: 'CONNECT too short' };
  if (cf & 0x01) return { why: 'reserved CONNECT flag [MQTT-3.1.2-3]' };
  const clean = (cf & 0x02) !== 0;
  const will = (cf & 0x04) !== 0;
  const willQos = (cf >> 3) & 0x03;
  const willRetain = (cf & 0x20) !== 0;
  const hasPassword = (cf & 0x40) !== 0;
  const hasUser = (cf & 0x80) !== 0;
  if (!will && (willQos !== 0 || willRetain)) return { why: 'will QoS/retain without will [MQTT-3.1.2-13, MQTT-3.1.2-15]' };
  if (willQos === 3) return { why: 'will QoS 3 [MQTT-3.1.2-14]' };
  if (hasPassword && !hasUser) return { why: 'password without user name [MQTT-3.1.2-22]' };
  const clientId = r.bytes();
  if (!clientId || !goodString(clientId)) return { why: 'bad client id [MQTT-3.1.3-4]' };
  if (will) {
    const topic = r.bytes();
    if (!topic || !goodString(topic) || !r.bytes()) return { why: 'bad will [MQTT-3.1.3-10]' };
  }
  if (hasUser) {
    const user = r.bytes();
    if (!user || !goodString(user)) return { why: 'bad user name [MQTT-3.1.3-11]' };
  }
  if (hasPassword && !r.bytes()) return { why: 'bad password field' };
  if (r.left !== 0) return { why: 'trailing bytes in CONNECT [MQTT-4.8.0-1]' };
  // [MQTT-3.1.3-8] an empty client id needs a clean session; otherwise CONNACK 0x02, then close.
  if (clientId.length === 0 && !clean) return { why: 'empty client id without clean session [MQTT-3.1.3-8]', connack: 2 };
  return null;
}

function checkPublish(flags: number, body: Buffer): Refusal | null {
  const qos = (flags >> 1) & 0x03;
  if (qos === 3) return { why: 'PUBLISH with QoS 3 [MQTT-3.3.1-4]' };
  const r = new Reader(body);
  const topic = r.bytes();
  if (!topic) return { why: 'PUBLISH topic longer than the packet [MQTT-4.8.0-1]' };
  if (!goodString(topic)) return { why: 'PUBLISH topic is not well-formed UTF-8 [MQTT-1.5.3-1, MQTT-1.5.3-2]' };
  // (Empty topics and wildcards are refused by Aedes itself [MQTT-4.7.3-1, MQTT-3.3.2-2].)
  if (qos > 0) {
    const id = r.u16();
    if (id === null || id === 0) return { why: 'PUBLISH without a packet identifier [MQTT-2.3.1-1]' };
  }
  return null;
}

function checkSubscribe(type: number, flags: number, body: Buffer): Refusal | null {
  const what = type === SUBSCRIBE ? 'SUBSCRIBE' : 'UNSUBSCRIBE';
  if (flags !== 2) return { why: `${what} flags [MQTT-3.8.1-1, MQTT-3.10.1-1]` };
  const r = new Reader(body);
  const id = r.u16();
  if (id === null || id === 0) return { why: `${what} without a packet identifier [MQTT-2.3.1-1]` };
  if (r.left === 0) return { why: `${what} without topic filters [MQTT-3.8.3-3, MQTT-3.10.3-2]` };
  while (r.left > 0) {
    const filter = r.bytes();
    if (!filter || filter.length === 0 || !goodString(filter)) return { why: `bad ${what} topic filter [MQTT-1.5.3-1, MQTT-4.7.3-1]` };
    if (type === SUBSCRIBE) {
      const q = r.byte();
      if (q === null || q > 2) return { why: 'bad requested QoS [MQTT-3-8.3-4]' };
    }
  }
  return null;
}
