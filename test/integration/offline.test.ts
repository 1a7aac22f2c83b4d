/**
 * Offline delivery: a recipient away while 500 messages are sent gets all of them, in seq order
 * and once, after the broker and the workers (and the API) restarted in between; and a device
 * whose broker session was lost (Redis flushed) recovers from the store.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { freePort, startRedisServer, type RedisServer } from '../../services/src/redis/spawn.js';
import { captureSms, startTestPlatform, until, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device } from '../helpers/sdk.js';

let redis: RedisServer;
let dataDir: string;
let env: Record<string, string>;
const sms = captureSms();
let tp: TestPlatform | undefined;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'parley-offline-'));
  redis = await startRedisServer({ dir: join(dataDir, 'redis-ext') });
  // Fixed ports so the SDK clients find the restarted broker where the old one was.
  env = {
    PARLEY_REDIS_URL: redis.url,
    PARLEY_MQTT_PORT: String(await freePort()),
    PARLEY_HTTP_PORT: String(await freePort()),
  };
});
afterEach(async () => {
  await closeAll();
  await tp?.close();
  tp = undefined;
});
afterAll(async () => {
  await redis?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

const start = async (): Promise<TestPlatform> => (tp = await startTestPlatform(env, { dataDir, sms }));

/** Starts the platform; Bob connects once (his persistent session now exists) and goes away; Alice is online. */
async function bobAway() {
  await start();
  const alice = await tp!.register();
  const bob = await tp!.register();
  const url = tp!.mqttUrl;
  const b0 = device(url, bob);
  await b0.client.connect();
  await b0.client.close();
  const a = device(url, alice);
  await a.client.connect();
  return { bob, url, a };
}

describe('offline delivery', () => {
  it('delivers 500 messages sent while the recipient was away, across a restart of broker and workers, in order and once', async () => {
    const { bob, url, a } = await bobAway();
    const first = await Promise.all(Array.from({ length: 250 }, (_, i) => a.client.send(bob.userId, `m${i}`)));
    expect(first).toHaveLength(250);

    // Restart everything but Redis and the data dir. PUBACKed messages may still sit in BullMQ
    // unprocessed: the new workers take them over.
    await tp!.close();
    tp = undefined;
    expect(a.client.state).not.toBe('connected');
    await start();

    // Alice's SDK reconnects by itself; she sends the second half.
    await until(() => a.client.state === 'connected', 20_000, 'alice reconnects');
    await Promise.all(Array.from({ length: 250 }, (_, i) => a.client.send(bob.userId, `m${250 + i}`)));

    const b = device(url, bob);
    await b.client.connect();
    await until(() => b.messages.length >= 500, 60_000, '500 messages at bob');
    expect(b.messages.map((m) => m.text)).toEqual(Array.from({ length: 500 }, (_, i) => `m${i}`));
    expect(b.messages.map((m) => m.seq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    // Nothing more arrives after a sentinel: no duplicates were queued.
    await a.client.send(bob.userId, 'sentinel');
    await until(() => b.messages.some((m) => m.text === 'sentinel'), 10_000, 'sentinel');
    expect(b.messages).toHaveLength(501);
  });

  it('recovers from the store when the broker session was lost (Redis flushed)', async () => {
    const { bob, url, a } = await bobAway();
    const sent = await Promise.all(Array.from({ length: 50 }, (_, i) => a.client.send(bob.userId, `x${i}`)));
    // Wait until every message is stored, then lose every broker session and queue.
    await Promise.all(sent.map((s) => a.client.waitStored(s.clientMsgId)));
    const r = new Redis(redis.url);
    await r.flushall();
    r.disconnect();

    const b = device(url, bob);
    await b.client.connect();
    await until(() => b.messages.length >= 50, 30_000, '50 messages after session loss');
    expect(b.messages.map((m) => m.text)).toEqual(Array.from({ length: 50 }, (_, i) => `x${i}`));
    await until(() => b.synced.length > 0, 10_000, 'synced');
    expect(b.synced[0]?.count).toBe(50);
  });

  it('resyncs the devices of a node whose cluster-bus connection to Redis dropped', async () => {
    const { bob, url, a } = await bobAway();
    const b = device(url, bob);
    await b.client.connect(); // bob's session exists: no sync of its own
    expect(b.synced).toEqual([]);
    // Drop every pub/sub connection: publishes on the bus are lost until they reconnect.
    const r = new Redis(redis.url);
    const pubsubClients = async (): Promise<number> => String(await r.call('CLIENT', 'LIST', 'TYPE', 'pubsub')).split('\n').filter(Boolean).length;
    const before = await pubsubClients();
    await r.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    // The broker notices its bus came back and has the workers resend what bob has not acknowledged.
    await until(() => b.synced.length === 1, 15_000, 'resync after the bus reconnected');
    await a.client.send(bob.userId, 'after the blip');
    await until(() => b.messages.some((m) => m.text === 'after the blip'), 10_000, 'message after the blip');
    // Every subscriber connection is subscribed again before the platform closes: ioredis does not
    // handle the promise of its own re-subscription, which a connection ended meanwhile rejects.
    await until(async () => (await pubsubClients()) >= before, 10_000, 'the subscribers back');
    r.disconnect();
  });
});
