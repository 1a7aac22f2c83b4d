/**
 * A minimal MQTT 3.1.1 client for the load generator: CONNECT, SUBSCRIBE, PUBLISH (QoS 0/1),
 * PUBACK, PINGREQ, DISCONNECT, nothing else. It is much lighter than mqtt.js (no stores, no
 * per-packet objects, PUBACKs of one read coalesced into one write), so that on a small machine the
 * load generator costs as little CPU as possible and the broker under test is what is measured.
 * The same client drives every broker, so the comparison stays fair.
 */
import { connect as netConnect, type Socket } from 'node:net';

export interface LiteOptions {
  host: string;
  port: number;
  /** Source address (127.0.0.x) to spread connections past the ephemeral-port limit. */
  localAddress?: string;
  clientId: string;
  username?: string;
  password?: string;
  clean: boolean;
  /** Seconds; 0 = no PINGREQ. */
  keepalive: number;
  connectTimeoutMs?: number;
}

export type OnPublish = (topic: string, payload: Buffer, qos: number) => void;

const enc = (s: string): Buffer => Buffer.from(s, 'utf8');

function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function field(b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(2 + b.length);
  out.writeUInt16BE(b.length, 0);
  b.copy(out, 2);
  return out;
}

function packet(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first, ...remainingLength(body.length)]), body]);
}

export function connectPacket(o: LiteOptions): Buffer {
  let flags = o.clean ? 0x02 : 0;
  const parts: Buffer[] = [field(enc(o.clientId))];
  if (o.username !== undefined) {
    flags |= 0x80;
    parts.push(field(enc(o.username)));
  }
  if (o.password !== undefined) {
    flags |= 0x40;
    parts.push(field(enc(o.password)));
  }
  const head = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, flags, (o.keepalive >> 8) & 0xff, o.keepalive & 0xff]);
  return packet(0x10, Buffer.concat([head, ...parts]));
}

/** Encodes a PUBLISH into one buffer (the hot path of the load generator). */
export function publishPacket(topic: Buffer, payload: Buffer, qos: 0 | 1, id: number): Buffer {
  const rl = 2 + topic.length + (qos > 0 ? 2 : 0) + payload.length;
  const rlBytes = remainingLength(rl);
  const out = Buffer.allocUnsafe(1 + rlBytes.length + rl);
  let o = 0;
  out[o++] = qos > 0 ? 0x32 : 0x30;
  for (const b of rlBytes) out[o++] = b;
  out.writeUInt16BE(topic.length, o);
  o += 2;
  topic.copy(out, o);
  o += topic.length;
  if (qos > 0) {
    out.writeUInt16BE(id, o);
    o += 2;
  }
  payload.copy(out, o);
  return out;
}

export class LiteClient {
  readonly socket: Socket;
  sessionPresent = false;
  onPublish: OnPublish | null = null;
  /** Called once when the socket closes (for whatever reason). */
  onClose: (() => void) | null = null;
  closed = false;
  private rest: Buffer | null = null;
  private nextId = 0;
  private readonly acks = new Map<number, () => void>();
  private readonly subs = new Map<number, (codes: number[]) => void>();
  private connack: ((rc: number) => void) | null = null;
  private readonly ackOut: number[] = [];
  private ping: ReturnType<typeof setInterval> | null = null;
  private readonly topicCache = new Map<string, Buffer>();

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      if (this.ping) clearInterval(this.ping);
      this.connack?.(-1);
      this.onClose?.();
    });
  }

  /** Connects and resolves after CONNACK 0 (`onPublish` is installed first); rejects on any other return code, close or timeout. */
  static connect(o: LiteOptions, onPublish?: OnPublish): Promise<LiteClient> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host: o.host, port: o.port, ...(o.localAddress ? { localAddress: o.localAddress } : {}) });
      const c = new LiteClient(socket);
      // Set before CONNACK: a broker may send queued messages in the same read as the CONNACK.
      if (onPublish) c.onPublish = onPublish;
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`CONNACK timeout for ${o.clientId}`));
      }, o.connectTimeoutMs ?? 20_000);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      c.connack = (rc) => {
        clearTimeout(timer);
        c.connack = null;
        if (rc === 0) {
          if (o.keepalive > 0) {
            c.ping = setInterval(() => {
              if (!c.closed) socket.write(Buffer.from([0xc0, 0]));
            }, o.keepalive * 900);
            c.ping.unref();
          }
          resolve(c);
        } else {
          socket.destroy();
          reject(new Error(rc < 0 ? `connection closed before CONNACK (${o.clientId})` : `CONNACK return code ${rc} (${o.clientId})`));
        }
      };
      socket.once('connect', () => socket.write(connectPacket(o)));
    });
  }

  private id(): number {
    for (let i = 0; i < 65535; i++) {
      this.nextId = (this.nextId % 65535) + 1;
      if (!this.acks.has(this.nextId) && !this.subs.has(this.nextId)) return this.nextId;
    }
    throw new Error('no free packet id');
  }

  topic(t: string): Buffer {
    let b = this.topicCache.get(t);
    if (!b) {
      b = enc(t);
      this.topicCache.set(t, b);
    }
    return b;
  }

  /** QoS 1: `onAck` runs on PUBACK. QoS 0: runs never. */
  publish(topic: string, payload: Buffer, qos: 0 | 1, onAck?: () => void): void {
    const id = qos > 0 ? this.id() : 0;
    if (qos > 0) this.acks.set(id, onAck ?? (() => undefined));
    this.socket.write(publishPacket(this.topic(topic), payload, qos, id));
  }

  inFlight(): number {
    return this.acks.size;
  }

  subscribe(topic: string, qos: 0 | 1): Promise<number> {
    const id = this.id();
    const body = Buffer.concat([Buffer.from([id >> 8, id & 0xff]), field(enc(topic)), Buffer.from([qos])]);
    return new Promise((resolve, reject) => {
      this.subs.set(id, (codes) => {
        const rc = codes[0] ?? 0x80;
        if (rc === 0x80) reject(new Error(`SUBSCRIBE ${topic} refused`));
        else resolve(rc);
      });
      this.socket.write(packet(0x82, body));
    });
  }

  /** Sends DISCONNECT and closes the socket. */
  end(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end(Buffer.from([0xe0, 0]));
      setTimeout(() => this.socket.destroy(), 2000).unref();
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    let off = 0;
    for (;;) {
      if (buf.length - off < 2) break;
      let mul = 1;
      let rl = 0;
      let i = off + 1;
      let complete = false;
      for (let k = 0; k < 4; k++) {
        if (i >= buf.length) break;
        const b = buf[i++] as number;
        rl += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete || buf.length - i < rl) break;
      this.handle(buf[off] as number, buf.subarray(i, i + rl));
      off = i + rl;
    }
    this.rest = off < buf.length ? Buffer.from(buf.subarray(off)) : null;
    if (this.ackOut.length > 0) {
      const out = Buffer.allocUnsafe(this.ackOut.length * 4);
      let o = 0;
      for (const id of this.ackOut) {
        out[o] = 0x40;
        out[o + 1] = 2;
        out.writeUInt16BE(id, o + 2);
        o += 4;
      }
      this.ackOut.length = 0;
      if (!this.closed) this.socket.write(out);
    }
  }

  private handle(first: number, body: Buffer): void {
    switch (first >> 4) {
      case 2: // CONNACK
        this.sessionPresent = ((body[0] ?? 0) & 1) === 1;
        this.connack?.(body[1] ?? 255);
        return;
      case 3: {
        // PUBLISH
        const qos = (first >> 1) & 3;
        const tlen = body.readUInt16BE(0);
        const topic = body.toString('utf8', 2, 2 + tlen);
        let p = 2 + tlen;
        if (qos > 0) {
          this.ackOut.push(body.readUInt16BE(p));
          p += 2;
        }
        this.onPublish?.(topic, body.subarray(p), qos);
        return;
      }
      case 4: {
        // PUBACK
        const id = body.readUInt16BE(0);
        const cb = this.acks.get(id);
        if (cb) {
          this.acks.delete(id);
          cb();
        }
        return;
      }
      case 9: {
        // SUBACK
        const id = body.readUInt16BE(0);
        const cb = this.subs.get(id);
        if (cb) {
          this.subs.delete(id);
          cb([...body.subarray(2)]);
        }
        return;
      }
      default:
        return; // PINGRESP and anything else
    }
  }
}
