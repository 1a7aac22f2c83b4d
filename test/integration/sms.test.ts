import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { webhookSms } from '../../services/src/sms/sms.js';
import { postJson, startTestPlatform, uniquePhone, type TestPlatform } from '../helpers/platform.js';

let server: Server;
let url: string;
const received: Array<{ to: string; text: string }> = [];
let answer = 204;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => { body += d.toString(); });
    req.on('end', () => {
      received.push(JSON.parse(body) as { to: string; text: string });
      res.writeHead(answer).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sms`;
});
afterAll(async () => { await new Promise<void>((r) => server.close(() => r())); });

describe('webhook SMS adapter', () => {
  it('POSTs { to, text } as JSON and fails on a non-2xx answer', async () => {
    answer = 204;
    await webhookSms(url).send('+15550001234', 'hello');
    expect(received.at(-1)).toEqual({ to: '+15550001234', text: 'hello' });
    answer = 500;
    await expect(webhookSms(url).send('+15550001234', 'x')).rejects.toThrow('500');
  });

  it('makes the API answer E_UNAVAILABLE when the provider fails, and work again when it recovers', async () => {
    let tp: TestPlatform | undefined;
    try {
      tp = await startTestPlatform({ PARLEY_SMS: 'webhook', PARLEY_SMS_WEBHOOK_URL: url });
      answer = 503;
      const r = await postJson(`${tp.httpUrl}/v1/register`, { phone: uniquePhone() });
      expect(r.status).toBe(503);
      expect(r.json.error.code).toBe('E_UNAVAILABLE');
      answer = 200;
      const phone = uniquePhone();
      expect((await postJson(`${tp.httpUrl}/v1/register`, { phone })).status).toBe(202);
      const code = /(\d{6})/.exec(received.at(-1)!.text)![1];
      const v = await postJson(`${tp.httpUrl}/v1/verify`, { phone, code });
      expect(v.status).toBe(200);
    } finally {
      await tp?.close();
    }
  });
});
