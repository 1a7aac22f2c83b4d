/**
 * The SDK in a real browser: the package is bundled for browsers with esbuild (no Node built-ins),
 * served to headless Chromium (Debian's, driven by playwright-core), and chats over MQTT/WebSocket
 * with a Node SDK client through a real platform.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { startTestPlatform, until, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device } from '../helpers/sdk.js';

const CHROMIUM = '/usr/bin/chromium';

let tp: TestPlatform;
let http: Server;
let pageUrl: string;
let browser: Browser;

beforeAll(async () => {
  tp = await startTestPlatform();
  const bundle = await build({
    entryPoints: ['client-sdk/src/index.ts'],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    conditions: ['parley-source'],
    target: 'es2022',
    // mqtt.js' browser build reads process.env in one place.
    define: { 'process.env.NODE_ENV': '"production"', global: 'globalThis' },
  });
  const js = bundle.outputFiles[0]!.text;
  http = createServer((req, res) => {
    if (req.url === '/sdk.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(js);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>parley</title><script type="module">import * as sdk from "/sdk.js"; window.sdk = sdk; window.ready = true;</script>');
    }
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  pageUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}/`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    // playwright gives the browser a fresh temporary profile of its own.
  });
});

afterAll(async () => {
  await closeAll();
  await browser?.close();
  await new Promise<void>((r) => (http ? http.close(() => r()) : r()));
  await tp?.close();
});

describe('client-sdk in Chromium', () => {
  it('has Chromium installed (scripts/ensure-deps.sh installs it)', () => {
    expect(existsSync(CHROMIUM)).toBe(true);
  });

  it('connects over WebSocket, sends, receives and gets ticks', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const b = device(tp.mqttUrl, bob);
    await b.client.connect();
    b.client.on('newMessage', (m) => { void b.client.markRead(m.msgId); void b.client.send(alice.userId, `echo ${m.text}`); });

    const page = await browser.newPage();
    await page.goto(pageUrl);
    await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
    const result = await page.evaluate(async ({ url, alice, bobId }) => {
      const { ParleyClient } = (window as any).sdk;
      const c = new ParleyClient({ url, deviceId: alice.deviceId, token: alice.token, userId: alice.userId });
      const got: string[] = [];
      const statuses: string[] = [];
      c.on('newMessage', (m: any) => got.push(m.text));
      c.on('status', (s: any) => statuses.push(s.status));
      await c.connect();
      await c.send(bobId, 'from the browser');
      const deadline = Date.now() + 20_000;
      while ((got.length === 0 || !statuses.includes('read')) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await c.close();
      return { got, statuses };
    }, { url: tp.wsUrl, alice: { deviceId: alice.deviceId, token: alice.token, userId: alice.userId }, bobId: bob.userId });

    await until(() => b.messages.length === 1, 5000, 'bob got the browser message');
    expect(b.messages[0]?.text).toBe('from the browser');
    expect(result.got).toEqual(['echo from the browser']);
    // Bob reads at once, so the read tick may overtake the delivered one (read implies delivered).
    expect(result.statuses[0]).toBe('sent');
    expect(result.statuses.at(-1)).toBe('read');
    await page.close();
  });
});
