/**
 * Overload and slow consumers, against a platform child process with small limits
 * (broker/src/limits.ts, docs/CONFIG.md): a device that reads but never acknowledges, a device
 * that stops reading its socket, a publish flood from one connection, and more connections than
 * the node allows. Each abuser is disconnected (or refused) with a log line; a well-behaved pair
 * keeps chatting throughout with a round trip under a generous bound (a correctness bound, not a
 * benchmark); the broker's memory stays bounded; and nothing queued for the slow device is lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import mqttPacket, { type IConnackPacket } from 'mqtt-packet';
import { ParleyClient, type ChatMessage } from '@parley/client-sdk';
import { decode, encode, inboxTopic, outboxTopic } from '@parley/client-sdk/protocol';
import {
  connectPacket, exclusive, linkVia, phoneFor, rawDevice, rawMqtt, registerVia, sleep, startNode, until,
  type Account, type RawMqtt, type RoleProcess, type SingleNode, type SmsWebhook,
} from './helpers.js';

const LIMITS = {
  PARLEY_MAX_CONNECTIONS: '12',
  PARLEY_PUBLISH_RATE: '100',
  PARLEY_PUBLISH_BURST: '300',
  PARLEY_MAX_INFLIGHT: '50',
  PARLEY_DRAIN_TIMEOUT_MS: '2000',
};
/** The well-behaved pair's round trip must stay under this during every abuse. */
const LATENCY_BOUND_MS = 2000;
/** Growth of the broker's live memory (V8 heap in use + Buffers, after a full GC) over all the abuse. */
const MEMORY_BOUND = 32 * 1024 * 1024;

let env: SingleNode;
let node: RoleProcess;
let sms: SmsWebhook;
let mqttUrl: string;
let port: number;
let httpUrl: string;
const clients: ParleyClient[] = [];
const raws: RawMqtt[] = [];

beforeAll(async () => {
  env = await startNode('overload', { PARLEY_LOG_LEVEL: 'warn', ...LIMITS }, { memoryProbe: true });
  ({ node, sms, mqttUrl, httpUrl, mqttPort: port } = env);
}, 60_000);

afterAll(async () => {
  for (const r of raws) r.close();
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await env?.stop();
});

const sdk = async (acc: Account): Promise<{ client: ParleyClient; got: ChatMessage[] }> => {
  const client = new ParleyClient({ url: mqttUrl, deviceId: acc.deviceId, token: acc.token, userId: acc.userId, reconnectPeriodMs: 100, maxReconnectPeriodMs: 1000 });
  clients.push(client);
  const got: ChatMessage[] = [];
  client.on('newMessage', (m) => got.push(m));
  await client.connect();
  return { client, got };
};

const logLines = (msg: string): number => node.output().split('\n').filter((l) => l.includes(`"msg":"${msg}`)).length;

describe('overload and slow consumers', () => {
  // Not at the same time as the chaos scenario: it measures latency on a small machine.
  it('disconnects each abuser while a well-behaved pair keeps its latency and the broker its memory', () => exclusive('heavy', () => scenario().catch((err: unknown) => {
    console.log(`platform output (tail):\n${node.output().slice(-6000)}`);
    throw err;
  })), 400_000);
});

async function scenario(): Promise<void> {
  {
    const reg = (): Promise<Account> => registerVia(httpUrl, sms, phoneFor(401));
    const [c, d, e, r1, r2, f] = [await reg(), await reg(), await reg(), await reg(), await reg(), await reg()];

    // The well-behaved pair: C sends to D every 100 ms; the round trip is send() -> D's message.
    const C = await sdk(c!);
    const D = await sdk(d!);
    const E = await sdk(e!);
    const sentAt = new Map<string, number>();
    const latencies: Array<{ phase: string; ms: number }> = [];
    let phase = 'baseline';
    D.client.on('newMessage', (m) => {
      const t = sentAt.get(m.text ?? '');
      if (t !== undefined) latencies.push({ phase, ms: Date.now() - t });
    });
    let pairRunning = true;
    let pairSent = 0;
    const pair = (async () => {
      while (pairRunning) {
        const text = `ping-${pairSent++}`;
        sentAt.set(text, Date.now());
        C.client.send(d!.userId, text).catch(() => undefined);
        await sleep(100);
      }
    })();
    const maxLatency = (p: string): number => Math.max(0, ...latencies.filter((l) => l.phase === p).map((l) => l.ms));
    await until(() => latencies.length >= 10, 10_000, 'baseline round trips');
    const before = await node.memory();
    const mem: Array<[string, number]> = [['baseline', before.live]];

    // 1. Reads but never acknowledges: cut off after PARLEY_MAX_INFLIGHT unacknowledged messages.
    phase = 'never-acks';
    const lazy = await rawDevice(port, r1!);
    raws.push(lazy);
    const N1 = 80;
    for (let i = 0; i < N1; i++) E.client.send(r1!.userId, `to-lazy-${i}`).catch(() => undefined);
    await until(() => lazy.closed, 20_000, 'the non-acknowledging device is disconnected');
    expect(lazy.packets.filter((p) => p.cmd === 'publish').length).toBeGreaterThanOrEqual(Number(LIMITS.PARLEY_MAX_INFLIGHT));
    await until(() => logLines('too many unacknowledged messages') > 0, 5000, 'its log line');
    // Nothing was lost: when it comes back and acknowledges, it gets all of them (from Redis).
    // (The handler is attached before the CONNACK: the queue is replayed right after it.)
    const back = mqtt.connect(mqttUrl, { clientId: r1!.deviceId, username: r1!.deviceId, password: r1!.token, clean: false, reconnectPeriod: 0 });
    const texts = new Set<string>();
    back.on('message', (_t, p) => {
      const env = decode(p);
      if (env.kind === 'msg' && typeof env.body === 'string') texts.add(env.body);
    });
    await new Promise<void>((res, rej) => { back.once('connect', () => res()); back.once('error', rej); });
    await back.subscribeAsync(inboxTopic(r1!.deviceId), { qos: 1 });
    await until(() => texts.size >= N1, 20_000, `all ${N1} messages once it acknowledges`);
    await back.endAsync();

    mem.push(['never-acks', (await node.memory()).live]);
    // 2. Stops reading its socket: cut off by the drain timeout or the in-flight cap.
    phase = 'never-reads';
    const deaf = await rawDevice(port, r2!, { readable: false });
    raws.push(deaf);
    const big = 'x'.repeat(10_000);
    for (let i = 0; i < 60; i++) E.client.send(r2!.userId, `${i}:${big}`).catch(() => undefined);
    // Paused, it cannot see the close; the broker's log says when it let go of it.
    const cutsBefore = logLines('too many unacknowledged messages');
    await until(() => logLines('socket did not drain in time') > 0 || logLines('too many unacknowledged messages') > cutsBefore, 30_000, 'the non-reading device is disconnected, with a log line');
    deaf.socket.resume();
    await until(() => deaf.closed, 10_000, 'its socket closed');

    // 3. A publish flood: cut off by the token bucket, without PUBACKs beyond it. The flooder
    // reconnects and floods again for 3 s, so the pair's latency is measured under it.
    phase = 'flood';
    mem.push(['never-reads', (await node.memory()).live]);
    const payload = Buffer.from(encode({ kind: 'send', clientMsgId: 'x', to: e!.userId, body: 'flood' }));
    let floodSent = 0;
    let pubacks = 0;
    let floodCuts = 0;
    const floodStart = Date.now();
    // Generated once, written in 100-packet slices: the test process itself stays light.
    const slice = Buffer.concat(Array.from({ length: 100 }, (_, i) =>
      mqttPacket.generate({ cmd: 'publish', topic: outboxTopic(f!.deviceId), qos: 1, messageId: i + 1, dup: false, retain: false, payload })));
    while (Date.now() - floodStart < 3000) {
      const flood = await rawDevice(port, f!, { subscribe: false });
      raws.push(flood);
      const t0 = Date.now();
      let sent = 0;
      while (!flood.closed && sent < 20_000) {
        flood.send(slice);
        sent += 100;
        await sleep(1);
      }
      await until(() => flood.closed, 10_000, 'the flooder is disconnected');
      const acks = flood.packets.filter((p) => p.cmd === 'puback').length;
      // Within one connection's bucket: the burst plus the refill while it lasted.
      expect(acks).toBeLessThanOrEqual(Number(LIMITS.PARLEY_PUBLISH_BURST) + Number(LIMITS.PARLEY_PUBLISH_RATE) * ((Date.now() - t0) / 1000) + 1);
      floodSent += sent;
      pubacks += acks;
      floodCuts++;
    }
    const floodSecs = (Date.now() - floodStart) / 1000;
    await until(() => logLines('publish rate limit exceeded') >= floodCuts, 5000, 'a log line per cut');

    // 4. More connections than PARLEY_MAX_CONNECTIONS: CONNACK 3 (server unavailable), logged.
    phase = 'connections';
    mem.push(['flood', (await node.memory()).live]);
    const x = await reg();
    const y = await reg();
    const extra: Account[] = [x!, y!];
    for (const owner of [x!, y!]) for (let i = 0; i < 4; i++) extra.push(await linkVia(httpUrl, owner.token, owner.userId));
    const codes: number[] = [];
    for (const acc of extra) {
      const raw = await rawMqtt(port);
      raws.push(raw);
      raw.send(connectPacket(acc.deviceId, acc.token));
      codes.push(((await raw.next((p) => p.cmd === 'connack')) as IConnackPacket).returnCode ?? -1);
    }
    // C, D and E hold 3 of the 12: 9 more are accepted, the rest get 3 and are closed.
    expect(codes.filter((k) => k === 0)).toHaveLength(Number(LIMITS.PARLEY_MAX_CONNECTIONS) - 3);
    expect(codes.filter((k) => k === 3)).toHaveLength(extra.length - (Number(LIMITS.PARLEY_MAX_CONNECTIONS) - 3));
    // The node's log arrives through its stdout pipe, possibly after the CONNACK: waited for, as above.
    await until(() => logLines('connection limit reached') > 0, 5000, 'its log line');
    // A refused device gets in once another leaves.
    const accepted = raws.slice(-extra.length).filter((_r, i) => codes[i] === 0);
    accepted[0]!.close();
    const refusedIdx = codes.indexOf(3);
    await until(async () => {
      const retry = await rawMqtt(port);
      raws.push(retry);
      retry.send(connectPacket(extra[refusedIdx]!.deviceId, extra[refusedIdx]!.token));
      const code = ((await retry.next((p) => p.cmd === 'connack')) as IConnackPacket).returnCode;
      return code === 0;
    }, 10_000, 'a refused device connects once a slot is free');

    // The pair kept chatting through all of it, within the bound, and got every message.
    phase = 'after';
    const seen = latencies.length;
    await until(() => latencies.length >= seen + 5, 10_000, 'round trips after the abuse');
    pairRunning = false;
    await pair;
    await until(() => D.got.length >= pairSent, 15_000, 'every pair message at D');
    const after = await node.memory();
    mem.push(['end', after.live]);
    const summary = Object.fromEntries(['baseline', 'never-acks', 'never-reads', 'flood', 'connections', 'after'].map((p) => [p, maxLatency(p)]));
    console.log(`overload: max round trip per phase (ms) ${JSON.stringify(summary)}; flood: ${floodSent} publishes, ${pubacks} PUBACKed, ${floodCuts} disconnections in ${floodSecs.toFixed(1)} s; connections: ${JSON.stringify(codes)}; slow consumers cut: ${logLines('too many unacknowledged messages')} by the in-flight cap, ${logLines('socket did not drain in time')} by the drain timeout; live memory after GC (MB) ${mem.map(([p, b]) => `${p} ${(b / 1048576).toFixed(1)}`).join(', ')}; RSS ${(after.rss / 1048576).toFixed(0)} MB`);
    for (const [p, ms] of Object.entries(summary)) expect(ms, `max round trip during ${p}`).toBeLessThan(LATENCY_BOUND_MS);
    expect(D.got.map((m) => m.text)).toEqual(Array.from({ length: pairSent }, (_, i) => `ping-${i}`));
    expect(after.live - before.live).toBeLessThan(MEMORY_BOUND);
    // The limits never hit the well-behaved pair.
    const cut = node.output().split('\n').filter((l) => /disconnecting|did not drain|connection limit/.test(l));
    expect(cut.filter((l) => l.includes(c!.deviceId) || l.includes(d!.deviceId))).toEqual([]);
    expect(node.crashes).toEqual([]);
  }
}
