/**
 * IndexedDbKeyStorage in a real browser: client-sdk/src/e2ee/storage.ts and the shared KeyStorage
 * contract (test/helpers/key-storage-contract.ts) are bundled for browsers with esbuild, served to
 * headless Chromium (Debian's, driven by playwright-core), and the contract's cases run in the
 * page against IndexedDB; Node asserts their results. One browser launch, one page run.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM, launchChromium, serveModule } from '../helpers/browser.js';
import { keyStorageContract } from '../helpers/key-storage-contract.js';

// The cases' names, known here without running anything (the factory is only called by `run`).
const noStorage = (): never => {
  throw new Error('names only');
};
const CASES = keyStorageContract(noStorage, { reopen: noStorage }).map((c) => c.name);

let server: { url: string; close(): Promise<void> } | undefined;
let pageUrl: string;
let browser: Browser;
let page: Page;
/** Case name -> 'ok' or the failure, as the page saw it. */
let results: Record<string, string> = {};
let extra: { defaultName: string; persisted: number[] | null; listed: string[]; errorCode: string | null; bundleHasNode: boolean };

beforeAll(async () => {
  const bundle = await build({
    stdin: {
      contents: [
        "export { IndexedDbKeyStorage, MemoryKeyStorage } from './client-sdk/src/e2ee/storage.ts';",
        "export { keyStorageContract } from './test/helpers/key-storage-contract.ts';",
      ].join('\n'),
      resolveDir: process.cwd(),
      loader: 'ts',
      sourcefile: 'key-storage-entry.ts',
    },
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    conditions: ['parley-source'],
    target: 'es2022',
  });
  const js = bundle.outputFiles[0]!.text;
  server = await serveModule(js, 'kst');
  pageUrl = server.url;
  browser = await launchChromium();
  page = await browser.newPage();
  await page.goto(pageUrl);
  await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);

  results = await page.evaluate(async () => {
    const { IndexedDbKeyStorage, keyStorageContract } = (window as any).kst;
    let n = 0;
    const cases = keyStorageContract(
      () => new IndexedDbKeyStorage(`parley-e2ee-contract-${++n}`),
      { reopen: (s: any) => new IndexedDbKeyStorage(s.dbName) },
    );
    const out: Record<string, string> = {};
    for (const c of cases) {
      try {
        await c.run();
        out[c.name] = 'ok';
      } catch (e: any) {
        out[c.name] = String(e?.stack ?? e);
      }
    }
    return out;
  });

  // The default database, written before a reload and read after it (same origin, same profile).
  await page.evaluate(async () => {
    const { IndexedDbKeyStorage } = (window as any).kst;
    const s = new IndexedDbKeyStorage();
    await s.set('identity/default', Uint8Array.of(0, 127, 128, 255));
    await s.set('kp/1', Uint8Array.of(1));
  });
  await page.reload();
  await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
  extra = await page.evaluate(async () => {
    const { IndexedDbKeyStorage } = (window as any).kst;
    const s = new IndexedDbKeyStorage();
    const got: Uint8Array | undefined = await s.get('identity/default');
    const listed: string[] = await s.keys('');
    const names: string[] = (await indexedDB.databases()).map((d) => d.name ?? '');
    // Where there is no IndexedDB (some private modes): E_CONFIG.
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'indexedDB');
    let errorCode: string | null = null;
    Object.defineProperty(globalThis, 'indexedDB', { value: undefined, configurable: true });
    try {
      await new IndexedDbKeyStorage('parley-e2ee-none').get('k');
    } catch (e: any) {
      errorCode = e?.code ?? String(e);
    } finally {
      if (saved) Object.defineProperty(globalThis, 'indexedDB', saved);
      else delete (globalThis as any).indexedDB;
    }
    return {
      defaultName: names.includes('parley-e2ee') ? 'parley-e2ee' : names.join(','),
      persisted: got ? Array.from(got) : null,
      listed,
      errorCode,
      bundleHasNode: false,
    };
  });
  extra.bundleHasNode = /from\s*["']node:|require\(["']node:/.test(js);
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

describe('IndexedDbKeyStorage in Chromium', () => {
  it('has Chromium installed (scripts/ensure-deps.sh installs it)', () => {
    expect(existsSync(CHROMIUM)).toBe(true);
  });

  it('ran every case of the contract', () => {
    expect(Object.keys(results).sort()).toEqual([...CASES].sort());
  });

  for (const name of CASES) {
    it(`contract: ${name}`, () => {
      expect(results[name]).toBe('ok');
    });
  }

  it('keeps its data across a page reload, in the database parley-e2ee by default', () => {
    expect(extra.defaultName).toBe('parley-e2ee');
    expect(extra.persisted).toEqual([0, 127, 128, 255]);
    expect(extra.listed.sort()).toEqual(['identity/default', 'kp/1']);
  });

  it('rejects with E_CONFIG where there is no IndexedDB', () => {
    expect(extra.errorCode).toBe('E_CONFIG');
  });

  it('bundles for browsers without Node modules', () => {
    expect(extra.bundleHasNode).toBe(false);
  });
});
