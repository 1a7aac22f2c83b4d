/**
 * The PushSender adapters against local push services: Web Push against `web-push-testing`
 * (VAPID verified, payload decrypted), FCM HTTP v1 and APNs against fakes that check the request
 * format (test/helpers/push-fakes.ts). Each answer of a service maps to ok, gone, retry (with
 * Retry-After) or failed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebPushSender, generateVapidKeys } from '../../services/src/push/webpush.js';
import { createFcmSender } from '../../services/src/push/fcm.js';
import { PROVIDER_TOKEN_TTL_MS, createApnsSender } from '../../services/src/push/apns.js';
import { retryAfterMs, type WakeUp } from '../../services/src/push/sender.js';
import { isAllowedWebPushEndpoint } from '../../services/src/push/setup.js';
import {
  apnsToken, fcmToken, startApnsFake, startFcmFake, startWebPushService, type ApnsFake, type FcmFake, type WebPushService,
} from '../helpers/push-fakes.js';

const wake = (chatId = 'cAbCdEfGhIjKl'): WakeUp => ({ chatId, collapseKey: chatId, ttlSec: 3600 });

describe('Web Push sender (web-push-testing: VAPID verified, aes128gcm decrypted)', () => {
  let svc: WebPushService;
  const vapid = { ...generateVapidKeys(), subject: 'mailto:ops@parley.test' };
  const sender = createWebPushSender({ vapid });
  beforeAll(async () => { svc = await startWebPushService({ subject: vapid.subject }); });
  afterAll(async () => { await svc?.close(); });

  it('sends a content-free wake-up with TTL, Topic (the chat) and Urgency', async () => {
    const sub = await svc.subscribe(vapid.publicKey);
    expect(await sender.send({ kind: 'webpush', endpoint: sub.endpoint, keys: sub.keys }, wake('cChatOne12345'))).toEqual({ result: 'ok' });
    expect(svc.notifications(sub.clientHash)).toEqual([JSON.stringify({ v: 1, chatId: 'cChatOne12345' })]);
    const req = svc.requests.find((r) => r.clientHash === sub.clientHash)!;
    expect(req.headers).toMatchObject({ ttl: '3600', topic: 'cChatOne12345', urgency: 'high', 'x-content-encoding': 'aes128gcm' });
    expect(req.claims).toMatchObject({ aud: svc.origin, sub: vapid.subject });
    expect(svc.problems).toEqual([]);
  });

  it('a subscription signed for another key is refused by the service (the VAPID check is real)', async () => {
    const sub = await svc.subscribe(generateVapidKeys().publicKey);
    const outcome = await sender.send({ kind: 'webpush', endpoint: sub.endpoint, keys: sub.keys }, wake());
    expect(outcome.result).toBe('failed');
    expect(svc.notifications(sub.clientHash)).toEqual([]);
    svc.problems.length = 0; // the recorder saw the foreign key too
  });

  it('maps 410 to gone, 429/5xx to retry (Retry-After), other 4xx to failed, no answer to retry', async () => {
    const sub = await svc.subscribe(vapid.publicKey);
    const reg = { kind: 'webpush' as const, endpoint: sub.endpoint, keys: sub.keys };
    svc.failNext(sub.clientHash, { status: 429, retryAfter: '7' }, { status: 503 }, { status: 413 });
    expect(await sender.send(reg, wake())).toEqual({ result: 'retry', reason: 'push service answered 429', retryAfterMs: 7000 });
    expect(await sender.send(reg, wake())).toEqual({ result: 'retry', reason: 'push service answered 503' });
    expect((await sender.send(reg, wake())).result).toBe('failed');
    svc.expire(sub.clientHash);
    expect((await sender.send(reg, wake())).result).toBe('gone');
    expect((await sender.send({ ...reg, endpoint: 'http://127.0.0.1:9/notify/x' }, wake())).result).toBe('retry');
    expect((await sender.send({ ...reg, keys: { p256dh: 'AAAA', auth: 'BBBB' } }, wake())).result).toBe('gone');
    expect(svc.problems).toEqual([]);
  });

  it('never follows a redirect, and treats an endpoint no longer allowed as gone (without calling it)', async () => {
    const sub = await svc.subscribe(vapid.publicKey);
    svc.failNext(sub.clientHash, { status: 307 });
    const reg = { kind: 'webpush' as const, endpoint: sub.endpoint, keys: sub.keys };
    expect((await sender.send(reg, wake())).result).toBe('failed');
    const strict = createWebPushSender({ vapid, allowEndpoint: () => false });
    const before = svc.requests.length;
    expect(await strict.send(reg, wake())).toEqual({ result: 'gone', reason: 'endpoint no longer allowed' });
    expect(svc.requests.length).toBe(before);
    expect(svc.notifications(sub.clientHash)).toEqual([]);
  });
});

describe('FCM HTTP v1 sender (fake OAuth token endpoint and messages:send)', () => {
  let fcm: FcmFake;
  beforeAll(async () => { fcm = await startFcmFake(); });
  afterAll(async () => { await fcm?.close(); });
  const make = (now?: () => number) => createFcmSender({ serviceAccount: fcm.serviceAccount, endpoint: fcm.url, ...(now ? { now } : {}) });

  it('gets an access token with a signed JWT, caches it, and sends a data-only message collapsed per chat', async () => {
    const sender = make();
    const before = fcm.tokenRequests;
    const t1 = fcmToken();
    const [a, b] = await Promise.all([sender.send({ kind: 'fcm', token: t1 }, wake('cChatTwo12345')), sender.send({ kind: 'fcm', token: fcmToken() }, wake())]);
    expect([a, b]).toEqual([{ result: 'ok' }, { result: 'ok' }]);
    expect(await sender.send({ kind: 'fcm', token: t1 }, wake())).toEqual({ result: 'ok' });
    expect(fcm.tokenRequests - before).toBe(1);
    const m = fcm.messages.find((x) => x.token === t1)!;
    expect(m).toMatchObject({
      data: { v: '1', chatId: 'cChatTwo12345' },
      android: { collapse_key: 'cChatTwo12345', priority: 'high', ttl: '3600s' },
      apns: { headers: { 'apns-collapse-id': 'cChatTwo12345', 'apns-push-type': 'background' }, payload: { aps: { 'content-available': 1 } } },
    });
    expect(fcm.problems).toEqual([]);
  });

  it('renews the access token when it expires, and once on a 401', async () => {
    const sender = make();
    const token = fcmToken();
    const before = fcm.tokenRequests;
    // Tokens that live no longer than the renewal margin are renewed on every send.
    fcm.tokenTtlSec = 60;
    try {
      expect((await sender.send({ kind: 'fcm', token }, wake())).result).toBe('ok');
      expect((await sender.send({ kind: 'fcm', token }, wake())).result).toBe('ok');
      expect(fcm.tokenRequests - before).toBe(2);
    } finally {
      fcm.tokenTtlSec = 3600;
    }
    expect((await sender.send({ kind: 'fcm', token }, wake())).result).toBe('ok');
    expect(fcm.tokenRequests - before).toBe(3);
    expect((await sender.send({ kind: 'fcm', token }, wake())).result).toBe('ok');
    expect(fcm.tokenRequests - before).toBe(3); // cached
    fcm.answerNext(token, 'unauthorized');
    expect((await sender.send({ kind: 'fcm', token }, wake())).result).toBe('ok');
    expect(fcm.tokenRequests - before).toBe(4);
    expect(fcm.problems).toEqual([]);
  });

  it('maps UNREGISTERED to gone, 429/503 to retry with Retry-After, INVALID_ARGUMENT to failed', async () => {
    const sender = make();
    const token = fcmToken();
    fcm.answerNext(token, { status: 429, retryAfter: '3' }, { status: 503 }, 'invalid-argument', 'unregistered');
    expect(await sender.send({ kind: 'fcm', token }, wake())).toMatchObject({ result: 'retry', retryAfterMs: 3000 });
    expect(await sender.send({ kind: 'fcm', token }, wake())).toMatchObject({ result: 'retry' });
    expect(await sender.send({ kind: 'fcm', token }, wake())).toMatchObject({ result: 'failed' });
    expect(await sender.send({ kind: 'fcm', token }, wake())).toMatchObject({ result: 'gone', reason: expect.stringContaining('UNREGISTERED') });
    expect(fcm.problems).toEqual([]);
  });

  it('a token endpoint that refuses the key fails the send; an unreachable one retries', async () => {
    const other = await startFcmFake();
    try {
      // The key of another service account: the fake's token endpoint refuses the assertion.
      const wrongKey = createFcmSender({ serviceAccount: { ...fcm.serviceAccount, private_key: other.serviceAccount.private_key }, endpoint: fcm.url });
      expect((await wrongKey.send({ kind: 'fcm', token: fcmToken() }, wake())).result).toBe('failed');
      fcm.problems.length = 0;
      const down = createFcmSender({ serviceAccount: fcm.serviceAccount, endpoint: fcm.url, tokenUrl: 'http://127.0.0.1:9/token' });
      expect((await down.send({ kind: 'fcm', token: fcmToken() }, wake())).result).toBe('retry');
    } finally {
      await other.close();
    }
  });
});

describe('APNs sender (HTTP/2 fake checking the ES256 provider token)', () => {
  let apns: ApnsFake;
  beforeAll(async () => { apns = await startApnsFake(); });
  afterAll(async () => { await apns?.close(); });
  const make = (extra: Partial<Parameters<typeof createApnsSender>[0]> = {}) => createApnsSender({
    key: apns.key, keyId: apns.keyId, teamId: apns.teamId, topic: apns.topic, endpoint: apns.url, ...extra,
  });

  it('sends a background push with topic, priority 5, expiration and collapse id, reusing its provider token', async () => {
    const sender = make();
    try {
      const token = apnsToken();
      expect(await sender.send({ kind: 'apns', token }, wake('cChatThree123'))).toEqual({ result: 'ok' });
      expect(await sender.send({ kind: 'apns', token }, wake('cChatThree123'))).toEqual({ result: 'ok' });
      const mine = apns.pushes.filter((p) => p.token === token);
      expect(mine).toHaveLength(2);
      expect(mine[0]!.body).toEqual({ aps: { 'content-available': 1 }, v: 1, chatId: 'cChatThree123' });
      expect(mine[0]!.headers).toMatchObject({ 'apns-topic': apns.topic, 'apns-push-type': 'background', 'apns-priority': '5', 'apns-collapse-id': 'cChatThree123' });
      expect(mine[1]!.iat).toBe(mine[0]!.iat);
      expect(apns.problems).toEqual([]);
    } finally {
      await sender.close();
    }
  });

  it('renews the provider token after ~50 minutes and on ExpiredProviderToken', async () => {
    let t = Date.now();
    const sender = make({ now: () => t });
    try {
      const token = apnsToken();
      expect((await sender.send({ kind: 'apns', token }, wake())).result).toBe('ok');
      const first = apns.requests.filter((r) => r.token === token).at(-1)!.iat;
      t += PROVIDER_TOKEN_TTL_MS + 1000;
      expect((await sender.send({ kind: 'apns', token }, wake())).result).toBe('ok');
      expect(apns.requests.filter((r) => r.token === token).at(-1)!.iat).toBeGreaterThan(first);
      apns.answerNext(token, 'expired-provider-token');
      t += 60_000;
      expect((await sender.send({ kind: 'apns', token }, wake())).result).toBe('ok');
      expect(apns.problems).toEqual([]);
    } finally {
      await sender.close();
    }
  });

  it('maps 410, BadDeviceToken to gone, 429/503 to retry, DeviceTokenNotForTopic to failed', async () => {
    const sender = make();
    try {
      const token = apnsToken();
      apns.answerNext(token, { status: 429, reason: 'TooManyRequests', retryAfter: '2' }, { status: 503, reason: 'ServiceUnavailable' }, 'not-for-topic', 'bad-token', 'unregistered');
      expect(await sender.send({ kind: 'apns', token }, wake())).toMatchObject({ result: 'retry', retryAfterMs: 2000 });
      expect(await sender.send({ kind: 'apns', token }, wake())).toMatchObject({ result: 'retry' });
      expect(await sender.send({ kind: 'apns', token }, wake())).toMatchObject({ result: 'failed' });
      expect(await sender.send({ kind: 'apns', token }, wake())).toMatchObject({ result: 'gone', reason: 'APNs answered 400 BadDeviceToken' });
      expect(await sender.send({ kind: 'apns', token }, wake())).toMatchObject({ result: 'gone', reason: 'APNs answered 410 Unregistered' });
      expect(apns.problems).toEqual([]);
    } finally {
      await sender.close();
    }
  });

  it('alert push type: a fixed localisable alert, priority 10; a registration may name its topic', async () => {
    const sender = make({ pushType: 'alert', topic: undefined });
    apns.expectPushType = 'alert';
    try {
      const token = apnsToken();
      expect((await sender.send({ kind: 'apns', token }, wake())).result).toBe('failed'); // no topic anywhere
      expect((await sender.send({ kind: 'apns', token, topic: apns.topic }, wake())).result).toBe('ok');
      expect(apns.pushes.at(-1)!.body.aps).toEqual({ alert: { 'loc-key': 'PARLEY_NEW_MESSAGE' }, 'mutable-content': 1, sound: 'default', 'thread-id': wake().chatId });
      expect(apns.problems).toEqual([]);
    } finally {
      apns.expectPushType = 'background';
      await sender.close();
    }
  });

  it('an unreachable APNs is a retry', async () => {
    const sender = make({ endpoint: 'http://127.0.0.1:9', timeoutMs: 2000 });
    try {
      expect((await sender.send({ kind: 'apns', token: apnsToken() }, wake())).result).toBe('retry');
    } finally {
      await sender.close();
    }
  });
});

describe('push helpers', () => {
  it('Retry-After in seconds or as an HTTP date', () => {
    expect(retryAfterMs('120')).toBe(120_000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 4_000)).toBe(6_000);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(undefined)).toBeUndefined();
  });

  it('only allowed push services may be registered as Web Push endpoints', () => {
    const origins = ['https://*.googleapis.com', 'https://updates.push.services.mozilla.com', 'http://localhost'];
    expect(isAllowedWebPushEndpoint('https://fcm.googleapis.com/fcm/send/abc', origins)).toBe(true);
    expect(isAllowedWebPushEndpoint('https://updates.push.services.mozilla.com/wpush/v2/x', origins)).toBe(true);
    expect(isAllowedWebPushEndpoint('http://localhost:8090/notify/x', origins)).toBe(true);
    expect(isAllowedWebPushEndpoint('https://googleapis.com.evil.example/x', origins)).toBe(false);
    expect(isAllowedWebPushEndpoint('http://fcm.googleapis.com/x', origins)).toBe(false);
    expect(isAllowedWebPushEndpoint('https://fcm.googleapis.com:8443/x', origins)).toBe(false);
    expect(isAllowedWebPushEndpoint('https://user:pw@fcm.googleapis.com/x', origins)).toBe(false);
    expect(isAllowedWebPushEndpoint('http://169.254.169.254/latest', origins)).toBe(false);
    expect(isAllowedWebPushEndpoint('not a url', origins)).toBe(false);
    expect(isAllowedWebPushEndpoint('https://anything.example/x', ['*'])).toBe(true);
    expect(isAllowedWebPushEndpoint('http://anything.example/x', ['*'])).toBe(false);
  });
});
