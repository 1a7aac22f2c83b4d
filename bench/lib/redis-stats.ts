/**
 * Redis counters around a measurement: INFO commandstats (calls per command, including the
 * commands BullMQ's Lua scripts run inside EVALSHA), network bytes and memory.
 */
import { Redis } from 'ioredis';

export interface RedisStats {
  calls: Record<string, number>;
  netIn: number;
  netOut: number;
  usedMemory: number;
}

export async function redisStats(url: string): Promise<RedisStats> {
  const r = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true, enableReadyCheck: false });
  try {
    await r.connect();
    const text = await r.info('all');
    const calls: Record<string, number> = {};
    for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
      if (m[1] && m[2]) calls[m[1]] = Number(m[2]);
    }
    const num = (k: string): number => Number(new RegExp(`^${k}:(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
    return { calls, netIn: num('total_net_input_bytes'), netOut: num('total_net_output_bytes'), usedMemory: num('used_memory') };
  } finally {
    r.disconnect();
  }
}

export interface RedisDelta {
  /** Every command call between the two snapshots, the runner's own INFO excluded. */
  total: number;
  byCommand: Array<[string, number]>;
  netIn: number;
  netOut: number;
  usedMemory: number;
}

const OWN = new Set(['info', 'client|setinfo', 'client|setname']);

export function redisDelta(a: RedisStats, b: RedisStats): RedisDelta {
  const by: Array<[string, number]> = [];
  for (const [k, v] of Object.entries(b.calls)) {
    if (OWN.has(k)) continue;
    const d = v - (a.calls[k] ?? 0);
    if (d > 0) by.push([k, d]);
  }
  by.sort((x, y) => y[1] - x[1]);
  return {
    total: by.reduce((s, [, v]) => s + v, 0),
    byCommand: by,
    netIn: b.netIn - a.netIn,
    netOut: b.netOut - a.netOut,
    usedMemory: b.usedMemory - a.usedMemory,
  };
}
