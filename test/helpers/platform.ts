/**
 * Starts a whole Parley platform in this process on ephemeral ports with its own redis-server
 * and data dir, and tears it all down. SMS codes are captured through the SmsSender port.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../services/src/config.js';
import { startPlatform, type Platform, type PlatformDeps } from '../../services/src/platform.js';
import type { SmsSender } from '../../services/src/sms/sms.js';
import { freePort } from '../../services/src/redis/spawn.js';

export interface TestPlatform {
  platform: Platform;
  dataDir: string;
  mqttUrl: string;
  wsUrl: string;
  httpUrl: string;
  /** Last SMS code sent to each phone. */
  codes: Map<string, string>;
  sms: SmsSender;
  env: Record<string, string>;
  register(phone?: string, deviceName?: string): Promise<Registered>;
  linkDevice(token: string, deviceName?: string): Promise<Registered>;
  close(): Promise<void>;
}

export interface Registered {
  userId: string;
  deviceId: string;
  token: string;
  phone: string;
}

let phoneCounter = 0;
/** A unique, valid E.164 number per call (per process). */
export function uniquePhone(): string {
  phoneCounter++;
  return `+1555${String(process.pid % 1000).padStart(3, '0')}${String(phoneCounter).padStart(4, '0')}`;
}

export function captureSms(): { sms: SmsSender; codes: Map<string, string> } {
  const codes = new Map<string, string>();
  return {
    codes,
    sms: {
      async send(phone, text) {
        const m = /\b(\d{6})\b/.exec(text);
        if (m?.[1]) codes.set(phone, m[1]);
      },
    },
  };
}

export async function postJson(url: string, body: unknown, token?: string): Promise<{ status: number; json: any }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json().catch(() => null) };
}

/**
 * `deps`: platform dependencies beyond the captured SMS, e.g. `now`, a clock the test moves
 * (status expiry, cleanup) instead of waiting.
 */
export async function startTestPlatform(
  env: Record<string, string> = {}, reuse?: { dataDir: string; sms?: ReturnType<typeof captureSms> }, deps: Omit<PlatformDeps, 'sms'> = {},
): Promise<TestPlatform> {
  const dataDir = reuse?.dataDir ?? mkdtempSync(join(tmpdir(), 'parley-test-'));
  const fullEnv: Record<string, string> = {
    PARLEY_DATA_DIR: dataDir,
    PARLEY_HOST: '127.0.0.1',
    PARLEY_MQTT_PORT: '0',
    PARLEY_WS_PORT: '0',
    PARLEY_HTTP_PORT: '0',
    // PARLEY_TEST_LOG_LEVEL=debug shows the platform's logs while debugging a test.
    PARLEY_LOG_LEVEL: process.env.PARLEY_TEST_LOG_LEVEL ?? 'silent',
    ...env,
  };
  const cap = reuse?.sms ?? captureSms();
  // With PARLEY_SMS set the configured adapter is used (e.g. a webhook the test serves).
  const platform = await startPlatform(parseConfig(fullEnv), { ...deps, ...(env.PARLEY_SMS ? {} : { sms: cap.sms }) });
  const httpUrl = platform.urls.http ?? '';
  const register = async (phone = uniquePhone(), deviceName?: string): Promise<Registered> => {
    const r1 = await postJson(`${httpUrl}/v1/register`, { phone });
    if (r1.status !== 202) throw new Error(`register failed: ${r1.status} ${JSON.stringify(r1.json)}`);
    const code = cap.codes.get(phone);
    const r2 = await postJson(`${httpUrl}/v1/verify`, { phone, code, ...(deviceName ? { deviceName } : {}) });
    if (r2.status !== 200) throw new Error(`verify failed: ${r2.status} ${JSON.stringify(r2.json)}`);
    return { ...r2.json, phone };
  };
  return {
    platform,
    dataDir,
    mqttUrl: platform.urls.mqtt ?? '',
    wsUrl: platform.urls.ws ?? '',
    httpUrl,
    codes: cap.codes,
    sms: cap.sms,
    env: fullEnv,
    register,
    async linkDevice(token, deviceName) {
      const r = await postJson(`${httpUrl}/v1/devices`, deviceName ? { deviceName } : {}, token);
      if (r.status !== 201) throw new Error(`link failed: ${r.status} ${JSON.stringify(r.json)}`);
      return { ...r.json, phone: '' };
    },
    async close() {
      await platform.close();
      if (!reuse) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Resolves when `predicate` holds, polling on a short interval; rejects at the deadline. */
export async function until(predicate: () => boolean | Promise<boolean>, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A port for a server the test stops and starts again on the same port (an external Redis that
 * goes away and returns): from a range no other caller of freePort uses, so no other test file
 * running at the same time takes it while it is free.
 */
export function restartablePort(): Promise<number> {
  // A slice per vitest worker: files in one worker run one after another, so none of them
  // collides with a file running in another worker at the same time.
  const workers = 4;
  const slice = Math.floor(768 / workers);
  const id = (Number(process.env.VITEST_POOL_ID ?? '1') - 1) % workers;
  const from = 32_000 + Math.max(0, id) * slice;
  return freePort('127.0.0.1', { from, to: from + slice - 1 });
}
