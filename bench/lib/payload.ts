/**
 * Benchmark payloads. Raw: [0..8) send time (performance.now(), ms, float64), [8] phase, [9..13)
 * per-pair sequence number, the rest zeros. Parley: a `send` envelope whose text body starts with
 * the phase letter and the send time in microseconds (15 digits), padded with `x` so that the
 * whole envelope is about `size` bytes. Publisher and subscriber of a pair live in one process, so
 * they share the performance.now() clock.
 */
import { performance } from 'node:perf_hooks';
import { decode, encode, newClientMsgId } from '@parley/client-sdk/protocol';

export const PHASE_WARMUP = 0;
export const PHASE_MEASURE = 1;

export function rawPayload(size: number, phase: number, seq: number): Buffer {
  const b = Buffer.alloc(Math.max(13, size));
  b.writeDoubleLE(performance.now(), 0);
  b[8] = phase;
  b.writeUInt32LE(seq >>> 0, 9);
  return b;
}

export function readRaw(p: Buffer): { ts: number; phase: number; seq: number } | null {
  if (p.length < 13) return null;
  return { ts: p.readDoubleLE(0), phase: p[8] ?? 0, seq: p.readUInt32LE(9) };
}

const padCache = new Map<string, number>();

function body(phase: number, pad: number): string {
  const us = Math.round(performance.now() * 1000);
  return (phase === PHASE_MEASURE ? 'm' : 'w') + String(us).padStart(15, '0') + 'x'.repeat(pad);
}

export function parleyPayload(size: number, phase: number, to: string): Buffer {
  const key = `${size}|${to.length}`;
  let pad = padCache.get(key);
  if (pad === undefined) {
    const base = encode({ kind: 'send', clientMsgId: newClientMsgId(), to, body: body(phase, 0) }).length;
    pad = Math.max(0, size - base);
    padCache.set(key, pad);
  }
  return Buffer.from(encode({ kind: 'send', clientMsgId: newClientMsgId(), to, body: body(phase, pad) }));
}

/** For a `msg` envelope: send time, phase and seq; null for every other envelope. */
export function readParley(p: Buffer): { ts: number; phase: number; seq: number } | null {
  let env;
  try {
    env = decode(p);
  } catch {
    return null;
  }
  if (env.kind !== 'msg' || typeof env.body !== 'string') return null;
  const us = Number(env.body.slice(1, 16));
  return { ts: us / 1000, phase: env.body[0] === 'm' ? PHASE_MEASURE : PHASE_WARMUP, seq: env.seq };
}
