/**
 * The compiled build (what the Docker image runs) behaves like the sources the other tests run:
 * the SDK and the server are compiled with the same tsconfigs as `npm run build` (into a private
 * directory, so other tests' builds are not disturbed), `node dist/services/src/main.js` starts
 * with no TypeScript loader, and two users register and chat through it with the SDK; its
 * dashboard (compiled module, copied page files, uPlot from node_modules) is served.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ParleyApi, ParleyClient, type ChatMessage } from '@parley/client-sdk';
import { freePort } from '../../services/src/redis/spawn.js';
import { until, uniquePhone } from '../helpers/platform.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
// Inside the repository (gitignored) so the compiled files find its node_modules; the SDK the
// compiled server imports is this directory's own copy, found first.
mkdirSync(join(ROOT, '.tmp'), { recursive: true });
const dir = mkdtempSync(join(ROOT, '.tmp', 'build-'));
const dataDir = mkdtempSync(join(dir, 'data-'));
let child: ChildProcess | undefined;
const clients: ParleyClient[] = [];

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  // A clean stop: the server stops its private redis-server (its own process group, which a
  // SIGKILL of the server would leave running).
  const c = child;
  if (c && c.exitCode === null && c.signalCode === null) {
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 25_000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('the compiled build', () => {
  it('compiles, starts without tsx, and two users chat through it', { timeout: 180_000 }, async () => {
    const tsc = join(ROOT, 'node_modules', '.bin', 'tsc');
    const sdk = join(dir, 'node_modules', '@parley', 'client-sdk');
    await run(tsc, ['-p', join(ROOT, 'client-sdk', 'tsconfig.build.json'), '--outDir', join(sdk, 'dist')], { cwd: ROOT, timeout: 120_000 });
    cpSync(join(ROOT, 'client-sdk', 'package.json'), join(sdk, 'package.json'));
    // The server is type-checked against that SDK build, not against client-sdk/dist (absent in a
    // fresh clone, and rebuilt by test/sdk/pack.test.ts, maybe at this very moment).
    const sdkTypes = join(sdk, 'dist');
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      extends: join(ROOT, 'tsconfig.build.json'),
      compilerOptions: {
        outDir: join(dir, 'dist'),
        paths: { '@parley/client-sdk': [join(sdkTypes, 'index.d.ts')], '@parley/client-sdk/*': [join(sdkTypes, '*.d.ts')] },
      },
    }));
    await run(tsc, ['-p', join(dir, 'tsconfig.json')], { cwd: ROOT, timeout: 120_000 });
    // The rest of `npm run build`: the dashboard page's HTML and CSS.
    await run(process.execPath, [join(ROOT, 'scripts', 'copy-assets.mjs'), join(dir, 'dist')], { cwd: ROOT, timeout: 30_000 });
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));

    const [mqtt, ws, http] = await Promise.all([freePort(), freePort(), freePort()]);
    let out = '';
    child = spawn(process.execPath, [join(dir, 'dist', 'services', 'src', 'main.js')], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '', PARLEY_DATA_DIR: dataDir, PARLEY_HOST: '127.0.0.1', PARLEY_MQTT_PORT: String(mqtt),
        PARLEY_WS_PORT: String(ws), PARLEY_HTTP_PORT: String(http), PARLEY_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    await until(() => out.includes('Press Ctrl-C to stop.') || child!.exitCode !== null, 60_000, 'compiled platform start');
    expect(child.exitCode, out).toBeNull();

    const api = new ParleyApi({ baseUrl: `http://127.0.0.1:${http}` });
    const signUp = async (): Promise<{ userId: string; deviceId: string; token: string }> => {
      const phone = uniquePhone();
      await api.registerAccount(phone);
      // The console SMS adapter logs the code (redacted from structured fields, shown in the text).
      await until(() => new RegExp(`${phone.replace('+', '\\+')}[^\\n]*\\b\\d{6}\\b`).test(out), 10_000, 'code in the log');
      const code = new RegExp(`${phone.replace('+', '\\+')}[^\\n]*?\\b(\\d{6})\\b`).exec(out)![1]!;
      return api.validateAccount(phone, code);
    };
    const [alice, bob] = [await signUp(), await signUp()];
    const url = `mqtt://127.0.0.1:${mqtt}`;
    const a = new ParleyClient({ url, deviceId: alice.deviceId, token: alice.token, userId: alice.userId });
    const b = new ParleyClient({ url, deviceId: bob.deviceId, token: bob.token, userId: bob.userId });
    clients.push(a, b);
    const got: ChatMessage[] = [];
    b.on('newMessage', (m) => got.push(m));
    await Promise.all([a.connect(), b.connect()]);
    const sent = await a.sendMessage(bob.userId, 'hello from the build');
    await until(() => got.length > 0, 15_000, 'delivery through the compiled build');
    expect(got[0]).toMatchObject({ msgId: sent.msgId, text: 'hello from the build', from: alice.userId });

    // The dashboard: where its token is was printed (never the token), the page and its assets are served.
    const tokenFile = join(dataDir, 'admin-token');
    const adminToken = readFileSync(tokenFile, 'utf8').trim();
    expect(out).toContain(`Dashboard            http://127.0.0.1:${http}/admin   (admin token: ${tokenFile})`);
    expect(out).not.toContain(adminToken);
    for (const [path, type] of [['/admin', 'text/html'], ['/admin/dashboard.js', 'text/javascript'], ['/admin/dashboard.css', 'text/css'], ['/admin/assets/uPlot.iife.min.js', 'text/javascript']] as const) {
      const res = await fetch(`http://127.0.0.1:${http}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type'), path).toContain(type);
      const text = await res.text();
      expect(text.length, path).toBeGreaterThan(500);
      // tsc writes a source map comment; the map is not served, so neither is the comment.
      if (path === '/admin/dashboard.js') expect(text).not.toContain('sourceMappingURL');
    }
    const overview = await fetch(`http://127.0.0.1:${http}/admin/api/overview`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(overview.status).toBe(200);
    expect(((await overview.json()) as { nodes: Array<{ report: { roles: string[] } }> }).nodes[0]?.report.roles).toEqual(['broker', 'api', 'workers']);
  });
});
