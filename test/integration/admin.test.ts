/**
 * The admin API of the dashboard (issue 13, item 3) on a real platform, through HTTP, MQTT and the
 * SDK: the admin token (generated into the data dir, never logged) is the only way in, device
 * tokens are refused and it is no device token; failed authentications are limited per address
 * across API processes; the overview lists every process of the cluster (a workers process of its
 * own on the same Redis too, stale then gone once killed) and its figures move with traffic,
 * pending included; a client's look-up shows its node and connection time, its queued messages
 * and the last error it was sent (by the broker, the workers, or a refused login); disconnect makes
 * it reconnect, revoke kills its token and its connection; failed jobs are listed without their
 * data. Answers are checked against the admin schemas (services/src/admin/admin-types.ts).
 */
import { readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { Queue } from 'bullmq';
import { ParleyClient, type ConnectionState } from '@parley/client-sdk';
import { encode, inboxTopic, newId, outboxTopic } from '@parley/client-sdk/protocol';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { redisLastErrors } from '../../services/src/admin/last-error.js';
import { redisAccount } from '../../services/src/account/redis-account.js';
import { clientView, overview, type NodeView, type Overview } from '../../services/src/admin/admin-types.js';
import { startTestPlatform, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device } from '../helpers/sdk.js';
import { captureLogs, spawnRole, type LogCapture, type RoleProcess } from '../reliability/helpers.js';

let tp: TestPlatform;
let logs: LogCapture;
let token: string;
let workers: RoleProcess | undefined;
let api2: TestPlatform | undefined;

beforeAll(async () => {
  logs = captureLogs('info');
  // Behind a "proxy": each test speaks from addresses of its own, so the failure limit of one
  // does not reach the others.
  tp = await startTestPlatform({ PARLEY_TRUST_PROXY: 'true' }, undefined, { logger: logs.logger });
  token = readFileSync(join(tp.dataDir, 'admin-token'), 'utf8').trim();
}, 60_000);

/** Raw MQTT clients of the running test: closed after it even when an assertion failed. */
const rawClients: mqtt.MqttClient[] = [];

afterEach(async () => {
  await Promise.all(rawClients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await closeAll();
});

afterAll(async () => {
  await workers?.kill();
  await api2?.close();
  await tp?.close();
});

let ipCounter = 0;
const freshIp = (): string => `10.77.${Math.floor(++ipCounter / 250)}.${(ipCounter % 250) + 1}`;

interface Answer { status: number; json: any }

async function call(path: string, opts: { method?: string; token?: string | null; ip?: string; body?: unknown; base?: string } = {}): Promise<Answer> {
  const bearer = opts.token === undefined ? token : opts.token;
  const res = await fetch(`${opts.base ?? tp.httpUrl}${path}`, {
    method: opts.method ?? 'GET',
    headers: {
      'x-forwarded-for': opts.ip ?? freshIp(),
      ...(bearer !== null ? { authorization: `Bearer ${bearer}` } : {}),
      ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
  });
  return { status: res.status, json: await res.json().catch(() => null) };
}

async function getOverview(): Promise<Overview> {
  const a = await call('/admin/api/overview');
  expect(a.status, JSON.stringify(a.json)).toBe(200);
  return overview.parse(a.json);
}

const nodeOf = (o: Overview, nodeId: string): NodeView | undefined => o.nodes.find((n) => n.nodeId === nodeId);
/** A process without the broker role, by its pid and roles (its node id is `<host>:<pid>:<random>`). */
const processNode = (o: Overview, pid: number, roles: string): NodeView | undefined =>
  o.nodes.find((n) => n.nodeId.startsWith(`${hostname()}:${pid}:`) && (!n.report || n.report.roles.join() === roles));
const brokerId = (): string => tp.platform.broker!.id;

/** Polls the overview until `check` finds what it wants in it; returns that overview. */
async function overviewUntil(check: (o: Overview) => boolean, what: string, timeoutMs = 15_000): Promise<Overview> {
  let last: Overview | undefined;
  await until(async () => check((last = await getOverview())), timeoutMs, what);
  return last!;
}

async function lookUp(deviceId: string): Promise<ReturnType<typeof clientView.parse>> {
  const a = await call(`/admin/api/clients/${deviceId}`);
  expect(a.status, JSON.stringify(a.json)).toBe(200);
  return clientView.parse(a.json);
}

/** A raw MQTT client of the device that acknowledges its deliveries only when told to. */
async function holdingClient(r: Registered): Promise<{ client: mqtt.MqttClient; release(): void; held(): number }> {
  const client = await new Promise<mqtt.MqttClient>((res, rej) => {
    const c = mqtt.connect(tp.mqttUrl, { clientId: r.deviceId, username: r.deviceId, password: r.token, clean: false, reconnectPeriod: 0, protocolVersion: 4 });
    rawClients.push(c);
    c.once('connect', () => res(c));
    c.once('error', rej);
  });
  const callbacks: Array<() => void> = [];
  let holding = true;
  // mqtt.js sends the PUBACK of a QoS 1 message when this callback is called (and handles the
  // next packet only then).
  client.handleMessage = (_packet, cb) => { if (holding) callbacks.push(() => cb()); else cb(); };
  await client.subscribeAsync(inboxTopic(r.deviceId), { qos: 1 });
  return {
    client,
    held: () => callbacks.length,
    release() {
      holding = false;
      for (const cb of callbacks.splice(0)) cb();
    },
  };
}

describe('admin token', () => {
  it('is generated into the data dir (0600) when PARLEY_ADMIN_TOKEN is unset; its place is logged, never the token', () => {
    const file = join(tp.dataDir, 'admin-token');
    expect(tp.platform.dashboard).toEqual({ url: `${tp.httpUrl}/admin`, tokenFile: file });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(token.length).toBeGreaterThanOrEqual(32);
    expect(logs.text()).toContain(file);
    expect(logs.text()).not.toContain(token);
  });

  it('is the only way in: no token, a wrong one and a device token are refused; it is no device token', async () => {
    const alice = await tp.register();
    const none = await call('/admin/api/overview', { token: null });
    expect(none).toMatchObject({ status: 401, json: { error: { code: 'E_AUTH_REQUIRED' } } });
    const wrong = await call('/admin/api/overview', { token: `${token}x` });
    expect(wrong).toMatchObject({ status: 401, json: { error: { code: 'E_AUTH_REQUIRED', detail: 'the admin token is wrong' } } });
    const asDevice = await call(`/admin/api/clients/${alice.deviceId}`, { token: alice.token });
    expect(asDevice).toMatchObject({ status: 401, json: { error: { code: 'E_AUTH_REQUIRED' } } });
    const revokeAsDevice = await call(`/admin/api/clients/${alice.deviceId}/revoke`, { method: 'POST', token: alice.token });
    expect(revokeAsDevice.status).toBe(401);
    expect((await lookUp(alice.deviceId)).revokedAt).toBeNull();
    // The admin token on the device API, and as an MQTT password.
    const me = await call('/v1/users/me', { token });
    expect(me).toMatchObject({ status: 401, json: { error: { code: 'E_AUTH_TOKEN' } } });
    const c = new ParleyClient({ url: tp.mqttUrl, deviceId: alice.deviceId, token, userId: alice.userId, reconnectPeriodMs: 0, connectTimeoutMs: 5000 });
    await expect(c.connect()).rejects.toMatchObject({ code: 'E_AUTH_TOKEN' });
    await c.close();
    expect((await call('/admin/api/overview')).status).toBe(200);
  });

  it('limits failed authentications per address, across API processes', async () => {
    const ip = freshIp();
    for (let i = 0; i < 10; i++) expect((await call('/admin/api/overview', { token: 'not-the-admin-token-but-long-enough-1234', ip })).status).toBe(401);
    // Over the limit: refused even with the right token, from that address only.
    expect(await call('/admin/api/overview', { ip })).toMatchObject({ status: 429, json: { error: { code: 'E_RATE_LIMITED' } } });
    expect((await call('/admin/api/overview')).status).toBe(200);
    // A second API process on the same Redis (and data dir: the same generated token) counts the same failures.
    api2 = await startTestPlatform({ PARLEY_ROLES: 'api', PARLEY_TRUST_PROXY: 'true', PARLEY_REDIS_URL: tp.platform.urls.redis }, { dataDir: tp.dataDir });
    expect(await call('/admin/api/overview', { ip, base: api2.httpUrl })).toMatchObject({ status: 429, json: { error: { code: 'E_RATE_LIMITED' } } });
    expect((await call('/admin/api/overview', { base: api2.httpUrl })).status).toBe(200);
  });

  it('counts failures atomically: of 30 wrong tokens at once, only 10 are told "wrong", the rest E_RATE_LIMITED with Retry-After', async () => {
    const ip = freshIp();
    const answers = await Promise.all(Array.from({ length: 30 }, async (_, i) => {
      const res = await fetch(`${tp.httpUrl}/admin/api/overview`, {
        headers: { 'x-forwarded-for': ip, authorization: `Bearer wrong-admin-token-guess-number-${i}-padding` },
      });
      return { status: res.status, retryAfter: res.headers.get('retry-after'), code: ((await res.json()) as { error: { code: string } }).error.code };
    }));
    const wrong = answers.filter((a) => a.code === 'E_AUTH_REQUIRED');
    const limited = answers.filter((a) => a.code === 'E_RATE_LIMITED');
    expect(wrong.length).toBe(10);
    expect(limited.length).toBe(20);
    for (const a of limited) {
      expect(a.status).toBe(429);
      expect(Number(a.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(Number(a.retryAfter)).toBeLessThanOrEqual(600);
    }
    // The right token from there: refused too, with the same header.
    const right = await fetch(`${tp.httpUrl}/admin/api/overview`, { headers: { 'x-forwarded-for': ip, authorization: `Bearer ${token}` } });
    expect(right.status).toBe(429);
    expect(Number(right.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it('does not count successful sign-ins against the limit', async () => {
    const ip = freshIp();
    for (let i = 0; i < 9; i++) expect((await call('/admin/api/overview', { token: 'not-the-admin-token-but-long-enough-5678', ip })).status).toBe(401);
    const ok = await Promise.all(Array.from({ length: 20 }, () => call('/admin/api/overview', { ip })));
    expect(ok.map((a) => a.status)).toEqual(Array.from({ length: 20 }, () => 200));
    // The tenth failure is still told "wrong"; only then is the address over the limit.
    expect(await call('/admin/api/overview', { token: 'not-the-admin-token-but-long-enough-5678', ip })).toMatchObject({ status: 401, json: { error: { code: 'E_AUTH_REQUIRED' } } });
    expect(await call('/admin/api/overview', { ip })).toMatchObject({ status: 429, json: { error: { code: 'E_RATE_LIMITED' } } });
  });
});

describe('no CORS on the dashboard', () => {
  const evil = 'https://evil.example';

  it('an Origin request and a preflight to /admin/api/overview get no access-control-allow-origin; the device API keeps CORS', async () => {
    const withOrigin = await fetch(`${tp.httpUrl}/admin/api/overview`, { headers: { origin: evil, authorization: `Bearer ${token}`, 'x-forwarded-for': freshIp() } });
    expect(withOrigin.status).toBe(200);
    expect(withOrigin.headers.get('access-control-allow-origin')).toBeNull();
    const preflightHeaders = { origin: evil, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' };
    // The API, the page, and other spellings of the same route: refused, no CORS header.
    for (const path of ['/admin/api/overview', '/admin/api/clients/dAAAAAAAAAAAA/revoke', '/admin', '/admin/dashboard.js', '/%61dmin/api/overview']) {
      const preflight = await fetch(`${tp.httpUrl}${path}`, { method: 'OPTIONS', headers: { ...preflightHeaders, 'x-forwarded-for': freshIp() } });
      expect(preflight.status, path).toBe(404);
      expect(preflight.headers.get('access-control-allow-origin'), path).toBeNull();
      expect(preflight.headers.get('access-control-allow-headers'), path).toBeNull();
      expect(preflight.headers.get('access-control-allow-methods'), path).toBeNull();
    }
    const page = await fetch(`${tp.httpUrl}/admin`, { headers: { origin: evil } });
    expect(page.headers.get('access-control-allow-origin')).toBeNull();
    // The device API (the SDK in a web app) is still open to other origins.
    const api = await fetch(`${tp.httpUrl}/v1/users/me`, { method: 'OPTIONS', headers: preflightHeaders });
    expect(api.status).toBe(204);
    expect(api.headers.get('access-control-allow-origin')).toBe('*');
    expect(api.headers.get('access-control-allow-headers')).toContain('authorization');
  });
});

describe('overview', () => {
  it('lists the node with its roles; its figures move with traffic', async () => {
    const first = await getOverview();
    const node = nodeOf(first, brokerId())!;
    expect(node).toMatchObject({ state: 'live', report: { roles: ['broker', 'api', 'workers'], pid: process.pid, host: hostname() } });
    const before = node.report!.totals;

    const [alice, bob] = [await tp.register(), await tp.register()];
    const a = device(tp.mqttUrl, alice);
    const b = device(tp.mqttUrl, bob);
    await Promise.all([a.client.connect(), b.client.connect()]);
    for (let i = 0; i < 5; i++) await a.client.sendMessage(bob.userId, `hello ${i}`);
    await until(() => b.messages.length === 5, 10_000, 'bob got five messages');

    let sawRates = false;
    const after = await overviewUntil((o) => {
      const r = nodeOf(o, brokerId())?.report;
      if (r && r.rates.accepted > 0 && r.rates.delivered > 0 && r.latency.p50 !== null) sawRates = true;
      return !!r && r.totals.accepted >= before.accepted + 5 && r.totals.delivered >= before.delivered + 5 && sawRates;
    }, 'the node report counts the messages');
    const r = nodeOf(after, brokerId())!.report!;
    expect(r.connections).toBeGreaterThanOrEqual(2);
    expect(r.totals.publishes).toBeGreaterThan(before.publishes);
    expect(r.totals.deliveries).toBeGreaterThan(before.deliveries);
    expect(after.cluster.connections).toBeGreaterThanOrEqual(2);
    expect(after.cluster.totals.accepted).toBeGreaterThanOrEqual(r.totals.accepted);
    // The queues, every persist shard among them.
    expect(after.queues!.persist.map((q) => q.name)).toEqual(Array.from({ length: 8 }, (_, i) => `persist-${i}`));
    expect(after.queues!.others.map((q) => q.name).sort()).toEqual(['events', 'fanout', 'maintenance', 'media', 'push']);
    expect(after.cluster.persistBacklog).toBe(after.queues!.persist.reduce((s, q) => s + q.waiting + q.active + q.delayed + q.prioritized, 0));
  });

  it('counts as pending the messages a device was handed and has not acknowledged', async () => {
    const [alice, carol] = [await tp.register(), await tp.register()];
    const holder = await holdingClient(carol);
    const a = device(tp.mqttUrl, alice);
    await a.client.connect();
    for (let i = 0; i < 3; i++) await a.client.sendMessage(carol.userId, `held ${i}`);
    // mqtt.js reads the next packet only once the held one is acknowledged: the other two wait in its socket.
    await until(() => holder.held() === 1, 10_000, 'carol was handed the messages');
    const pending = await overviewUntil((o) => (nodeOf(o, brokerId())?.report?.pending ?? 0) >= 3, 'three pending');
    expect(pending.cluster.pending).toBeGreaterThanOrEqual(3);
    const delivered = nodeOf(pending, brokerId())!.report!.totals.delivered;
    holder.release();
    await overviewUntil((o) => {
      const r = nodeOf(o, brokerId())?.report;
      return !!r && r.pending === 0 && r.totals.delivered >= delivered + 3;
    }, 'acknowledged: no longer pending, delivered');
    await holder.client.endAsync();
  });

  it('lists a workers process of its own on the same Redis, then shows it stale and gone once it is killed', async () => {
    workers = await spawnRole('workers', { PARLEY_REDIS_URL: tp.platform.urls.redis, PARLEY_DATA_DIR: tp.dataDir, PARLEY_LOG_LEVEL: 'warn' }, 'admin-workers');
    const pid = workers.pid!;
    const both = await overviewUntil((o) => processNode(o, pid, 'workers')?.state === 'live', 'the workers process listed');
    const id = processNode(both, pid, 'workers')!.nodeId;
    expect(nodeOf(both, id)!.report).toMatchObject({ roles: ['workers'], pid: workers.pid, connections: 0 });
    expect(nodeOf(both, brokerId())!.state).toBe('live');
    expect(both.cluster.nodes).toBeGreaterThanOrEqual(2);
    await workers.kill('SIGKILL');
    const stale = await overviewUntil((o) => nodeOf(o, id)?.state === 'stale', 'the killed process stale', 15_000);
    expect(nodeOf(stale, id)!.ageMs).toBeGreaterThan(5000);
    const gone = await overviewUntil((o) => nodeOf(o, id)?.state === 'gone', 'the killed process gone', 20_000);
    expect(nodeOf(gone, id)!.report).toBeNull();
    expect(gone.cluster.nodes).toBe(gone.nodes.filter((n) => n.state !== 'gone').length);
  }, 60_000);

  it('drops a process that shuts down cleanly at once', async () => {
    const other = api2 ?? (api2 = await startTestPlatform({ PARLEY_ROLES: 'api', PARLEY_TRUST_PROXY: 'true', PARLEY_REDIS_URL: tp.platform.urls.redis }, { dataDir: tp.dataDir }));
    const listed = await overviewUntil((o) => processNode(o, process.pid, 'api')?.state === 'live', 'the API process listed');
    const id = processNode(listed, process.pid, 'api')!.nodeId;
    // Two platforms in one process: their ids differ (a random suffix after host and pid).
    expect(id).not.toBe(brokerId());
    await other.close();
    api2 = undefined;
    // Within the overview's 1 s reuse, long before its report would have expired (10 s).
    await overviewUntil((o) => nodeOf(o, id) === undefined, 'the API process dropped', 3000);
  });

  it('lists failed jobs by name, reason and time, never their data', async () => {
    const conn = new URL(tp.platform.urls.redis);
    const events = new Queue('events', { prefix: 'parley', connection: { host: conn.hostname, port: Number(conn.port) } });
    await events.add('bogus', { token: 'SECRET-in-job-data', endpoint: 'https://push.example/capability-SECRET' }, { attempts: 1 });
    await events.close();
    const o = await overviewUntil((x) => !!x.failedJobs?.recent.some((j) => j.name === 'bogus'), 'the failed job listed');
    const job = o.failedJobs!.recent.find((j) => j.name === 'bogus')!;
    expect(job).toMatchObject({ queue: 'events', reason: 'no processor for job bogus', attempts: 1 });
    expect(job.at).toBeGreaterThan(o.now - 60_000);
    expect(o.failedJobs!.total).toBeGreaterThanOrEqual(1);
    expect(o.queues!.others.find((q) => q.name === 'events')!.failed).toBeGreaterThanOrEqual(1);
    expect(JSON.stringify(o)).not.toContain('SECRET');
  });

  it('validates its input', async () => {
    expect(await call('/admin/api/overview?verbose=1')).toMatchObject({ status: 400, json: { error: { code: 'E_VALIDATION' } } });
    expect(await call('/admin/api/clients/nope')).toMatchObject({ status: 400, json: { error: { code: 'E_VALIDATION' } } });
    expect(await call('/admin/api/clients/dAAAAAAAAAAAA')).toMatchObject({ status: 404, json: { error: { code: 'E_NOT_FOUND' } } });
    const u = await tp.register();
    expect(await call(`/admin/api/clients/${u.deviceId}/disconnect`, { method: 'POST', body: { now: true } })).toMatchObject({ status: 400, json: { error: { code: 'E_VALIDATION' } } });
    expect(await call('/admin/api/clients/dAAAAAAAAAAAA/revoke', { method: 'POST', body: {} })).toMatchObject({ status: 404, json: { error: { code: 'E_NOT_FOUND' } } });
  });
});

describe('clients', () => {
  it('a last error noted after its account was deleted does not come back', async () => {
    const redis = new Redis(tp.platform.urls.redis);
    try {
      const errors = redisLastErrors(redis, 'parley', pino({ level: 'silent' }));
      // Fresh device ids: no MQTT session, so no broadcast on the cluster bus.
      const account = redisAccount(redis, 'parley', () => { throw new Error('no session to broadcast'); });
      const [gone, kept] = [newId('device'), newId('device')];
      errors.sent(gone, 'E_BEFORE');
      await until(async () => (await errors.get(gone)) !== null, 5000, 'noted before the deletion');
      await account.forget({ userId: newId('user'), phone: '+15550001234', deviceIds: [gone] });
      expect(await redis.exists(`parley:lasterr:${gone}`)).toBe(0);
      // A note still in flight when the deletion ran lands after it: dropped. The other device's,
      // in the same script call, is written (so the call has run once it is there).
      errors.sentAll([{ deviceId: gone, code: 'E_LATE' }, { deviceId: kept, code: 'E_LATE' }]);
      await until(async () => (await errors.get(kept))?.code === 'E_LATE', 5000, 'the other device noted');
      expect(await redis.exists(`parley:lasterr:${gone}`)).toBe(0);
      // What remembers the deletion names no device, and is forgotten within 10 minutes.
      expect((await redis.zrange('parley:lasterr-deleted', '0', '-1')).join()).not.toContain(gone);
      const ttl = await redis.pttl('parley:lasterr-deleted');
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(600_000);
      await redis.del(`parley:lasterr:${kept}`);
    } finally {
      await redis.quit();
    }
  });

  it('look-up: a connected device (node, since) and an offline one with queued messages', async () => {
    const [alice, bob, dave] = [await tp.register(), await tp.register(), await tp.register()];
    const beforeConnect = Date.now();
    const b = device(tp.mqttUrl, bob);
    await b.client.connect();
    const online = await lookUp(bob.deviceId);
    expect(online).toMatchObject({ deviceId: bob.deviceId, userId: bob.userId, name: 'primary', revokedAt: null, connection: { nodeId: brokerId() }, lastError: null });
    expect(online.connection!.since).toBeGreaterThanOrEqual(beforeConnect - 5);
    expect(online.connection!.since).toBeLessThanOrEqual(Date.now());

    const a = device(tp.mqttUrl, alice);
    await a.client.connect();
    for (let i = 0; i < 3; i++) await a.client.sendMessage(dave.userId, `while you were away ${i}`);
    await until(async () => (await lookUp(dave.deviceId)).queued.count === 3, 10_000, 'three messages queued for dave');
    const offline = await lookUp(dave.deviceId);
    expect(offline).toMatchObject({ connection: null, queued: { count: 3, more: false }, revokedAt: null });
    // Delivered when he connects: nothing queued any more.
    const d = device(tp.mqttUrl, dave);
    await d.client.connect();
    await until(() => d.messages.length === 3, 10_000, 'dave caught up');
    await until(async () => (await lookUp(dave.deviceId)).queued.count === 0, 10_000, 'nothing queued after the catch-up');
  });

  it('last error: a bad publish (broker), a message to nobody (workers), a refused login', async () => {
    const eve = await tp.register();
    const raw = await new Promise<mqtt.MqttClient>((res, rej) => {
      const c = mqtt.connect(tp.mqttUrl, { clientId: eve.deviceId, username: eve.deviceId, password: eve.token, clean: true, reconnectPeriod: 0, protocolVersion: 4 });
      rawClients.push(c);
      c.once('connect', () => res(c));
      c.once('error', rej);
    });
    const t0 = Date.now();
    await raw.publishAsync(outboxTopic(eve.deviceId), Buffer.from([0xff, 0x00, 0x13]), { qos: 1 });
    await until(async () => (await lookUp(eve.deviceId)).lastError?.code === 'E_BAD_ENVELOPE', 10_000, 'the broker refusal noted');
    expect((await lookUp(eve.deviceId)).lastError!.at).toBeGreaterThanOrEqual(t0);
    // A message to a user that does not exist: refused by the persist worker.
    await raw.publishAsync(outboxTopic(eve.deviceId), Buffer.from(encode({ kind: 'send', clientMsgId: 'nobody1', to: 'uAAAAAAAAAAAA', body: 'hello?' })), { qos: 1 });
    await until(async () => (await lookUp(eve.deviceId)).lastError?.code === 'E_RECIPIENT_UNKNOWN', 10_000, 'the worker refusal noted');
    await raw.endAsync();
    // A login with a wrong token.
    const c = new ParleyClient({ url: tp.mqttUrl, deviceId: eve.deviceId, token: `${eve.deviceId}.wrong-secret-wrong-secret`, userId: eve.userId, reconnectPeriodMs: 0, connectTimeoutMs: 5000 });
    await expect(c.connect()).rejects.toMatchObject({ code: 'E_AUTH_TOKEN' });
    await c.close();
    await until(async () => (await lookUp(eve.deviceId)).lastError?.code === 'E_AUTH_TOKEN', 10_000, 'the refused login noted');
  });

  it('disconnect closes its connection wherever it is; the device reconnects', async () => {
    const bob = await tp.register();
    const b = device(tp.mqttUrl, bob);
    const states: ConnectionState[] = [];
    b.client.on('state', (s) => states.push(s));
    await b.client.connect();
    const before = (await lookUp(bob.deviceId)).connection!;
    states.length = 0;
    const res = await call(`/admin/api/clients/${bob.deviceId}/disconnect`, { method: 'POST' });
    expect(res).toMatchObject({ status: 200, json: { deviceId: bob.deviceId, done: true } });
    await until(() => states.includes('connected') && states.some((s) => s !== 'connected'), 10_000, 'disconnected, then connected again');
    const after = await lookUp(bob.deviceId);
    expect(after.revokedAt).toBeNull();
    await until(async () => ((await lookUp(bob.deviceId)).connection?.since ?? 0) > before.since!, 10_000, 'a new connection');
    expect(logs.text()).toContain('"admin":"disconnect"');
    // Not connected: answered, nothing to do.
    await b.client.close();
    await until(async () => (await lookUp(bob.deviceId)).connection === null, 10_000, 'route gone');
    expect(await call(`/admin/api/clients/${bob.deviceId}/disconnect`, { method: 'POST' })).toMatchObject({ status: 200, json: { done: false } });
  });

  it('revoke makes its token invalid and closes its connection', async () => {
    const frank = await tp.register();
    const f = device(tp.mqttUrl, frank);
    await f.client.connect();
    const res = await call(`/admin/api/clients/${frank.deviceId}/revoke`, { method: 'POST', body: {} });
    expect(res).toMatchObject({ status: 200, json: { deviceId: frank.deviceId, done: true } });
    await until(() => f.client.state !== 'connected', 10_000, 'frank disconnected');
    // It tries again and is refused: the token is dead.
    await until(() => f.errors.some((e) => e.code === 'E_AUTH_TOKEN'), 10_000, 'frank refused');
    expect(await call('/v1/users/me', { token: frank.token })).toMatchObject({ status: 401, json: { error: { code: 'E_AUTH_TOKEN' } } });
    const view = await lookUp(frank.deviceId);
    expect(view.revokedAt).not.toBeNull();
    expect(view.connection).toBeNull();
    expect(logs.text()).toContain('"admin":"revoke"');
  });
});
