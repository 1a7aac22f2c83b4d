/**
 * Bulk registration of Parley users through the real HTTP API (POST /v1/register, then
 * POST /v1/verify with the code). Parley runs with PARLEY_SMS=webhook pointing at a tiny HTTP
 * server in the runner that captures `{ to, text }` and keeps the 6-digit code. Bounded in count
 * and time; loopback only.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SmsCatcher {
  url: string;
  codes: Map<string, string>;
  close(): Promise<void>;
}

export async function startSmsCatcher(): Promise<SmsCatcher> {
  const codes = new Map<string, string>();
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => {
      if (body.length < 4096) body += d;
    });
    req.on('end', () => {
      try {
        const { to, text } = JSON.parse(body) as { to?: string; text?: string };
        const m = /\b(\d{6})\b/.exec(text ?? '');
        if (to && m?.[1]) codes.set(to, m[1]);
        res.writeHead(200).end('ok');
      } catch {
        res.writeHead(400).end('bad');
      }
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/sms`,
    codes,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

export interface Device {
  userId: string;
  deviceId: string;
  token: string;
  phone: string;
}

let phoneCounter = 0;
const runDigit = String(Math.floor(Math.random() * 9) + 1);

function nextPhone(): string {
  phoneCounter++;
  return `+1555${runDigit}${String(phoneCounter).padStart(8, '0')}`;
}

async function post(url: string, body: unknown): Promise<{ status: number; json: unknown }> {
  if (!url.startsWith('http://127.')) throw new Error(`refusing non-loopback URL ${url}`);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, json: await res.json().catch(() => null) };
}

export async function registerOne(httpUrl: string, sms: SmsCatcher): Promise<Device> {
  const phone = nextPhone();
  const r1 = await post(`${httpUrl}/v1/register`, { phone });
  if (r1.status !== 202) throw new Error(`register ${r1.status} ${JSON.stringify(r1.json)}`);
  const code = sms.codes.get(phone);
  if (!code) throw new Error(`no SMS code captured for ${phone}`);
  sms.codes.delete(phone);
  const r2 = await post(`${httpUrl}/v1/verify`, { phone, code });
  if (r2.status !== 200) throw new Error(`verify ${r2.status} ${JSON.stringify(r2.json)}`);
  const j = r2.json as { userId: string; deviceId: string; token: string };
  return { userId: j.userId, deviceId: j.deviceId, token: j.token, phone };
}

export interface Registration {
  devices: Device[];
  ms: number;
  failed: number;
  firstError?: string;
  /** True when the deadline stopped it before `n`. */
  truncated: boolean;
}

/** Registers up to `n` users (one device each), `concurrency` at a time, until `deadlineMs` passes. */
export async function registerMany(
  httpUrl: string, sms: SmsCatcher, n: number,
  o: { concurrency: number; deadlineMs: number; onProgress?: (done: number) => void },
): Promise<Registration> {
  const t0 = Date.now();
  const devices: Device[] = [];
  let failed = 0;
  let firstError: string | undefined;
  let next = 0;
  let lastReport = t0;
  const worker = async (): Promise<void> => {
    while (next < n && Date.now() - t0 < o.deadlineMs && failed < 100) {
      next++;
      try {
        devices.push(await registerOne(httpUrl, sms));
      } catch (err) {
        failed++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
      if (o.onProgress && Date.now() - lastReport > 10_000) {
        lastReport = Date.now();
        o.onProgress(devices.length);
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return { devices, ms: Date.now() - t0, failed, truncated: devices.length < n, ...(firstError ? { firstError } : {}) };
}
