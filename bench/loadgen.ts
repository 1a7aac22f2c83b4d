/**
 * The load generator: a separate process (so it never shares the broker's event loop), started by
 * bench/run.ts as `node --conditions=parley-source --import tsx bench/loadgen.ts <spec.json>`.
 * It reports JSON lines on stdout: events while it runs and a final `{"result": ...}`.
 * In `conns` mode it holds its connections until it reads `close` on stdin.
 *
 * Bounded: every loop stops at a count and a deadline; every address must be in 127.0.0.0/8.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { decode, encode, newClientMsgId } from '@parley/client-sdk/protocol';
import { Hist } from './lib/hist.js';
import { LiteClient, type OnPublish } from './lib/mqtt-lite.js';
import {
  assertLoopback, type ConnsResult, type ConnsSpec, type DrainResult, type DrainSpec, type Endpoint,
  type GroupPhase, type GroupPhaseResult, type GroupResult, type GroupSpec,
  type LoadgenEvent, type RelayResult, type RelaySpec, type Spec,
} from './lib/loadgen-spec.js';
import { PHASE_MEASURE, PHASE_WARMUP, parleyPayload, rawPayload, readParley, readRaw } from './lib/payload.js';

const emit = (o: LoadgenEvent | { result: unknown } | { error: string }): void => {
  process.stdout.write(JSON.stringify(o) + '\n');
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(pred: () => boolean, deadline: number, stepMs = 2): Promise<boolean> {
  while (!pred()) {
    if (performance.now() > deadline) return false;
    await sleep(stepMs);
  }
  return true;
}

function checkEndpoint(e: Endpoint): void {
  assertLoopback(e.host);
  if (e.localAddress) assertLoopback(e.localAddress);
}

function connect(e: Endpoint, clean: boolean, onPublish?: OnPublish): Promise<LiteClient> {
  return LiteClient.connect(
    {
      host: e.host, port: e.port, clientId: e.clientId, clean, keepalive: 60,
      ...(e.localAddress ? { localAddress: e.localAddress } : {}),
      ...(e.username !== undefined ? { username: e.username } : {}),
      ...(e.password !== undefined ? { password: e.password } : {}),
    },
    onPublish,
  );
}

/** Corks a socket until the end of this tick, so a burst of publishes leaves in one write. */
function corkTick(c: LiteClient): void {
  if (c.socket.writableCorked > 0) return;
  c.socket.cork();
  process.nextTick(() => c.socket.uncork());
}

// ---------------------------------------------------------------------------------------------

async function relay(s: RelaySpec): Promise<RelayResult> {
  for (const p of s.pairs) {
    checkEndpoint(p.pub);
    checkEndpoint(p.sub);
  }
  const read = s.flavor === 'parley' ? readParley : readRaw;
  const hist = new Hist();
  const ackHist = new Hist();
  const sent = [0, 0];
  const received = [0, 0];
  let acked = 0;
  let duplicates = 0;
  let skipped = 0;
  let other = 0;
  let misordered = 0;
  let lastRecvAt = 0;

  interface Live { pub: LiteClient; sub: LiteClient; topic: string; to: string; seq: number; lastSeq: number; lastTs: number }
  const live: Live[] = [];
  for (const p of s.pairs) {
    const entry = { topic: p.pubTopic, to: p.to ?? '', seq: 0, lastSeq: 0, lastTs: 0 } as Live;
    entry.sub = await connect(p.sub, s.clean, (_topic, payload) => {
      const r = read(payload);
      if (!r) {
        other++;
        return;
      }
      if (r.seq <= entry.lastSeq) duplicates++;
      else {
        // A later seq for a message sent earlier: the chat's order is not the send order.
        if (r.ts < entry.lastTs) misordered++;
        entry.lastSeq = r.seq;
        entry.lastTs = r.ts;
      }
      const now = performance.now();
      received[r.phase === PHASE_MEASURE ? 1 : 0]!++;
      if (r.phase === PHASE_MEASURE) {
        hist.add(now - r.ts);
        lastRecvAt = now;
      }
    });
    await entry.sub.subscribe(p.subTopic, 1);
    entry.pub = await connect(p.pub, s.clean, () => {
      other++;
    });
    if (p.pubInbox) await entry.pub.subscribe(p.pubInbox, 1);
    live.push(entry);
  }

  let phase = PHASE_WARMUP;
  let running = false;
  const onAck = (e: Live, t: number, ph: number): void => {
    acked++;
    if (ph === PHASE_MEASURE) ackHist.add(performance.now() - t);
    if (running && s.rate === undefined) pump(e);
  };
  const sendOne = (e: Live): void => {
    e.seq++;
    const ph = phase;
    const payload = s.flavor === 'parley' ? parleyPayload(s.payloadBytes, ph, e.to) : rawPayload(s.payloadBytes, ph, e.seq);
    sent[ph === PHASE_MEASURE ? 1 : 0]!++;
    const t = performance.now();
    e.pub.publish(e.topic, payload, 1, () => onAck(e, t, ph));
  };
  function pump(e: Live): void {
    if (e.pub.closed) return;
    corkTick(e.pub);
    while (running && e.pub.inFlight() < s.window) sendOne(e);
  }

  const runPhase = async (ph: number, ms: number): Promise<number> => {
    phase = ph;
    running = true;
    const t0 = performance.now();
    let timer: ReturnType<typeof setInterval> | null = null;
    if (s.rate === undefined) {
      for (const e of live) pump(e);
    } else {
      let total = 0;
      let rr = 0;
      const rate = s.rate;
      timer = setInterval(() => {
        const due = Math.floor((rate * (performance.now() - t0)) / 1000) - total;
        for (let k = 0; k < due; k++) {
          const e = live[rr++ % live.length]!;
          total++;
          if (e.pub.inFlight() >= s.window || e.pub.closed) {
            if (ph === PHASE_MEASURE) skipped++;
            continue;
          }
          sendOne(e);
        }
      }, 1);
    }
    await sleep(ms);
    running = false;
    if (timer) clearInterval(timer);
    return performance.now() - t0;
  };

  if (s.warmupMs > 0) {
    await runPhase(PHASE_WARMUP, s.warmupMs);
    await until(() => received[0]! >= sent[0]!, performance.now() + s.drainTimeoutMs);
  }
  emit({ event: 'measure-start', t: Date.now() });
  const cpu0 = process.cpuUsage();
  const tStart = performance.now();
  const publishMs = await runPhase(PHASE_MEASURE, s.durationMs);
  const drained = await until(() => received[1]! >= sent[1]!, performance.now() + s.drainTimeoutMs);
  const elapsedMs = (drained ? lastRecvAt : performance.now()) - tStart;
  emit({ event: 'measure-end', t: Date.now() });
  const cpu = process.cpuUsage(cpu0);
  await Promise.all(live.flatMap((e) => [e.pub.end(), e.sub.end()]));
  return {
    sent: sent[1]!, acked, received: received[1]!, duplicates, skipped, publishMs, elapsedMs,
    cpuMs: (cpu.user + cpu.system) / 1000, latency: hist.toJSON(), ackLatency: ackHist.toJSON(), warmupSent: sent[0]!, warmupReceived: received[0]!, otherEnvelopes: other, misordered,
  };
}

// ---------------------------------------------------------------------------------------------

async function drain(s: DrainSpec): Promise<DrainResult> {
  checkEndpoint(s.pub);
  checkEndpoint(s.sub);
  const deadline = performance.now() + s.timeoutMs;
  // 1. The subscriber creates its persistent session and goes away.
  const sub1 = await connect(s.sub, false);
  await sub1.subscribe(s.subTopic, 1);
  await sub1.end();

  // 2. `count` messages are published (and, for Parley, stored) while it is away.
  let stored = 0;
  const pub = await connect(s.pub, s.flavor !== 'parley', (_t, payload) => {
    if (s.flavor !== 'parley') return;
    try {
      const env = decode(payload);
      if (env.kind === 'stored') stored += 1 + (env.more?.length ?? 0);
    } catch { /* not an envelope */ }
  });
  if (s.pubInbox) await pub.subscribe(s.pubInbox, 1);
  let sent = 0;
  let acked = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      corkTick(pub);
      while (sent < s.count && pub.inFlight() < s.window && !pub.closed) {
        sent++;
        const payload = s.flavor === 'parley' ? parleyPayload(s.payloadBytes, PHASE_MEASURE, s.to ?? '') : rawPayload(s.payloadBytes, PHASE_MEASURE, sent);
        pub.publish(s.pubTopic, payload, 1, () => {
          acked++;
          if (acked >= s.count) resolve();
          else pump();
        });
      }
    };
    pump();
    void until(() => performance.now() > deadline || pub.closed, Infinity, 50).then(() => resolve());
  });
  const publishMs = performance.now() - t0;
  if (s.flavor === 'parley') await until(() => stored >= s.count, deadline, 5);
  const queuedMs = performance.now() - t0;
  await pub.end();
  await sleep(200); // let the last writes settle before the clock starts

  // 3. The subscriber comes back; the clock runs from CONNECT to the last queued message.
  let received = 0;
  let duplicates = 0;
  let lastSeq = 0;
  let firstAt = 0;
  let lastAt = 0;
  const read = s.flavor === 'parley' ? readParley : readRaw;
  emit({ event: 'measure-start', t: Date.now() });
  const t1 = performance.now();
  const sub2 = await connect(s.sub, false, (_t, payload) => {
    const r = read(payload);
    if (!r) return;
    if (r.seq <= lastSeq) duplicates++;
    else lastSeq = r.seq;
    received++;
    lastAt = performance.now();
    if (received === 1) firstAt = lastAt;
  });
  const connackMs = performance.now() - t1;
  await until(() => received >= s.count, performance.now() + s.timeoutMs, 2);
  emit({ event: 'measure-end', t: Date.now() });
  const sessionPresent = sub2.sessionPresent;
  await sub2.end();
  return {
    count: s.count, publishMs, queuedMs, sessionPresent, connackMs,
    firstMs: firstAt ? firstAt - t1 : NaN,
    drainMs: received >= s.count ? lastAt - t1 : NaN,
    received, duplicates,
  };
}

// ---------------------------------------------------------------------------------------------

async function conns(s: ConnsSpec): Promise<ConnsResult> {
  assertLoopback(s.host);
  for (const a of s.localAddresses) assertLoopback(a);
  const open: LiteClient[] = [];
  let failed = 0;
  let firstError: string | undefined;
  let next = 0;
  const t0 = performance.now();
  const deadline = t0 + s.timeoutMs;
  const worker = async (): Promise<void> => {
    while (next < s.clients.length && performance.now() < deadline) {
      const i = next++;
      const c = s.clients[i]!;
      const addr = s.localAddresses[i % s.localAddresses.length];
      try {
        const cl = await LiteClient.connect({
          host: s.host, port: s.port, clientId: c.clientId, clean: s.clean, keepalive: s.keepalive,
          ...(addr ? { localAddress: addr } : {}),
          ...(c.username !== undefined ? { username: c.username } : {}),
          ...(c.password !== undefined ? { password: c.password } : {}),
          connectTimeoutMs: 30_000,
        });
        open.push(cl);
        await cl.subscribe(c.topic, 1);
      } catch (err) {
        failed++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, s.concurrency) }, worker));
  const connectMs = performance.now() - t0;
  const established = open.filter((c) => !c.closed).length;
  emit({ event: 'established', established, failed, connectMs });

  // Hold until the runner has measured the broker, then close.
  await new Promise<void>((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (l) => {
      if (l.trim() === 'close') resolve();
    });
    rl.on('close', () => resolve());
    setTimeout(resolve, s.holdMaxMs).unref();
  });
  const stillOpen = open.filter((c) => !c.closed).length;
  for (const c of open) c.destroy();
  return { attempted: Math.min(next, s.clients.length), established, failed, connectMs, stillOpen, ...(firstError ? { firstError } : {}) };
}

// ---------------------------------------------------------------------------------------------

/** Group body: 'G', the message index (10 digits), padding. */
const GROUP_IDX_DIGITS = 10;

function groupPayloads(s: GroupSpec): { make: (idx: number) => Buffer; read: (p: Buffer) => number } {
  if (s.flavor === 'raw') {
    return {
      make: (idx) => rawPayload(s.payloadBytes, PHASE_MEASURE, idx),
      read: (p) => (p.length >= 13 ? p.readUInt32LE(9) : -1),
    };
  }
  const chatId = s.chatId ?? '';
  const body = (idx: number, pad: number): string => 'G' + String(idx).padStart(GROUP_IDX_DIGITS, '0') + 'x'.repeat(pad);
  const base = encode({ kind: 'send', clientMsgId: newClientMsgId(), to: chatId, body: body(0, 0) }).length;
  const pad = Math.max(0, s.payloadBytes - base);
  return {
    make: (idx) => Buffer.from(encode({ kind: 'send', clientMsgId: newClientMsgId(), to: chatId, body: body(idx, pad) })),
    read: (p) => {
      let env;
      try {
        env = decode(p);
      } catch {
        return -2;
      }
      if (env.kind === 'stored') return -3;
      // Delivered/read news for the sender: a `tally` in a group (protocol v2), a `receipt` in 1:1.
      if (env.kind === 'receipt' || env.kind === 'tally') return -4;
      if (env.kind !== 'msg' || env.chatId !== chatId || typeof env.body !== 'string' || env.body[0] !== 'G') return -2;
      return Number(env.body.slice(1, 1 + GROUP_IDX_DIGITS));
    },
  };
}

async function group(s: GroupSpec): Promise<GroupResult> {
  assertLoopback(s.host);
  for (const a of s.localAddresses) assertLoopback(a);
  if (s.members.length < 2) throw new Error('a group needs at least two members');
  const { make, read } = groupPayloads(s);
  const max = s.maxMessages;
  // Receivers: every member but the publisher (Parley), or every member (raw, selfDelivery).
  const receiverOf = s.members.map((_, i) => (i === 0 && !s.selfDelivery ? -1 : i - (s.selfDelivery ? 0 : 1)));
  const nReceivers = s.members.length - (s.selfDelivery ? 0 : 1);
  const seen = Array.from({ length: nReceivers }, () => new Uint8Array(max));
  const lastIdx = new Int32Array(nReceivers).fill(-1);
  const sentAt = new Float64Array(max);
  const got = new Uint32Array(max);
  const phaseOf = new Uint8Array(max);
  let next = 0;

  interface Acc {
    def: GroupPhase; sent: number; acked: number; delivered: number; duplicates: number; outOfOrder: number;
    complete: number; lastDelivery: number; firstPublish: number; stored: number; receipts: number;
    toLast: Hist; toFirst: Hist; each: Hist;
  }
  const accs: Acc[] = s.phases.map((def) => ({
    def, sent: 0, acked: 0, delivered: 0, duplicates: 0, outOfOrder: 0, complete: 0, lastDelivery: 0, firstPublish: 0,
    stored: 0, receipts: 0, toLast: new Hist(), toFirst: new Hist(), each: new Hist(),
  }));
  let current = 0;
  let outstanding = 0; // published in the current phase and not yet at every receiver
  let onComplete: (() => void) | null = null;

  const deliver = (r: number, payload: Buffer): void => {
    const idx = read(payload);
    if (idx < 0) {
      if (idx === -3) accs[current]!.stored++;
      else if (idx === -4) accs[current]!.receipts++;
      return;
    }
    if (idx >= next) return; // not one of ours
    const acc = accs[phaseOf[idx]!]!;
    const bm = seen[r]!;
    if (bm[idx]) {
      acc.duplicates++;
      return;
    }
    bm[idx] = 1;
    if (idx < lastIdx[r]!) acc.outOfOrder++;
    else lastIdx[r] = idx;
    const now = performance.now();
    acc.delivered++;
    acc.each.add(now - sentAt[idx]!);
    acc.lastDelivery = now;
    if (++got[idx]! === 1) acc.toFirst.add(now - sentAt[idx]!);
    if (got[idx] === nReceivers) {
      acc.complete++;
      acc.toLast.add(now - sentAt[idx]!);
      if (phaseOf[idx] === current) {
        outstanding--;
        onComplete?.();
      }
    }
  };

  // Connect everyone (bounded concurrency), then subscribe.
  const clients: LiteClient[] = new Array<LiteClient>(s.members.length);
  const t0 = performance.now();
  let nextConn = 0;
  let failed = 0;
  let firstError: string | undefined;
  const connector = async (): Promise<void> => {
    while (nextConn < s.members.length) {
      const i = nextConn++;
      const m = s.members[i]!;
      const r = receiverOf[i]!;
      const addr = s.localAddresses[i % s.localAddresses.length];
      try {
        const c = await LiteClient.connect({
          host: s.host, port: s.port, clientId: m.clientId, clean: s.clean, keepalive: 60, connectTimeoutMs: 30_000,
          ...(addr ? { localAddress: addr } : {}),
          ...(m.username !== undefined ? { username: m.username } : {}),
          ...(m.password !== undefined ? { password: m.password } : {}),
        }, (_t, payload) => {
          if (r >= 0) deliver(r, payload);
          else if (s.flavor === 'parley') {
            const k = read(payload);
            if (k === -3) accs[current]!.stored++;
            else if (k === -4) accs[current]!.receipts++;
          }
        });
        clients[i] = c;
        await c.subscribe(s.flavor === 'parley' ? `inbox/${m.clientId}` : s.topic ?? '', 1);
      } catch (err) {
        failed++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, s.connectConcurrency) }, connector));
  const connectMs = performance.now() - t0;
  const connected = clients.filter((c) => c && !c.closed).length;
  emit({ event: 'established', established: connected, failed, connectMs });
  if (failed > 0 || connected < s.members.length) {
    for (const c of clients) c?.destroy();
    throw new Error(`connected ${connected} of ${s.members.length} members: ${firstError ?? 'closed'}`);
  }
  const pub = clients[0]!;
  const pubTopic = s.flavor === 'parley' ? `outbox/${s.members[0]!.clientId}` : s.topic ?? '';

  let stopRequested = false;
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (l) => {
    if (l.trim() === 'stop') stopRequested = true;
  });

  let capped: boolean;
  const sendOne = (p: number): boolean => {
    if (next >= max || pub.closed) {
      capped = true;
      return false;
    }
    const idx = next++;
    const acc = accs[p]!;
    phaseOf[idx] = p;
    const payload = make(idx);
    const t = performance.now();
    sentAt[idx] = t;
    if (acc.sent === 0) acc.firstPublish = t;
    acc.sent++;
    outstanding++;
    pub.publish(pubTopic, payload, 1, () => {
      acc.acked++;
      onComplete?.();
    });
    return true;
  };

  const results: GroupPhaseResult[] = [];
  for (let p = 0; p < accs.length; p++) {
    const acc = accs[p]!;
    const def = acc.def;
    current = p;
    outstanding = 0;
    capped = false;
    emit({ event: 'phase', name: def.name, state: 'start', t: Date.now() });
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    if (def.kind === 'window') {
      let running = true;
      const pump = (): void => {
        if (!running) return;
        corkTick(pub);
        while (running && outstanding < def.window && pub.inFlight() < def.window) {
          if (!sendOne(p)) {
            running = false;
            break;
          }
        }
      };
      onComplete = pump;
      pump();
      await until(() => !running, start + def.durationMs, 20);
      running = false;
      onComplete = null;
    } else {
      // Paced, open loop: the n-th send is due at start + n × interval, whatever came back.
      const limit = def.kind === 'paced' ? def.count : Infinity;
      const deadline = def.kind === 'paced-until-stop' ? start + def.maxMs : Infinity;
      for (let k = 0; k < limit; k++) {
        if (stopRequested && def.kind === 'paced-until-stop') break;
        if (performance.now() > deadline) break;
        const wait = start + k * def.intervalMs - performance.now();
        if (wait > 0) await sleep(wait);
        if (stopRequested && def.kind === 'paced-until-stop') break;
        if (!sendOne(p)) break;
      }
    }
    const publishMs = performance.now() - start;
    const drained = await until(() => acc.complete >= acc.sent, performance.now() + s.drainTimeoutMs, 5);
    const cpu = process.cpuUsage(cpu0);
    emit({ event: 'phase', name: def.name, state: 'end', t: Date.now() });
    results.push({
      name: def.name, kind: def.kind, sent: acc.sent, acked: acc.acked, receivers: nReceivers, expected: acc.sent * nReceivers,
      delivered: acc.delivered, duplicates: acc.duplicates, outOfOrder: acc.outOfOrder, complete: acc.complete,
      publishMs, elapsedMs: (drained ? acc.lastDelivery : performance.now()) - (acc.firstPublish || start),
      toLast: acc.toLast.toJSON(), toFirst: acc.toFirst.toJSON(), each: acc.each.toJSON(), capped,
      loadgenCpuMs: (cpu.user + cpu.system) / 1000, stored: acc.stored, receipts: acc.receipts,
    });
    // Let the acknowledgements and receipts of this phase settle before the next one.
    if (p < accs.length - 1) await sleep(300);
  }
  rl.close();
  await Promise.all(clients.map((c) => c.end()));
  return { connected, connectMs, phases: results };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const file = process.argv[2];
  if (!file) throw new Error('usage: loadgen.ts <spec.json>');
  const spec = JSON.parse(readFileSync(file, 'utf8')) as Spec;
  let result: unknown;
  switch (spec.mode) {
    case 'relay': result = await relay(spec); break;
    case 'drain': result = await drain(spec); break;
    case 'conns': result = await conns(spec); break;
    case 'group': result = await group(spec); break;
  }
  emit({ result });
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    emit({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    process.exit(1);
  },
);
