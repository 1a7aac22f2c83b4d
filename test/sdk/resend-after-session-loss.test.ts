/**
 * SDK behaviour against a plain Aedes broker standing in for the server's protocol side: after a
 * session loss (CONNACK sessionPresent = 0), the client asks for a sync and then resends, with the
 * same clientMsgId, every send whose `stored` answer it never got; after a plain reconnect
 * (session present: the server sends `stored` live only) it resends those at once, without a sync.
 */
import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Aedes } from 'aedes';
import { ParleyClient } from '@parley/client-sdk';
import { decode, encode, inboxTopic, newId, type Envelope } from '@parley/client-sdk/protocol';
import { until } from '../helpers/platform.js';

interface FakeServer { aedes: Aedes; server: Server; seen: Envelope[] }
const running: FakeServer[] = [];

async function fakeServer(port = 0): Promise<FakeServer & { port: number }> {
  const aedes = await Aedes.createBroker();
  const seen: Envelope[] = [];
  aedes.on('publish', (packet, client) => {
    if (!client || !packet.topic.startsWith('outbox/')) return;
    seen.push(decode(packet.payload as Buffer));
  });
  const server = createServer(aedes.handle);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  const fs = { aedes, server, seen };
  running.push(fs);
  return { ...fs, port: (server.address() as AddressInfo).port };
}

async function stop(fs: FakeServer): Promise<void> {
  await new Promise<void>((r) => fs.aedes.close(() => r()));
  await new Promise<void>((r) => fs.server.close(() => r()));
}

afterEach(async () => {
  for (const fs of running.splice(0)) await stop(fs).catch(() => undefined);
});

describe('SDK recovery after a lost session', () => {
  it('resends unanswered sends after the full sync, and stops once stored arrives', async () => {
    const first = await fakeServer();
    const deviceId = newId('device');
    const c = new ParleyClient({ url: `mqtt://127.0.0.1:${first.port}`, deviceId, token: 't', reconnectPeriodMs: 50, maxReconnectPeriodMs: 200 });
    try {
      await c.connect();
      await c.send('uAAAAAAAAAAAA', 'one', { clientMsgId: 'k1' });
      await c.send('uAAAAAAAAAAAA', 'two', { clientMsgId: 'k2' });
      // The first server answers nothing (as if its `stored` answers were lost with the session).
      await stop(first);
      running.splice(running.indexOf(first), 1);

      // A new broker on the same port with empty memory: the session is gone.
      const second = await fakeServer(first.port);
      await until(() => second.seen.some((e) => e.kind === 'sync'), 15_000, 'sync after session loss');
      // Answer `stored` for k1 only, then `synced`.
      const pub = (env: Envelope) => new Promise<void>((r) => second.aedes.publish(
        { cmd: 'publish', topic: inboxTopic(deviceId), payload: Buffer.from(encode(env)), qos: 1, retain: false, dup: false }, () => r()));
      await pub({ kind: 'stored', clientMsgId: 'k1', chatId: 'cAAAAAAAAAAAA', seq: 1, ts: 1 });
      await c.waitStored('k1', 10_000);
      await pub({ kind: 'synced', count: 0 });
      await until(() => second.seen.some((e) => e.kind === 'send' && e.clientMsgId === 'k2'), 10_000, 'k2 resent');
      const resent = second.seen.filter((e) => e.kind === 'send').map((e) => (e.kind === 'send' ? e.clientMsgId : ''));
      expect(resent).toEqual(['k2']);
    } finally {
      await c.close();
    }
  });

  it('resends unanswered sends after a reconnect with the session present, without asking for a sync', async () => {
    const fs = await fakeServer();
    const deviceId = newId('device');
    const c = new ParleyClient({ url: `mqtt://127.0.0.1:${fs.port}`, deviceId, token: 't', reconnectPeriodMs: 50, maxReconnectPeriodMs: 200 });
    try {
      await c.connect();
      await c.send('uAAAAAAAAAAAA', 'one', { clientMsgId: 'r1' });
      await c.send('uAAAAAAAAAAAA', 'two', { clientMsgId: 'r2' });
      await new Promise<void>((r) => fs.aedes.publish(
        { cmd: 'publish', topic: inboxTopic(deviceId), payload: Buffer.from(encode({ kind: 'stored', clientMsgId: 'r1', chatId: 'cAAAAAAAAAAAA', seq: 1, ts: 1 })), qos: 1, retain: false, dup: false },
        () => r()));
      await c.waitStored('r1', 10_000);
      const before = fs.seen.length;
      // The server drops the connection (the `stored` for r2 was lost with it); the session stays.
      (fs.aedes as unknown as { clients: Record<string, { close(): void }> }).clients[deviceId]!.close();
      await until(() => fs.seen.slice(before).some((e) => e.kind === 'send'), 15_000, 'r2 resent after the reconnect');
      const after = fs.seen.slice(before);
      expect(after.filter((e) => e.kind === 'send').map((e) => (e.kind === 'send' ? e.clientMsgId : ''))).toEqual(['r2']);
      expect(after.some((e) => e.kind === 'sync')).toBe(false);
    } finally {
      await c.close();
    }
  });
});
