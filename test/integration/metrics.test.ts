/**
 * Metrics and health on a real platform: /metrics is Prometheus text format (a strict parser
 * below) and its counters move with traffic sent through the SDK; /healthz and /readyz answer on
 * the API and on the metrics listener (PARLEY_METRICS_PORT); readiness goes false without Redis.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServer } from '../../services/src/redis/spawn.js';
import { restartablePort, startTestPlatform, until, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device } from '../helpers/sdk.js';

let tp: TestPlatform;
beforeAll(async () => { tp = await startTestPlatform({ PARLEY_METRICS_PORT: '0' }); });
afterEach(async () => { await closeAll(); });
afterAll(async () => { await tp?.close(); });

interface Sample { name: string; labels: Record<string, string>; value: number }

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)/y;
/** A value as Go's strconv.ParseFloat reads it (the format's rule): NaN and Inf in any case (prom-client writes `Nan`). */
const VALUE = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf(?:inity)?|nan)$/i;

/**
 * Prometheus text exposition format 0.0.4, strictly: every line is blank, a `# HELP`/`# TYPE`
 * comment (TYPE before the family's samples, once), another comment, or `name{labels} value
 * [timestamp]`. Throws on the first line that is not.
 */
function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const seen = new Set<string>();
  const lines = text.split('\n');
  expect(text.endsWith('\n')).toBe(true);
  lines.forEach((line, i) => {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) return; // a plain comment
      if (!NAME.test(m[2]!)) throw new Error(`bad metric name, ${where}`);
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3]!)) throw new Error(`bad type, ${where}`);
        if (types.has(m[2]!) || seen.has(m[2]!)) throw new Error(`TYPE repeated or after samples, ${where}`);
        types.set(m[2]!, m[3]!);
      }
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    if (!m) throw new Error(`not a sample, ${where}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      LABEL.lastIndex = 0;
      const body = m[2];
      while (LABEL.lastIndex < body.length) {
        const at = LABEL.lastIndex;
        const l = LABEL.exec(body);
        if (!l || l.index !== at) throw new Error(`bad labels, ${where}`);
        if (l[1]! in labels) throw new Error(`label repeated, ${where}`);
        labels[l[1]!] = l[2]!;
      }
    }
    if (!VALUE.test(m[3]!)) throw new Error(`bad value, ${where}`);
    const name = m[1]!;
    const family = [...types.keys()].find((f) => name === f || (/_(bucket|sum|count|total|created)$/.test(name) && name.startsWith(f + '_')));
    if (!family) throw new Error(`sample without a TYPE, ${where}`);
    seen.add(family);
    samples.push({ name, labels, value: Number(m[3]) });
  });
  return samples;
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}): number =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);

async function scrape(base: string): Promise<Sample[]> {
  const res = await fetch(`${base}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await res.text());
}

describe('metrics', () => {
  it('the strict parser refuses what is not the text format', () => {
    expect(() => parsePrometheus('# TYPE a counter\na 1\n')).not.toThrow();
    expect(() => parsePrometheus('# TYPE a counter\na{x="1",} 1\n')).not.toThrow();
    expect(() => parsePrometheus('a 1\n')).toThrow(/without a TYPE/);
    expect(() => parsePrometheus('# TYPE a counter\na{x=1} 1\n')).toThrow(/bad labels/);
    expect(() => parsePrometheus('# TYPE a counter\na one\n')).toThrow(/not a sample|bad value/);
    expect(() => parsePrometheus('# TYPE a counter\na 1 2 3\n')).toThrow();
  });

  it('/metrics parses as Prometheus text and its counters move with traffic', async () => {
    const before = await scrape(tp.httpUrl);
    for (const name of [
      'parley_mqtt_connections', 'parley_redis_restarts_total', 'parley_redis_ping_seconds', 'process_cpu_user_seconds_total', 'nodejs_heap_size_used_bytes',
    ]) expect(before.some((s) => s.name === name), name).toBe(true);
    // Queue depths, read on scrape, for every queue.
    expect(before.filter((s) => s.name === 'parley_queue_jobs' && s.labels.state === 'waiting').map((s) => s.labels.queue)).toEqual(
      expect.arrayContaining(['persist-0', 'fanout', 'events', 'maintenance', 'media', 'push']),
    );

    const alice = await tp.register();
    const bob = await tp.register();
    const a = device(tp.mqttUrl, alice);
    const b = device(tp.mqttUrl, bob);
    await Promise.all([a.client.connect(), b.client.connect()]);
    const N = 5;
    for (let i = 0; i < N; i++) await a.client.send(bob.userId, `hello ${i}`);
    await until(() => b.messages.length === N, 10_000, 'bob receives');

    // Delivery acks are written after PARLEY_ACK_DELAY_MS; the histograms are observed at the PUBACK.
    let after: Sample[] = [];
    await until(async () => {
      after = await scrape(tp.httpUrl);
      return value(after, 'parley_delivery_latency_seconds_count') - value(before, 'parley_delivery_latency_seconds_count') >= N
        && value(after, 'parley_jobs_total', { job: 'acks', outcome: 'completed' }) > 0;
    }, 10_000, 'delivery latency and acks jobs counted');
    const moved = (name: string, labels: Record<string, string> = {}): number => value(after, name, labels) - value(before, name, labels);
    expect(value(after, 'parley_mqtt_connections')).toBe(2);
    expect(moved('parley_mqtt_publishes_total', { kind: 'send' })).toBe(N);
    expect(moved('parley_mqtt_deliveries_total', { kind: 'msg' })).toBeGreaterThanOrEqual(N);
    expect(moved('parley_mqtt_deliveries_total', { kind: 'stored' })).toBeGreaterThanOrEqual(1);
    expect(moved('parley_sent_latency_seconds_count', { kind: 'send' })).toBe(N);
    expect(moved('parley_ingest_latency_seconds_count')).toBe(N);
    expect(moved('parley_fanout_devices_count', { path: 'inline' })).toBeGreaterThanOrEqual(1);
    expect(moved('parley_jobs_total', { job: 'persist', outcome: 'completed' })).toBeGreaterThanOrEqual(1);
    expect(moved('parley_store_operation_seconds_count', { op: 'appendMessages' })).toBeGreaterThanOrEqual(1);
    // Histogram buckets are cumulative and end at +Inf = count.
    const inf = after.find((s) => s.name === 'parley_delivery_latency_seconds_bucket' && s.labels.le === '+Inf');
    expect(inf?.value).toBe(value(after, 'parley_delivery_latency_seconds_count'));

    // The metrics listener serves the same registry.
    const viaListener = await scrape(tp.platform.urls.metrics!);
    expect(value(viaListener, 'parley_mqtt_publishes_total', { kind: 'send' })).toBeGreaterThanOrEqual(value(after, 'parley_mqtt_publishes_total', { kind: 'send' }));
  });

  it('counts a restart of the private Redis by its supervisor', async () => {
    const other = await startTestPlatform();
    try {
      const restarts = async (): Promise<number> => value(await scrape(other.httpUrl), 'parley_redis_restarts_total');
      expect(await restarts()).toBe(0);
      process.kill(other.platform.redis!.pid!, 'SIGKILL');
      await until(async () => (await restarts()) === 1, 15_000, 'the restart counted');
      await until(async () => (await fetch(`${other.httpUrl}/readyz`)).status === 200, 15_000, 'ready again');
    } finally {
      await other.close();
    }
  });

  it('shows no secrets', async () => {
    const alice = await tp.register();
    const text = await (await fetch(`${tp.httpUrl}/metrics`)).text();
    expect(text).not.toContain(alice.token);
    expect(text).not.toContain(alice.deviceId);
    expect(text).not.toContain(tp.platform.urls.redis);
  });
});

describe('health', () => {
  it('/healthz and /readyz answer JSON on the API and on the metrics listener', async () => {
    for (const base of [tp.httpUrl, tp.platform.urls.metrics!]) {
      const h = await fetch(`${base}/healthz`);
      expect(h.status).toBe(200);
      expect(await h.json()).toEqual({ ok: true });
      const r = await fetch(`${base}/readyz`);
      expect(r.status).toBe(200);
      expect(await r.json()).toEqual({ ready: true, checks: { roles: 'ok', redis: 'ok', store: 'ok' } });
    }
    expect((await fetch(`${tp.platform.urls.metrics!}/nothing`)).status).toBe(404);
  });

  it('a workers-only process serves them on PARLEY_METRICS_PORT; not ready while its Redis is away, ready again when it is back', async () => {
    // An external Redis the test owns, so it can stop it and bring it back on the same port.
    const dir = mkdtempSync(join(tmpdir(), 'parley-metrics-redis-'));
    const opts = { dir, port: await restartablePort(), removeDirOnStop: true };
    let redis: RedisServer = await startRedisServer(opts);
    const other = await startTestPlatform({ PARLEY_ROLES: 'workers', PARLEY_METRICS_PORT: '0', PARLEY_REDIS_URL: redis.url });
    try {
      const base = other.platform.urls.metrics!;
      expect(other.platform.urls.http).toBeUndefined();
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      const samples = await scrape(base);
      expect(samples.some((s) => s.name === 'parley_queue_jobs')).toBe(true);
      await redis.kill();
      const r = await fetch(`${base}/readyz`);
      expect(r.status).toBe(503);
      expect(await r.json()).toMatchObject({ ready: false, checks: { roles: 'ok', store: 'ok', redis: expect.not.stringMatching(/^ok$/) } });
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      // A scrape still answers (queue depths keep their last values) and counts the Redis errors.
      const down = await scrape(base);
      expect(value(down, 'parley_redis_ping_seconds')).toBe(-1);
      redis = await startRedisServer(opts);
      await until(async () => (await fetch(`${base}/readyz`)).status === 200, 15_000, 'ready again');
      expect(value(await scrape(base), 'parley_redis_errors_total')).toBeGreaterThan(0);
    } finally {
      await other.close();
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
