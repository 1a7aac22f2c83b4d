/**
 * 1:1 chat through the SDK against a real platform (broker, Redis, workers, SQLite): ticks in both
 * directions, idempotent resends, a 1,000-message burst on two devices, WebSocket, revocation.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { decode, encode, inboxTopic, outboxTopic, type Envelope } from '@parley/client-sdk/protocol';
import { postJson, startTestPlatform, until, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, statusOf } from '../helpers/sdk.js';

let tp: TestPlatform;
beforeAll(async () => { tp = await startTestPlatform(); });
afterEach(async () => { await closeAll(); });
afterAll(async () => { await tp?.close(); });

const authGet = async (path: string, token: string): Promise<{ status: number; json: any }> => {
  const res = await fetch(`${tp.httpUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, json: await res.json() };
};

describe('1:1 chat', () => {
  it('two users chat both ways and each sees sent, delivered and read for its own messages', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const a = device(tp.mqttUrl, alice);
    const b = device(tp.mqttUrl, bob);
    await Promise.all([a.client.connect(), b.client.connect()]);

    // Alice -> Bob. send() resolves on the PUBACK: the sent tick.
    const sent = await a.client.send(bob.userId, 'hello bob');
    const stored = await a.client.waitStored(sent.clientMsgId);
    await until(() => b.messages.length === 1, 10_000, 'bob receives');
    expect(b.messages[0]).toMatchObject({ msgId: stored.msgId, text: 'hello bob', from: alice.userId, fromDevice: alice.deviceId, own: false, seq: 1 });
    await until(() => statusOf(a, stored.msgId) === 'delivered', 10_000, 'alice sees delivered');
    await b.client.markRead(stored.msgId);
    await until(() => statusOf(a, stored.msgId) === 'read', 10_000, 'alice sees read');

    // Bob -> Alice, in the same chat.
    const reply = await b.client.send(alice.userId, 'hi alice');
    const replyStored = await b.client.waitStored(reply.clientMsgId);
    expect(replyStored.chatId).toBe(stored.chatId);
    expect(replyStored.seq).toBe(2);
    await until(() => a.messages.length === 1, 10_000, 'alice receives');
    expect(a.messages[0]).toMatchObject({ text: 'hi alice', from: bob.userId, seq: 2 });
    await until(() => statusOf(b, replyStored.msgId) === 'delivered', 10_000, 'bob sees delivered');
    await a.client.markRead(replyStored.msgId);
    await until(() => statusOf(b, replyStored.msgId) === 'read', 10_000, 'bob sees read');

    // getMessageStatus over HTTP agrees, for a member; a stranger cannot see it.
    const st = await authGet(`/v1/messages/${stored.msgId}/status`, alice.token);
    expect(st.status).toBe(200);
    expect(st.json).toMatchObject({ status: 'read', recipients: [{ deviceId: bob.deviceId }] });
    expect(st.json.recipients[0].deliveredAt).toBeGreaterThan(0);
    expect(st.json.recipients[0].readAt).toBeGreaterThan(0);
    const stranger = await tp.register();
    expect((await authGet(`/v1/messages/${stored.msgId}/status`, stranger.token)).status).toBe(404);

    // readNewMessages: history after a seq.
    const hist = await authGet(`/v1/chats/${stored.chatId}/messages?after=1`, bob.token);
    expect(hist.json.messages.map((m: { text: string }) => m.text)).toEqual(['hi alice']);
    expect((await authGet(`/v1/chats/${stored.chatId}/messages`, stranger.token)).json.error.code).toBe('E_NOT_MEMBER');

    // Contacts discovery (by phone hash: test/integration/contacts.test.ts).
    const found = await device(tp.mqttUrl, alice, { apiUrl: tp.httpUrl }).client.lookupContacts([bob.phone, '+15559999999', 'garbage']);
    expect(found).toEqual([
      { number: bob.phone, e164: bob.phone, userId: bob.userId }, { number: '+15559999999', e164: '+15559999999' }, { number: 'garbage' },
    ]);
    expect(a.errors).toEqual([]);
    expect(b.errors).toEqual([]);
  });

  it('stores and delivers a resent clientMsgId once', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const a = device(tp.mqttUrl, alice);
    await a.client.connect();
    // Bob listens with raw MQTT so that every PUBLISH the broker sends is counted (the SDK would drop duplicates).
    const raw = await mqtt.connectAsync(tp.mqttUrl, { clientId: bob.deviceId, username: bob.deviceId, password: bob.token, clean: false, reconnectPeriod: 0 });
    const got: Envelope[] = [];
    raw.on('message', (_t, p) => got.push(decode(p)));
    await raw.subscribeAsync(inboxTopic(bob.deviceId), { qos: 1 });

    // As after a lost PUBACK: the same clientMsgId three times.
    await a.client.send(bob.userId, 'once', { clientMsgId: 'dup-1' });
    await a.client.send(bob.userId, 'once', { clientMsgId: 'dup-1' });
    await a.client.send(bob.userId, 'once', { clientMsgId: 'dup-1' });
    // A sentinel after them: when it arrives, every copy of the first would have arrived before it.
    await a.client.send(bob.userId, 'sentinel', { clientMsgId: 'dup-2' });
    await until(() => got.some((e) => e.kind === 'msg' && e.body === 'sentinel'), 10_000, 'sentinel');
    const msgs = got.filter((e) => e.kind === 'msg');
    expect(msgs.map((e) => (e.kind === 'msg' ? [e.body, e.seq] : null))).toEqual([['once', 1], ['sentinel', 2]]);
    const first = await a.client.waitStored('dup-1');
    const hist = await authGet(`/v1/chats/${first.chatId}/messages`, alice.token);
    expect(hist.json.messages.map((m: { text: string }) => m.text)).toEqual(['once', 'sentinel']);
    await raw.endAsync();
  });

  it('delivers a 1,000-message burst in order to both devices of the recipient and to the sender\'s other device', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const bob2 = { ...(await tp.linkDevice(bob.token, 'laptop')), userId: bob.userId };
    const alice2 = { ...(await tp.linkDevice(alice.token, 'web')), userId: alice.userId };
    const a = device(tp.mqttUrl, alice);
    const a2 = device(tp.mqttUrl, alice2);
    const b1 = device(tp.mqttUrl, bob);
    const b2 = device(tp.mqttUrl, bob2);
    await Promise.all([a.client.connect(), a2.client.connect(), b1.client.connect(), b2.client.connect()]);

    const N = 1000;
    const sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < N; i++) sends.push(a.client.send(bob.userId, `m${i}`));
    await Promise.all(sends);
    for (const d of [b1, b2, a2]) await until(() => d.messages.length >= N, 60_000, `${N} messages`);

    const expected = Array.from({ length: N }, (_, i) => `m${i}`);
    for (const d of [b1, b2, a2]) {
      expect(d.messages.map((m) => m.text)).toEqual(expected);
      expect(d.messages.map((m) => m.seq)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    }
    expect(a2.messages.every((m) => m.own)).toBe(true);
    // The delivered tick reaches the sender for the last message too.
    const last = await a.client.waitStored((await a.client.send(bob.userId, 'last')).clientMsgId);
    await until(() => statusOf(a, last.msgId) === 'delivered', 20_000, 'delivered tick of the last message');
  });

  it('works over WebSocket', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const a = device(tp.wsUrl, alice);
    const b = device(tp.wsUrl, bob);
    await Promise.all([a.client.connect(), b.client.connect()]);
    await a.client.send(bob.userId, 'over ws');
    await until(() => b.messages.length === 1, 10_000, 'ws message');
    expect(b.messages[0]?.text).toBe('over ws');
  });

  it('carries opaque bytes (end-to-end ciphertext) unchanged', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const a = device(tp.mqttUrl, alice);
    const b = device(tp.mqttUrl, bob);
    await Promise.all([a.client.connect(), b.client.connect()]);
    const bytes = new Uint8Array([0, 1, 2, 250, 255, 128]);
    await a.client.send(bob.userId, bytes);
    await until(() => b.messages.length === 1, 10_000, 'bytes message');
    expect(Array.from(b.messages[0]!.body as Uint8Array)).toEqual(Array.from(bytes));
    expect(b.messages[0]?.text).toBeUndefined();
  });
});

describe('devices', () => {
  it('revoking a device closes its connection and its token stops working', async () => {
    const alice = await tp.register();
    const web = { ...(await tp.linkDevice(alice.token, 'web')), userId: alice.userId };
    const raw = await mqtt.connectAsync(tp.mqttUrl, { clientId: web.deviceId, username: web.deviceId, password: web.token, clean: false, reconnectPeriod: 0 });
    const closed = new Promise<void>((r) => raw.once('close', () => r()));
    const res = await fetch(`${tp.httpUrl}/v1/devices/${web.deviceId}`, { method: 'DELETE', headers: { authorization: `Bearer ${alice.token}` } });
    expect(res.status).toBe(200);
    await closed;
    const again = await mqtt.connectAsync(tp.mqttUrl, { clientId: web.deviceId, username: web.deviceId, password: web.token, clean: false, reconnectPeriod: 0 })
      .then((c) => { void c.endAsync(); return 0; }, (e: { code?: number }) => e.code);
    expect(again).toBe(4);
    expect((await authGet('/v1/users/me', web.token)).json.error.code).toBe('E_AUTH_TOKEN');
    // The SDK reports the refusal as E_AUTH_TOKEN and does not retry.
    const d = device(tp.mqttUrl, web);
    await expect(d.client.connect()).rejects.toMatchObject({ code: 'E_AUTH_TOKEN' });
    // The primary device is untouched.
    expect((await authGet('/v1/users/me', alice.token)).status).toBe(200);
  });

  it('enforces the device limit and lists devices', async () => {
    const alice = await tp.register();
    const limit = 5;
    for (let i = 1; i < limit; i++) await tp.linkDevice(alice.token, `d${i}`);
    const over = await postJson(`${tp.httpUrl}/v1/devices`, {}, alice.token);
    expect(over.status).toBe(409);
    expect(over.json.error.code).toBe('E_DEVICE_LIMIT');
    expect((await authGet('/v1/devices', alice.token)).json.devices).toHaveLength(limit);
  });

  it('a new verification of the same phone replaces the old token', async () => {
    const first = await tp.register();
    const second = await tp.register(first.phone);
    expect(second.userId).toBe(first.userId);
    expect(second.deviceId).not.toBe(first.deviceId);
    expect((await authGet('/v1/users/me', first.token)).status).toBe(401);
    expect((await authGet('/v1/users/me', second.token)).status).toBe(200);
  });

  it('answers a send to an unknown user with an error event naming the clientMsgId', async () => {
    const alice = await tp.register();
    const a = device(tp.mqttUrl, alice);
    await a.client.connect();
    await a.client.send('uNobodyHere00', 'hello?', { clientMsgId: 'lost-1' });
    await until(() => a.errors.length > 0, 10_000, 'error event');
    expect(a.errors[0]).toMatchObject({ code: 'E_RECIPIENT_UNKNOWN', ref: 'lost-1' });
  });

  it('refuses a forged outbox publish for another device even with a valid token of its own', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const raw = await mqtt.connectAsync(tp.mqttUrl, { clientId: alice.deviceId, username: alice.deviceId, password: alice.token, clean: false, reconnectPeriod: 0 });
    const got: Envelope[] = [];
    raw.on('message', (_t, p) => got.push(decode(p)));
    await raw.subscribeAsync(inboxTopic(alice.deviceId), { qos: 1 });
    await raw.publishAsync(outboxTopic(bob.deviceId), Buffer.from(encode({ kind: 'send', clientMsgId: 'x', to: alice.userId, body: 'as bob' })), { qos: 1 });
    await until(() => got.some((e) => e.kind === 'error'), 10_000, 'acl error');
    expect(got.find((e) => e.kind === 'error')).toMatchObject({ code: 'E_ACL_DENIED' });
    await raw.endAsync();
  });
});
