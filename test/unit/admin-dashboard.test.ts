/**
 * The dashboard's pure parts: histogram intervals, merges and quantiles (as Prometheus'
 * histogram_quantile estimates them), node states, failed-job reasons as shown, the connection
 * token's time, the bounded count of queued messages, the shared overview computation, and the
 * admin token's file (processes racing to generate it too).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, chmodSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { ParleyError } from '@parley/client-sdk';
import { intervalBuckets, mergeBuckets, percentiles, quantile } from '../../services/src/admin/histogram.js';
import { nodeState, safeReason, sharedOverview } from '../../services/src/admin/cluster-view.js';
import { readClient } from '../../services/src/admin/client-view.js';
import { loadAdminToken } from '../../services/src/admin/admin-token.js';
import { connectedAt, newConnectionToken } from '../../broker/src/connection-token.js';
import { parseConfig } from '../../services/src/config.js';
import type { NodeReport, Overview } from '../../services/src/admin/admin-types.js';

const silent = pino({ level: 'silent' });

describe('histograms', () => {
  const bounds = [0.01, 0.1, 1];

  it('an interval is the difference of two cumulative snapshots, per bucket', () => {
    const before = { bounds, cumulative: [1, 3, 4], total: 5 };
    const after = { bounds, cumulative: [3, 8, 10], total: 12 };
    expect(intervalBuckets(before, after)).toEqual({ bounds, counts: [2, 3, 1, 1] });
    // The first interval counts from zero; a snapshot of other bounds too.
    expect(intervalBuckets(null, after)).toEqual({ bounds, counts: [3, 5, 2, 2] });
    expect(intervalBuckets({ bounds: [5], cumulative: [1], total: 1 }, after)).toEqual({ bounds, counts: [3, 5, 2, 2] });
  });

  it('quantiles interpolate within the bucket holding the rank; the overflow answers the largest bound', () => {
    expect(quantile({ bounds, counts: [0, 0, 0, 0] }, 0.5)).toBeNull();
    // 10 observations in (0.01, 0.1]: the median is halfway through that bucket.
    expect(quantile({ bounds, counts: [0, 10, 0, 0] }, 0.5)).toBeCloseTo(0.055, 10);
    expect(quantile({ bounds, counts: [10, 0, 0, 0] }, 0.99)).toBeCloseTo(0.0099, 10);
    expect(quantile({ bounds, counts: [98, 0, 0, 2] }, 0.99)).toBe(1);
    expect(percentiles({ bounds, counts: [50, 45, 4, 1] })).toEqual({
      p50: 0.01, p95: expect.closeTo(0.1, 10), p99: expect.closeTo(1, 10),
    });
  });

  it('merges intervals of nodes with the same bounds and leaves out the others', () => {
    const merged = mergeBuckets([{ bounds, counts: [1, 2, 3, 4] }, { bounds, counts: [1, 1, 1, 1] }, { bounds: [1, 2], counts: [9, 9, 9] }, { bounds: [], counts: [0] }]);
    expect(merged).toEqual({ bounds, counts: [2, 3, 4, 5] });
    expect(mergeBuckets([])).toEqual({ bounds: [], counts: [0] });
  });
});

describe('cluster view', () => {
  const report = { intervalMs: 2000 } as NodeReport;

  it('a node is live within 2.5 report intervals, stale after, gone once its report expired', () => {
    expect(nodeState(report, 0)).toBe('live');
    expect(nodeState(report, 5000)).toBe('live');
    expect(nodeState(report, 5001)).toBe('stale');
    expect(nodeState(null, 100)).toBe('gone');
  });

  it('shows a failed job\'s reason on one line, short, with URLs cut to their origin', () => {
    expect(safeReason('push failed:\n  410 from https://fcm.googleapis.com/fcm/send/SECRET-capability?x=1 (gone)'))
      .toBe('push failed: 410 from https://fcm.googleapis.com/… (gone)');
    expect(safeReason(undefined)).toBe('');
    const long = safeReason('x'.repeat(1000));
    expect(long.length).toBe(300);
    expect(long.endsWith('…')).toBe(true);
  });
});

describe('connection tokens', () => {
  it('carry the time of the connection; an older node\'s token, or one with junk, has none', () => {
    const t = newConnectionToken(42, 1_796_000_000_123);
    expect(t).not.toContain(' ');
    expect(connectedAt(t)).toBe(1_796_000_000_123);
    expect(connectedAt('1a')).toBeNull();
    expect(connectedAt('1a-')).toBeNull();
    // Trailing or leading junk, upper case, a third part: not a token of this format.
    for (const bad of ['1a-zz!', '1a-zz ', '-zz', '1a-ZZ', '1a-zz-1', '1A-zz', ' 1a-zz']) expect(connectedAt(bad), bad).toBeNull();
  });
});

describe('client look-up', () => {
  /** A store whose device has `n` pending messages; only counted, never read. */
  const storeWith = (n: number) => {
    const asked: number[] = [];
    return {
      asked,
      store: {
        getDevice: async (deviceId: string) => ({ deviceId, userId: 'uAAAAAAAAAAAA', tokenHash: 'h', name: 'phone', createdAt: 1, revokedAt: null }),
        pendingCount: async (_d: string, limit: number) => { asked.push(limit); return Math.min(n, limit); },
      },
    };
  };
  const redis = { get: async () => null } as never;
  const lastErrors = { sent: () => undefined, sentAll: () => undefined, get: async () => null };

  it('counts queued messages up to the bound with the store\'s count, and says when there are more', async () => {
    const few = storeWith(2500);
    expect((await readClient({ store: few.store, redis, prefix: 'p', lastErrors, queuedLimit: 10_000 }, 'dAAAAAAAAAAAA'))!.queued).toEqual({ count: 2500, more: false });
    const many = storeWith(50_000);
    expect((await readClient({ store: many.store, redis, prefix: 'p', lastErrors, queuedLimit: 10_000 }, 'dAAAAAAAAAAAA'))!.queued).toEqual({ count: 10_000, more: true });
    // One bounded count: the bound and one more, to know there are more.
    expect(many.asked).toEqual([10_001]);
    const exact = storeWith(10_000);
    expect((await readClient({ store: exact.store, redis, prefix: 'p', lastErrors, queuedLimit: 10_000 }, 'dAAAAAAAAAAAA'))!.queued).toEqual({ count: 10_000, more: false });
  });

  it('is null for a device that does not exist', async () => {
    const store = { getDevice: async () => null, pendingCount: async () => 0 };
    expect(await readClient({ store, redis, prefix: 'p', lastErrors }, 'dAAAAAAAAAAAA')).toBeNull();
  });
});

describe('shared overview', () => {
  const fake = (n: number) => ({ now: n }) as unknown as Overview;

  it('one computation for concurrent requests, reused for its lifetime; a failure is not kept', async () => {
    let t = 0;
    let calls = 0;
    let fail = false;
    const release: Array<() => void> = [];
    const read = () => new Promise<Overview>((res, rej) => {
      calls++;
      release.push(() => (fail ? rej(new Error('redis away')) : res(fake(calls))));
    });
    const get = sharedOverview(read, 1000, () => t);
    const concurrent = [get(), get(), get()];
    expect(calls).toBe(1);
    release.shift()!();
    expect((await Promise.all(concurrent)).map((o) => o.now)).toEqual([1, 1, 1]);
    t = 999;
    expect((await get()).now).toBe(1);
    t = 1000;
    const next = get();
    expect(calls).toBe(2);
    fail = true;
    release.shift()!();
    await expect(next).rejects.toThrow('redis away');
    // Not kept: the next request computes again.
    fail = false;
    const again = get();
    expect(calls).toBe(3);
    release.shift()!();
    expect((await again).now).toBe(3);
  });
});

describe('admin token', () => {
  const dir = mkdtempSync(join(tmpdir(), 'parley-admin-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is generated once into the data dir (0600) and read back on later starts', () => {
    const first = loadAdminToken(undefined, dir, silent);
    const file = join(dir, 'admin-token');
    expect(first.file).toBe(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const token = readFileSync(file, 'utf8').trim();
    expect(token.length).toBeGreaterThanOrEqual(32);
    expect(first.verify(token)).toBe(true);
    expect(first.verify(`${token} `)).toBe(false);
    expect(first.verify('')).toBe(false);
    const again = loadAdminToken(undefined, dir, silent);
    expect(again.verify(token)).toBe(true);
  });

  it('processes starting together on one data dir end up with one token, each reading it whole', async () => {
    const shared = mkdtempSync(join(tmpdir(), 'parley-admin-race-'));
    const moduleUrl = new URL('../../services/src/admin/admin-token.ts', import.meta.url).href;
    const script = [
      `import { loadAdminToken } from ${JSON.stringify(moduleUrl)};`,
      "import { pino } from 'pino';",
      "import { readFileSync } from 'node:fs';",
      "const t = loadAdminToken(undefined, process.argv[1], pino({ level: 'silent' }));",
      "console.log(JSON.stringify({ same: t.verify(readFileSync(t.file, 'utf8').trim()) }));",
    ].join('\n');
    const run = () => new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--conditions=parley-source', '--import', 'tsx', '--input-type=module', '-e', script, shared],
        { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim())));
    });
    try {
      const outs = await Promise.all(Array.from({ length: 8 }, run));
      expect(outs.map((o) => JSON.parse(o) as unknown)).toEqual(Array.from({ length: 8 }, () => ({ same: true })));
      // Only the token file: every temporary file was removed.
      expect(readdirSync(shared)).toEqual(['admin-token']);
      expect(statSync(join(shared, 'admin-token')).mode & 0o777).toBe(0o600);
    } finally {
      rmSync(shared, { recursive: true, force: true });
    }
  }, 60_000);

  it('PARLEY_ADMIN_TOKEN wins over the file; a damaged file stops the start', () => {
    const configured = 'c'.repeat(40);
    const t = loadAdminToken(configured, dir, silent);
    expect(t.file).toBeNull();
    expect(t.verify(configured)).toBe(true);
    expect(t.verify(readFileSync(join(dir, 'admin-token'), 'utf8').trim())).toBe(false);
    const bad = mkdtempSync(join(tmpdir(), 'parley-admin-bad-'));
    writeFileSync(join(bad, 'admin-token'), 'short\n');
    chmodSync(join(bad, 'admin-token'), 0o600);
    expect(() => loadAdminToken(undefined, bad, silent)).toThrow(ParleyError);
    rmSync(bad, { recursive: true, force: true });
  });

  it('PARLEY_ADMIN_TOKEN: at least 32 printable characters without spaces, never echoed in the error', () => {
    expect(parseConfig({ PARLEY_ADMIN_TOKEN: 'a'.repeat(32) }).adminToken).toBe('a'.repeat(32));
    expect(parseConfig({}).adminToken).toBeUndefined();
    for (const bad of ['tooShortButSecret-1234', `${'a'.repeat(20)} ${'b'.repeat(20)}`]) {
      let err: unknown;
      try { parseConfig({ PARLEY_ADMIN_TOKEN: bad }); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(ParleyError);
      expect((err as ParleyError).message).toContain('PARLEY_ADMIN_TOKEN');
      expect((err as ParleyError).message).not.toContain(bad);
    }
  });
});
