/**
 * Following one message through the logs (issue 13, item 2): at debug level the broker logs its
 * clientMsgId when it arrives and when its sent tick goes out, the persist job logs the msgId it
 * was stored under beside that clientMsgId, and from then on every line about it carries the
 * msgId: handed to delivery, and delivered (the recipient device's PUBACK). The logs are pino's
 * JSON lines, read here as an operator's log pipeline would.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDACT } from '../../services/src/platform.js';
import { startTestPlatform, until, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, statusOf } from '../helpers/sdk.js';

interface Line { msg: string; time: number; role?: string; [k: string]: unknown }

const lines: Line[] = [];
const raw: string[] = [];
let tp: TestPlatform;

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) {
        if (!l) continue;
        raw.push(l);
        lines.push(JSON.parse(l) as Line);
      }
      cb();
    },
  });
  // The platform's own logger settings (redaction included), at debug, into memory.
  const logger = pino({ level: 'debug', redact: { paths: REDACT, censor: '[redacted]' } }, sink);
  tp = await startTestPlatform({}, undefined, { logger });
});

afterAll(async () => {
  await closeAll();
  await tp?.close();
});

describe('one message through the logs', () => {
  it('is found by its clientMsgId, then by its msgId from the broker through the persist job to the recipient device', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const a = device(tp.mqttUrl, alice);
    const b = device(tp.mqttUrl, bob);
    await Promise.all([a.client.connect(), b.client.connect()]);

    const sent = await a.client.sendMessage(bob.userId, 'follow me');
    await until(() => b.messages.some((m) => m.msgId === sent.msgId), 10_000, 'delivered to bob');
    await until(() => statusOf(a, sent.msgId) === 'delivered', 10_000, 'delivered tick');

    const find = (msg: string, pred: (l: Line) => boolean): Line => {
      const l = lines.find((x) => x.msg === msg && pred(x));
      if (!l) throw new Error(`no "${msg}" line for this message`);
      return l;
    };
    const byClientMsgId = (l: Line): boolean => l.clientMsgId === sent.clientMsgId && l.clientId === alice.deviceId;
    const received = find('message received', byClientMsgId);
    const stored = find('message stored', byClientMsgId);
    const accepted = find('message accepted (sent tick)', byClientMsgId);
    // The stored line names the msgId: the key for everything after it.
    expect(stored.msgId).toBe(sent.msgId);
    const handed = find('messages handed to delivery', (l) => Array.isArray(l.msgIds) && l.msgIds.includes(sent.msgId));
    const delivered = find('message delivered (device PUBACK)', (l) => l.msgId === sent.msgId && l.clientId === bob.deviceId);

    // Which part of the platform said it, in the order it happened.
    expect(received.role).toBe('broker');
    expect(stored.role).toBe('workers');
    expect(handed.role).toBe('workers');
    expect(accepted.role).toBe('broker');
    expect(delivered.role).toBe('broker');
    // The sent tick means "durably queued", so it may come before or after the persist job's line.
    expect(received.time).toBeLessThanOrEqual(accepted.time);
    expect(received.time).toBeLessThanOrEqual(stored.time);
    expect(stored.time).toBeLessThanOrEqual(handed.time);
    expect(handed.time).toBeLessThanOrEqual(delivered.time);
    // Not delivered to the sender's own device (it has it): only bob's device PUBACKed it.
    expect(lines.filter((l) => l.msg === 'message delivered (device PUBACK)' && l.msgId === sent.msgId).map((l) => l.clientId))
      .toEqual([bob.deviceId]);
  });

  it('never shows a token or an SMS code, even at debug level', () => {
    expect(raw.length).toBeGreaterThanOrEqual(5);
    const all = raw.join('\n');
    for (const code of tp.codes.values()) expect(all).not.toContain(`"${code}"`);
    // Device tokens are long random strings: none appears in any line.
    expect(all).not.toMatch(/"token":"(?!\[redacted\])/);
  });
});
