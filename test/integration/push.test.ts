/**
 * Push wake-ups through the SDK on a real platform: Web Push end to end against the
 * `web-push-testing` push service (it verifies the VAPID signature with the subscription's
 * applicationServerKey and decrypts the aes128gcm payload; our recorder checks the JWT's claims
 * too), FCM HTTP v1 and APNs against fakes that check the request format. Proves: a message to an
 * offline device gives exactly one content-free wake-up (a burst too); a connected device and the
 * author's own devices get none; a "gone" answer removes the registration; 503 and 429 are
 * retried (Retry-After honoured) to exactly one wake-up; revoking a device, or verifying the
 * phone again, removes registrations; registration is validated and refused for kinds the server
 * does not send. "Exactly" is checked once every queue (persist, fanout, push) is empty.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { ParleyClient, ParleyError, type PushConfigInfo } from '@parley/client-sdk';
import { startTestPlatform, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, type Recorded } from '../helpers/sdk.js';
import {
  apnsToken, fcmToken, startApnsFake, startFcmFake, startWebPushService, type ApnsFake, type FcmFake, type WebPushService,
} from '../helpers/push-fakes.js';
import { createSqliteStore } from '../../services/src/store/sqlite.js';
import type { Store } from '../../services/src/store/types.js';

const SUBJECT = 'mailto:ops@parley.test';

let tp: TestPlatform;
let web: WebPushService;
let fcm: FcmFake;
let apns: ApnsFake;
let keysDir: string;
let config: PushConfigInfo;
let store: Store;
let queues: Queue[] = [];
let redis: Redis;

beforeAll(async () => {
  [web, fcm, apns] = await Promise.all([startWebPushService({ subject: SUBJECT }), startFcmFake(), startApnsFake()]);
  keysDir = mkdtempSync(join(tmpdir(), 'parley-push-keys-'));
  writeFileSync(join(keysDir, 'service-account.json'), JSON.stringify(fcm.serviceAccount));
  writeFileSync(join(keysDir, 'AuthKey.p8'), apns.key);
  tp = await startTestPlatform({
    PARLEY_CODE_RATE_PER_IP: '1000',
    PARLEY_WEBPUSH_ORIGINS: web.origin,
    PARLEY_VAPID_SUBJECT: SUBJECT,
    // One wake-up per device and chat for the whole run (an hour: longer than any wait here, so
    // "a burst adds none" holds however slow the machine; every test wakes its own new devices,
    // and retries are not counted against the limit). Retries start fast.
    PARLEY_PUSH_MIN_INTERVAL_MS: '3600000',
    PARLEY_PUSH_RETRY_BASE_MS: '100',
    PARLEY_FCM_SERVICE_ACCOUNT: join(keysDir, 'service-account.json'),
    PARLEY_FCM_ENDPOINT: fcm.url,
    PARLEY_APNS_KEY_FILE: join(keysDir, 'AuthKey.p8'),
    PARLEY_APNS_KEY_ID: apns.keyId,
    PARLEY_APNS_TEAM_ID: apns.teamId,
    PARLEY_APNS_TOPIC: apns.topic,
    PARLEY_APNS_ENDPOINT: apns.url,
    // Chats of more than three devices go through `fanout` jobs, smaller ones through `persist`.
    PARLEY_FANOUT_CHUNK: '3',
  });
  const api = new ParleyClient({ url: tp.mqttUrl, deviceId: 'dUnused000000', token: 'x', apiUrl: tp.httpUrl });
  config = await api.getPushConfig();
  await api.close();
  store = createSqliteStore({ file: join(tp.dataDir, 'parley.sqlite') });
  await store.init();
  const u = new URL(tp.platform.urls.redis);
  const connection = { host: u.hostname, port: Number(u.port) };
  redis = new Redis(tp.platform.urls.redis);
  queues = [...Array.from({ length: 8 }, (_, i) => `persist-${i}`), 'fanout', 'push'].map((name) => new Queue(name, { connection, prefix: 'parley' }));
}, 60_000);

afterAll(async () => {
  await closeAll();
  await Promise.all(queues.map((q) => q.close()));
  redis?.disconnect();
  await store?.close();
  await tp?.close();
  await Promise.all([web?.close(), fcm?.close(), apns?.close()]);
  if (keysDir) rmSync(keysDir, { recursive: true, force: true });
});

/** Every message stored, delivered, and every wake-up sent or given up (retries included). */
async function quiet(): Promise<void> {
  await until(async () => {
    const counts = await Promise.all(queues.map((q) => q.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children')));
    return counts.every((c) => Object.values(c).every((n) => n === 0));
  }, 20_000, 'all queues empty');
}

const httpClient = (r: Registered): ParleyClient => device(tp.mqttUrl, r, { apiUrl: tp.httpUrl }).client;

/** Registers the device for Web Push with a fresh subscription at the local push service. */
async function subscribe(r: Registered): Promise<string> {
  const { clientHash, ...sub } = await web.subscribe(config.vapidPublicKey);
  expect(await httpClient(r).registerPush({ kind: 'webpush', ...sub })).toEqual({ kind: 'webpush', endpoint: sub.endpoint, keys: sub.keys });
  return clientHash;
}

/** Connected, and routed: the broker recorded where the device is (what the bus looks up). */
async function online(r: Registered): Promise<Recorded> {
  const d = device(tp.mqttUrl, r, { apiUrl: tp.httpUrl });
  await d.client.connect();
  await until(async () => (await redis.exists(`parley:at:${r.deviceId}`)) === 1, 10_000, 'the device\'s route');
  return d;
}

const wakeUp = (chatId: string): string => JSON.stringify({ v: 1, chatId });
const codeOf = (p: Promise<unknown>): Promise<string | undefined> => p.then(() => undefined, (e: unknown) => (e instanceof ParleyError ? e.code : String(e)));

describe('Web Push end to end', () => {
  it('serves the VAPID key (generated into the data dir) and the configured kinds', () => {
    const kept = JSON.parse(readFileSync(join(tp.dataDir, 'vapid.json'), 'utf8')) as { publicKey: string };
    expect(config).toEqual({ vapidPublicKey: kept.publicKey, kinds: ['webpush', 'fcm', 'apns'] });
  });

  it('a message to an offline device gives exactly one wake-up, VAPID-verified and decrypted, with nothing of the message; a burst adds none; the author\'s devices get none', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const aliceOther = await tp.linkDevice(alice.token, 'laptop');
    const bobHash = await subscribe(bob);
    const aliceOtherHash = await subscribe(aliceOther);
    const a = await online(alice);

    const sent = await a.client.sendMessage(bob.userId, 'the secret text');
    await until(() => web.notifications(bobHash).length > 0, 15_000, 'the wake-up');
    // Two more while bob is still away: the same wake-up covers them (one per device and chat per interval).
    await a.client.sendMessage(bob.userId, 'more');
    await a.client.sendMessage(bob.userId, 'and more');
    await quiet();

    expect(web.notifications(bobHash)).toEqual([wakeUp(sent.chatId)]);
    expect(web.notifications(bobHash)[0]).not.toContain('secret');
    const req = web.requests.filter((r) => r.clientHash === bobHash);
    expect(req).toHaveLength(1);
    expect(req[0]!.headers).toMatchObject({ topic: sent.chatId, urgency: 'high', ttl: '86400', 'x-content-encoding': 'aes128gcm' });
    expect(req[0]!.claims).toMatchObject({ aud: web.origin, sub: SUBJECT });
    // Alice's laptop got her messages (it is one of her devices) but is never woken for them.
    expect(web.notifications(aliceOtherHash)).toEqual([]);
    expect(web.problems).toEqual([]);
  });

  it('in a group delivered by fan-out jobs, only the offline registered devices are woken, a connected one is not', async () => {
    const [alice, bob, carol, dave, erin] = [await tp.register(), await tp.register(), await tp.register(), await tp.register(), await tp.register()];
    const bobHash = await subscribe(bob);
    const carolHash = await subscribe(carol);
    const daveHash = await subscribe(dave);
    const a = await online(alice);
    const b = await online(bob);
    const group = await a.client.createChat({ name: 'push', members: [bob.userId, carol.userId, dave.userId, erin.userId] });
    const sent = await a.client.sendMessage(group.chatId, 'hello group');
    await until(() => b.messages.some((m) => m.msgId === sent.msgId), 15_000, 'bob gets the message live');
    await until(() => web.notifications(carolHash).length > 0 && web.notifications(daveHash).length > 0, 15_000, 'carol and dave woken');
    await quiet();
    expect(web.notifications(carolHash)).toEqual([wakeUp(group.chatId)]);
    expect(web.notifications(daveHash)).toEqual([wakeUp(group.chatId)]);
    expect(web.notifications(bobHash)).toEqual([]);
    expect(web.requests.filter((r) => r.clientHash === bobHash)).toEqual([]);
    expect(web.problems).toEqual([]);
  });

  it('with every recipient connected, no push job is even queued', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const hash = await subscribe(bob);
    const a = await online(alice);
    const b = await online(bob);
    await quiet();
    // BullMQ's job id counter of the push queue: it moves with every job added.
    const counter = (): Promise<string | null> => redis.get('parley:push:id');
    const before = await counter();
    const sent = await a.client.sendMessage(bob.userId, 'both here');
    const group = await a.client.createChat({ name: 'all here', members: [bob.userId] });
    const inGroup = await a.client.sendMessage(group.chatId, 'still here');
    await until(() => [sent.msgId, inGroup.msgId].every((id) => b.messages.some((m) => m.msgId === id)), 15_000, 'bob gets both');
    await quiet();
    expect(await counter()).toBe(before);
    expect(web.requests.filter((r) => r.clientHash === hash)).toEqual([]);
  });

  it('a "gone" answer (410) removes the registration', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const hash = await subscribe(bob);
    web.expire(hash);
    const a = await online(alice);
    await a.client.sendMessage(bob.userId, 'are you there?');
    const bobApi = httpClient(bob);
    await until(async () => (await bobApi.getPushRegistration()) === null, 15_000, 'the registration removed');
    expect(await store.getPushRegistrations([bob.deviceId])).toEqual([]);
    await quiet();
    expect(web.requests.filter((r) => r.clientHash === hash)).toHaveLength(1);
  });

  it('503 then 429 (Retry-After: 1) are retried with back-off to exactly one wake-up, never again to a device already woken', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const carol = await tp.register();
    const hash = await subscribe(bob);
    const carolHash = await subscribe(carol);
    web.failNext(hash, { status: 503 }, { status: 429, retryAfter: '1' });
    const a = await online(alice);
    // The group's `created` message is the one that wakes them (bob through two retries).
    const group = await a.client.createChat({ name: 'retry', members: [bob.userId, carol.userId] });
    await until(() => web.notifications(hash).length > 0, 20_000, 'the wake-up after the retries');
    await quiet();
    expect(web.notifications(hash)).toEqual([wakeUp(group.chatId)]);
    expect(web.notifications(carolHash)).toEqual([wakeUp(group.chatId)]);
    const tries = web.requests.filter((r) => r.clientHash === hash);
    expect(tries.map((r) => r.injected)).toEqual([503, 429, 0]);
    // The first retry after the back-off (100 ms), the second after the Retry-After (1 s).
    expect(tries[1]!.at - tries[0]!.at).toBeGreaterThanOrEqual(90);
    expect(tries[2]!.at - tries[1]!.at).toBeGreaterThanOrEqual(990);
    // Carol was done at the first try: the retries were bob's alone.
    expect(web.requests.filter((r) => r.clientHash === carolHash)).toHaveLength(1);
    expect(await store.getPushRegistrations([bob.deviceId])).toHaveLength(1);
    expect(web.problems).toEqual([]);
  });

  it('after unregisterPush no wake-up is sent', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const hash = await subscribe(bob);
    const bobApi = httpClient(bob);
    expect(await bobApi.unregisterPush()).toBe(true);
    expect(await bobApi.unregisterPush()).toBe(false);
    expect(await bobApi.getPushRegistration()).toBeNull();
    const a = await online(alice);
    await a.client.sendMessage(bob.userId, 'nobody wakes');
    await quiet();
    expect(web.requests.filter((r) => r.clientHash === hash)).toEqual([]);
  });
});

describe('registrations follow the devices', () => {
  it('revoking a device, or verifying the phone again, removes its registration', async () => {
    const alice = await tp.register();
    const laptop = await tp.linkDevice(alice.token, 'laptop');
    await subscribe(laptop);
    await subscribe(alice);
    expect(await store.getPushRegistrations([laptop.deviceId, alice.deviceId])).toHaveLength(2);
    await httpClient(alice).revokeDevice(laptop.deviceId);
    expect((await store.getPushRegistrations([laptop.deviceId, alice.deviceId])).map((r) => r.deviceId)).toEqual([alice.deviceId]);
    // A new phone verification revokes every earlier device.
    await tp.register(alice.phone);
    expect(await store.getPushRegistrations([alice.deviceId])).toEqual([]);
  });

  it('validates registrations: allowed push services only, keys and tokens of the right form', async () => {
    const bob = await tp.register();
    const c = httpClient(bob);
    const { clientHash: _h, ...sub } = await web.subscribe(config.vapidPublicKey);
    expect(await codeOf(c.registerPush({ kind: 'webpush', ...sub, endpoint: 'https://push.evil.example/x' }))).toBe('E_PUSH_ENDPOINT');
    expect(await codeOf(c.registerPush({ kind: 'webpush', ...sub, endpoint: 'http://169.254.169.254/latest/meta-data' }))).toBe('E_PUSH_ENDPOINT');
    expect(await codeOf(c.registerPush({ kind: 'webpush', endpoint: sub.endpoint, keys: { p256dh: 'short', auth: sub.keys.auth } }))).toBe('E_VALIDATION');
    expect(await codeOf(c.registerPush({ kind: 'apns', token: 'not-hex' }))).toBe('E_VALIDATION');
    expect(await codeOf(c.registerPush({ kind: 'apns', token: apnsToken(), topic: 'com.other.app' }))).toBe('E_VALIDATION');
    expect(await codeOf(c.registerPush({ kind: 'fcm', token: 'bad token with spaces' }))).toBe('E_VALIDATION');
    expect(await codeOf(c.registerPush({ kind: 'smoke-signal' } as never))).toBe('E_VALIDATION');
    // A browser's toJSON() (with padding and expirationTime) is accepted and kept without padding.
    const padded = await c.registerPush({ kind: 'webpush', endpoint: sub.endpoint, expirationTime: null, keys: { p256dh: `${sub.keys.p256dh}=`, auth: `${sub.keys.auth}==` } });
    expect(padded).toEqual({ kind: 'webpush', endpoint: sub.endpoint, keys: sub.keys });
    expect(await codeOf(new ParleyClient({ url: tp.mqttUrl, deviceId: bob.deviceId, token: `${bob.token}x`, apiUrl: tp.httpUrl }).registerPush({ kind: 'fcm', token: fcmToken() }))).toBe('E_AUTH_TOKEN');
  });
});

describe('FCM and APNs through the platform', () => {
  it('FCM: one data-only message per offline device and chat; UNREGISTERED removes the registration', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const carol = await tp.register();
    const bobToken = fcmToken();
    const carolToken = fcmToken();
    await httpClient(bob).registerPush({ kind: 'fcm', token: bobToken });
    await httpClient(carol).registerPush({ kind: 'fcm', token: carolToken });
    fcm.answerNext(carolToken, 'unregistered');
    const a = await online(alice);
    const toBob = await a.client.sendMessage(bob.userId, 'hi bob');
    await a.client.sendMessage(carol.userId, 'hi carol');
    await until(async () => (await store.getPushRegistrations([carol.deviceId])).length === 0, 15_000, 'carol\'s token removed');
    await quiet();
    const mine = fcm.messages.filter((m) => m.token === bobToken);
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ data: { v: '1', chatId: toBob.chatId }, android: { collapse_key: toBob.chatId, priority: 'high' } });
    expect(fcm.messages.filter((m) => m.token === carolToken)).toEqual([]);
    expect(fcm.problems).toEqual([]);
  });

  it('APNs: one background push per offline device and chat, retried after a 503; BadDeviceToken removes the registration', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const carol = await tp.register();
    const bobToken = apnsToken();
    const carolToken = apnsToken();
    expect(await httpClient(bob).registerPush({ kind: 'apns', token: bobToken.toUpperCase(), environment: 'development' }))
      .toEqual({ kind: 'apns', token: bobToken, environment: 'development' });
    await httpClient(carol).registerPush({ kind: 'apns', token: carolToken });
    apns.answerNext(bobToken, { status: 503, reason: 'ServiceUnavailable' });
    apns.answerNext(carolToken, 'bad-token');
    const a = await online(alice);
    const toBob = await a.client.sendMessage(bob.userId, 'hi bob');
    await a.client.sendMessage(carol.userId, 'hi carol');
    await until(() => apns.pushes.some((p) => p.token === bobToken), 15_000, 'bob\'s push after the retry');
    await until(async () => (await store.getPushRegistrations([carol.deviceId])).length === 0, 15_000, 'carol\'s token removed');
    await quiet();
    const mine = apns.pushes.filter((p) => p.token === bobToken);
    expect(mine).toHaveLength(1);
    expect(mine[0]!.body).toEqual({ aps: { 'content-available': 1 }, v: 1, chatId: toBob.chatId });
    expect(mine[0]!.headers['apns-collapse-id']).toBe(toBob.chatId);
    expect(apns.requests.filter((p) => p.token === bobToken)).toHaveLength(2);
    expect(apns.problems).toEqual([]);
  });
});

describe('push with no push configuration', () => {
  it('Web Push works out of the box with a generated VAPID pair kept across restarts; FCM and APNs are refused', async () => {
    const p1 = await startTestPlatform();
    const dataDir = p1.dataDir;
    let first: string;
    try {
      const user = await p1.register();
      const c = new ParleyClient({ url: p1.mqttUrl, deviceId: user.deviceId, token: user.token, apiUrl: p1.httpUrl });
      const cfg = await c.getPushConfig();
      first = cfg.vapidPublicKey;
      expect(cfg.kinds).toEqual(['webpush']);
      expect(first).toMatch(/^[A-Za-z0-9_-]{87}$/);
      expect(existsSync(join(dataDir, 'vapid.json'))).toBe(true);
      expect(await codeOf(c.registerPush({ kind: 'fcm', token: fcmToken() }))).toBe('E_PUSH_UNSUPPORTED');
      expect(await codeOf(c.registerPush({ kind: 'apns', token: apnsToken() }))).toBe('E_PUSH_UNSUPPORTED');
      // The default allowed push services are the browsers' ones, not a local one.
      const { clientHash: _h, ...sub } = await web.subscribe(first);
      expect(await codeOf(c.registerPush({ kind: 'webpush', ...sub }))).toBe('E_PUSH_ENDPOINT');
      await c.close();
    } finally {
      await p1.platform.close();
    }
    const p2 = await startTestPlatform({}, { dataDir });
    try {
      const c = new ParleyClient({ url: p2.mqttUrl, deviceId: 'dUnused000000', token: 'x', apiUrl: p2.httpUrl });
      expect((await c.getPushConfig()).vapidPublicKey).toBe(first);
      await c.close();
    } finally {
      await p2.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
