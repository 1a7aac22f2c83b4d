/**
 * Security, beyond what test/integration/bad-input.test.ts and chat.test.ts already cover:
 * brute force of codes, HTTP tokens and MQTT logins is limited *and logged*; a device cannot
 * hijack another's session, read another's inbox through `$SYS` or shared-subscription filters,
 * or mark read what it never received (the sender sees no read tick); revocation closes open
 * connections on every broker node, including the revocation a new verification of the phone
 * does; and no token, token secret, code or server secret ever reaches a log line.
 *
 * The platform runs in this process with a pino logger built like production's (same redaction)
 * writing into memory, and with the webhook SMS adapter: the console adapter logs the SMS text by
 * design (development only), which the last test pins down.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { Redis } from 'ioredis';
import type { IConnackPacket } from 'mqtt-packet';
import { decode, encode, inboxTopic, outboxTopic, receiptTopic, type Envelope } from '@parley/client-sdk/protocol';
import { parseConfig } from '../../services/src/config.js';
import { startPlatform, type Platform } from '../../services/src/platform.js';
import { startRedisServer, type RedisServer } from '../../services/src/redis/spawn.js';
import {
  captureLogs, connectPacket, linkVia, phoneFor, postJson, rawDevice, rawMqtt, registerVia, startSmsWebhook, tempDir, until,
  type Account, type LogCapture, type SmsWebhook,
} from './helpers.js';

const SERVER_SECRET = 'security-test-server-secret-7f3a9c';
const LOGIN_FAILURES = 5;
const CODE_ATTEMPTS = 3;

let dir: string;
let redis: RedisServer;
let sms: SmsWebhook;
let logs: LogCapture;
let platform: Platform;
let node2: Platform | undefined;
let httpUrl: string;
let mqttUrl: string;
let mqttPort: number;
const issued: Account[] = [];
const codesSent: string[] = [];

beforeAll(async () => {
  dir = tempDir('security');
  redis = await startRedisServer({ dir: join(dir, 'redis') });
  sms = await startSmsWebhook();
  logs = captureLogs('trace');
  const env = {
    PARLEY_DATA_DIR: dir,
    PARLEY_HOST: '127.0.0.1',
    PARLEY_REDIS_URL: redis.url,
    PARLEY_MQTT_PORT: '0',
    PARLEY_WS_PORT: '0',
    PARLEY_HTTP_PORT: '0',
    PARLEY_SMS: 'webhook',
    PARLEY_SMS_WEBHOOK_URL: sms.url,
    PARLEY_SECRET: SERVER_SECRET,
    PARLEY_LOG_LEVEL: 'trace',
    // A device linked later gets no earlier messages here (by default it gets recent history):
    // the receipt checks below need one that never received a message.
    PARLEY_LINK_HISTORY: '0',
    PARLEY_LOGIN_FAILURES_PER_MIN: String(LOGIN_FAILURES),
    PARLEY_CODE_MAX_ATTEMPTS: String(CODE_ATTEMPTS),
    PARLEY_CODE_RATE_PER_IP: '40',
  };
  platform = await startPlatform(parseConfig(env), { logger: logs.logger });
  httpUrl = platform.urls.http!;
  mqttUrl = platform.urls.mqtt!;
  mqttPort = Number(new URL(mqttUrl).port);
  // A second broker node on the same Redis and store, for cluster-wide revocation.
  node2 = await startPlatform(parseConfig({ ...env, PARLEY_ROLES: 'broker' }), { logger: logs.logger.child({ node: 2 }) });
}, 60_000);

afterAll(async () => {
  await node2?.close();
  await platform?.close();
  await redis?.stop();
  await sms?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Registers through the webhook and remembers every code and token for the log check. */
async function register(): Promise<Account> {
  const before = sms.texts.length;
  const acc = await registerVia(httpUrl, sms, phoneFor(501));
  for (const t of sms.texts.slice(before)) codesSent.push(/\b(\d{6})\b/.exec(t)![1]!);
  issued.push(acc);
  return acc;
}

async function link(owner: Account): Promise<Account> {
  const acc = await linkVia(httpUrl, owner.token, owner.userId);
  issued.push(acc);
  return acc;
}

// The tests share one source address (127.0.0.1): each starts with fresh rate-limit counters.
beforeEach(async () => { if (redis) await resetLimits(); });

const warnings = (msg: string): Array<Record<string, unknown>> => logs.lines().filter((l) => l.msg === msg);

/** Forgets every rate-limit counter (the tests share one source address, 127.0.0.1). */
async function resetLimits(): Promise<void> {
  const r = new Redis(redis.url);
  const keys = await r.keys('parley:rl:*');
  if (keys.length) await r.del(...keys);
  r.disconnect();
}

async function connack(acc: Pick<Account, 'deviceId' | 'token'>, clientId = acc.deviceId, port = mqttPort): Promise<number> {
  const raw = await rawMqtt(port);
  raw.send(connectPacket(clientId, acc.token, { username: clientId }));
  const code = ((await raw.next((p) => p.cmd === 'connack')) as IConnackPacket).returnCode ?? -1;
  raw.close();
  return code;
}

describe('brute force is limited and logged', () => {
  it('wrong verification codes: E_CODE_INVALID, then E_CODE_ATTEMPTS even for the right code; each wrong try is logged without the code', async () => {
    const phone = phoneFor(502);
    expect((await postJson(`${httpUrl}/v1/register`, { phone })).status).toBe(202);
    await until(() => sms.codes.has(phone), 5000, 'code');
    const good = sms.codes.get(phone)!;
    codesSent.push(good);
    const logged = warnings('wrong verification code').length;
    const answers: string[] = [];
    for (let i = 0; i < CODE_ATTEMPTS + 2; i++) {
      const wrong = String((Number(good) + 1 + i) % 1_000_000).padStart(6, '0');
      answers.push((await postJson(`${httpUrl}/v1/verify`, { phone, code: wrong })).json.error.code);
    }
    expect(answers).toEqual([...Array(CODE_ATTEMPTS - 1).fill('E_CODE_INVALID'), 'E_CODE_ATTEMPTS', 'E_CODE_ATTEMPTS', 'E_CODE_ATTEMPTS']);
    expect((await postJson(`${httpUrl}/v1/verify`, { phone, code: good })).json.error.code).toBe('E_CODE_ATTEMPTS');
    expect(warnings('wrong verification code').length - logged).toBe(CODE_ATTEMPTS);
  });

  it('code requests from one address: E_RATE_LIMITED past PARLEY_CODE_RATE_PER_IP, logged', async () => {
    await resetLimits();
    const statuses: number[] = [];
    for (let i = 0; i < 42; i++) statuses.push((await postJson(`${httpUrl}/v1/register`, { phone: phoneFor(503) })).status);
    expect(statuses.slice(0, 40).every((s) => s === 202)).toBe(true);
    expect(statuses.slice(40)).toEqual([429, 429]);
    expect(warnings('code request rate-limited').length).toBeGreaterThanOrEqual(2);
    for (const t of sms.texts) codesSent.push(/\b(\d{6})\b/.exec(t)![1]!);
    await resetLimits();
  });

  it('bad HTTP tokens: after 60 a minute from one address even a good token gets E_RATE_LIMITED; each is logged', async () => {
    const alice = await register();
    const before = warnings('bad device token').length;
    const codes: string[] = [];
    for (let i = 0; i < 62; i++) {
      const res = await fetch(`${httpUrl}/v1/users/me`, { headers: { authorization: `Bearer ${alice.deviceId}.guess-${i}-aaaaaaaaaaaaaaaa` } });
      codes.push(((await res.json()) as { error: { code: string } }).error.code);
    }
    expect(codes.slice(0, 60).every((c) => c === 'E_AUTH_TOKEN')).toBe(true);
    expect(codes.slice(60)).toEqual(['E_RATE_LIMITED', 'E_RATE_LIMITED']);
    const good = await fetch(`${httpUrl}/v1/users/me`, { headers: { authorization: `Bearer ${alice.token}` } });
    expect(good.status).toBe(429);
    expect(warnings('bad device token').length - before).toBe(60);
    await resetLimits();
  });

  it(`MQTT logins: CONNACK 4 for a wrong token, CONNACK 5 after PARLEY_LOGIN_FAILURES_PER_MIN (${LOGIN_FAILURES}) even for the right one; each refusal is logged`, async () => {
    const bob = await register();
    const before = warnings('MQTT login refused').length;
    const codes: number[] = [];
    for (let i = 0; i < LOGIN_FAILURES + 2; i++) codes.push(await connack({ deviceId: bob.deviceId, token: `${bob.deviceId}.wrong-secret-${i}-xxxxxxxxxxxx` }));
    expect(codes).toEqual([...Array(LOGIN_FAILURES).fill(4), 5, 5]);
    expect(await connack(bob)).toBe(5);
    const refused = warnings('MQTT login refused').slice(before);
    expect(refused.map((l) => l.returnCode)).toEqual([...Array(LOGIN_FAILURES).fill(4), 5, 5, 5]);
    expect(refused.every((l) => l.clientId === bob.deviceId && l.ip !== undefined)).toBe(true);
    await resetLimits();
    expect(await connack(bob)).toBe(0);
  });
});

describe('a device stays inside its own session', () => {
  it('cannot take over another device\'s session with its own token, and does not kick it off', async () => {
    const a = await register();
    const b = await register();
    const victim = await rawDevice(mqttPort, a);
    expect(await connack(b, a.deviceId)).toBe(4);
    // The victim's connection is untouched: it still answers.
    victim.send({ cmd: 'pingreq' });
    await victim.next((p) => p.cmd === 'pingresp');
    expect(victim.closed).toBe(false);
    victim.close();
  });

  it('cannot read other inboxes through $SYS, shared-subscription or multi-level filters, and gets nothing of them', async () => {
    const a = await register();
    const b = await register();
    const spy = await rawDevice(mqttPort, a);
    const filters = ['$SYS/#', '$SYS/+/new/subscribes', '$share/g/inbox/+', '+/+', '+/#', 'inbox/#', `inbox/${b.deviceId}/#`];
    spy.send({ cmd: 'subscribe', messageId: 2, subscriptions: filters.map((topic) => ({ topic, qos: 1 as const })) });
    const suback = await spy.next((p) => p.cmd === 'suback' && p.messageId === 2);
    expect((suback as { granted: number[] }).granted).toEqual(filters.map(() => 128));
    // Traffic to B now: none of it reaches the spy.
    const c = await register();
    const sender = await mqtt.connectAsync(mqttUrl, { clientId: c.deviceId, username: c.deviceId, password: c.token, clean: false, reconnectPeriod: 0 });
    const bInbox = await rawDevice(mqttPort, b);
    const from = spy.packets.length;
    await sender.publishAsync(outboxTopic(c.deviceId), Buffer.from(encode({ kind: 'send', clientMsgId: 'spy1', to: b.userId, body: 'for b only' })), { qos: 1 });
    await bInbox.next((p) => p.cmd === 'publish');
    const leaked = spy.packets.slice(from).filter((p) => p.cmd === 'publish' && (p as { topic: string }).topic !== inboxTopic(a.deviceId));
    expect(leaked).toEqual([]);
    await sender.endAsync();
    spy.close();
    bInbox.close();
  });

  it('cannot mark read what it never received: a stranger, the sender itself, a device linked later; the sender sees no read tick', async () => {
    const alice = await register();
    const bob = await register();
    const eve = await register();
    const a = await mqtt.connectAsync(mqttUrl, { clientId: alice.deviceId, username: alice.deviceId, password: alice.token, clean: false, reconnectPeriod: 0 });
    const aInbox: Envelope[] = [];
    a.on('message', (_t, p) => aInbox.push(decode(p)));
    await a.subscribeAsync(inboxTopic(alice.deviceId), { qos: 1 });
    await a.publishAsync(outboxTopic(alice.deviceId), Buffer.from(encode({ kind: 'send', clientMsgId: 'r1', to: bob.userId, body: 'private' })), { qos: 1 });
    await until(() => aInbox.some((e) => e.kind === 'stored'), 10_000, 'stored');
    const st = aInbox.find((e) => e.kind === 'stored')!;
    if (st.kind !== 'stored') throw new Error('unreachable');
    const msgId = `${st.chatId}.${st.seq.toString(36)}`;
    const bobLater = await link(bob); // linked after the message: it has no delivery of it

    const tryRead = async (acc: Account): Promise<string | undefined> => {
      const c = await mqtt.connectAsync(mqttUrl, { clientId: acc.deviceId, username: acc.deviceId, password: acc.token, clean: false, reconnectPeriod: 0 });
      const inbox: Envelope[] = [];
      c.on('message', (_t, p) => inbox.push(decode(p)));
      await c.subscribeAsync(inboxTopic(acc.deviceId), { qos: 1 });
      await c.publishAsync(receiptTopic(msgId), Buffer.alloc(0), { qos: 1 });
      await until(() => inbox.some((e) => e.kind === 'error'), 10_000, 'error envelope');
      await c.endAsync();
      const err = inbox.find((e) => e.kind === 'error');
      return err?.kind === 'error' ? err.code : undefined;
    };
    await a.endAsync();
    expect(await tryRead(eve)).toBe('E_NOT_RECIPIENT');
    expect(await tryRead(alice)).toBe('E_NOT_RECIPIENT');
    expect(await tryRead(bobLater)).toBe('E_NOT_RECIPIENT');
    const status = await fetch(`${httpUrl}/v1/messages/${msgId}/status`, { headers: { authorization: `Bearer ${alice.token}` } });
    const body = (await status.json()) as { status: string; recipients: Array<{ readAt: number | null }> };
    expect(body.status).not.toBe('read');
    expect(body.recipients.every((r) => r.readAt === null)).toBe(true);
  });
});

describe('revocation', () => {
  it('closes the revoked device\'s open connection on another broker node, and its token no longer connects anywhere', async () => {
    const alice = await register();
    const web = await link(alice);
    const port2 = Number(new URL(node2!.urls.mqtt!).port);
    const conn = await rawDevice(port2, web);
    const t0 = Date.now();
    const res = await fetch(`${httpUrl}/v1/devices/${web.deviceId}`, { method: 'DELETE', headers: { authorization: `Bearer ${alice.token}` } });
    expect(res.status).toBe(200);
    await until(() => conn.closed, 10_000, 'the connection on node 2 is closed');
    // "At once": the issue asks for within a second (it takes milliseconds: one Redis PUBLISH).
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(await connack(web, web.deviceId, port2)).toBe(4);
    expect(await connack(web)).toBe(4);
    await resetLimits();
  });

  it('a new verification of the phone closes the old devices\' open connections', async () => {
    const first = await register();
    const companion = await link(first);
    const c1 = await rawDevice(mqttPort, first);
    const c2 = await rawDevice(Number(new URL(node2!.urls.mqtt!).port), companion);
    const again = await registerVia(httpUrl, sms, first.phone);
    issued.push(again);
    for (const t of sms.texts) codesSent.push(/\b(\d{6})\b/.exec(t)![1]!);
    await until(() => c1.closed && c2.closed, 10_000, 'both old connections closed');
    expect(await connack(first)).toBe(4);
    expect(await connack(again)).toBe(0);
    await resetLimits();
  });
});

describe('logs', () => {
  it('contain no token, token secret, code or server secret (after registering, linking, connecting, sending, failing and revoking)', () => {
    const text = logs.text();
    expect(logs.lines().length).toBeGreaterThan(50); // it did log: the check below means something
    expect(issued.length).toBeGreaterThan(10);
    for (const acc of issued) {
      const secret = acc.token.slice(acc.token.indexOf('.') + 1);
      expect(text, `token of ${acc.deviceId}`).not.toContain(acc.token);
      expect(text, `token secret of ${acc.deviceId}`).not.toContain(secret);
    }
    const codes = new Set(codesSent);
    expect(codes.size).toBeGreaterThan(10);
    for (const code of codes) expect(text, `code ${code}`).not.toMatch(new RegExp(`(?<![0-9])${code}(?![0-9])`));
    expect(text).not.toContain(SERVER_SECRET);
    expect(text).not.toMatch(/bearer /i);
  });

  it('the console SMS adapter (development only) is the one place a code is written, in its own line', async () => {
    const devLogs = captureLogs('info');
    const devDir = tempDir('security-console');
    const dev = await startPlatform(parseConfig({
      PARLEY_DATA_DIR: devDir, PARLEY_HOST: '127.0.0.1', PARLEY_REDIS_URL: redis.url, PARLEY_MQTT_PORT: '0', PARLEY_WS_PORT: '0',
      PARLEY_HTTP_PORT: '0', PARLEY_SMS: 'console', PARLEY_ROLES: 'api', PARLEY_LOG_LEVEL: 'info',
    }), { logger: devLogs.logger });
    try {
      const phone = phoneFor(504);
      expect((await postJson(`${dev.urls.http!}/v1/register`, { phone })).status).toBe(202);
      const smsLines = devLogs.lines().filter((l) => l.msg === 'SMS (console adapter)');
      expect(smsLines).toHaveLength(1);
      const code = /\b(\d{6})\b/.exec((smsLines[0]!.sms as { text: string }).text)![1]!;
      const withCode = devLogs.text().split('\n').filter((l) => new RegExp(`(?<![0-9])${code}(?![0-9])`).test(l));
      expect(withCode).toHaveLength(1);
      expect(withCode[0]).toContain('SMS (console adapter)');
    } finally {
      await dev.close();
      rmSync(devDir, { recursive: true, force: true });
    }
  });
});

