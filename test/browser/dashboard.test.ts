/**
 * The admin dashboard in a real browser (Debian's Chromium, driven by playwright-core) at a
 * laptop's 1366×768, against a real platform: a wrong token is refused and the right one signs in;
 * the node and its figures show and keep changing without a reload while SDK clients chat; a
 * client is looked up, disconnected (it reconnects) and, after the confirmation dialog, revoked.
 * The page runs under its Content-Security-Policy without a violation or a script error, labels
 * every control, and fits the width. With PARLEY_SCREENSHOT=1 it also writes docs/dashboard.png
 * (the normal run writes nothing into docs/).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM, launchChromium } from '../helpers/browser.js';
import type { ConnectionState } from '@parley/client-sdk';
import { startTestPlatform, until, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, type Recorded } from '../helpers/sdk.js';

const ADMIN_TOKEN = `browser-admin-token-${'k'.repeat(24)}`;
const SCREENSHOT = process.env.PARLEY_SCREENSHOT === '1';

let tp: TestPlatform;
/** A second broker node sharing tp's Redis and store: the cluster the page shows. */
let tp2: TestPlatform;
let browser: Browser;
let page: Page;
/** Console errors (CSP violations among them) and page errors seen by the page. */
const problems: string[] = [];
/** Answers >= 400 the page got (the wrong sign-in's 401 is expected). */
const failedLoads: string[] = [];
let traffic: { stop(): Promise<void> } | undefined;

beforeAll(async () => {
  tp = await startTestPlatform({ PARLEY_ADMIN_TOKEN: ADMIN_TOKEN });
  tp2 = await startTestPlatform({ PARLEY_ROLES: 'broker', PARLEY_REDIS_URL: tp.platform.urls.redis }, { dataDir: tp.dataDir });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  // Failed loads are reported as console errors too: they are checked by URL below instead.
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`); });
  page.on('response', (r) => { if (r.status() >= 400) failedLoads.push(`${r.status()} ${new URL(r.url()).pathname}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
}, 60_000);

afterAll(async () => {
  await traffic?.stop();
  await closeAll();
  await browser?.close();
  await tp2?.close();
  await tp?.close();
});

/** Alice keeps sending to Bob (one message at a time, each awaited) until stopped. */
function startTraffic(a: Recorded, toUserId: string): { stop(): Promise<void> } {
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i++) await a.client.sendMessage(toUserId, `busy ${i}`).catch(() => undefined);
  })();
  return { async stop() { running = false; await loop; } };
}

const text = (selector: string): Promise<string> => page.locator(selector).innerText();

/** The number in the nodes table's column `header` for the row of `nodeId`. */
async function nodeCell(nodeId: string, header: string): Promise<number> {
  return page.evaluate(({ nodeId, header }) => {
    const headers = Array.from(document.querySelectorAll('#nodes thead th'), (th) => th.textContent?.trim());
    const col = headers.indexOf(header);
    const row = Array.from(document.querySelectorAll('#nodes-body tr')).find((tr) => tr.querySelector('.id')?.textContent === nodeId);
    const cell = row?.children[col]?.textContent ?? '';
    return Number(cell.replace(/[^0-9.]/g, '') || 'NaN');
  }, { nodeId, header });
}

describe('admin dashboard in Chromium', () => {
  it('has Chromium installed (scripts/ensure-deps.sh installs it)', () => {
    expect(existsSync(CHROMIUM)).toBe(true);
  });

  it('is served with a strict Content-Security-Policy and asks for the admin token', async () => {
    const res = await page.goto(`${tp.httpUrl}/admin`);
    expect(res?.status()).toBe(200);
    const csp = res?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    await page.locator('#login').waitFor({ state: 'visible' });
    expect(await page.locator('#dash').isHidden()).toBe(true);
    await page.getByLabel('Admin token').fill(`not-the-admin-token-${'x'.repeat(20)}`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await until(async () => (await text('#login-error')).includes('not the admin token'), 10_000, 'the wrong token refused');
  });

  it('signs in, shows both nodes, and their figures and plots change without a reload while clients chat', async () => {
    await page.getByLabel('Admin token').fill(ADMIN_TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#dash').waitFor({ state: 'visible' });
    const nodeId = tp.platform.broker!.id;
    await page.locator('#nodes-body .id', { hasText: nodeId }).waitFor();
    const row = page.locator('#nodes-body tr', { hasText: nodeId });
    expect(await row.innerText()).toContain('broker, api, workers');
    expect(await row.innerText()).toContain('live');
    const node2 = tp2.platform.broker!.id;
    await page.locator('#nodes-body .id', { hasText: node2 }).waitFor();
    const row2 = page.locator('#nodes-body tr', { hasText: node2 });
    expect((await row2.innerText()).split('\t').map((c) => c.trim())).toContain('broker');
    const clients2 = await nodeCell(node2, 'Clients');
    // Marks this document: a reload would lose it.
    await page.evaluate(() => { (window as unknown as { marker: number }).marker = 42; });
    const before = await nodeCell(nodeId, 'Accepted');

    const [alice, bob] = [await tp.register(), await tp.register()];
    const a = device(tp.mqttUrl, alice);
    // Bob on the second node: its client count moves, and the messages cross nodes.
    const b = device(tp2.mqttUrl, bob);
    await Promise.all([a.client.connect(), b.client.connect()]);
    await until(async () => (await nodeCell(node2, 'Clients')) === clients2 + 1, 20_000, 'the second node\'s client count');
    traffic = startTraffic(a, bob.userId);
    await until(async () => (await nodeCell(nodeId, 'Accepted')) >= before + 5, 20_000, 'the Accepted figure moved');
    const moved = await nodeCell(nodeId, 'Accepted');
    await until(async () => (await nodeCell(nodeId, 'Accepted')) > moved, 20_000, 'and moved again');
    await until(async () => (await nodeCell(node2, 'Delivered')) > 0, 20_000, 'delivered counted on the second node');
    expect(await nodeCell(nodeId, 'Clients')).toBeGreaterThanOrEqual(1);
    expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(42);
    // The charts are drawn (uPlot canvases), with the latest values as text beside them.
    await page.locator('#c-rates canvas').first().waitFor();
    await until(async () => /accepted \/ s [1-9]/.test(await text('#c-rates-now')), 20_000, 'a rate in the chart');
    await until(async () => /p50 [0-9.]+ ms/.test(await text('#c-latency-now')), 20_000, 'a latency in the chart');
    // The plots move: what the rate and latency canvases show changes from one update to the next.
    const pixels = (): Promise<string[]> => page.evaluate(() => ['#c-rates', '#c-latency'].map((id) => (document.querySelector(`${id} canvas`) as HTMLCanvasElement).toDataURL()));
    const drawn = await pixels();
    await until(async () => { const now = await pixels(); return now[0] !== drawn[0] && now[1] !== drawn[1]; }, 20_000, 'the rate and latency plots redrawn with new points');
    expect(await text('#k-connections')).not.toBe('–');
  }, 60_000);

  it('looks a client up and disconnects it; it reconnects', async () => {
    const carol = await tp.register();
    const c = device(tp.mqttUrl, carol);
    const states: ConnectionState[] = [];
    c.client.on('state', (s) => states.push(s));
    await c.client.connect();
    await page.getByLabel('Device id').fill(carol.deviceId);
    await page.getByRole('button', { name: 'Look up' }).click();
    await until(async () => (await text('#client-fields')).includes(`connected to ${tp.platform.broker!.id}`), 10_000, 'the look-up result');
    const fields = await text('#client-fields');
    expect(fields).toContain(carol.userId);
    expect(fields).toContain('valid');
    states.length = 0;
    await page.getByRole('button', { name: 'Disconnect' }).click();
    await until(async () => (await text('#client-message')).includes(`Disconnected ${carol.deviceId}`), 10_000, 'the disconnect confirmed');
    await until(() => states.some((s) => s !== 'connected') && c.client.state === 'connected', 10_000, 'carol reconnected');
  });

  it('revokes a client after the confirmation dialog', async () => {
    const dave = await tp.register();
    const d = device(tp.mqttUrl, dave);
    await d.client.connect();
    await page.getByLabel('Device id').fill(dave.deviceId);
    await page.getByRole('button', { name: 'Look up' }).click();
    await until(async () => (await text('#client-title')).includes(dave.deviceId), 10_000, 'dave looked up');
    await page.getByRole('button', { name: 'Revoke…' }).click();
    const dialog = page.getByRole('dialog', { name: 'Revoke this device?' });
    await dialog.waitFor({ state: 'visible' });
    // Cancel first: nothing happens.
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    expect(await dialog.isHidden()).toBe(true);
    expect(d.client.state).toBe('connected');
    await page.getByRole('button', { name: 'Revoke…' }).click();
    await dialog.getByRole('button', { name: 'Revoke', exact: true }).click();
    await until(async () => (await text('#client-message')).includes(`Revoked ${dave.deviceId}`), 10_000, 'the revocation confirmed');
    await until(() => d.errors.some((e) => e.code === 'E_AUTH_TOKEN'), 10_000, 'dave refused on reconnecting');
    await until(async () => (await text('#client-fields')).includes('revoked'), 10_000, 'shown revoked');
    expect(await page.getByRole('button', { name: 'Revoke…' }).isDisabled()).toBe(true);
  });

  it('stops polling while the tab is hidden, and polls again once it is shown', async () => {
    const p2 = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    try {
      // The page's timers on a clock of the test's: 2-second steps taken when told, not waited for.
      await p2.clock.install();
      let polls = 0;
      p2.on('request', (r) => { if (new URL(r.url()).pathname === '/admin/api/overview') polls++; });
      await p2.goto(`${tp.httpUrl}/admin`);
      await p2.getByLabel('Admin token').fill(ADMIN_TOKEN);
      await p2.getByRole('button', { name: 'Sign in' }).click();
      await p2.locator('#dash').waitFor({ state: 'visible' });
      await p2.clock.pauseAt(Date.now() + 60_000);
      // The next poll is timed once the last answer is in: the clock is moved on until it comes.
      const step = async (): Promise<void> => { await p2.clock.runFor(2100); };
      const visible = polls;
      await until(async () => { await step(); return polls > visible; }, 10_000, 'a poll every 2 s while visible');
      const setHidden = (hidden: boolean) => p2.evaluate((h) => {
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
        document.dispatchEvent(new Event('visibilitychange'));
      }, hidden);
      await setHidden(true);
      // The poll in flight (if any) is answered: it must not time another one.
      await p2.waitForLoadState('networkidle');
      const hiddenAt = polls;
      await p2.clock.runFor(30_000);
      expect(polls).toBe(hiddenAt);
      // Shown again: a poll at once, then every 2 s.
      await setHidden(false);
      await until(() => polls === hiddenAt + 1, 10_000, 'a poll as soon as the tab is shown');
      await until(async () => { await step(); return polls >= hiddenAt + 2; }, 10_000, 'polling again');
    } finally {
      await p2.close();
    }
  });

  it('shows "—", not 0, for figures Redis did not give (the queues unreadable)', async () => {
    const p3 = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    try {
      // The server's own answer, as it is while the queues' Redis connection is down.
      await p3.route('**/admin/api/overview', async (route) => {
        const res = await route.fetch();
        const o = (await res.json()) as Record<string, unknown> & { cluster: Record<string, unknown> };
        await route.fulfill({ response: res, json: { ...o, cluster: { ...o.cluster, persistBacklog: null }, queues: null, failedJobs: null } });
      });
      await p3.goto(`${tp.httpUrl}/admin`);
      await p3.getByLabel('Admin token').fill(ADMIN_TOKEN);
      await p3.getByRole('button', { name: 'Sign in' }).click();
      await p3.locator('#dash').waitFor({ state: 'visible' });
      await until(async () => (await p3.locator('#k-backlog').innerText()) === '—', 10_000, 'the persist backlog shown unknown');
      expect(await p3.locator('#k-failed').innerText()).toBe('—');
      expect(await p3.locator('#queues-body').innerText()).toContain('Redis did not answer');
      expect(await p3.locator('#c-queues-now').innerText()).toContain('persist backlog —');
    } finally {
      await p3.close();
    }
  });

  it('labels its controls, has table headers, fits 1366 px, and ran without script errors or CSP violations', async () => {
    const a11y = await page.evaluate(() => ({
      unlabelled: Array.from(document.querySelectorAll('input, select, textarea')).filter((i) => (i as HTMLInputElement).labels?.length === 0).map((i) => i.id),
      h1: document.querySelectorAll('h1').length,
      // The page's tables (uPlot's legends are tables of their own, with a header cell per row).
      tablesWithoutHeaders: Array.from(document.querySelectorAll('main table[id]')).filter((t) => t.querySelectorAll('th[scope="col"]').length === 0).map((t) => t.id),
      live: document.querySelector('#status')?.getAttribute('aria-live'),
      overflow: document.documentElement.scrollWidth - window.innerWidth,
      lang: document.documentElement.lang,
    }));
    expect(a11y).toEqual({ unlabelled: [], h1: 1, tablesWithoutHeaders: [], live: 'polite', overflow: 0, lang: 'en' });
    // Keyboard: the skip link is the first stop and shows when focused.
    await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content');
    expect(problems).toEqual([]);
    expect(failedLoads).toEqual(['401 /admin/api/overview']);
  });

  it.runIf(SCREENSHOT)('writes docs/dashboard.png (PARLEY_SCREENSHOT=1)', async () => {
    // Twelve updates (about 24 s) of history in the charts first.
    await page.evaluate(() => {
      const w = window as unknown as { updates: number };
      w.updates = 0;
      new MutationObserver(() => { w.updates++; }).observe(document.getElementById('updated')!, { childList: true, characterData: true, subtree: true });
    });
    await until(async () => (await page.evaluate(() => (window as unknown as { updates: number }).updates)) >= 12, 60_000, 'a history in the charts');
    await page.keyboard.press('Escape');
    await page.evaluate(() => { (document.activeElement as HTMLElement | null)?.blur(); window.scrollTo(0, 0); });
    await page.screenshot({ path: join(import.meta.dirname, '..', '..', 'docs', 'dashboard.png') });
  }, 90_000);
});
