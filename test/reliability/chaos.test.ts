/**
 * Chaos: every role in its own process (two brokers, the workers, the API) on one Redis and one
 * SQLite file. While SDK devices send 5,000 messages over five chats (and drop their network at
 * random), each of the broker, the workers, the API and Redis is killed with SIGKILL and
 * restarted, in turn. Afterwards every message that got its PUBACK is in the store once and reached
 * every recipient device once, in seq order. See docs/RELIABILITY.md for the measured numbers.
 *
 * Debugging: CHAOS_DEBUG=1 prints progress every 2 s; CHAOS_ONLY=workers (or broker, api, redis,
 * comma-separated) injects only those faults. A failure prints the timeline, the queues and the
 * roles' output, and for each missing message what went over the device's wire.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { Redis } from 'ioredis';
import { ParleyClient, type ChatMessage } from '@parley/client-sdk';
import { decode, inboxTopic } from '@parley/client-sdk/protocol';
import { freePort, startRedisServer, type RedisServer } from '../../services/src/redis/spawn.js';
import {
  exclusive, linkVia, phoneFor, prng, registerVia, sleep, spawnRole, startProxy, startSmsWebhook, tempDir, until,
  type Account, type Proxy, type RoleProcess, type SmsWebhook,
} from './helpers.js';

const TOTAL = 5000;
/** Messages issued per second (the SDKs queue while their broker is away). */
const RATE = 200;
/** Unacknowledged sends per device before the generator skips it. */
const WINDOW = 50;
const SEED = 0xc4a05;

interface Dev {
  name: string;
  acc: Account;
  client: ParleyClient;
  proxy: Proxy;
  peers: string[];
  outstanding: number;
  /** chatId -> seqs in the order the application saw them. */
  got: Map<string, number[]>;
  syncs: number;
  /** For diagnostics: synced notices and errors, with the time they arrived. */
  log: string[];
  /** For diagnostics: every msg the broker sent this device (through its proxy), in order. */
  wire: Array<{ at: number; conn: number; chatId: string; seq: number; dup: boolean }>;
}

let dataDir: string;
let redisPort: number;
let redis: RedisServer | undefined;
let sms: SmsWebhook;
const roles: RoleProcess[] = [];
const proxies: Proxy[] = [];
const clients: ParleyClient[] = [];
let observer: mqtt.MqttClient | undefined;

const redisOpts = (): Parameters<typeof startRedisServer>[0] => ({ dir: join(dataDir, 'redis'), port: redisPort, appendfsync: 'everysec' });

beforeAll(async () => {
  dataDir = tempDir('chaos');
  redisPort = await freePort();
  redis = await startRedisServer(redisOpts());
  sms = await startSmsWebhook();
}, 60_000);

afterAll(async () => {
  observer?.end(true);
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await Promise.all(proxies.map((p) => p.close()));
  await Promise.all(roles.map((r) => r.stop()));
  await redis?.stop();
  await sms?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}, 60_000);

describe('chaos', () => {
  it(`loses nothing acknowledged and shows nothing twice while broker, workers, API and Redis are killed (${TOTAL} messages)`, () => exclusive('heavy', async () => {
    const rnd = prng(SEED);
    const [mqtt1, mqtt2, http] = [await freePort(), await freePort(), await freePort()];
    const common = {
      PARLEY_DATA_DIR: dataDir,
      PARLEY_REDIS_URL: redis!.url,
      PARLEY_SMS: 'webhook',
      PARLEY_SMS_WEBHOOK_URL: sms.url,
      PARLEY_SECRET: 'chaos-test-secret-0123456789',
      PARLEY_LOG_LEVEL: 'warn',
      PARLEY_WS_PORT: '0',
      PARLEY_HTTP_PORT: String(http),
    };
    const started = await Promise.all([
      spawnRole('workers', common, 'workers'),
      spawnRole('broker', { ...common, PARLEY_MQTT_PORT: String(mqtt1) }, 'broker-1'),
      spawnRole('broker', { ...common, PARLEY_MQTT_PORT: String(mqtt2) }, 'broker-2'),
      spawnRole('api', common, 'api'),
    ]);
    roles.push(...started);
    const [workers, broker1, broker2, api] = started as [RoleProcess, RoleProcess, RoleProcess, RoleProcess];
    const httpUrl = `http://127.0.0.1:${http}`;

    // Four users with two devices each; user D has a third, raw MQTT device that counts every copy.
    const users: Account[] = [];
    for (let i = 0; i < 4; i++) users.push(await registerVia(httpUrl, sms, phoneFor(201)));
    const [A, B, C, D] = users as [Account, Account, Account, Account];
    const companions: Account[] = [];
    for (const u of users) companions.push(await linkVia(httpUrl, u.token, u.userId));
    const rawD = await linkVia(httpUrl, D.token, D.userId);
    const pairs: Array<[Account, Account]> = [[A, B], [A, C], [B, D], [C, D], [A, D]];
    const peersOf = (u: Account): string[] => pairs.flatMap(([x, y]) => (x === u ? [y.userId] : y === u ? [x.userId] : []));

    const devs: Dev[] = [];
    const t0 = Date.now();
    const pairKey = (a: string, b: string): string => (a < b ? `${a}|${b}` : `${b}|${a}`);
    /** clientMsgId -> recipient userId; the stored notices then name each pair's chat. */
    const sentTo = new Map<string, string>();
    const chatIds = new Map<string, string>();
    const mkDev = async (name: string, acc: Account, owner: Account, port: number): Promise<Dev> => {
      const wire: Dev['wire'] = [];
      const proxy = await startProxy(port, (p, conn) => {
        try {
          const env = decode((p as { payload: Buffer }).payload);
          if (env.kind === 'msg') wire.push({ at: Date.now() - t0, conn, chatId: env.chatId, seq: env.seq, dup: (p as { dup?: boolean }).dup === true });
        } catch { /* counted elsewhere */ }
      });
      proxies.push(proxy);
      const client = new ParleyClient({
        url: `mqtt://127.0.0.1:${proxy.port}`, deviceId: acc.deviceId, token: acc.token, userId: acc.userId,
        reconnectPeriodMs: 100, maxReconnectPeriodMs: 1000, connectTimeoutMs: 5000,
      });
      clients.push(client);
      const d: Dev = { name, acc, client, proxy, peers: peersOf(owner), outstanding: 0, got: new Map(), syncs: 0, log: [], wire };
      client.on('newMessage', (m: ChatMessage) => {
        let l = d.got.get(m.chatId);
        if (!l) d.got.set(m.chatId, (l = []));
        l.push(m.seq);
      });
      client.on('synced', (sy) => {
        d.syncs++;
        d.log.push(`${Date.now() - t0}ms synced ${JSON.stringify(sy)}`);
      });
      client.on('error', (e) => d.log.push(`${Date.now() - t0}ms error ${e.code} ${e.detail ?? ''}`));
      client.on('state', (st) => d.log.push(`${Date.now() - t0}ms state ${st}`));
      client.on('stored', (st) => {
        const to = sentTo.get(st.clientMsgId);
        if (to) chatIds.set(pairKey(owner.userId, to), st.chatId);
      });
      return d;
    };
    for (const [i, u] of users.entries()) {
      devs.push(await mkDev(`${'ABCD'[i]}1`, u, u, mqtt1));
      devs.push(await mkDev(`${'ABCD'[i]}2`, companions[i]!, u, mqtt2));
    }
    await Promise.all(devs.map((d) => d.client.connect()));

    // The raw observer: mqtt.js acknowledges by itself; every msg copy is counted.
    const obsProxy = await startProxy(mqtt2);
    proxies.push(obsProxy);
    const rawSeen = new Map<string, number>();
    observer = mqtt.connect(`mqtt://127.0.0.1:${obsProxy.port}`, {
      clientId: rawD.deviceId, username: rawD.deviceId, password: rawD.token, clean: false,
      // A CONNACK refusal (3, server unavailable, while Redis is down) must not end mqtt.js'
      // reconnecting: by default it stops for good on any refused CONNACK.
      reconnectPeriod: 200, connectTimeout: 5000, protocolVersion: 4, reconnectOnConnackError: true,
    });
    const rawLog: string[] = [];
    observer.on('connect', (p) => rawLog.push(`${Date.now() - t0}ms connect sp=${p.sessionPresent}`));
    observer.on('close', () => rawLog.push(`${Date.now() - t0}ms close`));
    observer.on('error', (e) => rawLog.push(`${Date.now() - t0}ms error ${e.message}`));
    observer.on('message', (_t, payload) => {
      try {
        const env = decode(payload);
        if (env.kind === 'msg') rawSeen.set(`${env.chatId}.${env.seq}`, (rawSeen.get(`${env.chatId}.${env.seq}`) ?? 0) + 1);
      } catch { /* not ours to judge here */ }
    });
    await new Promise<void>((r) => observer!.once('connect', () => r()));
    await observer.subscribeAsync(inboxTopic(rawD.deviceId), { qos: 1 });

    // --- the load ---------------------------------------------------------------------------
    let issued = 0;
    const acked = new Set<string>();
    const failures: string[] = [];
    let maxAckMs = 0;
    const timeline: string[] = [];
    const mark = (what: string): void => { timeline.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${what}`); };

    const load = (async () => {
      while (issued < TOTAL) {
        const due = Math.min(TOTAL, Math.floor(((Date.now() - t0) / 1000) * RATE) + 1);
        while (issued < due) {
          const ready = devs.filter((d) => d.outstanding < WINDOW);
          if (ready.length === 0) break;
          const d = rnd.pick(ready);
          const i = issued++;
          const text = `${d.name}:${i}`;
          const at = Date.now();
          const to = rnd.pick(d.peers);
          sentTo.set(`m${i}`, to);
          d.outstanding++;
          d.client.send(to, text, { clientMsgId: `m${i}` }).then(
            () => {
              acked.add(text);
              maxAckMs = Math.max(maxAckMs, Date.now() - at);
            },
            (err: unknown) => failures.push(`${text}: ${String(err)}`),
          ).finally(() => d.outstanding--);
        }
        await sleep(20);
      }
    })();

    const progress = process.env.CHAOS_DEBUG ? setInterval(() => {
      console.log(`${((Date.now() - t0) / 1000).toFixed(1)}s issued=${issued} acked=${acked.size} ${devs.map((d) => `${d.name}:${d.outstanding}/${d.client.state[0]}`).join(' ')}`);
    }, 2000) : undefined;
    // Devices lose their network at random (the SDK reconnects by itself).
    let cuts = 0;
    let loading = true;
    const flaky = (async () => {
      while (loading) {
        await sleep(300 + rnd.int(400));
        const victim = rnd.int(devs.length + 1);
        (victim === devs.length ? obsProxy : devs[victim]!.proxy).cut();
        cuts++;
      }
    })();

    // kill -9 and restart, in turn, at fixed points of the load. Each stays down a moment first
    // (the devices on it keep queueing). CHAOS_ONLY=broker,workers,api,redis runs only those.
    const killAndRestart = async (r: RoleProcess): Promise<void> => {
      mark(`kill -9 ${r.name}`);
      await r.kill();
      await sleep(500);
      await r.restart();
      mark(`${r.name} back`);
    };
    const steps: Array<{ at: number; kind: string; run: () => Promise<void> }> = [
      { at: 0.12, kind: 'broker', run: () => killAndRestart(broker1) },
      { at: 0.3, kind: 'workers', run: () => killAndRestart(workers) },
      {
        at: 0.46, kind: 'api', run: async () => {
          await killAndRestart(api);
          expect((await fetch(`${httpUrl}/healthz`)).status).toBe(200);
        },
      },
      {
        at: 0.6, kind: 'redis', run: async () => {
          mark('kill -9 redis');
          await redis!.kill();
          await sleep(500);
          redis = await startRedisServer(redisOpts()); // same dir and port: it replays its AOF
          mark('redis back');
        },
      },
      { at: 0.75, kind: 'broker', run: () => killAndRestart(broker2) },
    ];
    const only = process.env.CHAOS_ONLY?.split(',');
    const chaos = (async () => {
      for (const step of steps) {
        await until(() => issued >= TOTAL * step.at, 120_000, `${step.at} of the load`);
        if (!only || only.includes(step.kind)) await step.run();
      }
    })();

    const dump = async (): Promise<void> => {
      console.log('timeline', timeline.join(' | '));
      const q = new Redis(redis!.url, { maxRetriesPerRequest: 1 });
      q.on('error', () => undefined);
      try {
        for (const name of ['persist', 'events']) {
          const counts: Record<string, unknown> = {};
          for (const k of ['wait', 'active', 'delayed', 'failed', 'stalled', 'paused', 'prioritized']) {
            const key = `parley:${name}:${k}`;
            const type = await q.type(key);
            counts[k] = type === 'list' ? await q.llen(key) : type === 'zset' ? await q.zcard(key) : type === 'set' ? await q.scard(key) : type;
          }
          console.log(`queue ${name}: ${JSON.stringify(counts)} meta=${JSON.stringify(await q.hgetall(`parley:${name}:meta`))}`);
        }
      } catch (err) {
        console.log('queue state unavailable', err);
      }
      q.disconnect();
      for (const r of roles) console.log(`--- ${r.name} output:\n${r.output().slice(-4000)}`);
    };
    try {
      await load;
      mark(`all ${TOTAL} issued`);
      await chaos;
    } catch (err) {
      await dump();
      throw err;
    } finally {
      clearInterval(progress);
    }
    await until(() => acked.size + failures.length >= TOTAL, 120_000, 'every send acknowledged');
    mark('all acknowledged');
    loading = false;
    await flaky;

    // --- what the store has (HTTP history, paged) -------------------------------------------
    // A PUBACK means "durable in Redis"; the persist worker stores it soon after (it had a backlog
    // to work off after its own restart), so the store is polled until it has every one.
    const chatMessages = new Map<string, Array<{ seq: number; text: string; fromDevice: string }>>();
    const chatMembers = new Map<string, string[]>();
    const stored = new Map<string, { chatId: string; seq: number; fromDevice: string }>();
    let storedDuplicates = 0;
    const readStore = async (): Promise<void> => {
      chatMessages.clear();
      stored.clear();
      storedDuplicates = 0;
      for (const [x, y] of pairs) {
        const chatId = chatIds.get(pairKey(x.userId, y.userId));
        expect(chatId, 'a chat id from the stored notices').toBeDefined();
        chatMembers.set(chatId!, [x.userId, y.userId]);
        const all: Array<{ seq: number; text: string; fromDevice: string }> = [];
        let after = 0;
        for (;;) {
          const res = await fetch(`${httpUrl}/v1/chats/${chatId}/messages?after=${after}&limit=500`, { headers: { authorization: `Bearer ${x.token}` } });
          expect(res.status).toBe(200);
          const page = ((await res.json()) as { messages: Array<{ seq: number; text: string; fromDevice: string }> }).messages;
          all.push(...page);
          if (page.length < 500) break;
          after = page.at(-1)!.seq;
        }
        chatMessages.set(chatId!, all);
        for (const m of all) {
          if (stored.has(m.text)) storedDuplicates++;
          stored.set(m.text, { chatId: chatId!, seq: m.seq, fromDevice: m.fromDevice });
        }
      }
    };
    await until(async () => {
      await readStore();
      return [...acked].every((t) => stored.has(t));
    }, 120_000, 'every acknowledged message in the store').catch(async (err: unknown) => {
      await dump();
      throw err;
    });
    mark('all stored');
    const lostInStore = [...acked].filter((t) => !stored.has(t));

    // --- every recipient device gets every message once, in order --------------------------
    const expectedFor = (d: Dev): Map<string, number[]> => {
      const out = new Map<string, number[]>();
      for (const [chatId, msgs] of chatMessages) {
        if (!chatMembers.get(chatId)?.includes(d.acc.userId)) continue;
        out.set(chatId, msgs.filter((m) => m.fromDevice !== d.acc.deviceId).map((m) => m.seq));
      }
      return out;
    };
    const missingOf = (d: Dev): number => {
      let n = 0;
      for (const [chatId, seqs] of expectedFor(d)) {
        const got = new Set(d.got.get(chatId) ?? []);
        n += seqs.filter((s) => !got.has(s)).length;
      }
      return n;
    };
    await until(() => devs.every((d) => missingOf(d) === 0), 90_000, 'every device has every message').catch(async (err: unknown) => {
      console.log('timeline', timeline.join(' | '));
      console.log('missing per device', devs.map((d) => `${d.name}=${missingOf(d)}`).join(' '));
      for (const d of devs) {
        for (const [chatId, seqs] of expectedFor(d)) {
          const gotList = d.got.get(chatId) ?? [];
          const got = new Set(gotList);
          for (const sq of seqs.filter((x) => !got.has(x))) {
            const m = chatMessages.get(chatId)!.find((x) => x.seq === sq)!;
            const st = await fetch(`${httpUrl}/v1/messages/${chatId}.${sq.toString(36)}/status`, { headers: { authorization: `Bearer ${d.acc.token}` } }).then((r) => r.json()) as { recipients: Array<{ deviceId: string; deliveredAt: number | null }> };
            const mine = st.recipients.find((r) => r.deviceId === d.acc.deviceId);
            const idx = gotList.findIndex((x) => x > sq);
            const onWire = d.wire.filter((w) => w.chatId === chatId && w.seq === sq).map((w) => `${w.at}ms#${w.conn}${w.dup ? 'd' : ''}`);
            const firstWire = d.wire.filter((w) => w.chatId === chatId).slice(0, 3).map((w) => `${w.seq}@${w.at}ms#${w.conn}`);
            console.log(`${d.name} misses ${chatId}.${sq} "${m.text}" deliveredAt=${mine?.deliveredAt ? mine.deliveredAt - t0 : null} appOrder=${JSON.stringify(gotList.slice(Math.max(0, idx - 3), idx + 3))} wire=${onWire.join(',')} firstOnWire=${firstWire.join(',')}`);
          }
        }
        console.log(`${d.name} log: ${d.log.slice(-40).join(' ; ')}`);
      }
      await dump();
      throw err;
    });
    mark('all delivered');

    let appDuplicates = 0;
    let outOfOrder = 0;
    let delivered = 0;
    let expectedDeliveries = 0;
    for (const d of devs) {
      for (const [chatId, seqs] of expectedFor(d)) {
        expectedDeliveries += seqs.length;
        const got = d.got.get(chatId) ?? [];
        delivered += got.length;
        appDuplicates += got.length - new Set(got).size;
        for (let i = 1; i < got.length; i++) if (got[i]! <= got[i - 1]!) outOfOrder++;
        expect(got, `${d.name} in ${chatId}`).toEqual(seqs);
      }
    }

    // The raw observer (user D's third device): every copy the broker sent it.
    const obsExpected = [...chatMessages].filter(([c]) => chatMembers.get(c)?.includes(D.userId)).flatMap(([c, ms]) => ms.map((m) => `${c}.${m.seq}`));
    obsProxy.cut(); // one more reconnect, so whatever its session still holds is resent now
    await until(() => obsExpected.every((k) => rawSeen.has(k)), 60_000, 'the raw observer has every message').catch(() => undefined);
    const rawMissing = obsExpected.filter((k) => !rawSeen.has(k)).length;
    if (rawMissing) {
      // Diagnostics for a failure: which seqs, where the observer's watermarks stand, its connections.
      const miss = obsExpected.filter((k) => !rawSeen.has(k));
      const byChat = new Map<string, number[]>();
      for (const k of miss) { const [c, q] = k.split('.'); byChat.set(c!, [...(byChat.get(c!) ?? []), Number(q)]); }
      for (const [c, qs] of byChat) console.log('RAWMISS', c, qs.length, qs.slice(0, 5), qs.slice(-5));
      const Database = (await import('better-sqlite3')).default;
      const db = new Database(`${dataDir}/parley.sqlite`, { readonly: true });
      console.log('RAWPROGRESS', JSON.stringify(db.prepare('SELECT * FROM device_chats WHERE device_id = ?').all(rawD.deviceId)));
      console.log('RAWLOG', rawLog.slice(-40).join(' | '));
      for (const r of roles) console.log('ROLEOUT', r.name, r.output().split('\n').slice(-30).join('\n'));
      db.close();
    }
    const rawDuplicates = [...rawSeen.values()].reduce((s, n) => s + n - 1, 0);

    const summary = {
      sent: issued,
      acknowledged: acked.size,
      sendFailures: failures.length,
      stored: stored.size,
      storedDuplicates,
      delivered,
      expectedDeliveries,
      duplicatesToApplication: appDuplicates,
      outOfOrder,
      rawObserver: { expected: obsExpected.length, received: rawSeen.size, duplicatesSeen: rawDuplicates, missing: rawMissing },
      lost: lostInStore.length + (expectedDeliveries - (delivered - appDuplicates)),
      networkCuts: cuts,
      syncsAnswered: devs.reduce((s, d) => s + d.syncs, 0),
      slowestAckMs: maxAckMs,
      restarts: roles.map((r) => `${r.name}:${r.starts - 1}`).join(' '),
      seconds: (Date.now() - t0) / 1000,
    };
    console.log(`chaos timeline:\n  ${timeline.join('\n  ')}\nchaos result: ${JSON.stringify(summary, null, 2)}`);

    expect(failures).toEqual([]);
    expect(acked.size).toBe(TOTAL);
    expect(lostInStore).toEqual([]);
    expect(storedDuplicates).toBe(0);
    expect(stored.size).toBe(TOTAL);
    expect(appDuplicates).toBe(0);
    expect(outOfOrder).toBe(0);
    expect(summary.lost).toBe(0);
    expect(rawMissing).toBe(0);
    for (const r of roles) expect(r.crashes, `${r.name} crashed:\n${r.output().slice(-3000)}`).toEqual([]);
  }), 400_000);
});
