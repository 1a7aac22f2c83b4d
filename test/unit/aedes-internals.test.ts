/**
 * Pins what broker/src/aedes-internals.ts relies on in Aedes' internals, against the installed
 * Aedes: if an upgrade moves `deliverQoS`, the order of `authenticate` and the subscription
 * restore, or the persistence calls around a QoS 1 delivery, these fail before the platform
 * silently loses or duplicates messages.
 */
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Aedes, type Client, type PublishPacket, type PubrelPacket } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import {
  AEDES_VERSION, interceptDelivery, liveOnlyPersistence, type AedesPacket,
} from '../../broker/src/aedes-internals.js';
import { until } from '../helpers/platform.js';

const isLiveOnly = (p: AedesPacket): boolean => p.topic.startsWith('pos/');

interface Rig {
  aedes: Aedes;
  url: string;
  intercepted: string[];
  acked: Array<PublishPacket | undefined>;
  close(): Promise<void>;
}

const open: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of open.splice(0).reverse()) await c();
});

async function rig(): Promise<Rig> {
  const memory = (await import('aedes-persistence')).default as unknown as () => object;
  const intercepted: string[] = [];
  const acked: Array<PublishPacket | undefined> = [];
  const aedes = await Aedes.createBroker({
    persistence: liveOnlyPersistence(memory(), isLiveOnly),
    authenticate(client, _u, _p, done) {
      // Must run before Aedes restores the session's subscriptions (they capture deliverQoS).
      const original = interceptDelivery(client, (packet, cb) => {
        intercepted.push(packet.topic);
        original!(packet, cb);
      });
      done(null, original !== null);
    },
  });
  aedes.on('ack', (packet: PublishPacket | PubrelPacket | undefined, _client: Client) => { acked.push(packet?.cmd === 'publish' ? packet : undefined); });
  const server: Server = createServer((s) => aedes.handle(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = async (): Promise<void> => {
    await new Promise<void>((r) => aedes.close(() => r()));
    await new Promise<void>((r) => server.close(() => r()));
  };
  open.push(close);
  return { aedes, url, intercepted, acked, close };
}

async function client(url: string, clientId: string): Promise<{ c: MqttClient; got: string[]; sessionPresent: boolean }> {
  const c = mqtt.connect(url, { clientId, clean: false, reconnectPeriod: 0, protocolVersion: 4 });
  const got: string[] = [];
  c.on('message', (topic, payload) => got.push(`${topic}:${payload.toString()}`));
  const connack = await new Promise<{ sessionPresent: boolean }>((res, rej) => {
    c.once('connect', (p) => res(p));
    c.once('error', rej);
  });
  open.push(() => new Promise<void>((r) => c.end(true, {}, () => r())));
  return { c, got, sessionPresent: connack.sessionPresent };
}

const publish = (aedes: Aedes, topic: string, text: string): Promise<void> =>
  new Promise((res, rej) => aedes.publish(
    { cmd: 'publish', topic, payload: Buffer.from(text), qos: 1, retain: false, dup: false },
    (err) => (err ? rej(err) : res()),
  ));

describe(`Aedes internals (written for aedes ${AEDES_VERSION})`, () => {
  it('is the Aedes version the patches were written for', () => {
    const installed = JSON.parse(readFileSync(new URL('../../node_modules/aedes/package.json', import.meta.url), 'utf8')) as { version: string };
    expect(installed.version).toBe(AEDES_VERSION);
  });

  it('routes every QoS 1 delivery through the intercepted deliverQoS, and hands the acked positional packet to the ack event', async () => {
    const r = await rig();
    const { c, got } = await client(r.url, 'dev1');
    await c.subscribeAsync(['pos/dev1', 'other/dev1'], { qos: 1 });
    await publish(r.aedes, 'pos/dev1', 'a');
    await publish(r.aedes, 'other/dev1', 'b');
    await until(() => got.length === 2 && r.acked.length === 2, 5000, 'two deliveries and their PUBACKs');
    expect(r.intercepted).toEqual(['pos/dev1', 'other/dev1']);
    expect(got).toEqual(['pos/dev1:a', 'other/dev1:b']);
    // The in-memory in-flight record answers outgoingClearMessageId with the packet itself.
    expect(r.acked.map((p) => p?.topic).sort()).toEqual(['other/dev1', 'pos/dev1']);
    expect(r.acked.find((p) => p?.topic === 'pos/dev1')?.payload.toString()).toBe('a');
  });

  it('keeps positional packets out of an offline session queue and the others in it', async () => {
    const r = await rig();
    const first = await client(r.url, 'dev2');
    await first.c.subscribeAsync(['pos/dev2', 'other/dev2'], { qos: 1 });
    await first.c.endAsync();
    await publish(r.aedes, 'pos/dev2', 'not queued');
    await publish(r.aedes, 'other/dev2', 'queued');
    const again = await client(r.url, 'dev2');
    expect(again.sessionPresent).toBe(true);
    await until(() => again.got.length >= 1, 5000, 'the queued packet');
    // A live positional packet after the reconnect still arrives: the subscription was restored
    // through the intercepted deliverQoS.
    await publish(r.aedes, 'pos/dev2', 'live');
    await until(() => again.got.length >= 2, 5000, 'the live packet');
    expect(again.got).toEqual(['other/dev2:queued', 'pos/dev2:live']);
  });

  it('answers a PUBACK for an id shared by a replayed session packet and a positional one in the order they were sent', async () => {
    const cleared: unknown[] = [];
    const inner = {
      async outgoingUpdate() { return undefined; },
      async outgoingClearMessageId(_c: unknown, p: { messageId: number }) { cleared.push(p.messageId); return { topic: 'other/d', messageId: p.messageId }; },
    };
    const wrapped = liveOnlyPersistence(inner, isLiveOnly) as unknown as typeof inner & {
      outgoingUpdate(c: object, p: AedesPacket): Promise<unknown>;
      outgoingClearMessageId(c: object, p: { messageId: number }): Promise<{ topic: string } | undefined>;
    };
    const client = {};
    const pkt = (topic: string, messageId: number): AedesPacket => ({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, retain: false, dup: false, messageId });
    // A session packet replayed with its old id 7, then a new positional packet that got id 7 too.
    await wrapped.outgoingUpdate(client, pkt('other/d', 7));
    await wrapped.outgoingUpdate(client, pkt('pos/d', 7));
    await wrapped.outgoingUpdate(client, pkt('pos/d', 8));
    expect((await wrapped.outgoingClearMessageId(client, { messageId: 7 }))?.topic).toBe('other/d');
    expect((await wrapped.outgoingClearMessageId(client, { messageId: 7 }))?.topic).toBe('pos/d');
    expect((await wrapped.outgoingClearMessageId(client, { messageId: 8 }))?.topic).toBe('pos/d');
    expect(cleared).toEqual([7]);
  });
});
