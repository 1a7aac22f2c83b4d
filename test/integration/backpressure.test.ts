/**
 * Back-pressure on the durable path (services/src/ingest-gate.ts): with no workers running, the
 * `persist` backlog ages past PARLEY_INGEST_MAX_BACKLOG_MS and the broker starts holding sent
 * ticks (PUBACKs), each for at most PARLEY_INGEST_MAX_HOLD_MS, so no sender stalls for good. Once
 * workers start, the backlog drains, every message reaches the recipient once and in order, and
 * sent ticks are prompt again.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServer } from '../../services/src/redis/spawn.js';
import { captureSms, startTestPlatform, until, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device } from '../helpers/sdk.js';

const MAX_BACKLOG_MS = 200;
const MAX_HOLD_MS = 1500;
/** A sent tick slower than this was held by the gate (an unheld one takes milliseconds). */
const HELD_MS = 1000;

const dataDir = mkdtempSync(join(tmpdir(), 'parley-backpressure-'));
const sms = captureSms();
let redis: RedisServer | undefined;
const platforms: TestPlatform[] = [];

afterAll(async () => {
  await closeAll();
  for (const p of platforms.reverse()) await p.close();
  await redis?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('back-pressure', () => {
  it('holds sent ticks while the persist backlog is old, never longer than the hold limit, and loses nothing', async () => {
    redis = await startRedisServer({ dir: join(dataDir, 'redis') });
    const env = {
      PARLEY_REDIS_URL: redis.url,
      PARLEY_INGEST_MAX_BACKLOG_MS: String(MAX_BACKLOG_MS),
      PARLEY_INGEST_MAX_HOLD_MS: String(MAX_HOLD_MS),
    };
    const front = await startTestPlatform({ ...env, PARLEY_ROLES: 'broker,api' }, { dataDir, sms });
    platforms.push(front);
    const alice = await front.register();
    const bob = await front.register();
    const a = device(front.mqttUrl, alice);
    const b = device(front.mqttUrl, bob);
    await Promise.all([a.client.connect(), b.client.connect()]);

    // No workers: every send stays in the persist queue. Send one at a time until one is held.
    const ackMs: number[] = [];
    const deadline = Date.now() + 15_000;
    for (let i = 0; Date.now() < deadline && !ackMs.some((t) => t >= HELD_MS); i++) {
      const t0 = Date.now();
      await a.client.send(bob.userId, `m${i}`);
      ackMs.push(Date.now() - t0);
    }
    const held = ackMs.filter((t) => t >= HELD_MS);
    expect(held.length, `sent-tick times: ${ackMs.join(', ')} ms`).toBeGreaterThan(0);
    // Held, but released by the hold limit although no worker ever ran.
    expect(Math.max(...ackMs)).toBeLessThan(MAX_HOLD_MS + 5000);
    expect(b.messages).toHaveLength(0);

    // Workers start: the backlog drains and everything arrives once, in order.
    const back = await startTestPlatform({ ...env, PARLEY_ROLES: 'workers' }, { dataDir, sms });
    platforms.push(back);
    const sent = ackMs.length;
    await until(() => b.messages.length >= sent, 30_000, `bob has all ${sent} messages`);
    expect(b.messages.map((m) => m.text)).toEqual(Array.from({ length: sent }, (_, i) => `m${i}`));
    const seqs = b.messages.map((m) => m.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));

    // The backlog is gone: a sent tick is prompt again.
    let prompt = false;
    for (let i = 0; i < 20 && !prompt; i++) {
      const t0 = Date.now();
      await a.client.send(bob.userId, `after${i}`);
      prompt = Date.now() - t0 < HELD_MS;
    }
    expect(prompt).toBe(true);
  }, 120_000);
});
