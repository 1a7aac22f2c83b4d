/**
 * Every bad input of the core issue, through raw MQTT and HTTP: each is answered with a catalogue
 * code and the platform keeps serving afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { Encoder } from 'cbor-x';
import { decode, encode, inboxTopic, outboxTopic, receiptTopic, liveTopic, type Envelope, type ErrorEnvelope } from '@parley/client-sdk/protocol';
import { postJson, startTestPlatform, uniquePhone, until, type Registered, type TestPlatform } from '../helpers/platform.js';

let tp: TestPlatform;
beforeAll(async () => {
  tp = await startTestPlatform({ PARLEY_MAX_PAYLOAD_BYTES: '2048', PARLEY_CODE_MAX_ATTEMPTS: '3', PARLEY_CODE_RATE_PER_PHONE: '3' });
});
afterAll(async () => { await tp?.close(); });

interface Conn {
  client: mqtt.MqttClient;
  inbox: Envelope[];
}

async function connectDevice(r: Registered): Promise<Conn> {
  const client = await mqtt.connectAsync(tp.mqttUrl, {
    clientId: r.deviceId, username: r.deviceId, password: r.token, clean: false, reconnectPeriod: 0,
  });
  const inbox: Envelope[] = [];
  client.on('message', (_t, p) => inbox.push(decode(p)));
  await client.subscribeAsync(inboxTopic(r.deviceId), { qos: 1 });
  return { client, inbox };
}

async function nextError(c: Conn, from: number): Promise<ErrorEnvelope> {
  await until(() => c.inbox.slice(from).some((e) => e.kind === 'error'), 10_000, 'error envelope');
  return c.inbox.slice(from).find((e) => e.kind === 'error') as ErrorEnvelope;
}

/** Sends a good message and waits for its `stored`: proof the pipeline still serves. */
async function stillServes(c: Conn, to: string, id: string): Promise<void> {
  await c.client.publishAsync(outboxTopic(c.client.options.clientId!), Buffer.from(encode({ kind: 'send', clientMsgId: id, to, body: 'ok' })), { qos: 1 });
  await until(() => c.inbox.some((e) => e.kind === 'stored' && e.clientMsgId === id), 10_000, 'stored after bad input');
}

describe('bad MQTT input', () => {
  let a: Registered;
  let b: Registered;
  let ca: Conn;
  beforeAll(async () => {
    a = await tp.register();
    b = await tp.register();
    ca = await connectDevice(a);
  });
  afterAll(async () => { await ca?.client.endAsync(); });

  it('answers a payload that is not CBOR with E_BAD_ENVELOPE and acks it', async () => {
    const n = ca.inbox.length;
    // publishAsync resolves on the PUBACK: the bad packet is acknowledged, never redelivered.
    await ca.client.publishAsync(outboxTopic(a.deviceId), Buffer.from('not cbor at all {'), { qos: 1 });
    expect((await nextError(ca, n)).code).toBe('E_BAD_ENVELOPE');
    await stillServes(ca, b.userId, 'after-garbage');
  });

  it('rejects envelopes with wrong field types, unknown kinds and server-only kinds', async () => {
    const enc = new Encoder({ useRecords: false });
    const bad = [
      enc.encode([1, 'x', b.userId, 42]),            // body must be text or bytes
      enc.encode([1, 'has space', b.userId, 'hi']),  // clientMsgId charset
      enc.encode([99, 'x']),                          // unknown kind
      enc.encode({ kind: 'send' }),                   // not an array
      encode({ kind: 'stored', clientMsgId: 'a', chatId: 'cAAAAAAAAAAAA', seq: 1, ts: 1 }), // server-only kind
      encode({ kind: 'keys', count: 0, low: true }),  // server-only kind (a device's pool notice)
      new Uint8Array(0),                              // empty
    ];
    for (const payload of bad) {
      const n = ca.inbox.length;
      await ca.client.publishAsync(outboxTopic(a.deviceId), Buffer.from(payload), { qos: 1 });
      expect((await nextError(ca, n)).code).toBe('E_BAD_ENVELOPE');
    }
    await stillServes(ca, b.userId, 'after-bad-fields');
  });

  it('answers an oversized payload with E_PAYLOAD_TOO_LARGE', async () => {
    const n = ca.inbox.length;
    const big = encode({ kind: 'send', clientMsgId: 'big', to: b.userId, body: 'x'.repeat(5000) });
    await ca.client.publishAsync(outboxTopic(a.deviceId), Buffer.from(big), { qos: 1 });
    expect((await nextError(ca, n)).code).toBe('E_PAYLOAD_TOO_LARGE');
    await stillServes(ca, b.userId, 'after-big');
  });

  it('refuses publishes outside the ACL and does not route them', async () => {
    const cb = await connectDevice(b);
    try {
      const before = cb.inbox.length;
      const n = ca.inbox.length;
      // Straight into B's inbox, bypassing the server: must not arrive.
      await ca.client.publishAsync(inboxTopic(b.deviceId), Buffer.from(encode({ kind: 'msg', chatId: 'cAAAAAAAAAAAA', seq: 1, from: a.userId, ts: 1, body: 'forged', fromDevice: a.deviceId })), { qos: 1 });
      expect((await nextError(ca, n)).code).toBe('E_ACL_DENIED');
      // As B, on B's outbox.
      const n2 = ca.inbox.length;
      await ca.client.publishAsync(outboxTopic(b.deviceId), Buffer.from(encode({ kind: 'send', clientMsgId: 'spoof', to: a.userId, body: 'spoof' })), { qos: 1 });
      expect((await nextError(ca, n2)).code).toBe('E_ACL_DENIED');
      // A topic Parley does not know.
      const n3 = ca.inbox.length;
      await ca.client.publishAsync('random/topic', Buffer.from('x'), { qos: 1 });
      expect((await nextError(ca, n3)).code).toBe('E_BAD_TOPIC');
      // A real message afterwards arrives at B; the forged one never did.
      await stillServes(ca, b.userId, 'after-acl');
      await until(() => cb.inbox.some((e) => e.kind === 'msg' && e.body === 'ok'), 10_000, 'real message at b');
      expect(cb.inbox.slice(before).some((e) => e.kind === 'msg' && e.body === 'forged')).toBe(false);
      expect(cb.inbox.some((e) => e.kind === 'msg' && e.body === 'spoof')).toBe(false);
    } finally {
      await cb.client.endAsync();
    }
  });

  it('denies subscriptions to other inboxes, wildcards and server-bound topics (SUBACK 0x80)', async () => {
    for (const topic of [inboxTopic(b.deviceId), 'inbox/+', '#', 'outbox/' + a.deviceId, receiptTopic('cAAAAAAAAAAAA.1'), liveTopic(b.deviceId)]) {
      // mqtt.js rejects when the SUBACK says 0x80; the packet carries the return code.
      const granted = await ca.client.subscribeAsync(topic, { qos: 1 }).then(
        (g) => g.map((x) => x.qos),
        (e: { packet?: { granted?: number[] } }) => e.packet?.granted,
      );
      expect(granted?.[0], topic).toBe(128);
    }
    // Its own live/ topic is allowed (Aedes echoes the requested QoS; delivery there is QoS 0).
    const own = await ca.client.subscribeAsync(liveTopic(a.deviceId), { qos: 0 });
    expect(own[0]?.qos).toBe(0);
  });

  it('answers an unknown recipient with E_RECIPIENT_UNKNOWN naming the clientMsgId', async () => {
    const n = ca.inbox.length;
    await ca.client.publishAsync(outboxTopic(a.deviceId), Buffer.from(encode({ kind: 'send', clientMsgId: 'nobody', to: 'uZZZZZZZZZZZZ', body: 'hi' })), { qos: 1 });
    const err = await nextError(ca, n);
    expect(err).toMatchObject({ code: 'E_RECIPIENT_UNKNOWN', ref: 'nobody' });
    const n2 = ca.inbox.length;
    await ca.client.publishAsync(outboxTopic(a.deviceId), Buffer.from(encode({ kind: 'send', clientMsgId: 'nochat', to: 'cZZZZZZZZZZZZ', body: 'hi' })), { qos: 1 });
    expect((await nextError(ca, n2)).code).toBe('E_RECIPIENT_UNKNOWN');
  });

  it('answers a read receipt for a message never received with E_NOT_RECIPIENT', async () => {
    const n = ca.inbox.length;
    await ca.client.publishAsync(receiptTopic('cZZZZZZZZZZZZ.5'), Buffer.alloc(0), { qos: 1 });
    expect((await nextError(ca, n)).code).toBe('E_NOT_RECIPIENT');
    const n2 = ca.inbox.length;
    await ca.client.publishAsync(receiptTopic('cZZZZZZZZZZZZ.5'), Buffer.from('junk'), { qos: 1 });
    expect((await nextError(ca, n2)).code).toBe('E_BAD_ENVELOPE');
  });
});

describe('bad credentials', () => {
  it('refuses a bad token, a token of another device and a missing password with CONNACK 4', async () => {
    const a = await tp.register();
    const b = await tp.register();
    const attempts = [
      { clientId: a.deviceId, username: a.deviceId, password: a.token + 'x' },
      { clientId: a.deviceId, username: a.deviceId, password: b.token },
      { clientId: a.deviceId, username: b.deviceId, password: b.token },
      { clientId: a.deviceId, username: a.deviceId },
      { clientId: 'dAAAAAAAAAAAA', username: 'dAAAAAAAAAAAA', password: 'dAAAAAAAAAAAA.secretsecretsecretsecret' },
    ];
    for (const opts of attempts) {
      const err = await mqtt.connectAsync(tp.mqttUrl, { ...opts, reconnectPeriod: 0, clean: false }).then(
        (c) => { void c.endAsync(); return null; },
        (e: { code?: number }) => e,
      );
      expect(err?.code, JSON.stringify(opts.username)).toBe(4);
    }
    // The real token still works afterwards.
    const c = await mqtt.connectAsync(tp.mqttUrl, { clientId: a.deviceId, username: a.deviceId, password: a.token, reconnectPeriod: 0, clean: false });
    expect(c.connected).toBe(true);
    await c.endAsync();
  });

  it('answers bad HTTP tokens with E_AUTH_REQUIRED / E_AUTH_TOKEN', async () => {
    const none = await fetch(`${tp.httpUrl}/v1/users/me`);
    expect(none.status).toBe(401);
    expect((await none.json()).error.code).toBe('E_AUTH_REQUIRED');
    const bad = await fetch(`${tp.httpUrl}/v1/users/me`, { headers: { authorization: 'Bearer dAAAAAAAAAAAA.nope-nope-nope-nope' } });
    expect(bad.status).toBe(401);
    expect((await bad.json()).error.code).toBe('E_AUTH_TOKEN');
  });
});

describe('bad registration input', () => {
  it('validates phone numbers and bodies', async () => {
    for (const body of [{ phone: '12345' }, { phone: '+0123456789' }, { phone: 5 }, {}, { phone: '+15550001111', extra: 1 }]) {
      const r = await postJson(`${tp.httpUrl}/v1/register`, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(['E_PHONE_INVALID', 'E_VALIDATION']).toContain(r.json.error.code);
    }
    const notJson = await fetch(`${tp.httpUrl}/v1/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"phone":' });
    expect(notJson.status).toBe(400);
    expect((await notJson.json()).error.code).toBe('E_BAD_REQUEST');
    const text = await fetch(`${tp.httpUrl}/v1/register`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hi' });
    expect(text.status).toBe(415);
    expect((await text.json()).error.code).toBe('E_UNSUPPORTED_MEDIA_TYPE');
    const huge = await fetch(`${tp.httpUrl}/v1/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ phone: 'x'.repeat(100_000) }) });
    expect(huge.status).toBe(413);
    const nowhere = await fetch(`${tp.httpUrl}/v1/nowhere`);
    expect(nowhere.status).toBe(404);
    expect((await nowhere.json()).error.code).toBe('E_NOT_FOUND');
  });

  it('rejects wrong codes, then locks the registration after the allowed attempts', async () => {
    const phone = uniquePhone();
    expect((await postJson(`${tp.httpUrl}/v1/register`, { phone })).status).toBe(202);
    const good = tp.codes.get(phone)!;
    const wrong = good === '000000' ? '111111' : '000000';
    const r1 = await postJson(`${tp.httpUrl}/v1/verify`, { phone, code: wrong });
    expect(r1.json.error.code).toBe('E_CODE_INVALID');
    await postJson(`${tp.httpUrl}/v1/verify`, { phone, code: wrong });
    const r3 = await postJson(`${tp.httpUrl}/v1/verify`, { phone, code: wrong });
    expect(r3.json.error.code).toBe('E_CODE_ATTEMPTS');
    // Even the right code no longer works for this pending registration.
    const r4 = await postJson(`${tp.httpUrl}/v1/verify`, { phone, code: good });
    expect(r4.status).toBe(429);
    expect(r4.json.error.code).toBe('E_CODE_ATTEMPTS');
  });

  it('answers a code for a phone that never asked with E_CODE_EXPIRED', async () => {
    const r = await postJson(`${tp.httpUrl}/v1/verify`, { phone: uniquePhone(), code: '123456' });
    expect(r.status).toBe(410);
    expect(r.json.error.code).toBe('E_CODE_EXPIRED');
  });

  it('rate-limits code requests per phone', async () => {
    const phone = uniquePhone();
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await postJson(`${tp.httpUrl}/v1/register`, { phone })).status);
    expect(statuses).toEqual([202, 202, 202, 429, 429]);
  });
});
