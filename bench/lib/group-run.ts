/**
 * Group loads: one publisher and N receivers in one load generator process (bench/loadgen.ts,
 * mode `group`), against Mosquitto (one topic, N subscribers) or Parley (a group chat of N
 * members, one device each). The members and their devices are made in bulk in the platform's
 * SQLite file through the store port (a thousand SMS registrations would only test the rate
 * limits), the group through the API (createChat), as the tests do
 * (test/integration/group-fanout.test.ts). Used by the group and mixed scenarios.
 */
import { join } from 'node:path';
import { newId } from '@parley/client-sdk/protocol';
import { createSqliteStore } from '../../services/src/store/sqlite.js';
import { newDeviceToken } from '../../services/src/auth/secrets.js';
import { Hist, type LatencySummary } from './hist.js';
import type { Flavor, GroupMember, GroupPhase, GroupPhaseResult, GroupResult, GroupSpec } from './loadgen-spec.js';
import { cpuDelta, cpuSnapshot, type CpuSnapshot } from './proc.js';
import type { ParleyTarget, Target } from './servers.js';
import type { BenchContext } from './types.js';

/** Source addresses for the members' connections (the ephemeral port range is then no limit). */
export const GROUP_ADDRESSES = Array.from({ length: 16 }, (_, i) => `127.0.0.${i + 2}`);

export interface GroupSetup {
  flavor: Flavor;
  members: GroupMember[];
  /** Parley: the group chat. */
  chatId?: string;
  /** Raw: the topic everyone subscribes to. */
  topic?: string;
  /** Raw: the publisher is a subscriber too (its copy counts). */
  selfDelivery: boolean;
  /** Deliveries per message. */
  receivers: number;
  setupMs: number;
}

let phoneSeq = 0;
const runTag = String(Math.floor(Math.random() * 900) + 100);

/** Makes `n` users with one device each and a group chat of all of them in Parley's store. */
async function parleyGroup(t: ParleyTarget, n: number): Promise<{ chatId: string; members: GroupMember[] }> {
  // A second handle on the platform's SQLite file (WAL: several processes may open it).
  const store = createSqliteStore({ file: join(t.dataDir, 'parley.sqlite') });
  await store.init();
  try {
    const members: Array<GroupMember & { userId: string }> = [];
    for (let i = 0; i < n; i++) {
      const phone = `+1444${runTag}${String(++phoneSeq).padStart(7, '0')}`;
      const { user } = await store.getOrCreateUserByPhone(phone, newId('user'), Date.now());
      const deviceId = newId('device');
      const { token, tokenHash } = newDeviceToken(deviceId);
      await store.addDevice({ deviceId, userId: user.userId, tokenHash, name: `bench member ${i}`, createdAt: Date.now() }, { maxActive: 5, historyDepth: 0 });
      members.push({ userId: user.userId, clientId: deviceId, username: deviceId, password: token });
    }
    // The group itself through the public API (createChat), as a client makes it.
    const res = await fetch(`${t.httpUrl}/v1/chats`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${members[0]!.password}` },
      body: JSON.stringify({ name: 'bench group', members: members.slice(1).map((m) => m.userId) }),
    });
    const created = await res.json() as { chatId?: string };
    if (res.status !== 201 || !created.chatId) throw new Error(`createChat failed: ${res.status} ${JSON.stringify(created)}`);
    const chatId = created.chatId;
    return { chatId, members: members.map(({ clientId, username, password }) => ({ clientId, username, password })) };
  } finally {
    await store.close();
  }
}

/** A group of `n` members on `t`: Parley members in the store, or `n` subscribers of one topic. */
export async function setupGroup(t: Target, n: number): Promise<GroupSetup> {
  const t0 = Date.now();
  if (t.kind === 'parley') {
    const g = await parleyGroup(t as ParleyTarget, n);
    return { flavor: 'parley', ...g, selfDelivery: false, receivers: n - 1, setupMs: Date.now() - t0 };
  }
  const run = Math.random().toString(36).slice(2, 8);
  return {
    flavor: 'raw', topic: `bench/group/${run}`, selfDelivery: true, receivers: n, setupMs: Date.now() - t0,
    members: Array.from({ length: n }, (_, i) => ({ clientId: `grp-${run}-${i}` })),
  };
}

export interface GroupPhaseOutcome extends Omit<GroupPhaseResult, 'toLast' | 'toFirst' | 'each'> {
  toLast: LatencySummary;
  toFirst: LatencySummary;
  each: LatencySummary;
  /** Deliveries per second: deliveries / (first publish to last delivery). */
  rate: number;
  /** Messages delivered to every receiver per second, over the same span. */
  msgRate: number;
  /** Server CPU ms per role over the phase. */
  cpuMs: Record<string, number>;
  serverCpuMs: number;
  /** Wall time between the phase's start and end events. */
  wallMs: number;
}

export interface GroupOutcome {
  label: string;
  kind: Target['kind'];
  members: number;
  receivers: number;
  setupMs: number;
  connectMs: number;
  phases: GroupPhaseOutcome[];
}

export interface GroupLoadOptions {
  payloadBytes: number;
  maxMessages: number;
  drainTimeoutMs: number;
}

export interface GroupLoad {
  /** Resolves once every member is connected and subscribed. */
  established: Promise<void>;
  /** Resolves when the phase has started. */
  phaseStarted(name: string): Promise<void>;
  /** Ends a `paced-until-stop` phase. */
  stop(): void;
  done: Promise<GroupOutcome>;
}

function phaseBudgetMs(p: GroupPhase): number {
  switch (p.kind) {
    case 'paced': return p.intervalMs * p.count;
    case 'window': return p.durationMs;
    case 'paced-until-stop': return p.maxMs;
  }
}

/** Starts a group load generator on `setup`; CPU of every server process is read at each phase's edges. */
export function startGroupLoad(ctx: BenchContext, t: Target, setup: GroupSetup, phases: GroupPhase[], o: GroupLoadOptions): GroupLoad {
  const spec: GroupSpec = {
    mode: 'group', flavor: setup.flavor, host: t.host, port: t.port, localAddresses: GROUP_ADDRESSES,
    members: setup.members,
    ...(setup.topic ? { topic: setup.topic } : {}),
    ...(setup.chatId ? { chatId: setup.chatId } : {}),
    selfDelivery: setup.selfDelivery, payloadBytes: o.payloadBytes,
    // As in the relay: Parley devices keep their sessions; the raw brokers get clean sessions.
    clean: t.kind !== 'parley',
    connectConcurrency: 64, phases, maxMessages: o.maxMessages, drainTimeoutMs: o.drainTimeoutMs,
  };
  const marks = new Map<string, { a?: CpuSnapshot; b?: CpuSnapshot; ta: number; tb: number }>();
  const waiters = new Map<string, Array<() => void>>();
  let resolveEstablished!: () => void;
  const established = new Promise<void>((r) => (resolveEstablished = r));
  const timeout = 180_000 + phases.reduce((s, p) => s + phaseBudgetMs(p) + o.drainTimeoutMs + 1000, 0);
  const run = ctx.loadgen<GroupResult>(spec, (e) => {
    if (e.event === 'established') resolveEstablished();
    if (e.event !== 'phase') return;
    const m = marks.get(e.name) ?? { ta: 0, tb: 0 };
    marks.set(e.name, m);
    if (e.state === 'start') {
      m.a = cpuSnapshot(t.procs);
      m.ta = Date.now();
      for (const w of waiters.get(e.name) ?? []) w();
      waiters.delete(e.name);
    } else {
      m.b = cpuSnapshot(t.procs);
      m.tb = Date.now();
    }
  }, timeout);
  const failed = run.result.then(() => new Promise<never>(() => undefined));
  const done = run.result.then((r): GroupOutcome => ({
    label: t.label, kind: t.kind, members: setup.members.length, receivers: setup.receivers, setupMs: setup.setupMs, connectMs: r.connectMs,
    phases: r.phases.map((p) => {
      const m = marks.get(p.name);
      const cpuMs = m?.a && m.b ? cpuDelta(t.procs, m.a, m.b) : {};
      const secs = p.elapsedMs / 1000;
      return {
        ...p,
        toLast: Hist.from(p.toLast).summary(), toFirst: Hist.from(p.toFirst).summary(), each: Hist.from(p.each).summary(),
        rate: secs > 0 ? p.delivered / secs : NaN, msgRate: secs > 0 ? p.complete / secs : NaN,
        cpuMs, serverCpuMs: Object.values(cpuMs).reduce((s, v) => s + v, 0), wallMs: m ? m.tb - m.ta : NaN,
      };
    }),
  }));
  return {
    established: Promise.race([established, failed]),
    phaseStarted: (name) => Promise.race([
      new Promise<void>((r) => {
        if (marks.get(name)?.a) return r();
        waiters.set(name, [...(waiters.get(name) ?? []), r]);
      }),
      failed,
    ]),
    stop: () => run.send('stop'),
    done,
  };
}

/** One phase of an outcome, by name. */
export function phase(o: GroupOutcome | undefined, name: string): GroupPhaseOutcome | undefined {
  return o?.phases.find((p) => p.name === name);
}
