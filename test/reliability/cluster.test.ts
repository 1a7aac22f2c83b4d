/**
 * The cluster, proven: two broker processes of their own (PARLEY_ROLES=broker) share the test
 * platform's Redis and store; the API and the workers run in the test process. A device may
 * connect to any node: delivery, offline queueing, session takeover and receipts work across
 * nodes; killing the node a sender is on, with messages in flight, loses nothing acknowledged
 * once the sender's reconnection (through a balancer, as in a deployment) lands on the other node;
 * a draining node (SIGTERM) closes its clients, which reconnect to the other node; presence and a
 * revocation reach across nodes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../services/src/redis/spawn.js';
import { startTestPlatform, until, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, statusOf } from '../helpers/sdk.js';
import { startBalancer } from '../helpers/tcp-balancer.js';

let p: TestPlatform;
const nodes: Array<{ child: ChildProcess; port: number; out: () => string }> = [];

async function startNode(): Promise<{ child: ChildProcess; port: number; out: () => string }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--conditions=parley-source', '--import', 'tsx', 'services/src/main.ts'], {
    env: {
      ...process.env, PARLEY_ROLES: 'broker', PARLEY_REDIS_URL: p.platform.urls.redis, PARLEY_DATA_DIR: p.dataDir,
      PARLEY_HOST: '127.0.0.1', PARLEY_MQTT_PORT: String(port), PARLEY_WS_PORT: String(await freePort()), PARLEY_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  await until(() => out.includes('Press Ctrl-C to stop.') || child.exitCode !== null, 60_000, 'broker node start');
  if (child.exitCode !== null) throw new Error(`broker node exited: ${out}`);
  const node = { child, port, out: () => out };
  nodes.push(node);
  return node;
}

beforeAll(async () => {
  p = await startTestPlatform({ PARLEY_ROLES: 'api,workers' });
});
afterEach(async () => { await closeAll(); });
afterAll(async () => {
  for (const n of nodes) n.child.kill('SIGKILL');
  await p?.close();
});

const url = (port: number): string => `mqtt://127.0.0.1:${port}`;

describe('two broker processes', () => {
  it('deliver, queue for an offline device, take a session over and carry receipts across nodes', async () => {
    const [n1, n2] = [await startNode(), await startNode()];
    const [alice, bob] = await Promise.all([p.register(), p.register()]);
    const a = device(url(n1.port), alice, { apiUrl: p.httpUrl });
    const b = device(url(n2.port), bob, { apiUrl: p.httpUrl });
    await Promise.all([a.client.connect(), b.client.connect()]);

    // Sender on node 1, recipient on node 2.
    const first = await a.client.sendMessage(bob.userId, 'across nodes');
    await until(() => b.messages.length === 1, 15_000, 'delivery across nodes');
    expect(b.messages[0]).toMatchObject({ msgId: first.msgId, text: 'across nodes' });

    // The read receipt from node 2 reaches the sender on node 1.
    await b.client.markRead(first.msgId);
    await until(() => statusOf(a, first.msgId) === 'read', 15_000, 'read tick across nodes');

    // Recipient away: queued, then delivered in order when he comes back on the other node.
    await b.client.close();
    const queued = [];
    for (let i = 0; i < 5; i++) queued.push((await a.client.sendMessage(bob.userId, `queued ${i}`)).msgId);
    const b2 = device(url(n1.port), bob, { apiUrl: p.httpUrl });
    await b2.client.connect();
    await until(() => b2.messages.length >= 5, 15_000, 'offline queue on the other node');
    expect(b2.messages.map((m) => m.msgId)).toEqual(queued);

    // Session takeover: the same device connects on node 2 while connected on node 1; the old
    // connection is closed (MQTT-3.1.4-2) and the new one gets what follows.
    const old = await mqtt.connectAsync(url(n2.port), { clientId: bob.deviceId, username: bob.deviceId, password: bob.token, clean: false, reconnectPeriod: 0 });
    let oldClosed = false;
    old.on('close', () => { oldClosed = true; });
    const b3 = device(url(n1.port), bob, { apiUrl: p.httpUrl });
    await b2.client.close();
    await b3.client.connect();
    await until(() => oldClosed, 15_000, 'the older session closed by the takeover');
    const after = await a.client.sendMessage(bob.userId, 'after the takeover');
    await until(() => b3.messages.some((m) => m.msgId === after.msgId), 15_000, 'delivery after the takeover');
    old.end(true);
  });

  it('killing the sender\'s node with messages in flight loses nothing acknowledged once he reconnects to the other node', async () => {
    const [n1, n2] = [await startNode(), await startNode()];
    const [alice, bob] = await Promise.all([p.register(), p.register()]);
    // Alice reaches the brokers through a balancer that prefers node 1; Bob is on node 2.
    const lb = await startBalancer([n1.port, n2.port]);
    try {
      const a = device(lb.url, alice, { apiUrl: p.httpUrl });
      const b = device(url(n2.port), bob, { apiUrl: p.httpUrl });
      await Promise.all([a.client.connect(), b.client.connect()]);
      const N = 300;
      const sends: Array<Promise<unknown>> = [];
      for (let i = 0; i < N; i++) sends.push(a.client.send(bob.userId, `m${i}`));
      // Kill node 1 once some are through and others are still in flight.
      await until(() => b.messages.length >= 20, 30_000, 'the first messages');
      n1.child.kill('SIGKILL');
      await Promise.all(sends);
      await until(() => b.messages.length >= N, 60_000, 'every message after the failover');
      const texts = b.messages.map((m) => m.text);
      expect(new Set(texts).size).toBe(N); // no duplicate reached the application
      expect(texts).toEqual(Array.from({ length: N }, (_, i) => `m${i}`)); // in order
      expect(a.errors.filter((e) => e.code !== 'E_UNAVAILABLE' && e.code !== 'E_TIMEOUT')).toEqual([]);
    } finally {
      await lb.close();
    }
  });

  it('presence and revocation work across nodes', async () => {
    const [n1, n2] = [await startNode(), await startNode()];
    const [alice, bob] = await Promise.all([p.register(), p.register()]);
    const a = device(url(n1.port), alice, { apiUrl: p.httpUrl });
    const b = device(url(n2.port), bob, { apiUrl: p.httpUrl });
    const seen: Array<{ userId: string; online: boolean }> = [];
    a.client.on('presence', (x) => seen.push(x));
    await Promise.all([a.client.connect(), b.client.connect()]);
    const { chatId } = await a.client.sendMessage(bob.userId, 'hello');
    const lastOf = (): boolean | undefined => seen.filter((x) => x.userId === bob.userId).at(-1)?.online;

    // Alice on node 1 watches the chat; bob is on node 2.
    a.client.watchChats([chatId]);
    await until(() => lastOf() === true, 15_000, 'bob online, seen from the other node');
    await b.client.close();
    await until(() => lastOf() === false, 15_000, 'bob offline, seen from the other node');

    // Bob's second device on node 1 is revoked by his first device on node 2: its connection on
    // node 1 is closed and its token refused from then on, on either node.
    const laptop = await p.linkDevice(bob.token, 'laptop');
    const raw = await mqtt.connectAsync(url(n1.port), { clientId: laptop.deviceId, username: laptop.deviceId, password: laptop.token, reconnectPeriod: 0 });
    let closed = false;
    raw.on('close', () => { closed = true; });
    const b2 = device(url(n2.port), bob, { apiUrl: p.httpUrl });
    await b2.client.connect();
    await until(() => lastOf() === true, 15_000, 'bob online again');
    await b2.client.revokeDevice(laptop.deviceId);
    await until(() => closed, 15_000, 'the revoked device disconnected on the other node');
    for (const port of [n1.port, n2.port]) {
      await expect(mqtt.connectAsync(url(port), { clientId: laptop.deviceId, username: laptop.deviceId, password: laptop.token, reconnectPeriod: 0 }))
        .rejects.toThrow(/Not authorized|Bad username or password/i);
    }
    raw.end(true);
  });

  it('a draining node (SIGTERM) closes its clients, which reconnect to the other node and miss nothing', async () => {
    const [n1, n2] = [await startNode(), await startNode()];
    const [alice, bob] = await Promise.all([p.register(), p.register()]);
    const lb = await startBalancer([n1.port, n2.port]);
    try {
      const a = device(url(n2.port), alice, { apiUrl: p.httpUrl });
      const b = device(lb.url, bob, { apiUrl: p.httpUrl });
      await Promise.all([a.client.connect(), b.client.connect()]);
      const before = await a.client.sendMessage(bob.userId, 'before the drain');
      await until(() => b.messages.length === 1, 15_000, 'delivery through node 1');
      const exited = new Promise<number | null>((r) => n1.child.once('exit', (code) => r(code)));
      n1.child.kill('SIGTERM');
      expect(await exited).toBe(0);
      const after = await a.client.sendMessage(bob.userId, 'after the drain');
      await until(() => b.messages.length === 2, 15_000, 'delivery after reconnecting to node 2');
      expect(b.messages.map((m) => m.msgId)).toEqual([before.msgId, after.msgId]);
    } finally {
      await lb.close();
    }
  });
});
