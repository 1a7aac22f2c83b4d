/**
 * Malformed MQTT over raw TCP against a broker child process: a corpus of broken packets, each
 * answered as MQTT 3.1.1 requires (the clause is in each case's name), then a seeded fuzzer that
 * mutates valid packets. Afterwards the broker is still up, serves a good client, and its resident
 * memory grew by less than a bound. The broker's framing checks live in broker/src/limits.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqttPacket, { type IConnackPacket, type Packet } from 'mqtt-packet';
import mqtt from 'mqtt';
import { decode, encode, inboxTopic, outboxTopic, type Envelope } from '@parley/client-sdk/protocol';
import {
  connectPacket, phoneFor, prng, rawMqtt, registerVia, sleep, startNode, until,
  type Account, type RawMqtt, type RoleProcess, type SingleNode,
} from './helpers.js';

const MAX_PACKET = 16 * 1024;
const FUZZ_ITERATIONS = 1000;
const FUZZ_SEED = 0x5eed;
/** Growth of the broker's RSS over the corpus, the fuzzer and the oversized flood. */
const RSS_BOUND = 64 * 1024 * 1024;

let env: SingleNode;
let broker: RoleProcess;
let port: number;
let a: Account;
let b: Account;

beforeAll(async () => {
  env = await startNode('malformed', {
    PARLEY_LOG_LEVEL: 'error',
    PARLEY_MAX_PAYLOAD_BYTES: '4096',
    PARLEY_MAX_PACKET_BYTES: String(MAX_PACKET),
    // The fuzzer logs in thousands of times from one address with mangled credentials.
    PARLEY_LOGIN_FAILURES_PER_MIN: '1000000',
  }, { name: 'broker' });
  broker = env.node;
  port = env.mqttPort;
  a = await registerVia(env.httpUrl, env.sms, phoneFor(301));
  b = await registerVia(env.httpUrl, env.sms, phoneFor(301));
}, 60_000);

afterAll(async () => {
  await env?.stop();
});

// --- building blocks ------------------------------------------------------------------------

const gen = (p: Packet): Buffer => mqttPacket.generate(p);
const str = (s: Buffer | string): Buffer => {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};
/** A packet with an explicit first byte and a body (remaining length < 128). */
const pkt = (first: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([first, body.length]), body]);
/** CONNECT with a free protocol name, level, flags and client id. */
const rawConnect = (name: string, level: number, flags: number, clientId: Buffer | string, tail: Buffer = Buffer.alloc(0)): Buffer =>
  pkt(0x10, Buffer.concat([str(name), Buffer.from([level, flags, 0, 30]), str(clientId), tail]));
const publishRaw = (qos: number, topic: Buffer | string, id: number | null, payload = Buffer.from('x')): Buffer =>
  pkt(0x30 | (qos << 1), Buffer.concat([str(topic), id === null ? Buffer.alloc(0) : Buffer.from([id >> 8, id & 0xff]), payload]));

interface Outcome {
  closed: boolean;
  packets: Packet[];
}

/** Opens a connection (CONNECT + CONNACK 0 first when `connected`), sends `bytes`, waits for the close. */
async function probe(bytes: Buffer, opts: { connected: boolean; waitMs?: number }): Promise<Outcome> {
  const raw = await rawMqtt(port);
  let from = 0;
  if (opts.connected) {
    raw.send(connectPacket(a.deviceId, a.token));
    const ack = (await raw.next((p) => p.cmd === 'connack')) as IConnackPacket;
    expect(ack.returnCode).toBe(0);
    from = raw.packets.length;
  }
  raw.send(bytes);
  await Promise.race([raw.whenClosed, sleep(opts.waitMs ?? 3000)]);
  const outcome = { closed: raw.closed, packets: raw.packets.slice(from) };
  raw.close();
  return outcome;
}

/** The server closed the connection without sending anything (MQTT 3.1.1 has no error packet). */
function expectClosedSilently(o: Outcome): void {
  expect(o.closed, 'connection closed').toBe(true);
  expect(o.packets.map((p) => p.cmd)).toEqual([]);
}

function expectConnackThenClose(o: Outcome, code: number): void {
  expect(o.closed, 'connection closed').toBe(true);
  expect(o.packets.map((p) => [p.cmd, (p as IConnackPacket).returnCode])).toEqual([['connack', code]]);
}

/** The good path: a device connects, publishes, gets its PUBACK and its `stored`. */
async function goodClientWorks(tag: string): Promise<void> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    clientId: b.deviceId, username: b.deviceId, password: b.token, clean: false, reconnectPeriod: 0, protocolVersion: 4,
  });
  try {
    const got: Envelope[] = [];
    c.on('message', (_t, p) => got.push(decode(p)));
    await c.subscribeAsync(inboxTopic(b.deviceId), { qos: 1 });
    await c.publishAsync(outboxTopic(b.deviceId), Buffer.from(encode({ kind: 'send', clientMsgId: tag, to: a.userId, body: 'still here' })), { qos: 1 });
    await until(() => got.some((e) => e.kind === 'stored' && e.clientMsgId === tag), 15_000, 'stored for the good client');
  } finally {
    await c.endAsync(true);
  }
}

// --- the corpus -------------------------------------------------------------------------------

describe('malformed MQTT: the corpus, before CONNECT', () => {
  const cases: Array<[string, () => Buffer, (o: Outcome) => void]> = [
    ['[MQTT-3.1.0-1] PUBLISH before CONNECT: close', () => publishRaw(0, 'outbox/x', null), expectClosedSilently],
    ['[MQTT-3.1.0-1] SUBSCRIBE before CONNECT: close', () => gen({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'inbox/x', qos: 1 }] }), expectClosedSilently],
    ['[MQTT-3.1.0-1] PINGREQ before CONNECT: close', () => gen({ cmd: 'pingreq' }), expectClosedSilently],
    ['[MQTT-3.1.2-1] protocol name "MQTX": close without CONNACK', () => rawConnect('MQTX', 4, 0x02, 'dAAAAAAAAAAAA'), expectClosedSilently],
    ['[MQTT-3.1.2-2] protocol level 5 (an MQTT 5 client): CONNACK 0x01, then close', () => gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'x', keepalive: 30 }), (o) => expectConnackThenClose(o, 1)],
    ['[MQTT-3.1.2-2] protocol level 6: CONNACK 0x01, then close', () => rawConnect('MQTT', 6, 0x02, 'dAAAAAAAAAAAA'), (o) => expectConnackThenClose(o, 1)],
    ['[MQTT-3.1.2-2] protocol level 2: CONNACK 0x01, then close', () => rawConnect('MQTT', 2, 0x02, 'dAAAAAAAAAAAA'), (o) => expectConnackThenClose(o, 1)],
    ['[MQTT-3.1.2-3] reserved CONNECT flag set: close', () => rawConnect('MQTT', 4, 0x03, 'dAAAAAAAAAAAA'), expectClosedSilently],
    ['[MQTT-3.1.2-13] will QoS without the will flag: close', () => rawConnect('MQTT', 4, 0x02 | 0x08, 'dAAAAAAAAAAAA'), expectClosedSilently],
    ['[MQTT-3.1.2-22] password flag without user name flag: close', () => rawConnect('MQTT', 4, 0x02 | 0x40, 'dAAAAAAAAAAAA', str('pw')), expectClosedSilently],
    ['[MQTT-3.1.3-8] empty client id without clean session: CONNACK 0x02, then close', () => rawConnect('MQTT', 4, 0x00, ''), (o) => expectConnackThenClose(o, 2)],
    ['[MQTT-2.2.2-2] CONNECT with reserved fixed-header flags: close', () => { const c = rawConnect('MQTT', 4, 0x02, 'dAAAAAAAAAAAA'); c[0] = 0x12; return c; }, expectClosedSilently],
    ['[MQTT-1.5.3-1] client id that is not UTF-8: close', () => rawConnect('MQTT', 4, 0x02, Buffer.from([0x64, 0xc3, 0x28])), expectClosedSilently],
    ['[MQTT-2.2.3] remaining length in five bytes: close', () => Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]), expectClosedSilently],
    ['[MQTT-4.8.0-1] remaining length shorter than the CONNECT fields: close', () => Buffer.from([0x10, 0x05, 0x00, 0x04, 0x4d, 0x51, 0x54]), expectClosedSilently],
    ['[MQTT-3.2.2-5] a good CONNECT with a wrong token: CONNACK 0x04, then close', () => gen(connectPacket(a.deviceId, `${a.deviceId}.not-the-right-secret-at-all`)), (o) => expectConnackThenClose(o, 4)],
  ];
  it.each(cases)('%s', async (_name, bytes, check) => {
    check(await probe(bytes(), { connected: false }));
  });
});

describe('malformed MQTT: the corpus, after CONNACK', () => {
  const inbox = (): string => inboxTopic(a.deviceId);
  const cases: Array<[string, () => Buffer]> = [
    ['[MQTT-3.1.0-2] a second CONNECT: close', () => gen(connectPacket(a.deviceId, a.token))],
    ['[MQTT-3.3.1-4] PUBLISH with QoS 3: close, no PUBACK', () => { const p = publishRaw(1, outboxTopic(a.deviceId), 7); p[0] = 0x36; return p; }],
    ['[MQTT-3.3.2-2] "+" in a PUBLISH topic: close', () => publishRaw(1, 'outbox/+', 7)],
    ['[MQTT-3.3.2-2] "#" in a PUBLISH topic: close', () => publishRaw(1, 'outbox/#', 7)],
    ['[MQTT-4.7.3-1] empty PUBLISH topic: close', () => publishRaw(1, '', 7)],
    ['[MQTT-1.5.3-1] PUBLISH topic that is not UTF-8: close, no PUBACK', () => publishRaw(1, Buffer.from([0x6f, 0x75, 0x74, 0xff, 0xfe]), 7)],
    ['[MQTT-1.5.3-1] PUBLISH topic with an encoded surrogate: close', () => publishRaw(1, Buffer.from([0x6f, 0xed, 0xa0, 0x80]), 7)],
    ['[MQTT-1.5.3-2] PUBLISH topic with U+0000: close', () => publishRaw(1, Buffer.from('outbox/\u0000x'), 7)],
    ['[MQTT-2.3.1-1] PUBLISH QoS 1 with packet identifier 0: close', () => publishRaw(1, outboxTopic(a.deviceId), 0)],
    ['[MQTT-4.8.0-1] PUBLISH whose topic is longer than the packet: close', () => Buffer.from([0x30, 0x03, 0x00, 0x0a, 0x61])],
    ['[MQTT-3.8.1-1] SUBSCRIBE with reserved flags 0000: close', () => pkt(0x80, Buffer.concat([Buffer.from([0, 1]), str(inbox()), Buffer.from([1])]))],
    ['[MQTT-3.8.3-3] SUBSCRIBE without topic filters: close', () => pkt(0x82, Buffer.from([0, 1]))],
    ['[MQTT-3-8.3-4] SUBSCRIBE asking for QoS 3: close', () => pkt(0x82, Buffer.concat([Buffer.from([0, 1]), str(inbox()), Buffer.from([3])]))],
    ['[MQTT-3-8.3-4] SUBSCRIBE with reserved bits in the requested QoS: close', () => pkt(0x82, Buffer.concat([Buffer.from([0, 1]), str(inbox()), Buffer.from([0x41])]))],
    ['[MQTT-1.5.3-1] SUBSCRIBE filter that is not UTF-8: close', () => pkt(0x82, Buffer.concat([Buffer.from([0, 1]), str(Buffer.from([0xc0, 0xaf])), Buffer.from([1])]))],
    ['[MQTT-3.10.3-2] UNSUBSCRIBE without topic filters: close', () => pkt(0xa2, Buffer.from([0, 1]))],
    ['[MQTT-3.10.1-1] UNSUBSCRIBE with reserved flags 0000: close', () => pkt(0xa0, Buffer.concat([Buffer.from([0, 1]), str(inbox())]))],
    ['[MQTT-3.6.1-1] PUBREL with flags 0000: close', () => Buffer.from([0x60, 0x02, 0x00, 0x01])],
    ['[MQTT-4.8.0-1] PUBACK without its packet identifier: close', () => Buffer.from([0x40, 0x00])],
    ['[MQTT-4.8.0-1] PINGREQ with a body: close', () => Buffer.from([0xc0, 0x02, 0x00, 0x00])],
    ['[MQTT-2.2.2-2] DISCONNECT with reserved flags: close', () => Buffer.from([0xe1, 0x00])],
    ['[MQTT-2.2.1] reserved packet type 0: close', () => Buffer.from([0x00, 0x00])],
    ['[MQTT-2.2.1] reserved packet type 15: close', () => Buffer.from([0xf0, 0x00])],
    ['[MQTT-4.8.0-1] CONNACK sent by a client: close', () => Buffer.from([0x20, 0x02, 0x00, 0x00])],
    ['[MQTT-4.8.0-1] SUBACK sent by a client: close', () => Buffer.from([0x90, 0x03, 0x00, 0x01, 0x01])],
    ['[MQTT-2.2.3] remaining length in five bytes: close', () => Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01])],
  ];
  it.each(cases)('%s', async (_name, bytes) => {
    const o = await probe(bytes(), { connected: true });
    expect(o.closed, 'connection closed').toBe(true);
    // Nothing acknowledged the bad packet (no PUBACK, SUBACK, UNSUBACK, PINGRESP).
    expect(o.packets.filter((p) => p.cmd !== 'publish').map((p) => p.cmd)).toEqual([]);
  });

  it('answers the well-formed controls: PINGREQ -> PINGRESP, own inbox SUBSCRIBE -> SUBACK 1, DISCONNECT -> close', async () => {
    const raw = await rawMqtt(port);
    raw.send(connectPacket(a.deviceId, a.token));
    await raw.next((p) => p.cmd === 'connack');
    raw.send({ cmd: 'pingreq' });
    await raw.next((p) => p.cmd === 'pingresp');
    raw.send({ cmd: 'subscribe', messageId: 9, subscriptions: [{ topic: inboxTopic(a.deviceId), qos: 1 }] });
    const suback = await raw.next((p) => p.cmd === 'suback');
    expect((suback as { granted: number[] }).granted).toEqual([1]);
    raw.send({ cmd: 'disconnect' });
    await raw.whenClosed; // [MQTT-3.14.4-1]
  });
});

describe('malformed MQTT: size, fuzzing, memory', () => {
  let rssBefore = 0;
  beforeAll(async () => {
    await goodClientWorks('warm-up');
    rssBefore = broker.rss();
  });

  it(`closes a connection whose packet announces more than PARLEY_MAX_PACKET_BYTES (${MAX_PACKET}) before buffering it`, async () => {
    // A PUBLISH announcing 200 MB, then as much of it as the server will take.
    const raw = await rawMqtt(port);
    raw.send(connectPacket(a.deviceId, a.token));
    await raw.next((p) => p.cmd === 'connack');
    raw.send(Buffer.from([0x32, 0x80, 0x80, 0xd0, 0x5f]));
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let written = 0;
    while (!raw.closed && written < 50 * 1024 * 1024) {
      if (!raw.socket.write(chunk)) await Promise.race([new Promise((r) => raw.socket.once('drain', r)), raw.whenClosed, sleep(2000)]);
      written += chunk.length;
      if (written % (1024 * 1024) === 0) await sleep(0);
    }
    await Promise.race([raw.whenClosed, sleep(5000)]);
    expect(raw.closed).toBe(true);
    // Far less than the 50 MB it tried: socket buffers only, nothing held by the broker.
    expect(written).toBeLessThan(20 * 1024 * 1024);
    raw.close();
  });

  it(`survives ${FUZZ_ITERATIONS} mutated packet sequences (seed ${FUZZ_SEED}) and still serves a good client`, async () => {
    const rnd = prng(FUZZ_SEED);
    const valid = (): Buffer[] => [
      gen(connectPacket(a.deviceId, a.token)),
      gen({ cmd: 'subscribe', messageId: 1 + rnd.int(65000), subscriptions: [{ topic: inboxTopic(a.deviceId), qos: 1 }] }),
      gen({ cmd: 'publish', topic: outboxTopic(a.deviceId), qos: 1, messageId: 1 + rnd.int(65000), dup: false, retain: false, payload: Buffer.from(encode({ kind: 'send', clientMsgId: `f${rnd.int(1e6)}`, to: b.userId, body: 'fuzz' })) }),
      gen({ cmd: 'publish', topic: `receipts/c${'A'.repeat(12)}.1`, qos: 0, dup: false, retain: false, payload: Buffer.alloc(0) }),
      // Ephemeral kinds, QoS 0 as the SDK sends them and QoS 1 as a client might.
      gen({ cmd: 'publish', topic: outboxTopic(a.deviceId), qos: 0, dup: false, retain: false, payload: Buffer.from(encode({ kind: 'typing', chatId: `c${'A'.repeat(12)}`, state: rnd.pick(['typing', 'recording', 'stop'] as const) })) }),
      gen({ cmd: 'publish', topic: outboxTopic(a.deviceId), qos: 1, messageId: 1 + rnd.int(65000), dup: false, retain: false, payload: Buffer.from(encode({ kind: 'watch', chatIds: [`c${'A'.repeat(12)}`, `g${'B'.repeat(12)}`] })) }),
      // A server -> device kind from a device: refused (E_BAD_ENVELOPE).
      gen({ cmd: 'publish', topic: outboxTopic(a.deviceId), qos: 1, messageId: 1 + rnd.int(65000), dup: false, retain: false, payload: Buffer.from(encode({ kind: 'status', statusId: `s${'A'.repeat(12)}`, from: a.userId, ts: 1, expiresAt: 2, text: 'fuzz', background: 0xffffff, font: 9 })) }),
      gen({ cmd: 'unsubscribe', messageId: 1 + rnd.int(65000), unsubscriptions: [inboxTopic(a.deviceId)] }),
      gen({ cmd: 'pingreq' }),
      gen({ cmd: 'puback', messageId: 1 + rnd.int(65000) }),
      gen({ cmd: 'disconnect' }),
    ];
    const mutate = (buf: Buffer): Buffer => {
      const b2 = Buffer.from(buf);
      switch (rnd.int(7)) {
        case 0: // flip bits
          for (let i = 0, n = 1 + rnd.int(4); i < n; i++) b2[rnd.int(b2.length)]! ^= 1 << rnd.int(8);
          return b2;
        case 1: // random bytes at random places
          for (let i = 0, n = 1 + rnd.int(4); i < n; i++) b2[rnd.int(b2.length)] = rnd.int(256);
          return b2;
        case 2: // truncate
          return b2.subarray(0, rnd.int(b2.length));
        case 3: // garbage appended
          return Buffer.concat([b2, rnd.bytes(1 + rnd.int(40))]);
        case 4: // the remaining length byte
          if (b2.length > 1) b2[1] = rnd.int(256);
          return b2;
        case 5: // the first byte (type and flags)
          b2[0] = rnd.int(256);
          return b2;
        default: // pure noise
          return rnd.bytes(1 + rnd.int(64));
      }
    };
    const runOne = async (): Promise<void> => {
      const seq = valid();
      const packets = [seq[0]!, ...Array.from({ length: 1 + rnd.int(5) }, () => rnd.pick(seq.slice(1)))];
      const out = packets.map((p) => (rnd.next() < 0.5 ? mutate(p) : p));
      const raw: RawMqtt = await rawMqtt(port);
      // Written in random slices, so the parser sees packets split across reads.
      const all = Buffer.concat(out);
      for (let off = 0; off < all.length && !raw.closed;) {
        const n = 1 + rnd.int(Math.max(1, all.length - off));
        raw.socket.write(all.subarray(off, off + n));
        off += n;
        if (rnd.next() < 0.3) await sleep(1);
      }
      await Promise.race([raw.whenClosed, sleep(150)]);
      raw.close();
    };
    const CONCURRENCY = 8;
    let done = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (done < FUZZ_ITERATIONS) {
        done++;
        await runOne();
      }
    }));
    expect(broker.crashes).toEqual([]);
    await goodClientWorks('after-fuzz');
  }, 120_000);

  it(`kept its memory: RSS grew by less than ${RSS_BOUND / 1024 / 1024} MB over the oversized flood and the fuzzer`, () => {
    const after = broker.rss();
    console.log(`broker RSS before ${(rssBefore / 1048576).toFixed(1)} MB, after ${(after / 1048576).toFixed(1)} MB`);
    expect(after).toBeGreaterThan(0);
    expect(after - rssBefore).toBeLessThan(RSS_BOUND);
    expect(broker.crashes).toEqual([]);
  });
});
