/**
 * A TCP proxy between MQTT clients and a broker that counts the real bytes each way and splits
 * them into MQTT packets (fixed header + remaining length), so the wire scenario can say exactly
 * which packet cost what. Loopback only.
 */
import { createServer, connect, type Server, type AddressInfo, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { assertLoopback } from './loadgen-spec.js';

export const PACKET_NAMES: Record<number, string> = {
  1: 'CONNECT', 2: 'CONNACK', 3: 'PUBLISH', 4: 'PUBACK', 5: 'PUBREC', 6: 'PUBREL', 7: 'PUBCOMP',
  8: 'SUBSCRIBE', 9: 'SUBACK', 10: 'UNSUBSCRIBE', 11: 'UNSUBACK', 12: 'PINGREQ', 13: 'PINGRESP', 14: 'DISCONNECT',
};

export interface Frame {
  /** Connection number, in accept order. */
  conn: number;
  /** The clientId from that connection's CONNECT. */
  clientId: string;
  /** c2s: client to broker; s2c: broker to client. */
  dir: 'c2s' | 's2c';
  type: number;
  /** Whole packet: fixed header + remaining length bytes + the rest. */
  bytes: number;
  topic?: string;
  payload?: Buffer;
  /** When the packet was complete. */
  t: number;
  /** TCP reads the packet arrived in (1 = in one piece). */
  segments: number;
  /** From its first byte to its last, ms (0 when it came in one read). */
  spreadMs: number;
}

type OnFrame = (first: number, whole: Buffer, body: Buffer, segments: number, spreadMs: number) => void;

/** Splits a byte stream into MQTT packets, noting packets that arrived in several reads. */
class Splitter {
  private buf: Buffer = Buffer.alloc(0);
  /** The waiting partial packet: when its first byte came, and in how many reads so far. */
  private since = 0;
  private reads = 0;
  constructor(private readonly onFrame: OnFrame) {}
  push(chunk: Buffer): void {
    const now = performance.now();
    const continuing = this.buf.length > 0;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    let first = true;
    for (;;) {
      if (this.buf.length < 2) break;
      let rl = 0;
      let mul = 1;
      let i = 1;
      let complete = false;
      for (; i < Math.min(5, this.buf.length); ) {
        const b = this.buf[i++] as number;
        rl += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete || this.buf.length < i + rl) break;
      const whole = this.buf.subarray(0, i + rl);
      const split = first && continuing;
      this.onFrame(this.buf[0] as number, whole, whole.subarray(i), split ? this.reads + 1 : 1, split ? now - this.since : 0);
      first = false;
      this.buf = this.buf.subarray(i + rl);
    }
    if (this.buf.length > 0) {
      if (first && continuing) this.reads++;
      else {
        this.since = now;
        this.reads = 1;
      }
    }
  }
}

export class CountingProxy {
  readonly frames: Frame[] = [];
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  static async start(host: string, port: number): Promise<CountingProxy> {
    assertLoopback(host);
    const p = new CountingProxy();
    let n = 0;
    p.server = createServer((client) => {
      const conn = ++n;
      let clientId = '';
      const upstream = connect({ host, port });
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      p.sockets.add(client);
      p.sockets.add(upstream);
      const record = (dir: Frame['dir']): OnFrame => (first, whole, body, segments, spreadMs) => {
        const type = first >> 4;
        const f: Frame = { conn, clientId, dir, type, bytes: whole.length, t: performance.now(), segments, spreadMs };
        if (type === 1 && dir === 'c2s') {
          // CONNECT 3.1.1: "MQTT"(2+4) level(1) flags(1) keepalive(2), then the clientId field.
          const len = body.readUInt16BE(10);
          clientId = body.toString('utf8', 12, 12 + len);
          f.clientId = clientId;
        }
        if (type === 3) {
          const qos = (first >> 1) & 3;
          const tlen = body.readUInt16BE(0);
          f.topic = body.toString('utf8', 2, 2 + tlen);
          f.payload = Buffer.from(body.subarray(2 + tlen + (qos > 0 ? 2 : 0)));
        }
        p.frames.push(f);
      };
      const up = new Splitter(record('c2s'));
      const down = new Splitter(record('s2c'));
      client.on('data', (d: Buffer) => {
        up.push(d);
        upstream.write(d);
      });
      upstream.on('data', (d: Buffer) => {
        down.push(d);
        client.write(d);
      });
      const end = (): void => {
        client.destroy();
        upstream.destroy();
      };
      client.on('close', end);
      upstream.on('close', end);
      client.on('error', end);
      upstream.on('error', end);
    });
    await new Promise<void>((r) => p.server!.listen(0, '127.0.0.1', () => r()));
    p.port = (p.server.address() as AddressInfo).port;
    return p;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
