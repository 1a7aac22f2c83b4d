/**
 * The worker role as separate processes: a kill -9 in the middle of a 1,024-device group fan-out,
 * and two worker processes sharing the ordered persist queues. Broker and API run in one child
 * process, the workers in others, all on one private Redis and one SQLite file; group members are
 * made in bulk through the store ports, the group through the API.
 */
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue, QueueEvents } from 'bullmq';
import { ParleyClient, type ChatMessage } from '@parley/client-sdk';
import { freePort, startRedisServer, type RedisServer } from '../../services/src/redis/spawn.js';
import { createSqliteStore } from '../../services/src/store/sqlite.js';
import type { Store } from '../../services/src/store/types.js';
import { persistQueueName } from '../../services/src/queues.js';
import type { FanoutResult } from '../../services/src/workers/fanout.js';
import type { PersistResult } from '../../services/src/workers/persist.js';
import { exclusive, spawnRole, tempDir, until, type RoleProcess } from './helpers.js';
import { createGroupOverApi, createMembers, type Member } from '../helpers/members.js';

interface Dev { member: Member; client: ParleyClient; messages: ChatMessage[] }

let dir: string;
let redis: RedisServer;
let store: Store;
const roles: RoleProcess[] = [];
const devs: Dev[] = [];
const listeners: QueueEvents[] = [];

beforeAll(async () => {
  dir = tempDir('parley-workers-');
  redis = await startRedisServer({ dir: join(dir, 'redis') });
}, 60_000);

afterAll(async () => {
  await Promise.all(devs.map((d) => d.client.close().catch(() => undefined)));
  await Promise.all(listeners.map((l) => l.close()));
  await Promise.all(roles.map((r) => r.stop()));
  await store?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

const members = (n: number): Promise<Member[]> => createMembers(store, n, '78');

function connect(url: string, m: Member): Dev {
  const client = new ParleyClient({
    url, deviceId: m.deviceId, token: m.token, userId: m.userId, reconnectPeriodMs: 100, maxReconnectPeriodMs: 1000, connectTimeoutMs: 30_000,
  });
  const d: Dev = { member: m, client, messages: [] };
  // Chat messages only: a group's `created` event (seq 1) is not what these tests count.
  client.on('newMessage', (msg) => { if (!msg.event) d.messages.push(msg); });
  devs.push(d);
  return d;
}

function events(queue: string): QueueEvents {
  const e = new QueueEvents(queue, { connection: { url: redis.url }, prefix: 'parley' });
  listeners.push(e);
  return e;
}

describe('worker processes', () => {
  let mqttUrl: string;
  let httpUrl: string;
  const common = (): Record<string, string> => ({
    PARLEY_DATA_DIR: dir,
    PARLEY_REDIS_URL: redis.url,
    PARLEY_SECRET: 'workers-test-secret-0123456789',
    PARLEY_LOG_LEVEL: 'warn',
    PARLEY_WS_PORT: '0',
    PARLEY_FANOUT_CHUNK: '16',
  });

  beforeAll(async () => {
    const [mqtt, http] = [await freePort(), await freePort()];
    roles.push(await spawnRole('broker,api', { ...common(), PARLEY_MQTT_PORT: String(mqtt), PARLEY_HTTP_PORT: String(http) }, 'broker'));
    mqttUrl = `mqtt://127.0.0.1:${mqtt}`;
    httpUrl = `http://127.0.0.1:${http}`;
    // The broker process created the schema; this handle only adds users and devices.
    store = createSqliteStore({ file: join(dir, 'parley.sqlite') });
    await store.init();
  }, 60_000);

  it('kill -9 of the worker in the middle of a 1,024-device fan-out: after a restart every device has the message exactly once', () => exclusive('heavy', async () => {
    // One job at a time, 16 devices per chunk: 64 chunks, so the kill lands in the middle.
    const workers = await spawnRole('workers', { ...common(), PARLEY_WORKER_CONCURRENCY: '1' }, 'workers-a');
    roles.push(workers);
    const group = await members(1024);
    const chatId = await createGroupOverApi(httpUrl, group[0]!.token, group.slice(1).map((m) => m.userId));

    const online = group.slice(0, 50).map((m) => connect(mqttUrl, m));
    await Promise.all(online.map((d) => d.client.connect()));
    const [sender, ...receivers] = online as [Dev, ...Dev[]];

    // The group's `created` message is fanned out first: let that finish, so the kill below lands
    // in the fan-out of the message under test.
    const fanoutQueue = new Queue('fanout', { connection: { url: redis.url }, prefix: 'parley' });
    await until(async () => {
      const n = await fanoutQueue.getJobCounts('wait', 'active', 'delayed', 'prioritized');
      return Object.values(n).every((x) => x === 0);
    }, 60_000, 'the created message fanned out');
    await fanoutQueue.close();
    const fanout = events('fanout');
    await fanout.waitUntilReady();
    const chunks: FanoutResult[] = [];
    let killed: Promise<void> | null = null;
    let chunksBeforeKill = -1;
    fanout.on('completed', ({ returnvalue }) => {
      chunks.push(returnvalue as unknown as FanoutResult);
      if (!killed) {
        chunksBeforeKill = chunks.length;
        killed = workers.kill('SIGKILL');
      }
    });
    await sender.client.send(chatId, 'to everyone');
    await until(() => killed !== null, 30_000, 'the first fan-out chunk');
    await killed;
    // Killed in the middle: most chunks had not run.
    expect(chunksBeforeKill).toBeLessThan(1024 / 16);
    await workers.restart();

    await until(() => receivers.every((d) => d.messages.length >= 1), 60_000, 'every connected member has the message');
    const offline = group.slice(50, 90).map((m) => connect(mqttUrl, m));
    await Promise.all(offline.map((d) => d.client.connect()));
    await until(() => offline.every((d) => d.messages.length >= 1), 60_000, 'returning members have the message');
    // A sentinel after everything settled: then each device shows exactly two messages.
    await sender.client.send(chatId, 'sentinel');
    const everyone = [...receivers, ...offline];
    await until(() => everyone.every((d) => d.messages.length >= 2), 60_000, 'the sentinel');
    for (const d of everyone) expect(d.messages.map((m) => m.text)).toEqual(['to everyone', 'sentinel']);
    expect((await store.history(chatId, 0, 10)).filter((m) => !m.event).map((m) => m.body)).toEqual(['to everyone', 'sentinel']);
  }), 240_000);

  it('two worker processes share the ordered queues: per-chat order holds for 20 chats and nothing is stored twice', () => exclusive('heavy', async () => {
    roles.push(await spawnRole('workers', common(), 'workers-b'));
    const persisted: PersistResult[] = [];
    for (let shard = 0; shard < 8; shard++) {
      const e = events(persistQueueName(shard));
      e.on('completed', ({ returnvalue }) => persisted.push(returnvalue as unknown as PersistResult));
      await e.waitUntilReady();
    }
    const people = await members(40);
    const pairs = Array.from({ length: 20 }, (_, i) => [connect(mqttUrl, people[2 * i]!), connect(mqttUrl, people[2 * i + 1]!)] as const);
    await Promise.all(pairs.flat().map((d) => d.client.connect()));
    const PER_CHAT = 100;
    // Every sender sends its 100 messages at once, all 20 chats at the same time.
    await Promise.all(pairs.map(([from, to]) => Promise.all(
      Array.from({ length: PER_CHAT }, (_, i) => from.client.send(to.member.userId, `m${i}`)),
    )));
    await until(() => pairs.every(([, to]) => to.messages.length >= PER_CHAT), 60_000, 'every chat delivered');
    for (const [from, to] of pairs) {
      expect(to.messages.map((m) => m.text)).toEqual(Array.from({ length: PER_CHAT }, (_, i) => `m${i}`));
      expect(to.messages.map((m) => m.seq)).toEqual(Array.from({ length: PER_CHAT }, (_, i) => i + 1));
      const stored = await store.history(to.messages[0]!.chatId, 0, 1000);
      expect(stored).toHaveLength(PER_CHAT);
      expect(new Set(stored.map((m) => m.clientMsgId)).size).toBe(PER_CHAT);
      expect(stored.every((m) => m.senderDeviceId === from.member.deviceId)).toBe(true);
    }
    // Both processes stored some of it.
    const byWorker = new Map<string, number>();
    for (const r of persisted) byWorker.set(r.by, (byWorker.get(r.by) ?? 0) + r.messages);
    expect([...byWorker.values()].filter((n) => n > 0).length).toBeGreaterThanOrEqual(2);
  }), 240_000);
});
