/**
 * The SDK in a real browser: the package is bundled for browsers with esbuild (no Node built-ins),
 * served to headless Chromium (Debian's, driven by playwright-core), and chats over MQTT/WebSocket
 * with a Node SDK client through a real platform.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { CHROMIUM, launchChromium, serveModule } from '../helpers/browser.js';
import { startTestPlatform, until, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device } from '../helpers/sdk.js';
import { png, sha256 } from '../helpers/media.js';

let tp: TestPlatform;
let server: { url: string; close(): Promise<void> } | undefined;
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
  server = await serveModule(bundle.outputFiles[0]!.text, 'sdk');
  pageUrl = server.url;
  browser = await launchChromium();
});

afterAll(async () => {
  await closeAll();
  await browser?.close();
  await server?.close();
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

  it('uploads an image through the SDK and downloads one, both checked by SHA-256', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const b = device(tp.mqttUrl, bob, { apiUrl: tp.httpUrl });
    await b.client.connect();
    const fromBob = await png(120, 80);
    const page = await browser.newPage();
    await page.goto(pageUrl);
    await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
    const mine = await png(64, 64);
    const pagePromise = page.evaluate(async ({ url, apiUrl, alice, bobId, bytes }) => {
      const { ParleyClient } = (window as any).sdk;
      // In the clear, to check the server's preview; end-to-end media is tested below.
      const c = new ParleyClient({ url, apiUrl, deviceId: alice.deviceId, token: alice.token, userId: alice.userId, e2ee: false });
      const got: any[] = [];
      c.on('newMessage', (m: any) => { if (m.media) got.push(m); });
      await c.connect();
      const progress: number[] = [];
      await c.sendMedia(bobId, new Blob([new Uint8Array(bytes)], { type: 'image/png' }), { kind: 'image', contentType: 'image/png', caption: 'from Chromium' }, {
        onProgress: (done: number) => progress.push(done),
      });
      const deadline = Date.now() + 20_000;
      while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const data: Uint8Array = await c.downloadMedia(got[0]);
      const hex = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', data as any)), (x) => x.toString(16).padStart(2, '0')).join('');
      await c.close();
      return { progress, hex, preview: got[0].media.preview as string };
    }, { url: tp.wsUrl, apiUrl: tp.httpUrl, alice: { deviceId: alice.deviceId, token: alice.token, userId: alice.userId }, bobId: bob.userId, bytes: [...mine] });
    await until(() => b.messages.some((m) => m.media), 20_000, 'bob got the browser image');
    const m = b.messages.find((x) => x.media)!;
    expect(m.text).toBe('from Chromium');
    expect(sha256(Buffer.from(await b.client.downloadMedia(m)))).toBe(sha256(mine));
    await b.client.sendMedia(alice.userId, fromBob, { kind: 'image', contentType: 'image/png' });
    const result = await pagePromise;
    expect(result.progress.at(-1)).toBe(mine.length);
    expect(result.hex).toBe(sha256(fromBob));
    expect(result.preview.length).toBeGreaterThan(10);
    await page.close();
  }, 60_000);

  it('exchanges end-to-end encrypted messages (MLS on WebCrypto, keys in IndexedDB) with a Node device, across a page reload', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const b = device(tp.mqttUrl, bob, { apiUrl: tp.httpUrl, e2ee: true });
    await b.client.connect();
    await b.client.e2eeReady();
    b.client.on('newMessage', (m) => { if (m.text?.startsWith('browser says')) void b.client.send(alice.userId, `node read: ${m.text}`); });

    const page = await browser.newPage();
    await page.goto(pageUrl);
    await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
    // One page run: connect with keys in IndexedDB, send, wait for the answer, close.
    const run = (text: string): Promise<{ got: Array<{ text: string; encrypted: boolean }>; undecryptable: number }> => page.evaluate(async ({ url, apiUrl, alice, bobId, text }) => {
      const { ParleyClient, IndexedDbKeyStorage } = (window as any).sdk;
      const storage = new IndexedDbKeyStorage(`parley-${alice.deviceId}`);
      const c = new ParleyClient({ url, apiUrl, deviceId: alice.deviceId, token: alice.token, userId: alice.userId, e2ee: { storage } });
      const got: Array<{ text: string; encrypted: boolean }> = [];
      let undecryptable = 0;
      c.on('newMessage', (m: any) => { if (!m.event) got.push({ text: m.text, encrypted: m.encrypted }); });
      c.on('undecryptable', () => { undecryptable++; });
      await c.connect();
      await c.sendMessage(bobId, text);
      const deadline = Date.now() + 20_000;
      while (!got.some((g) => g.text === `node read: ${text}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await c.close();
      storage.close();
      return { got, undecryptable };
    }, { url: tp.wsUrl, apiUrl: tp.httpUrl, alice: { deviceId: alice.deviceId, token: alice.token, userId: alice.userId }, bobId: bob.userId, text });

    // Two clients of one device in one browser would reuse message keys: the second is refused.
    const twice = await page.evaluate(async ({ url, apiUrl, alice }) => {
      const { ParleyClient, MemoryKeyStorage } = (window as any).sdk;
      const mk = () => new ParleyClient({ url, apiUrl, deviceId: alice.deviceId, token: alice.token, userId: alice.userId, e2ee: { storage: new MemoryKeyStorage() } });
      const [one, two] = [mk(), mk()];
      await one.e2eeReady();
      const code = await two.e2eeReady().then(() => 'ok', (e: any) => e.code);
      await Promise.all([one.close(), two.close()]);
      return code;
    }, { url: tp.wsUrl, apiUrl: tp.httpUrl, alice: { deviceId: alice.deviceId, token: alice.token, userId: alice.userId } });
    expect(twice).toBe('E_CONFIG');
    const first = await run('browser says hi');
    expect(first.got).toContainEqual({ text: 'node read: browser says hi', encrypted: true });
    expect(b.messages.find((m) => m.text === 'browser says hi')).toMatchObject({ encrypted: true, from: alice.userId });
    // Reloaded: the same device with its keys from IndexedDB goes on in the same group.
    await page.reload();
    await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
    const second = await run('browser says again');
    expect(second.got).toContainEqual({ text: 'node read: browser says again', encrypted: true });
    expect(second.undecryptable).toBe(0);
    await page.close();
  }, 60_000);

  it('contacts discovery: normalises and hashes (WebCrypto) in the browser, the same hash as the server', async () => {
    const alice = await tp.register();
    const bob = await tp.register('+447700900777');
    const page = await browser.newPage();
    await page.goto(pageUrl);
    await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
    const result = await page.evaluate(async ({ url, apiUrl, alice }) => {
      const { ParleyClient, hashPhone } = (window as any).sdk;
      const c = new ParleyClient({ url, apiUrl, deviceId: alice.deviceId, token: alice.token, userId: alice.userId });
      const found = await c.lookupContacts(['07700 900777', 'nope'], { defaultCountry: 'GB', save: false });
      const hash = await hashPhone('+447700900777');
      await c.close();
      return { found, hash };
    }, { url: tp.wsUrl, apiUrl: tp.httpUrl, alice: { deviceId: alice.deviceId, token: alice.token, userId: alice.userId } });
    expect(result.found).toEqual([{ number: '07700 900777', e164: '+447700900777', userId: bob.userId }, { number: 'nope' }]);
    expect(result.hash).toBe(sha256(Buffer.from('+447700900777')));
    await page.close();
  });
});
