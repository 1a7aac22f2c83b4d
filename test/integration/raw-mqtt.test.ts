import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { decode, encode, inboxTopic, outboxTopic, type Envelope } from '@parley/client-sdk/protocol';
import { startTestPlatform, until, type TestPlatform } from '../helpers/platform.js';

let tp: TestPlatform;
beforeAll(async () => { tp = await startTestPlatform(); });
afterAll(async () => { await tp?.close(); });

function connect(url: string, id: string, token: string): Promise<mqtt.MqttClient> {
  return new Promise((res, rej) => {
    const c = mqtt.connect(url, { clientId: id, username: id, password: token, clean: false, reconnectPeriod: 0, protocolVersion: 4 });
    c.once('connect', () => res(c));
    c.once('error', rej);
  });
}

describe('raw MQTT pipeline', () => {
  it('delivers a 1:1 message and the stored notice', async () => {
    const a = await tp.register();
    const b = await tp.register();
    const ca = await connect(tp.mqttUrl, a.deviceId, a.token);
    const cb = await connect(tp.mqttUrl, b.deviceId, b.token);
    const got: Record<string, Envelope[]> = { a: [], b: [] };
    ca.on('message', (_t, p) => got.a!.push(decode(p)));
    cb.on('message', (_t, p) => got.b!.push(decode(p)));
    await ca.subscribeAsync(inboxTopic(a.deviceId), { qos: 1 });
    await cb.subscribeAsync(inboxTopic(b.deviceId), { qos: 1 });
    await ca.publishAsync(outboxTopic(a.deviceId), Buffer.from(encode({ kind: 'send', clientMsgId: 'm1', to: b.userId, body: 'hi' })), { qos: 1 });
    await until(() => got.b!.some((e) => e.kind === 'msg'), 10_000, 'msg at b');
    await until(() => got.a!.some((e) => e.kind === 'stored'), 10_000, 'stored at a');
    await until(() => got.a!.some((e) => e.kind === 'receipt'), 10_000, 'delivered receipt at a');
    const msg = got.b!.find((e) => e.kind === 'msg');
    expect(msg).toMatchObject({ kind: 'msg', seq: 1, from: a.userId, body: 'hi' });
    await ca.endAsync();
    await cb.endAsync();
  });

  it('answers a burst with stored notices that give every message its seq once, sharing envelopes', async () => {
    const a = await tp.register();
    const b = await tp.register();
    const ca = await connect(tp.mqttUrl, a.deviceId, a.token);
    const stored: Array<Extract<Envelope, { kind: 'stored' }>> = [];
    ca.on('message', (_t, p) => {
      const e = decode(p);
      if (e.kind === 'stored') stored.push(e);
    });
    await ca.subscribeAsync(inboxTopic(a.deviceId), { qos: 1 });
    const ids = Array.from({ length: 20 }, (_, i) => `burst${i}`);
    // Corked: all twenty PUBLISH packets leave in one write, so the broker reads them together.
    const stream = (ca as unknown as { stream: { cork(): void; uncork(): void } }).stream;
    stream.cork();
    const acks = ids.map((id) => ca.publishAsync(outboxTopic(a.deviceId), Buffer.from(encode({ kind: 'send', clientMsgId: id, to: b.userId, body: id })), { qos: 1 }));
    stream.uncork();
    await Promise.all(acks);
    const answered = (): Array<[string, number]> =>
      stored.flatMap((e) => [[e.clientMsgId, e.seq] as [string, number], ...(e.more ?? []).map((m) => [m.clientMsgId, m.seq] as [string, number])]);
    await until(() => answered().length >= ids.length, 10_000, 'a seq for every message');
    const got = answered();
    expect(got.map(([id]) => id).sort()).toEqual([...ids].sort());
    // Seqs follow the order of publishing, and a burst shares its stored envelopes.
    expect(got.sort((x, y) => x[1] - y[1]).map(([id]) => id)).toEqual(ids);
    expect(stored.length).toBeLessThan(ids.length);
    await ca.endAsync();
  });
});
