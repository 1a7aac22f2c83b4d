/**
 * Account deletion on a real platform, through the SDK and HTTP (issue 12, item 7): Alice has two
 * devices (one connected, one offline with a queued session), a direct chat with Bob (delivered)
 * and one with Carol (undelivered), a group with Bob and Carol where she is the only admin, media
 * she uploaded, a status post, contacts and a block both ways, a profile, privacy settings and a
 * push registration on each device (the offline one woken, so its wake-up limit key exists). A
 * wrong code is refused; with a fresh code everything goes: her connected device is disconnected
 * and cannot come back, the group's members get her `left` message and Bob becomes admin, and then
 * no row of hers is found through any port, no object of hers is in the BlobStore, and no Redis
 * key (a SCAN of the whole keyspace) names her userId, a deviceId of hers or her phone (the
 * dashboard's note of her last error included). Her delivered message stays with Bob (his copy); the undelivered one to Carol is gone.
 * The same phone then registers again, as a new user.
 */
import { createECDH, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParleyClient, ParleyError, type ChatMessage } from '@parley/client-sdk';
import { startTestPlatform, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, type Recorded } from '../helpers/sdk.js';
import { png } from '../helpers/media.js';
import { openStore, type Store } from '../../services/src/store/index.js';
import { createFsBlobStore } from '../../services/src/media/fs-blob-store.js';
import { QUEUE } from '../../services/src/queues.js';

let p: TestPlatform;
let store: Store;
let redis: Redis;
let alice: Registered;
let alice2: Registered;
let bob: Registered;
let carol: Registered;
let dave: Registered;
let a1: Recorded;
let b1: Recorded;

beforeAll(async () => {
  // A Web Push endpoint nobody listens on: wake-ups fail, which is not what this test is about.
  // A wake-up limit that cannot run out during the test, so the limit key of her offline device
  // is still there when she deletes her account.
  p = await startTestPlatform({ PARLEY_CODE_RATE_PER_IP: '1000', PARLEY_WEBPUSH_ORIGINS: 'http://127.0.0.1:9', PARLEY_PUSH_MIN_INTERVAL_MS: '3600000' });
  store = await openStore({ kind: 'sqlite', file: join(p.dataDir, 'parley.sqlite') });
  redis = new Redis(p.platform.urls.redis);
  [alice, bob, carol, dave] = [await p.register(), await p.register(), await p.register(), await p.register()];
  alice2 = await p.linkDevice(alice.token, 'laptop');
}, 60_000);

afterAll(async () => {
  await closeAll();
  redis?.disconnect();
  await store?.close();
  await p?.close();
});

/** Every key of the Redis keyspace (SCAN). */
async function allKeys(): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

describe('account deletion', () => {
  it('removes every row, object and Redis key of the user; the members keep their copies; the number registers again', async () => {
    // Alice's second device connects once (a persistent session with subscriptions), then goes away.
    const a2 = device(p.mqttUrl, alice2, { apiUrl: p.httpUrl });
    await a2.client.connect();
    await a2.client.close();
    a1 = device(p.mqttUrl, alice, { apiUrl: p.httpUrl });
    b1 = device(p.mqttUrl, bob, { apiUrl: p.httpUrl });
    await Promise.all([a1.client.connect(), b1.client.connect()]);

    // A direct chat with Bob (delivered) and one with Carol, who is never online (undelivered).
    const toBob = await a1.client.sendMessage(bob.userId, 'hello Bob');
    await until(() => b1.messages.some((m) => m.msgId === toBob.msgId), 10_000, 'Bob got the direct message');
    const toCarol = await a1.client.sendMessage(carol.userId, 'hello Carol');
    // A group with Bob and Carol; Alice is its only admin.
    const group = await a1.client.createChat({ name: 'Book club', members: [bob.userId, carol.userId] });
    const inGroup = await a1.client.sendMessage(group.chatId, 'welcome');
    await until(() => b1.messages.some((m) => m.msgId === inGroup.msgId), 10_000, 'Bob got the group message');
    // Bob reads the direct message: the receipt is queued in the offline device's session.
    await b1.client.markRead(toBob.msgId);
    await until(async () => (await redis.llen(`outgoing:${alice2.deviceId}`)) > 0, 10_000, 'a packet queued for the offline device');
    // Media she uploaded, sent to Bob.
    const photo = await a1.client.sendMedia(bob.userId, await png(64, 48), { kind: 'image', contentType: 'image/png', caption: 'pic' });
    await until(() => b1.messages.some((m) => m.msgId === photo.msgId), 10_000, 'Bob got the photo');
    // Contacts and blocks both ways, profile, privacy, through the SDK (Carol and Dave's own clients, never connected).
    const carolApi = device(p.mqttUrl, carol, { apiUrl: p.httpUrl }).client;
    const daveApi = device(p.mqttUrl, dave, { apiUrl: p.httpUrl }).client;
    await a1.client.addContacts([bob.userId]);
    await carolApi.addContacts([alice.userId]);
    await a1.client.blockUser(dave.userId);
    await daveApi.blockUser(alice.userId);
    const avatar = await a1.client.uploadMedia(await png(32, 32), { kind: 'image', contentType: 'image/png' });
    await until(async () => (await store.getAttachment(avatar.attachmentId))?.state === 'ready', 10_000, 'avatar thumbnailed');
    await a1.client.setProfile({ name: 'Alice', about: 'reading', avatar: avatar.attachmentId });
    await a1.client.setPrivacy({ lastSeen: 'contacts' });
    // A status post and a push registration, through the SDK.
    await a1.client.postStatus({ text: 'on holiday', background: 0x336699 });
    const p256dh = createECDH('prime256v1');
    p256dh.generateKeys();
    await a1.client.registerPush({
      kind: 'webpush', endpoint: 'http://127.0.0.1:9/push/alice',
      keys: { p256dh: p256dh.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') },
    });
    // Her offline device too, and a group message from Bob wakes it: its wake-up limit key
    // (services/src/workers/push.ts wakeKey) names the device.
    await device(p.mqttUrl, alice2, { apiUrl: p.httpUrl }).client.registerPush({
      kind: 'webpush', endpoint: 'http://127.0.0.1:9/push/alice2',
      keys: { p256dh: p256dh.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') },
    });
    await b1.client.sendMessage(group.chatId, 'wake up, Alice');
    const wakeKey = `parley:wake:${alice2.deviceId}`;
    await until(async () => (await redis.exists(wakeKey)) === 1, 10_000, 'a wake-up claimed for the offline device');

    // A login of hers with a wrong token: the dashboard notes it as her device's last error
    // (services/src/admin/last-error.ts), a key naming the device.
    const wrongLogin = new ParleyClient({ url: p.mqttUrl, deviceId: alice2.deviceId, token: `${alice2.deviceId}.not-her-token-at-all`, userId: alice.userId, reconnectPeriodMs: 0, connectTimeoutMs: 5000 });
    await expect(wrongLogin.connect()).rejects.toMatchObject({ code: 'E_AUTH_TOKEN' });
    await wrongLogin.close();
    const lastErrorKey = `parley:lasterr:${alice2.deviceId}`;
    await until(async () => (await redis.exists(lastErrorKey)) === 1, 10_000, 'the refused login noted');

    // What the offline device's session queue holds: the shared packet copies must go with it.
    const queued = await redis.lrange(`outgoing:${alice2.deviceId}`, 0, -1);
    expect(queued.length).toBeGreaterThan(0);
    const mine = await store.attachmentsOf(alice.userId, '', 100);
    expect(mine.map((a) => a.attachmentId)).toContain(avatar.attachmentId);
    expect(mine.length).toBe(2);
    const objectKeys = mine.flatMap((a) => [a.key, ...(a.thumbKey ? [a.thumbKey] : [])]);
    const blobs = createFsBlobStore({ root: join(p.dataDir, 'media'), publicUrl: p.httpUrl, secret: readFileSync(join(p.dataDir, 'secret'), 'utf8').trim() });
    for (const k of objectKeys) expect(await blobs.stat(k)).not.toBeNull();
    const deviceIds = [alice.deviceId, alice2.deviceId];
    const named = (k: string): boolean => k.includes(alice.userId) || k.includes(alice.phone) || deviceIds.some((d) => k.includes(d));
    expect((await allKeys()).filter(named).length).toBeGreaterThan(0);

    // A wrong code is refused; asking needs the account's own token.
    const wrong = await a1.client.requestAccountDeletion();
    expect(wrong.expiresInSec).toBeGreaterThan(0);
    const code = p.codes.get(alice.phone)!;
    const bad = code === '000000' ? '000001' : '000000';
    await expect(a1.client.deleteAccount(bad)).rejects.toMatchObject({ code: 'E_CODE_INVALID' });
    expect(await store.getUser(alice.userId)).not.toBeNull();
    // A fresh code (the previous one is replaced) deletes.
    await a1.client.requestAccountDeletion();
    const fresh = p.codes.get(alice.phone)!;
    const groupEvents = b1.messages.length;
    // Through the API (the SDK client closes itself afterwards): keep a1 open to see it disconnected.
    const res = await fetch(`${p.httpUrl}/v1/account/delete`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${alice.token}` }, body: JSON.stringify({ code: fresh }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ deleted: true, userId: alice.userId });

    // Her connected device was disconnected and cannot come back.
    await until(() => a1.client.state !== 'connected', 10_000, 'Alice disconnected');
    const again = new ParleyClient({ url: p.mqttUrl, deviceId: alice.deviceId, token: alice.token, userId: alice.userId, reconnectPeriodMs: 0, connectTimeoutMs: 5000 });
    await expect(again.connect()).rejects.toBeInstanceOf(ParleyError);
    await again.close();
    await a1.client.close();

    // The group's members get her `left` message, with the oldest member promoted.
    await until(() => b1.messages.slice(groupEvents).some((m: ChatMessage) => m.chatId === group.chatId && m.event?.type === 'left'), 10_000, 'left event');
    const left = b1.messages.find((m) => m.chatId === group.chatId && m.event?.type === 'left')!;
    expect(left.from).toBe(alice.userId);
    // Both joined with the group: the oldest is the first by userId.
    const [heir, other] = [bob.userId, carol.userId].sort() as [string, string];
    expect(left.event).toEqual({ type: 'left', promoted: [heir] });
    const bobsView = await b1.client.getChat(group.chatId);
    expect(bobsView.members.map((m) => [m.userId, m.role]).sort()).toEqual([[heir, 'admin'], [other, 'member']].sort());
    // The direct chat with Bob is closed, his copy of her delivered message stays; the undelivered one to Carol is gone.
    const direct = (await b1.client.listChats()).find((c) => c.kind === 'direct')!;
    expect(direct.deleted).toBe(true);
    const history = await b1.client.readNewMessages(direct.chatId, 0);
    expect(history.messages.map((m) => m.text ?? m.event?.type)).toEqual(['hello Bob', 'pic', 'left']);
    const carolChat = (await store.listChats(carol.userId, 10)).find((c) => c.chat.kind === 'direct')!;
    expect(await store.history(carolChat.chat.chatId, 0, 10)).toEqual([expect.objectContaining({ event: { type: 'left' } })]);
    expect(toCarol.msgId).toBeTruthy();

    // No row of hers through the ports.
    expect(await store.getUser(alice.userId)).toBeNull();
    expect(await store.getUserByPhone(alice.phone)).toBeNull();
    expect(await store.listAllDevices(alice.userId)).toEqual([]);
    for (const d of deviceIds) expect(await store.getDevice(d)).toBeNull();
    expect(await store.getPendingRegistration(alice.phone)).toBeNull();
    expect(await store.listChats(alice.userId, 100)).toEqual([]);
    for (const chatId of [group.chatId, direct.chatId, carolChat.chat.chatId]) {
      expect(await store.getMembership(chatId, alice.userId)).toBeNull();
      for (const d of deviceIds) expect(await store.progress(d, chatId)).toBeNull();
    }
    expect(await store.attachmentsOf(alice.userId, '', 100)).toEqual([]);
    for (const a of mine) expect(await store.getAttachment(a.attachmentId)).toBeNull();
    for (const k of objectKeys) expect(await blobs.stat(k)).toBeNull();
    expect(await store.ownStatuses(alice.userId, Date.now())).toEqual([]);
    expect(await store.getProfile(alice.userId)).toBeNull();
    expect(await store.listContacts(alice.userId)).toEqual([]);
    expect(await store.listContacts(carol.userId)).toEqual([]);
    expect(await store.listBlocked(alice.userId)).toEqual([]);
    expect(await store.listBlocked(dave.userId)).toEqual([]);
    expect(await store.getPushRegistrations(deviceIds)).toEqual([]);
    // No media object of hers left on disk at all.
    for (const a of mine) expect(existsSync(join(p.dataDir, 'media', 'objects', a.key))).toBe(false);

    // No Redis key names her: SCAN over the whole keyspace.
    const leftover = (await allKeys()).filter(named);
    expect(leftover).toEqual([]);
    expect(await redis.exists(wakeKey)).toBe(0);
    expect(await redis.exists(lastErrorKey)).toBe(0);
    // Nor any value outside BullMQ's job data (a job still waiting may name him: docs/ARCHITECTURE.md):
    // presence sets, aedes-persistence-redis' `clients` set, will list and queued packets included.
    const queues = new Set(Object.values(QUEUE).map((q) => `parley:${q}`));
    const inValues: string[] = [];
    for (const k of await allKeys()) {
      if ([...queues].some((q) => k.startsWith(q))) continue;
      const type = await redis.type(k);
      const values = type === 'string' ? [(await redis.getBuffer(k))?.toString('latin1') ?? '']
        : type === 'list' ? await redis.lrange(k, 0, -1)
          : type === 'set' ? await redis.smembers(k)
            : type === 'zset' ? await redis.zrange(k, '0', '-1')
              : type === 'hash' ? Object.entries(await redis.hgetall(k)).flat() : [];
      for (const v of values) if (named(v)) inValues.push(`${type} ${k}`);
    }
    expect(inValues).toEqual([]);
    for (const k of queued) expect(await redis.exists(k, `${k}:offlineCount`)).toBe(0);
    // Her sessions are gone from aedes-persistence-redis' client set too.
    for (const d of deviceIds) expect(await redis.sismember('clients', d)).toBe(0);

    // The number registers again, as a new user.
    const reborn = await p.register(alice.phone);
    expect(reborn.userId).not.toBe(alice.userId);
    const me = await fetch(`${p.httpUrl}/v1/users/me`, { headers: { authorization: `Bearer ${reborn.token}` } });
    expect((await me.json()).userId).toBe(reborn.userId);
    // The old token is dead.
    const old = await fetch(`${p.httpUrl}/v1/users/me`, { headers: { authorization: `Bearer ${alice.token}` } });
    expect(old.status).toBe(401);
  }, 60_000);

  it('refuses without a pending code, after too many wrong codes, and without a token', async () => {
    const u = await p.register();
    const post = (path: string, body: unknown, token?: string) => fetch(`${p.httpUrl}${path}`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body),
    });
    expect((await post('/v1/account/deletion-code', {})).status).toBe(401);
    const none = await post('/v1/account/delete', { code: '123456' }, u.token);
    expect((await none.json()).error.code).toBe('E_CODE_EXPIRED');
    expect((await post('/v1/account/deletion-code', {}, u.token)).status).toBe(202);
    const code = p.codes.get(u.phone)!;
    const wrong = code === '000000' ? '000001' : '000000';
    const codes: string[] = [];
    for (let i = 0; i < 6; i++) codes.push((await (await post('/v1/account/delete', { code: wrong }, u.token)).json()).error.code);
    expect(codes.slice(0, 4)).toEqual(['E_CODE_INVALID', 'E_CODE_INVALID', 'E_CODE_INVALID', 'E_CODE_INVALID']);
    expect(codes.slice(4)).toEqual(['E_CODE_ATTEMPTS', 'E_CODE_ATTEMPTS']);
    // Even the right code no longer works: a new one must be asked for.
    expect((await (await post('/v1/account/delete', { code }, u.token)).json()).error.code).toBe('E_CODE_ATTEMPTS');
    expect(await store.getUser(u.userId)).not.toBeNull();
    // A registration code is no deletion code.
    expect((await post('/v1/account/deletion-code', {}, u.token)).status).toBe(202);
    const deletion = p.codes.get(u.phone)!;
    expect((await post('/v1/register', { phone: u.phone })).status).toBe(202);
    const registration = p.codes.get(u.phone)!;
    if (registration !== deletion) {
      expect((await (await post('/v1/account/delete', { code: registration }, u.token)).json()).error.code).toBe('E_CODE_INVALID');
    }
    expect(await store.getUser(u.userId)).not.toBeNull();
  }, 30_000);
});
