/**
 * The SDK as a release artifact (issue 13, item 6): `npm run build` and `npm pack` of client-sdk,
 * the tarball installed into an empty project, then (a) a plain Node ESM script there imports
 * '@parley/client-sdk', registers two users and chats through a real platform, and (b) esbuild
 * bundles '@parley/client-sdk' for the browser with no flags beyond `platform: 'browser'`, and
 * the bundle chats over WebSocket in Chromium.
 *
 * Offline install: these machines have no registry access and the npm cache does not hold the
 * SDK's dependencies, so `npm install <tgz> --offline` fails with ENOTCACHED. The empty project
 * gets each dependency as a symlink to the monorepo's installed copy first (Node resolves a
 * symlinked package's own dependencies from its real path); npm then finds them satisfied and
 * installs only the tarball, still with `--offline`. `file:` installs of node_modules folders are
 * not used: npm runs their `prepare` scripts and may write into the monorepo's node_modules.
 * Link package folders only, never a scope folder (`@types`) or a whole node_modules: npm prunes
 * what the project does not list through such a link, i.e. deletes it from the monorepo.
 */
import { execFile, fork } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { startTestPlatform, uniquePhone, type TestPlatform } from '../helpers/platform.js';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const SDK_DIR = join(ROOT, 'client-sdk');
const CHROMIUM = '/usr/bin/chromium';
const pkg = JSON.parse(readFileSync(join(SDK_DIR, 'package.json'), 'utf8')) as {
  name: string; exports: Record<string, string | Record<string, string>>; dependencies: Record<string, string>;
};

/** A child's environment without what vitest or an outer `npm test` put there (loaders, conditions). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k.startsWith('VITEST') || k.startsWith('npm_')) continue;
    env[k] = v;
  }
  return env;
}

let tmp: string;
let app: string;
let tp: TestPlatform;
let packed: { filename: string; files: { path: string }[] };

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'parley-pack-'));
  app = join(tmp, 'app');
  // tp is set as soon as the platform is up, so afterAll closes it even if packing fails.
  await Promise.all([
    startTestPlatform().then((p) => { tp = p; }),
    (async () => {
      await run('npm', ['run', 'build', '-w', 'client-sdk'], { cwd: ROOT, env: cleanEnv() });
      const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: SDK_DIR, env: cleanEnv() });
      packed = (JSON.parse(stdout) as typeof packed[])[0]!;

      mkdirSync(join(app, 'node_modules'), { recursive: true });
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'pack-test-app', private: true, type: 'module' }));
      for (const dep of Object.keys(pkg.dependencies)) {
        mkdirSync(dirname(join(app, 'node_modules', dep)), { recursive: true }); // a scoped package's @scope/
        symlinkSync(realpathSync(join(ROOT, 'node_modules', dep)), join(app, 'node_modules', dep), 'dir');
      }
      await run('npm', ['install', join(tmp, packed.filename), '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: app, env: cleanEnv() });
    })(),
  ]);
}, 90_000);

afterAll(async () => {
  await tp?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('client-sdk tarball', () => {
  it('contains the compiled ESM, its declarations, README and CHANGELOG, and nothing else', () => {
    const files = packed.files.map((f) => f.path).sort();
    const unexpected = files.filter((f) => !/^dist\/([\w-]+\/)?[\w-]+\.(js|d\.ts)$/.test(f) && !['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE'].includes(f));
    expect(unexpected).toEqual([]);
    expect(files).toContain('README.md');
    expect(files).toContain('CHANGELOG.md');
    // Every file the exports map names (outside the monorepo's parley-source condition) ships.
    for (const [subpath, target] of Object.entries(pkg.exports)) {
      const targets = typeof target === 'string' ? [target] : Object.entries(target).filter(([c]) => c !== 'parley-source').map(([, t]) => t);
      for (const t of targets) expect(files, `${subpath} -> ${t}`).toContain(t.replace(/^\.\//, ''));
    }
    // Each .js has its declaration.
    for (const js of files.filter((f) => f.endsWith('.js'))) expect(files).toContain(js.replace(/\.js$/, '.d.ts'));
  });

  it('installs into an empty project, and a plain Node ESM script there registers two users and chats', async () => {
    writeFileSync(join(app, 'chat.js'), `
import { ParleyApi, ParleyClient } from '@parley/client-sdk';
import { encode, decode } from '@parley/client-sdk/protocol';
import { schemas } from '@parley/client-sdk/api-types';

const [mqttUrl, apiUrl, phoneA, phoneB] = process.argv.slice(2);
setTimeout(() => { console.error('chat.js timed out'); process.exit(2); }, 30000).unref();
// The SMS code comes from the test, which captures the platform's SMS.
const smsCode = (phone) => new Promise((r) => { process.once('message', (m) => r(m.code)); process.send({ phone }); });
const api = new ParleyApi({ baseUrl: apiUrl });
async function signUp(phone, deviceName) {
  await api.registerAccount(phone);
  return api.validateAccount(phone, await smsCode(phone), deviceName);
}
const alice = await signUp(phoneA, 'alice laptop');
const bob = await signUp(phoneB, 'bob laptop');
const a = new ParleyClient({ url: mqttUrl, apiUrl, ...alice });
const b = new ParleyClient({ url: mqttUrl, apiUrl, ...bob });
const arrived = new Promise((r) => b.on('newMessage', r));
await Promise.all([a.connect(), b.connect()]);
// End-to-end encryption is on (apiUrl and userId): both devices' keys are published first.
await Promise.all([a.e2eeReady(), b.e2eeReady()]);
const sent = await a.sendMessage(bob.userId, 'hello from the tarball');
const m = await arrived;
await Promise.all([a.close(), b.close()]);
process.send({
  resolved: import.meta.resolve('@parley/client-sdk'),
  protocolRoundTrip: decode(encode({ kind: 'sync' })).kind,
  hasSchemas: typeof schemas === 'object',
  sent: sent.msgId, got: { msgId: m.msgId, text: m.text, from: m.from, encrypted: m.encrypted }, alice: alice.userId,
});
process.disconnect();
`);
    const child = fork(join(app, 'chat.js'), [tp.mqttUrl, tp.httpUrl, uniquePhone(), uniquePhone()], {
      cwd: app, execArgv: [], env: cleanEnv(), stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const result = await new Promise<any>((resolveResult, reject) => {
      child.on('message', (m: any) => {
        if (m.phone) child.send({ code: tp.codes.get(m.phone) });
        else resolveResult(m);
      });
      child.on('exit', (code) => reject(new Error(`chat.js exited with ${code}`)));
    });
    expect(realpathSync(new URL(result.resolved).pathname)).toBe(realpathSync(join(app, 'node_modules/@parley/client-sdk/dist/index.js')));
    expect(result.protocolRoundTrip).toBe('sync');
    expect(result.hasSchemas).toBe(true);
    expect(result.got).toEqual({ msgId: result.sent, text: 'hello from the tarball', from: result.alice, encrypted: true });
  });

  it('type-checks a consumer of the entry points (NodeNext with full lib check, and Bundler)', async () => {
    writeFileSync(join(app, 'typed.ts'), `
import { ParleyClient, ParleyError, type ChatMessage, type SentMessage } from '@parley/client-sdk';
import { encode, type Envelope } from '@parley/client-sdk/protocol';
import { schemas, type VerifyResult } from '@parley/client-sdk/api-types';
import { FileKeyStorage } from '@parley/client-sdk/node';
export async function demo(creds: VerifyResult): Promise<SentMessage> {
  const c = new ParleyClient({ url: 'mqtt://localhost:1883', apiUrl: 'http://localhost:8080', ...creds, e2ee: { storage: new FileKeyStorage('/tmp/keys') } });
  c.on('newMessage', (m: ChatMessage) => console.log(m.text));
  c.on('error', (e: ParleyError) => console.log(e.code));
  const env: Envelope = { kind: 'sync' };
  console.log(encode(env).byteLength, Object.keys(schemas));
  return c.sendMessage('u', 'hi');
}
`);
    const tsc = join(ROOT, 'node_modules', '.bin', 'tsc');
    // @types/node from the monorepo by typeRoots (not linked into the project: see the header).
    const common = { target: 'ES2022', strict: true, noEmit: true, typeRoots: [join(ROOT, 'node_modules', '@types')] };
    const configs = {
      node: { ...common, module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM'], types: ['node'], skipLibCheck: false },
      bundler: { ...common, module: 'ESNext', moduleResolution: 'Bundler', lib: ['ES2022', 'DOM'], types: [], skipLibCheck: true },
    };
    for (const [name, compilerOptions] of Object.entries(configs)) {
      writeFileSync(join(app, `tsconfig.${name}.json`), JSON.stringify({ compilerOptions, files: ['typed.ts'] }));
      const r = await run(tsc, ['-p', `tsconfig.${name}.json`], { cwd: app, env: cleanEnv() }).then(() => '', (e: { stdout?: string }) => e.stdout ?? String(e));
      expect(r, name).toBe('');
    }
  });

  it('bundles for the browser with esbuild, no flags but platform browser, and chats in Chromium', async () => {
    writeFileSync(join(app, 'browser.js'), `import { ParleyClient } from '@parley/client-sdk';\nwindow.ParleyClient = ParleyClient;\n`);
    const out = await build({ absWorkingDir: app, entryPoints: ['browser.js'], bundle: true, write: false, platform: 'browser', metafile: true, logLevel: 'silent' });
    const inputs = Object.keys(out.metafile.inputs);
    // The installed package's dist, mqtt.js' browser build; no Node built-in, no zod (types only).
    expect(inputs.some((i) => i.startsWith('node_modules/@parley/client-sdk/dist/'))).toBe(true);
    expect(inputs.some((i) => /mqtt\/dist\/mqtt\.esm\.js$/.test(i))).toBe(true);
    expect(inputs.filter((i) => /^node:|^(fs|net|tls|crypto|buffer|stream|events)$|\/zod\//.test(i))).toEqual([]);
    const js = out.outputFiles[0]!.text;
    expect(js).not.toMatch(/\brequire\(["'](node:)?(fs|net|tls|crypto|buffer|stream|events)["']\)/);

    if (!existsSync(CHROMIUM)) return; // scripts/ensure-deps.sh installs it; the bundle is checked above.
    const alice = await tp.register();
    const bob = await tp.register();
    const http: Server = createServer((req, res) => {
      if (req.url === '/sdk.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(js);
      else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>parley</title><script src="/sdk.js"></script>');
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
    try {
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.goto(`http://127.0.0.1:${(http.address() as AddressInfo).port}/`);
      const got = await page.evaluate(async ({ url, alice, bob }) => {
        const { ParleyClient } = window as any;
        const a = new ParleyClient({ url, ...alice });
        const b = new ParleyClient({ url, ...bob });
        const arrived = new Promise<any>((r) => b.on('newMessage', r));
        await Promise.all([a.connect(), b.connect()]);
        await a.sendMessage(bob.userId, 'hello from the bundle');
        const m = await arrived;
        await Promise.all([a.close(), b.close()]);
        return m.text;
      }, {
        url: tp.wsUrl,
        alice: { deviceId: alice.deviceId, token: alice.token, userId: alice.userId },
        bob: { deviceId: bob.deviceId, token: bob.token, userId: bob.userId },
      });
      expect(got).toBe('hello from the bundle');
      expect(pageErrors).toEqual([]);
    } finally {
      await browser.close();
      await new Promise<void>((r) => http.close(() => r()));
    }
  });
});
