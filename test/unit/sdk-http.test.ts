import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ParleyApi, ParleyError, hashPhone } from '@parley/client-sdk';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: unknown;
}

interface Canned {
  status: number;
  body?: unknown;
  raw?: string;
  delayMs?: number;
}

let server: Server;
let baseUrl: string;
let seen: Seen[] = [];
/** Responses by `METHOD path` (path without the query string). */
let canned: Record<string, Canned> = {};

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Uint8Array[] = [];
    req.on('data', (c: Uint8Array) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: text ? JSON.parse(text) : undefined });
      const key = `${req.method} ${(req.url ?? '').split('?')[0]}`;
      const c = canned[key] ?? { status: 404, body: { error: { code: 'E_NOT_FOUND', message: 'Not found' } } };
      const send = (): void => {
        if (res.destroyed) return;
        const payload = c.raw ?? (c.body === undefined ? '' : JSON.stringify(c.body));
        res.writeHead(c.status, { 'content-type': c.raw ? 'text/plain' : 'application/json' }).end(payload);
      };
      if (c.delayMs) setTimeout(send, c.delayMs);
      else send();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

beforeEach(() => {
  seen = [];
  canned = {};
});

describe('ParleyApi requests', () => {
  it('requestCode / registerAccount: POST /v1/register {phone}', async () => {
    canned['POST /v1/register'] = { status: 200, body: { expiresInSec: 300 } };
    const api = new ParleyApi({ baseUrl: `${baseUrl}/` }); // trailing slash tolerated
    expect(await api.registerAccount('+447700900123')).toEqual({ expiresInSec: 300 });
    expect(await api.registerAccount('+447700900124')).toEqual({ expiresInSec: 300 });
    expect(seen.map((s) => [s.method, s.url, s.body])).toEqual([
      ['POST', '/v1/register', { phone: '+447700900123' }],
      ['POST', '/v1/register', { phone: '+447700900124' }],
    ]);
    expect(seen[0]?.headers['content-type']).toBe('application/json');
    expect(seen[0]?.headers.authorization).toBeUndefined();
  });

  it('verify / validateAccount: POST /v1/verify {phone, code, deviceName}', async () => {
    const creds = { userId: 'uAAAAAAAAAAAA', deviceId: 'dAAAAAAAAAAAA', token: 'dAAAAAAAAAAAA.secret' };
    canned['POST /v1/verify'] = { status: 200, body: creds };
    const api = new ParleyApi(baseUrl);
    expect(await api.validateAccount('+447700900123', '123456', 'Pixel')).toEqual(creds);
    expect(await api.validateAccount('+447700900123', '123456')).toEqual(creds);
    expect(seen[0]?.body).toEqual({ phone: '+447700900123', code: '123456', deviceName: 'Pixel' });
    expect(seen[1]?.body).toEqual({ phone: '+447700900123', code: '123456' });
  });

  it('lookupContactHashes: POST /v1/contacts/lookup {hashes, save} with the bearer token, returns the matches', async () => {
    const h1 = await hashPhone('+447700900123');
    const h2 = await hashPhone('+447700900999');
    const matches = [{ hash: h1, userId: 'uAAAAAAAAAAAA' }];
    canned['POST /v1/contacts/lookup'] = { status: 200, body: { matches } };
    const api = new ParleyApi({ baseUrl, headers: { 'x-app': 'test' } });
    expect(await api.lookupContactHashes([h1, h2], 'tok')).toEqual(matches);
    expect(await api.lookupContactHashes([h1], 'tok', false)).toEqual(matches);
    expect(seen[0]?.body).toEqual({ hashes: [h1, h2] });
    expect(seen[1]?.body).toEqual({ hashes: [h1], save: false });
    expect(seen[0]?.headers.authorization).toBe('Bearer tok');
    expect(seen[0]?.headers['x-app']).toBe('test');
  });

  it('messageStatus / getMessageStatus: GET /v1/messages/:msgId/status, returns the JSON', async () => {
    const status = { msgId: 'cAAAAAAAAAAAA.1z', recipients: [{ userId: 'uBBBBBBBBBBBB', deliveredAt: 5, readAt: null }] };
    canned['GET /v1/messages/cAAAAAAAAAAAA.1z/status'] = { status: 200, body: status };
    const api = new ParleyApi(baseUrl);
    expect(await api.getMessageStatus('cAAAAAAAAAAAA.1z', 'tok')).toEqual(status);
    expect(await api.getMessageStatus('cAAAAAAAAAAAA.1z', 'tok')).toEqual(status);
    expect(seen[0]?.method).toBe('GET');
    expect(seen[0]?.headers.authorization).toBe('Bearer tok');
    expect(seen[0]?.body).toBeUndefined();
  });

  it('readNewMessages: GET /v1/chats/:chatId/messages?after=&limit=', async () => {
    const page = { messages: [{ chatId: 'cAAAAAAAAAAAA', seq: 4, body: 'hi' }] };
    canned['GET /v1/chats/cAAAAAAAAAAAA/messages'] = { status: 200, body: page };
    const api = new ParleyApi(baseUrl);
    expect(await api.readNewMessages('cAAAAAAAAAAAA', 3, 'tok', 50)).toEqual(page);
    expect(await api.readNewMessages('cAAAAAAAAAAAA', 0, 'tok')).toEqual(page);
    expect(seen.map((s) => s.url)).toEqual([
      '/v1/chats/cAAAAAAAAAAAA/messages?after=3&limit=50',
      '/v1/chats/cAAAAAAAAAAAA/messages?after=0',
    ]);
  });
});

describe('ParleyApi errors', () => {
  it('maps an error body to ParleyError(code, detail)', async () => {
    canned['POST /v1/verify'] = {
      status: 401,
      body: { error: { code: 'E_CODE_INVALID', message: 'The verification code is wrong', detail: '2 attempts left' } },
    };
    const err = await new ParleyApi(baseUrl).validateAccount('+447700900123', '000000').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ParleyError);
    expect(err).toMatchObject({ code: 'E_CODE_INVALID', detail: '2 attempts left', status: 401 });
  });

  it('maps a 404 without detail', async () => {
    await expect(new ParleyApi(baseUrl).getMessageStatus('cAAAAAAAAAAAA.1', 'tok')).rejects.toMatchObject({
      code: 'E_NOT_FOUND', detail: undefined,
    });
  });

  it('falls back to E_INTERNAL for bodies of another shape or unknown codes', async () => {
    const api = new ParleyApi(baseUrl);
    canned['POST /v1/register'] = { status: 502, raw: '<html>bad gateway</html>' };
    await expect(api.registerAccount('+1')).rejects.toMatchObject({ code: 'E_INTERNAL', detail: 'HTTP 502' });
    canned['POST /v1/register'] = { status: 400, body: { error: { code: 'E_SOMETHING_NEW', message: '?' } } };
    await expect(api.registerAccount('+1')).rejects.toMatchObject({ code: 'E_INTERNAL', detail: 'HTTP 400' });
    canned['POST /v1/register'] = { status: 500, body: { message: 'flat' } };
    await expect(api.registerAccount('+1')).rejects.toMatchObject({ code: 'E_INTERNAL' });
    canned['POST /v1/register'] = { status: 200, raw: 'not json' };
    await expect(api.registerAccount('+1')).rejects.toMatchObject({ code: 'E_INTERNAL' });
  });

  it('reports timeouts as E_TIMEOUT', async () => {
    canned['POST /v1/register'] = { status: 200, body: { expiresInSec: 1 }, delayMs: 500 };
    await expect(new ParleyApi({ baseUrl, timeoutMs: 50 }).registerAccount('+1')).rejects.toMatchObject({ code: 'E_TIMEOUT' });
  });

  it('reports an unreachable server as E_UNAVAILABLE', async () => {
    // A port that was just free: bind, read the number, close.
    const tmp = createServer();
    await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', () => r()));
    const port = (tmp.address() as AddressInfo).port;
    await new Promise<void>((r) => tmp.close(() => r()));
    await expect(new ParleyApi(`http://127.0.0.1:${port}`).registerAccount('+1')).rejects.toMatchObject({ code: 'E_UNAVAILABLE' });
  });

  it('rejects a missing baseUrl with E_CONFIG', () => {
    expect(() => new ParleyApi('')).toThrow(ParleyError);
  });
});
