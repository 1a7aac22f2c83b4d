/**
 * The platform as `npm start` runs it: one process from services/src/main.ts. It prints where it
 * listens, the console SMS adapter logs the code, SIGTERM shuts it down cleanly (exit 0) without
 * losing what was acknowledged, a restart on the same data dir serves the queued messages, and
 * Ctrl-C (SIGINT to the process group) stops it and its private Redis promptly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../services/src/redis/spawn.js';
import { postJson, uniquePhone, until } from '../helpers/platform.js';
import { closeAll, device } from '../helpers/sdk.js';

const dataDir = mkdtempSync(join(tmpdir(), 'parley-process-'));
const children = new Set<ChildProcess>();

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** `ownGroup`: its own process group, as a shell runs a foreground command (Ctrl-C signals the group). */
async function startMain(env: Record<string, string>, ownGroup = false): Promise<Running> {
  const child = spawn(process.execPath, ['--conditions=parley-source', '--import', 'tsx', 'services/src/main.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: ownGroup,
  });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => { children.delete(child); r(code); }));
  await until(() => out.includes('Press Ctrl-C to stop.') || child.exitCode !== null, 60_000, 'platform start');
  if (child.exitCode !== null) throw new Error(`platform exited: ${out}`);
  return { child, output: () => out, exited };
}

afterEach(async () => { await closeAll(); });
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

describe('the platform process', () => {
  it('prints its addresses, logs SMS codes with the console adapter, stops cleanly on SIGTERM and keeps queued messages', async () => {
    const env = {
      PARLEY_DATA_DIR: dataDir,
      PARLEY_HOST: '127.0.0.1',
      PARLEY_MQTT_PORT: String(await freePort()),
      PARLEY_WS_PORT: String(await freePort()),
      PARLEY_HTTP_PORT: String(await freePort()),
      PARLEY_LOG_LEVEL: 'info',
    };
    const p1 = await startMain(env);
    const http = `http://127.0.0.1:${env.PARLEY_HTTP_PORT}`;
    const mqttUrl = `mqtt://127.0.0.1:${env.PARLEY_MQTT_PORT}`;
    expect(p1.output()).toContain(`MQTT over TCP        ${mqttUrl}`);
    expect(p1.output()).toContain(`MQTT over WebSocket  ws://127.0.0.1:${env.PARLEY_WS_PORT}/mqtt`);
    expect(p1.output()).toContain(`HTTP API             ${http}`);

    const register = async () => {
      const phone = uniquePhone();
      expect((await postJson(`${http}/v1/register`, { phone })).status).toBe(202);
      let code = '';
      await until(() => {
        const m = new RegExp(`"to":"\\${phone}","text":"Your Parley code is (\\d{6})`).exec(p1.output());
        code = m?.[1] ?? '';
        return code !== '';
      }, 10_000, 'code in the log');
      const r = await postJson(`${http}/v1/verify`, { phone, code });
      expect(r.status).toBe(200);
      return r.json as { userId: string; deviceId: string; token: string };
    };
    const alice = await register();
    const bob = await register();
    const b0 = device(mqttUrl, bob);
    await b0.client.connect();
    await b0.client.close();

    const a = device(mqttUrl, alice);
    await a.client.connect();
    await Promise.all(Array.from({ length: 100 }, (_, i) => a.client.send(bob.userId, `t${i}`)));
    await a.client.close();
    // Tokens never reach the log.
    expect(p1.output()).not.toContain(alice.token.split('.')[1]!);

    p1.child.kill('SIGTERM');
    expect(await p1.exited).toBe(0);

    const p2 = await startMain(env, true);
    const b = device(mqttUrl, bob);
    await b.client.connect();
    await until(() => b.messages.length >= 100, 30_000, 'queued messages after restart');
    expect(b.messages.map((m) => m.text)).toEqual(Array.from({ length: 100 }, (_, i) => `t${i}`));
    await b.client.close();
    // Ctrl-C in a terminal: SIGINT to the whole process group. The private redis-server is not in
    // it, so it is not killed under the platform's feet; the platform stops it last, and promptly.
    const redisPid = Number(readFileSync(join(dataDir, 'redis', 'redis.pid'), 'utf8'));
    const t0 = Date.now();
    process.kill(-p2.child.pid!, 'SIGINT');
    expect(await p2.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(p2.output()).not.toContain('ECONNREFUSED');
    expect(existsSync(`/proc/${redisPid}`)).toBe(false);
    // Redis was stopped by the platform (SHUTDOWN), not by the terminal's signal.
    expect(readFileSync(join(dataDir, 'redis', 'redis.log'), 'utf8')).not.toContain('Received SIGINT');
  });
});
