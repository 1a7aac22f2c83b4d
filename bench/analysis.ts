/**
 * The "gaps and where the time and bytes go" section of docs/BENCHMARKS.md. The reasoning is
 * fixed (it follows from Parley's code path, read in services/, broker/ and
 * node_modules/aedes-persistence-redis); the numbers come from the run being reported, so the text
 * stays true when the figures move. A paragraph whose figures are missing is left out.
 */
import { readFileSync } from 'node:fs';
import { int, kib, ms, num } from './lib/format.js';
import { phase, type GroupOutcome, type GroupPhaseOutcome } from './lib/group-run.js';
import { FIGURE_ROWS, keyFigures, type Baseline, type KeyFigures } from './lib/history.js';
import type { RunRecord } from './lib/report.js';
import { WIRE_TARGET } from './scenarios/wire.js';

const BASELINE_FILE = new URL('./baseline.json', import.meta.url);

function loadBaseline(): Baseline | null {
  try {
    return JSON.parse(readFileSync(BASELINE_FILE, 'utf8')) as Baseline;
  } catch {
    return null;
  }
}

const fmtFigure = (v: number | undefined, f: (typeof FIGURE_ROWS)[number]['fmt']): string =>
  v === undefined || !Number.isFinite(v) ? '' : f === 'int' ? int(v) : f === 'ms' ? ms(v) : f === 'x' ? `${v.toFixed(2)}×` : num(v, 1);

/** The "Before and after" section: this run's key figures next to bench/baseline.json's. */
export function beforeAfter(records: RunRecord[], base: Baseline | null = loadBaseline()): string {
  if (!base) return '';
  const now: KeyFigures = keyFigures(records);
  const rows = FIGURE_ROWS.filter((r) => now[r.key] !== undefined && base.figures[r.key] !== undefined);
  if (!rows.length) return '';
  const out = ['### Before and after the changes to the durable path', ''];
  out.push(
    `The figures of the run reported on ${base.date} (${base.tree}) next to this run's. Changed since:`,
    '',
    ...base.changes.map((c) => `- ${c}`),
    '',
    '| figure | before | this run | change |',
    '|---|---:|---:|---|',
  );
  for (const r of rows) {
    const b = base.figures[r.key]!;
    const a = now[r.key]!;
    const better = r.lowerIsBetter ? a < b : a > b;
    const factor = b === 0 || a === 0 ? '' : r.lowerIsBetter ? b / a : a / b;
    const change = a === b ? 'same'
      : a === 0 || b === 0 ? (better ? 'better' : 'worse')
      : typeof factor === 'number' && Math.abs(Math.log(factor)) > Math.log(1.1)
        ? `${better ? 'better' : 'worse'} (${(factor >= 1 ? factor : 1 / factor).toFixed(factor >= 10 || factor <= 0.1 ? 0 : 1)}×)`
        : 'about the same';
    out.push(`| ${r.what} | ${fmtFigure(b, r.fmt)} | ${fmtFigure(a, r.fmt)} | ${change} |`);
  }
  out.push(
    '',
    'Absolute figures move with the load of this shared machine; the rows that divide by Mosquitto ' +
    'compare two brokers measured minutes apart in the same run, but move with Mosquitto\'s own figure ' +
    'too. Read the change column against what each row measures: throughput and drain move with the work ' +
    'per message, the latency rows with the number of sequential steps and how busy the two cores are.',
    '',
  );
  const worseRedis = (now.redisPerMsg ?? 0) > (base.figures.redisPerMsg ?? Infinity);
  if (worseRedis) {
    const cP = (records.find((r) => r.scenario.name === 'cost')?.report?.data?.outcomes as Outcome[] | undefined)?.find((o) => o.label === 'Parley');
    const jobs = cP ? per(cP, 'incr') : NaN;
    const cpuWorse = (now.costUs ?? 0) > (base.figures.costUs ?? Infinity);
    out.push(
      'Redis commands per message at a steady 1,000 msg/s rose: there the ingest batches hold only two or ' +
      'three messages (a batch leaves 1 ms after its first message, or as soon as the previous write is ' +
      'done), and with delivery engine v2 a batch becomes one `persist` job per shard it touches (up to 8), ' +
      'so with 20 chats spread over the shards almost every message is its own job' +
      (fin(jobs) ? ` (${num(jobs, 2)} BullMQ jobs per message, \`persist\` and \`acks\` together, counted by INCR)` : '') +
      ', and each job costs some 35–40 Redis commands (see "CPU and Redis work per message" below). ' +
      (cpuWorse
        ? 'The server CPU per message rose with them, Redis\' share most; the latency fell all the same, because ' +
          'the shards store in parallel and nothing waits for a per-device enqueue.'
        : 'The server CPU per message fell all the same; the ratio to Mosquitto moved with Mosquitto\'s own ' +
          'figure, which varies between runs on this machine.'),
      '',
    );
  }
  return out.join('\n');
}

interface Outcome {
  label: string;
  kind: string;
  rate: number;
  pubRate: number;
  received: number;
  cpuMs: Record<string, number>;
  cpuPerMsgUs: number;
  serverCpuMs?: number;
  elapsedMs: number;
  latency: { p50: number; p99: number };
  ackLatency?: { p50: number; p99: number };
  redis?: { total: number; perMsg: number; byCommand: Array<[string, number]>; netIn: number; netOut: number };
}

const data = (records: RunRecord[], name: string): Record<string, unknown> | undefined =>
  records.find((r) => r.scenario.name === name)?.report?.data;

const outcomes = (records: RunRecord[], name: string): Outcome[] => (data(records, name)?.outcomes as Outcome[] | undefined) ?? [];

const per = (o: Outcome, cmd: string): number => (o.redis?.byCommand.find(([c]) => c === cmd)?.[1] ?? 0) / o.received;

const fin = (...v: Array<number | undefined>): boolean => v.every((x) => typeof x === 'number' && Number.isFinite(x));

/** Redis commands aedes-persistence-redis and mqemitter-redis issue per QoS 1 envelope for one subscriber. */
const SESSION_CMDS_PER_ENVELOPE = 10;

/** How the group scenario's throughput window reads in prose. */
const GROUP_WINDOW_TEXT = 'a window of 50 messages not yet delivered everywhere';

export function analysis(records: RunRecord[]): string {
  const out: string[] = ['## Analysis: the gaps, and where the time and bytes go', ''];
  const ba = beforeAfter(records);
  if (ba) out.push(ba);
  const relay = outcomes(records, 'relay');
  const steady = outcomes(records, 'latency');
  const cost = outcomes(records, 'cost');
  const rMosq = relay.find((o) => o.kind === 'mosquitto');
  const rAedes = relay.find((o) => o.kind === 'aedes');
  const rParley = relay.find((o) => o.label === 'Parley');
  const sParley = steady.find((o) => o.label === 'Parley') ?? cost.find((o) => o.label === 'Parley');
  const sLow = steady.find((o) => o.label.startsWith('Parley @'));
  const sMosq = steady.find((o) => o.kind === 'mosquitto') ?? cost.find((o) => o.label === 'Mosquitto');

  // 1. Throughput.
  if (rParley && rMosq) {
    const jobsSat = per(rParley, 'incr');
    const jobsSteady = sParley ? per(sParley, 'incr') : NaN;
    const roles = Object.entries(rParley.cpuMs).filter(([r]) => r !== 'api').map(([r, v]) => `${r} ${num((v * 1000) / rParley.received, 0)} µs`).join(', ');
    const busy = (rParley.serverCpuMs ?? NaN) / rParley.elapsedMs;
    out.push('### Throughput: CPU per message', '');
    out.push(
      `In scenario 1 Parley's broker accepted (PUBACKed) ${int(rParley.pubRate)} msg/s and delivered ` +
      `${int(rParley.rate)} msg/s; what was accepted but not yet delivered waited in the \`persist\` queue, and the ` +
      `end-to-end latency (p50 ${ms(rParley.latency.p50)} ms) is mostly that queue. It is bounded: once the oldest ` +
      'waiting `persist` job is older than 2 s the brokers hold sent ticks (back-pressure, ' +
      'services/src/ingest-gate.ts), so each publisher\'s window of 50 unacknowledged messages slows it down ' +
      'instead of the queue growing for as long as the overload lasts. Plain ' +
      `Aedes relayed ${int(rAedes?.rate)} msg/s and Mosquitto ${int(rMosq.rate)} msg/s on the same machine with ` +
      'the same load generator, so neither the MQTT layer nor the load generator is the limit.',
      '',
      `The limit is CPU. At full load Parley used ${num(rParley.cpuPerMsgUs, 0)} µs of server CPU per delivered ` +
      `message (${roles}), ${num(rParley.cpuPerMsgUs / rMosq.cpuPerMsgUs, 0)}× Mosquitto's ${num(rMosq.cpuPerMsgUs, 0)} µs` +
      (fin(busy) ? `; its processes were busy ${Math.round(busy * 100)}% of one core in all` : '') +
      ', on a 2-core machine that also ran the load generator and other people\'s work. The group ' +
      'commit did its job there: adding a BullMQ job runs one INCR (its id), and Redis counted ' +
      (fin(jobsSat) ? `${num(jobsSat, 3)} per delivered message (≈ ${int(1 / jobsSat)} messages per job, \`persist\` and \`acks\` together)` : 'few') +
      ', so the per-job cost is amortised and what remains is per-message work: the `msg` itself travels on ' +
      'the delivery bus in one Redis PUBLISH per broker node and batch (engine v2: nothing per device in the ' +
      'Redis session store; `stored` is live only too), ' +
      `while each delivered message still causes about ${num(per(rParley, 'rpush'), 2)} envelopes through that store ` +
      '(the delivered `receipt`, RPUSH per message), each about ten Redis commands, a msgpack encode and ' +
      'decode, an MQTT write and a PUBACK; and the broker writes each `msg` and handles its PUBACK (see "CPU ' +
      'and Redis work per message" below). ' +
      (fin(jobsSteady) ? `At a steady 1,000 msg/s the batches are smaller (${num(jobsSteady, 2)} jobs per message), so the job overhead adds to that. ` : '') +
      'The ingest is sharded over the `persist-<n>` queues by chat (8 by default), each run one job at a time ' +
      'across the cluster (per-chat order), and a job takes the jobs waiting behind it in its queue into the ' +
      'same transaction (up to 2,000 messages); scenario 9 shows how two worker processes share the shards.',
      '',
    );
  }

  // 2. Latency.
  // Only with the latency scenario in the run (sParley may be the cost scenario's, which has no latencies).
  if (sParley && steady.includes(sParley)) {
    out.push('### Latency at 1,000 msg/s', '');
    const overloaded = sParley.rate < 950;
    out.push(
      (overloaded
        ? `At 1,000 msg/s Parley delivered ${int(sParley.rate)} msg/s over the measured window on this machine: ` +
          'the offered load was above what the pipeline sustained here, so the queue grew for the whole run ' +
          `and p50 (${ms(sParley.latency.p50)} ms) measures the backlog, not the pipeline. `
        : `At 1,000 msg/s Parley kept up (p50 ${ms(sParley.latency.p50)} ms, p99 ${ms(sParley.latency.p99)} ms)` +
          (fin(sParley.serverCpuMs) && sParley.elapsedMs > 0
            ? `, with its processes busy ${Math.round(((sParley.serverCpuMs ?? 0) / sParley.elapsedMs) * 100)}% of one core ` +
              'in all on a 2-core machine that also runs the load generator: most of the gap to the 5 ms target is ' +
              'each step waiting for a CPU, so it shrinks with the CPU per message (below). '
            : '. ')) +
      (sParley.ackLatency ? `The sent tick (PUBACK) came after p50 ${ms(sParley.ackLatency.p50)} ms, p99 ${ms(sParley.ackLatency.p99)} ms. ` : '') +
      (sLow
        ? `At ${sLow.label.replace(/^Parley @ /, '')}, which it sustains, the pipeline's own latency is p50 ` +
          `${ms(sLow.latency.p50)} ms, p99 ${ms(sLow.latency.p99)} ms` +
          (sLow.ackLatency ? ` (PUBACK p50 ${ms(sLow.ackLatency.p50)} ms)` : '') +
          (sMosq ? `, against Mosquitto's p50 ${ms(sMosq.latency.p50)} ms at 1,000 msg/s` : '') + '. '
        : '') +
      'A message crosses several sequential Redis round trips and two processes before the ' +
      'recipient has it: the group-commit wait (1 ms, or until the previous write is done) and the job add (the PUBACK), the worker\'s job ' +
      'fetch (and the read of the jobs waiting behind it), the SQLite transaction, the MGET of the recipients\' ' +
      'routes and the delivery-bus PUBLISH to the broker node that holds the recipient, whose delivery agent ' +
      'writes it to the socket (engine v2: no per-device enqueue in Redis and no SET of the packet before the write). ' +
      'Each hop is cheap alone; on a busy 2-core machine each also waits for a CPU.' +
      (sMosq?.ackLatency && sMosq.ackLatency.p50 > 5 && sMosq.latency.p50 < 1
        ? ` (Mosquitto's own PUBACK p50 of ${ms(sMosq.ackLatency.p50)} ms is Nagle's algorithm as well: this run ` +
          'uses Mosquitto\'s defaults, where `set_tcp_nodelay` is off, so a 4-byte PUBACK can wait for the ' +
          'publisher\'s delayed ACK; its deliveries, which the subscriber answers at once, are not delayed.)'
        : ''),
      '',
    );
  }

  // 2b. Packets split on the wire (Nagle + delayed ACK).
  const wd = data(records, 'wire') as { splitPackets?: number; stalledPackets?: number; brokerPackets?: number; worstSpreadMs?: number; exchangeMs?: number } | undefined;
  const nagle = !!wd?.stalledPackets;
  if (wd && nagle) {
    out.push('### A 40 ms stall on the broker\'s packets', '');
    out.push(
      `In scenario 5, ${wd.splitPackets} of the ${wd.brokerPackets} packets the broker sent arrived in more than one ` +
      `TCP segment, ${wd.stalledPackets} of them with the rest following up to ${ms(wd.worstSpreadMs)} ms after the first byte. ` +
      'mqtt-packet (Aedes\' writer) writes one MQTT packet as several small `stream.write` calls and relies on ' +
      '`cork()`/`uncork()` to hand them to the socket as one `writev`. In the tree measured here each ' +
      'connection is wrapped (the framing guard in broker/src/limits.ts) in a `Duplex` that has no `_writev`, ' +
      'so on uncork every piece becomes its own `socket.write`; accepted sockets keep Nagle\'s algorithm on ' +
      '(Node\'s default), so the first piece leaves at once and the rest waits for the client\'s delayed ACK ' +
      '(40 ms on Linux). The PUBACK (the sent tick) and each `msg`, `stored` and `receipt` can pay it: at low ' +
      'rates this stall, not the pipeline, is most of Parley\'s latency (a Redis MONITOR trace of one message ' +
      'at rest showed the worker\'s last command about 12 ms after the publish, and the device receiving it ' +
      'about 40 ms after that). The fix is small: ' +
      '`socket.setNoDelay(true)` on accepted sockets, and a `_writev` in the guard that passes the chunks on ' +
      'in one write.',
      '',
    );
  }

  // 3. CPU and Redis per message.
  const c = cost.find((o) => o.label === 'Parley') ?? sParley;
  const cm = cost.find((o) => o.label === 'Mosquitto') ?? sMosq;
  if (c?.redis && cm) {
    const env = per(c, 'rpush');
    const jobs = per(c, 'incr');
    const session = Math.min(c.redis.perMsg, env * SESSION_CMDS_PER_ENVELOPE);
    const roles = Object.entries(c.cpuMs).filter(([r]) => r !== 'api').map(([r, v]) => `${r} ${num((v * 1000) / c.received, 0)} µs`).join(', ');
    out.push('### CPU and Redis work per message', '');
    out.push(
      `Parley spent ${num(c.cpuPerMsgUs, 0)} µs of server CPU per delivered message (${roles}) against ` +
      `Mosquitto's ${num(cm.cpuPerMsgUs, 1)} µs, and issued ${num(c.redis.perMsg, 1)} Redis commands per message ` +
      `(${int(c.redis.netIn / c.received)} bytes into Redis and ${int(c.redis.netOut / c.received)} out). Where the commands come from:`,
      '',
      `- **Session queues: about ${num(session, 0)} per message.** Every QoS 1 envelope that goes through the ` +
      'Redis session store costs about ten commands in aedes-persistence-redis and mqemitter-redis: MSET, ' +
      'EXPIRE, EXPIRE, RPUSH and PUBLISH to enqueue it, SET when the broker sends it, GET, LREM, DECR and ' +
      `DEL when the device PUBACKs it; a delivered message causes ${num(env, 2)} such envelopes (RPUSH per ` +
      'message): the delivered `receipt` to the sender (one per chat per `acks` batch, which gathers for ' +
      '20 ms). The `msg` and the `stored` notice are not among them any more: with delivery engine v2 they ' +
      'go on the delivery bus (an MGET of the devices\' routes and one PUBLISH per broker node per batch), ' +
      'and the broker keeps their in-flight record in memory (broker/src/aedes-internals.ts); a device that ' +
      'was away reads its messages from the store, and its SDK resends sends still without `stored`.',
      `- **BullMQ: the rest, about ${num(Math.max(0, c.redis.perMsg - session), 0)} per message**, for ` +
      `${num(jobs, 2)} jobs per message (ingest \`persist\` jobs, one per shard a group-commit batch touches, and ` +
      '`acks` jobs for the delivered ticks), ' +
      (jobs > 0 ? `so about ${num(Math.max(0, c.redis.perMsg - session) / jobs, 0)} commands per job: ` : '') +
      'adding, starting and completing a job are Lua scripts (EVALSHA) whose HMSET, HINCRBY, XADD, ZADD, ' +
      'lock SET and DEL count here too, plus the workers\' polling.',
      '- aedes-persistence-redis\' client auto-pipelines (commands issued in one event-loop turn share a ' +
      'socket write), which removed most of the socket writes that led the first profiles; but every ' +
      'command is still one Redis executes, and the persistence awaits some in sequence (the GET before ' +
      'the LREM when a PUBACK arrives).',
      '',
      'CPU profiles of the split layout at full load with delivery engine v2 (`BENCH_CPU_PROF=<dir> npm run ' +
      'bench -- --quick --only relay`, summarised with `bench/profile-top.ts --from 3` to leave out start-up; ' +
      'the profiler slows everything, so read shares, not times; taken on 2026-12-01 just before the last ' +
      'hot-path commit, which cut the SQLite statements per message and per ack further):',
      '',
      '- **broker**: socket writes (`writeBuffer`, native) 15% of its busy time and Buffer work 5%: every ' +
      '`msg`, `stored` and PUBACK is its own write; garbage collection 10%; Aedes 7% and mqtt-packet 4% ' +
      '(packet objects, parsing, the QoS 1 bookkeeping); Parley\'s broker code 7% (the delivery agent, ' +
      'ACL, batching); BullMQ 5% (mostly `asJSON`, serialising each ingest job\'s data, which carries the ' +
      'envelope as base64) and ioredis 3%; aedes-persistence-redis 3% (receipts only, now).',
      '- **workers**: SQLite about a third (the `appendMessages`, `markDelivered` and `chatDevices` ' +
      'statements, `sqliteTransaction` itself 6%: BEGIN IMMEDIATE, COMMIT, WAL writes); garbage collection ' +
      '7%; BullMQ 7% and ioredis 6% (jobs, the routes MGET and the bus PUBLISH); cbor-x 4% (decoding each ' +
      'ingested `send`, encoding each `msg` once per chat); the delivery bus itself (framing) 2%. ' +
      'aedes-persistence-redis and msgpack-lite, which led the v1 profiles with a fifth of the workers\' ' +
      'time, are down to 3%: only receipts still go through them.',
      '- **at a steady 1,000 msg/s** batches hold one message per shard, so every message pays a BullMQ ' +
      'job (about 40 Redis commands, three Lua scripts) and a SQLite transaction of its own; that fixed ' +
      'cost, not the per-message work, is why the CPU per message there is twenty times the saturated ' +
      'figure.',
      '',
    );
  }

  // 4. Drain.
  const drain = (data(records, 'drain')?.outcomes as Array<{ label: string; kind: string; drainMs: number; received: number }> | undefined) ?? [];
  const dP = drain.find((d) => d.kind === 'parley');
  const dM = drain.find((d) => d.kind === 'mosquitto');
  if (dP && dM && fin(dP.drainMs, dM.drainMs)) {
    out.push('### Offline drain', '');
    out.push(
      `Parley drained ${int(dP.received)} queued messages in ${ms(dP.drainMs)} ms (${int(dP.received / (dP.drainMs / 1000))} msg/s), ` +
      `Mosquitto in ${ms(dM.drainMs)} ms. With delivery engine v2 nothing is queued per device: on connect the ` +
      'broker\'s delivery agent reads what the device has not acknowledged from SQLite, 500 messages per query ' +
      '(over all its chats, by watermark), CBOR-encodes a `msg` for each and waits for that page\'s socket ' +
      'writes before it reads the next, so the drain costs one store query per 500 messages instead of Redis ' +
      'round trips per message; each PUBACK becomes part of an `acks` job that moves the delivered watermark. ' +
      'Mosquitto sends from memory.',
      '',
    );
  }

  // 5. Memory.
  const conns = (data(records, 'connections')?.outcomes as Array<{ label: string; kind: string; perConn: number; redisPerConn?: number; established: number }> | undefined) ?? [];
  const cP = conns.find((x) => x.kind === 'parley');
  const cA = conns.find((x) => x.kind === 'aedes');
  const cM = conns.find((x) => x.kind === 'mosquitto');
  if (cP && cM) {
    out.push('### Memory per connection', '');
    out.push(
      `At ${int(cP.established)} idle connections Parley's broker grew by ${kib(cP.perConn)} per connection ` +
      `(plain Aedes ${kib(cA?.perConn)}, Mosquitto ${kib(cM.perConn)})` +
      (cP.redisPerConn !== undefined ? `, and Redis by ${kib(cP.redisPerConn)} (the persistent session and its subscription)` : '') +
      '. Parley\'s connection is an Aedes client: a `net.Socket` with its stream buffers, an mqtt-packet ' +
      'parser, the Aedes `Client` with its queues and keep-alive timer, and Parley\'s session record; Mosquitto ' +
      'keeps a C struct of about a kilobyte. ' +
      (cA && Math.abs(cP.perConn - cA.perConn) / cA.perConn < 0.25
        ? 'The difference between Parley and plain Aedes is within the noise of a garbage-collected heap measured by RSS.'
        : cA && cP.perConn > cA.perConn
          ? `Parley holds ${kib(cP.perConn - cA.perConn)} more per connection than plain Aedes, although plain ` +
            'Aedes keeps its sessions and subscriptions in its own heap and Parley keeps them in Redis: that is ' +
            'Parley\'s own state per connection plus the garbage its connect path leaves (token check, store ' +
            'look-up, presence write). A heap snapshot of a broker holding 2,000 idle authenticated devices ' +
            '(taken while writing this report) counted about 10 KiB of live JS heap per connection: three ' +
            'streams (the socket, the framing guard\'s `Duplex`, about 1 KiB, and the parser\'s buffer list), ' +
            'the Aedes client and its CONNECT packet, Parley\'s session record. The rest of the RSS per ' +
            'connection is heap headroom and native socket state, which a smaller V8 young generation ' +
            '(`--max-semi-space-size`) or fewer allocations on connect would trim; the guard could also check ' +
            'bytes inside the socket\'s own stream instead of a second one.'
          : 'Parley needs less than plain Aedes here because its sessions and subscriptions live in Redis.'),
      '',
    );
  }

  // 6. Bytes.
  const w = data(records, 'wire') as {
    total: number; totalJson: number; topicBytes: number; receiptsWithBy?: number; packets: Array<{ what: string; bytes: number; topic?: string }>;
  } | undefined;
  if (w && fin(w.total)) {
    const storedBytes = w.packets.filter((p) => p.what.includes('stored')).reduce((s, p) => s + p.bytes + 4, 0);
    const receipts = w.packets.filter((p) => p.what.includes('receipt (')).length;
    const topicPublishes = w.packets.filter((p) => p.topic).length;
    const prefixSaving = w.packets.filter((p) => p.topic?.startsWith('inbox/')).length * 4 +
      w.packets.filter((p) => p.topic?.startsWith('outbox/')).length * 5 + w.packets.filter((p) => p.topic?.startsWith('receipts/')).length * 7;
    // Older results have no receiptsWithBy: their receipts all carried `by`.
    const withBy = w.receiptsWithBy ?? receipts;
    out.push('### Bytes on the wire', '');
    out.push(
      `One 20-character message with its three ticks took ${w.total} bytes of MQTT (${w.totalJson} with JSON ` +
      `envelopes: CBOR positional arrays already save ${int(w.totalJson - w.total)} bytes). Of the ${w.total}: ` +
      `${w.topicBytes} bytes are topic names in ${topicPublishes} PUBLISH packets (MQTT 3.1.1 has no topic aliases), ` +
      `the \`stored\` notice and its PUBACK are ${storedBytes} bytes, and the ${receipts} \`receipt\` envelopes ` +
      (withBy > 0
        ? 'each repeat the chat id (14 bytes), the reader\'s user id (14) and a millisecond timestamp (9). '
        : 'each repeat the chat id (14 bytes) and a millisecond timestamp (9); protocol v2 already leaves the ' +
          'reader\'s user id out of 1:1 receipts, where it is implied. ') +
      (w.total > WIRE_TARGET
        ? `Getting to ${WIRE_TARGET} bytes needs about ${w.total - WIRE_TARGET} bytes less, for example: drop the \`stored\` envelope when the ` +
          `delivered receipt can carry the seq (−${storedBytes}), one-letter topic prefixes \`i/\`, \`o/\`, \`r/\` ` +
          `(−${prefixSaving})` + (withBy > 0 ? `, and no \`by\` in receipts of 1:1 chats, where it is implied (−${withBy * 14}).` : '') +
          '; ids as 9 raw bytes instead of 13 base64url characters (−4 per id field, about −24). The first ' +
          'two change names and semantics the brief and the SDK\'s users know (`inbox/<clientId>`, ' +
          '`receipts/<msgId>`, a seq for every send), so they were left for a protocol decision of their own.'
        : `That is within the ${WIRE_TARGET}-byte target.`),
      '',
    );
  }

  // 7. Group fan-out.
  const groups = (data(records, 'group')?.outcomes as GroupOutcome[] | undefined) ?? [];
  const gP = groups.find((g) => g.kind === 'parley');
  const gM = groups.find((g) => g.kind === 'mosquitto');
  const gPl = phase(gP, 'latency');
  const gMl = phase(gM, 'latency');
  const gPt = phase(gP, 'throughput');
  const gMt = phase(gM, 'throughput');
  const perDelivery = (p: GroupPhaseOutcome | undefined, role?: string): number =>
    p && p.delivered ? ((role ? (p.cpuMs[role] ?? NaN) : p.serverCpuMs) * 1000) / p.delivered : NaN;
  const versus = (v: number, target: number): string => (v <= target ? 'met' : `missed by ${ms(v - target)} ms`);
  if (gP && gPl && fin(gPl.toLast.p50)) {
    out.push('### Group fan-out', '');
    out.push(
      `With all ${int(gP.members)} members connected, Parley got a message to the last of its ${int(gP.receivers)} receivers ` +
      `in p50 ${ms(gPl.toLast.p50)} ms and p99 ${ms(gPl.toLast.p99)} ms (targets 100 and 250 ms: ${versus(gPl.toLast.p50, 100)}, ` +
      `${versus(gPl.toLast.p99, 250)})` +
      (gM && gMl ? `; Mosquitto reached the last of its ${int(gM.receivers)} in p50 ${ms(gMl.toLast.p50)} ms, p99 ${ms(gMl.toLast.p99)} ms. ` : '. ') +
      `The first receiver had it after p50 ${ms(gPl.toFirst.p50)} ms${gMl ? ` (Mosquitto ${ms(gMl.toFirst.p50)} ms)` : ''}: the rest is ` +
      'the fan-out. Parley stores the message once; the group has more devices than `PARLEY_FANOUT_CHUNK` (128), so ' +
      'the `persist` job hands it to `fanout` jobs, each of which reads one chunk of devices, queues the next chunk ' +
      'and sends the chunk on the delivery bus: one CBOR encoding of the `msg`, one MGET of the devices\' routes ' +
      'and one Redis PUBLISH per broker node. The broker node reads each delivery\'s chat and seq from its first ' +
      'bytes, places it by seq and writes it to the socket as an Aedes QoS 1 packet; the PUBACKs become `acks` jobs ' +
      'and tallies. ' +
      (fin(perDelivery(gPl, 'workers'), perDelivery(gPl, 'broker'))
        ? `In the latency phase that cost ${num(perDelivery(gPl, 'workers'), 0)} µs of worker CPU and ` +
          `${num(perDelivery(gPl, 'broker'), 0)} µs of broker CPU per delivery` +
          (gMl && fin(perDelivery(gMl)) ? ` (Mosquitto: ${num(perDelivery(gMl), 1)} µs in all)` : '') + '. '
        : '') +
      `At one message every 200 ms that work arrives in bursts of ${int(gP.receivers)} deliveries, and the last receiver ` +
      'waits for the whole burst.',
      '',
    );
    if (gPt && gMt && fin(gPt.rate, gMt.rate)) {
      const r = gPt.rate / gMt.rate;
      const lgBusy = gMt.wallMs > 0 ? gMt.loadgenCpuMs / gMt.wallMs : NaN;
      out.push(
        `At full rate Parley made ${int(gPt.rate)} deliveries/s (${num(gPt.msgRate, 1)} messages/s to everyone) against ` +
        `Mosquitto's ${int(gMt.rate)}: ${r.toFixed(2)}× (target ≥ 0.5×: ${r >= 0.5 ? 'met' : `${(0.5 / r).toFixed(1)}× short`}), ` +
        `with ${num(perDelivery(gPt), 0)} µs of server CPU per delivery against Mosquitto's ${num(perDelivery(gMt), 1)} µs. ` +
        (fin(lgBusy) && lgBusy > 0.85
          ? `Mosquitto's figure is limited by the load generator, which was busy ${Math.round(lgBusy * 100)}% of a core ` +
            `reading and acknowledging ${int(gM?.members)} sockets, so the true ratio is lower still. `
          : '') +
        `With ${GROUP_WINDOW_TEXT} the rate is also the window over the time each message takes to reach everyone ` +
        `(p50 ${ms(gPt.toLast.p50)} ms for Parley here), so the fan-out's latency and its CPU cost limit it together. ` +
        (gPt.sent > 0
          ? `The sender got ${num(gPt.receipts / gPt.sent, 2)} \`tally\` envelopes per message (one per batch of delivery ` +
            'acks, not one receipt per member), so the delivered news no longer grows with the group.'
          : ''),
      '',
      );
    }
  }

  // 8. A 1:1 chat next to a group.
  interface MixedData { label: string; kind: string; alone: { latency: { p50: number; p99: number } }; withGroup: { latency: { p50: number; p99: number } }; group: GroupOutcome }
  const mixedOut = (data(records, 'mixed')?.outcomes as MixedData[] | undefined) ?? [];
  const mP = mixedOut.find((x) => x.kind === 'parley');
  const mM = mixedOut.find((x) => x.kind === 'mosquitto');
  if (mP && fin(mP.alone.latency.p50, mP.withGroup.latency.p50)) {
    const bg = phase(mP.group, 'background');
    const p99Up = mP.withGroup.latency.p99 / mP.alone.latency.p99;
    out.push('### A 1:1 chat next to a group', '');
    out.push(
      `Alone, Parley's 1:1 chat at 20 msg/s had p50 ${ms(mP.alone.latency.p50)} ms and p99 ${ms(mP.alone.latency.p99)} ms; ` +
      `while a ${int(mP.group.members)}-member group got a message every 200 ms` +
      (bg ? ` (${int(bg.rate)} deliveries/s, each message at its last receiver after p50 ${ms(bg.toLast.p50)} ms)` : '') +
      `, p50 ${ms(mP.withGroup.latency.p50)} ms and p99 ${ms(mP.withGroup.latency.p99)} ms ` +
      `(target p50 ≤ 10 ms: ${versus(mP.withGroup.latency.p50, 10)})` +
      (mM ? `. Mosquitto: p50 ${ms(mM.alone.latency.p50)} ms alone, ${ms(mM.withGroup.latency.p50)} ms with its group. ` : '. ') +
      'The two chats share every process: the 1:1 `persist` job waits only for its own shard\'s queue, but the ' +
      'group\'s fan-out jobs, the broker\'s socket writes for it and its ' +
      '`acks` jobs run on the same event loops and the same two cores, so a 1:1 message that arrives during a ' +
      'group burst waits for it' +
      (fin(p99Up) && p99Up > 2 ? `: the p99 shows that (${ms(mP.alone.latency.p99)} → ${ms(mP.withGroup.latency.p99)} ms) far more than the p50.` : '.'),
      '',
    );
  }

  // 9. Two worker processes.
  interface ShardsData {
    workers: Array<{ role: string; messages: number; jobs: number }>;
    shards: Array<{ shard: number; messages: number; byRole: Record<string, number> }>;
    stored: number;
    relay: { rate: number; received: number; misordered: number; duplicates: number };
  }
  const sh = data(records, 'shards')?.outcome as ShardsData | undefined;
  if (sh && sh.stored > 0) {
    const shares = sh.workers.map((w) => ({ role: w.role, share: w.messages / sh.stored }));
    const balanced = shares.length === 2 && shares.every((x) => x.share >= 0.35 && x.share <= 0.65);
    const used = sh.shards.filter((x) => x.messages > 0);
    // How much of each shard went to the process that did most of it, weighted by the shard's messages.
    const stick = used.reduce((s, x) => s + Math.max(0, ...Object.values(x.byRole)), 0) / Math.max(1, used.reduce((s, x) => s + x.messages, 0));
    const disorder = sh.relay.misordered + sh.relay.duplicates;
    const single = rParley;
    out.push('### Two worker processes on the persist shards', '');
    out.push(
      `With two worker processes, ${shares.map((x) => `${x.role} stored ${Math.round(x.share * 100)}%`).join(' and ')} of the ` +
      `${int(sh.stored)} messages (target 35–65 % each: ${balanced ? 'met' : '**not met**'}). The 20 chats fell into ` +
      `${used.length} shards of unequal load (one chat or several each); a shard runs one job at a time, the process ` +
      'that runs it also takes the jobs waiting behind it (up to 2,000 messages), and a BullMQ worker that ' +
      'completes a job fetches the queue\'s next one in the same call, so under load a shard tends to stay with ' +
      `the process that has it: ${Math.round(stick * 100)}% of each shard's messages went to one process, weighted by ` +
      'load. The split is therefore per shard, by timing, not per message, and it moves between runs. ' +
      (disorder === 0
        ? `Per-chat order held: none of the ${int(sh.relay.received)} messages arrived out of order or twice. `
        : `**Per-chat order broke: ${int(sh.relay.misordered)} messages with a later seq but an earlier send time and ` +
          `${int(sh.relay.duplicates)} repeated or backwards seqs.** `) +
      (single && fin(single.rate)
        ? `Delivery ran at ${int(sh.relay.rate)} msg/s against ${int(single.rate)} msg/s with one worker process in scenario 1, ` +
          'on the same two cores.'
        : `Delivery ran at ${int(sh.relay.rate)} msg/s.`),
      '',
    );
  }

  // Suggestions.
  out.push('### What would close the gaps', '');
  const ideas: string[] = [];
  if (nagle) {
    ideas.push(
      '**Stop splitting packets on the wire** (the 40 ms stall above): `setNoDelay(true)` on every ' +
      'accepted socket and a `_writev` in the framing guard. Cheapest fix with the largest latency effect.',
    );
  }
  ideas.push(
    '**Cut the work per envelope; this is the throughput lever.** Delivery engine v2 took `msg`, `stored` ' +
    'and `synced` out of aedes-persistence-redis, but receipts and tallies still go through it: about ten ' +
    'Redis commands each, a msgpack-lite encode and decode and their garbage. Receipts are watermarks, so ' +
    'they could be live too (the catch-up would send each chat\'s current watermarks to a returning ' +
    'device); and in the broker each delivery is still an Aedes QoS 1 packet object, an MQTT write and a ' +
    'PUBACK handled through Aedes\' generic path.',
    '**Fewer BullMQ jobs per message at moderate rates.** A group-commit batch becomes one `persist` job ' +
    'per shard it touches, and a job costs some 35–40 Redis commands; at a steady rate spread over many ' +
    'chats that approaches a job per message (scenario 6 counts them: INCR per message). One batcher per ' +
    'shard in the broker (a job then holds what its shard got in the window) or fewer shards while the ' +
    'load is low would bring the batching back.',
    '**Cheaper ingest jobs.** A BullMQ job costs some 35–40 Redis commands and several Lua scripts; the ' +
    'ordered ingest could be a Redis stream per shard (one XADD per batch, XREADGROUP and XACK by the ' +
    'shard\'s owner, a lease per shard for one-at-a-time order), which would make the job cost small at ' +
    'any rate.',
    '**Fewer envelopes per message at moderate rates.** Bursts already share their `stored` notice and ' +
    'delivered receipts; at a steady rate spread over many chats each message still costs its own `stored` ' +
    'and often its own receipt. The `stored` notice could ride on the delivered receipt when both are due ' +
    'within a few milliseconds. This helps CPU, Redis and bytes at once.',
    '**Fewer, cheaper store look-ups at moderate rates.** Move WAL checkpoints off the worker\'s event ' +
    'loop, and cache chats, members and their devices in the worker (invalidated over pub/sub on ' +
    'membership and device changes) instead of `chatDevices` for every batch and `getChat`, `history` and ' +
    '`listDevicesOfUsers` for every batch of receipts.',
  );
  const shardSplit = sh && sh.stored > 0 ? sh.workers.map((x) => x.messages / sh.stored) : [];
  if (shardSplit.length && !shardSplit.every((x) => x >= 0.35 && x <= 0.65)) {
    ideas.push(
      '**Balance the persist shards by load, not by timing** (scenario 9): more shards than chats that are ' +
      'busy at once, or a worker that yields a shard after some jobs so another process can take it.',
    );
  }
  ideas.push('**Shorter wire format** as in the bytes paragraph above (topic prefixes, no `stored` when a receipt can carry the seq).');
  out.push(...ideas.map((x, i) => `${i + 1}. ${x}`), '');
  return out.join('\n');
}
