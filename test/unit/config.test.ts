import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ParleyError } from '@parley/client-sdk';
import { parseConfig } from '../../services/src/config.js';

describe('config', () => {
  it('has working defaults and is frozen', () => {
    const c = parseConfig({});
    expect(c.roles).toEqual(['broker', 'api', 'workers']);
    expect(c.mqttPort).toBe(1883);
    expect(c.store).toEqual({ kind: 'sqlite', file: './data/parley.sqlite' });
    expect(c.retentionMs).toBe(30 * 86_400_000);
    expect(c.persistShards).toBe(8);
    expect(c.fanoutChunk).toBe(128);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it.each([
    [{ PARLEY_MQTT_PORT: '70000' }, 'PARLEY_MQTT_PORT'],
    [{ PARLEY_MQTT_PORT: 'abc' }, 'PARLEY_MQTT_PORT'],
    [{ PARLEY_ROLES: 'broker,frontend' }, 'PARLEY_ROLES'],
    [{ PARLEY_STORE: 'postgres' }, 'PARLEY_STORE'],
    [{ PARLEY_STORE: 'mongo' }, 'MONGO_URL'],
    [{ PARLEY_SMS: 'webhook' }, 'PARLEY_SMS_WEBHOOK_URL'],
    [{ PARLEY_SECRET: 'short' }, 'PARLEY_SECRET'],
    [{ PARLEY_ADMIN_TOKEN: 'short' }, 'PARLEY_ADMIN_TOKEN'],
    [{ PARLEY_REDIS_URL: 'not a url' }, 'PARLEY_REDIS_URL'],
    [{ PARLEY_LOG_LEVEL: 'loud' }, 'PARLEY_LOG_LEVEL'],
    [{ PARLEY_MAX_DEVICES: '0' }, 'PARLEY_MAX_DEVICES'],
    [{ PARLEY_PERSIST_SHARDS: '0' }, 'PARLEY_PERSIST_SHARDS'],
    [{ PARLEY_PERSIST_SHARDS: '65' }, 'PARLEY_PERSIST_SHARDS'],
    [{ PARLEY_FANOUT_CHUNK: '1.5' }, 'PARLEY_FANOUT_CHUNK'],
  ])('rejects %j naming the variable', (env, name) => {
    let err: unknown;
    try { parseConfig(env); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ParleyError);
    expect((err as ParleyError).code).toBe('E_CONFIG');
    expect((err as ParleyError).message).toContain(name);
  });

  it('makes the process exit with code 2 and a readable message on a bad variable', () => {
    const r = spawnSync(process.execPath, ['--conditions=parley-source', '--import', 'tsx', 'services/src/main.ts'], {
      env: { ...process.env, PARLEY_HTTP_PORT: '-1' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('PARLEY_HTTP_PORT');
  });
});
