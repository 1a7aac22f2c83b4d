/**
 * Scenario 12: what end-to-end encryption costs a device. MLS (RFC 9420) through the SDK's wrapper
 * of ts-mls (client-sdk/src/e2ee/mls.ts), in this process, with no server: per message in a 1:1 chat
 * (4 devices) and in a 1,024-device group, and the membership changes of a 1,024-device group. The
 * method is the one of docs/E2EE-CHOICE.md ("How it was measured"), automated.
 */
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { MlsGroup, decodeE2ee, encodeE2ee, newId, newIdentity, newKeyPackage, randomIdBody } from '@parley/client-sdk/protocol';
// Not re-exported by `@parley/client-sdk/protocol`: the content map inside the MLS ciphertext.
import { decodeContent, encodeContent } from '../../client-sdk/src/e2ee/wire.js';
import { int, ms, num } from '../lib/format.js';
import type { RelayOutcome } from '../lib/relay-run.js';
import type { BenchContext, Cell, Scenario, Table } from '../lib/types.js';
import { RATE } from './latency.js';

type KeyPackage = Awaited<ReturnType<typeof newKeyPackage>>;

/** A device about to join: its name and one key package. */
interface Device { userId: string; deviceId: string; kp: KeyPackage }

/** Text sizes (UTF-8 bytes) for the bytes-added table; the first is the one timed. */
const TEXT_SIZES = [60, 200, 1000] as const;
const SENTENCE = 'Running ten minutes late, the train is stuck at the bridge. Order the pasta for me please! ';
/** ASCII text of exactly `bytes` bytes. */
const textOf = (bytes: number): string => SENTENCE.repeat(Math.ceil(bytes / SENTENCE.length)).slice(0, bytes);
const utf8Len = (s: string): number => Buffer.byteLength(s, 'utf8');
/** Untimed messages first: the sender's first message derives its leaf's ratchet from the secret tree. */
const WARMUP = 20;

interface Stat { n: number; median: number; p95: number; min: number; max: number }

/** Median and p95 (nearest rank) of a sample. */
function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
  return { n: s.length, median: at(0.5), p95: at(0.95), min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN };
}
const mp = (x: Stat | undefined): string => (x ? `${ms(x.median)} (${ms(x.p95)})` : 'n/a');
const bytesRange = (xs: number[]): string => {
  const s = stat(xs);
  return s.min === s.max ? int(s.min) : `${int(s.median)} (${int(s.min)}–${int(s.max)})`;
};

async function timed<T>(fn: () => Promise<T>): Promise<{ v: T; ms: number }> {
  const t0 = performance.now();
  const v = await fn();
  return { v, ms: performance.now() - t0 };
}

const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((v, i) => v === b[i]);
/** Two states agree on the epoch's secrets (RFC 9420 epoch authenticator). */
function inSync(a: MlsGroup, b: MlsGroup, what: string): void {
  if (a.epoch !== b.epoch || !same(a.state.keySchedule.epochAuthenticator, b.state.keySchedule.epochAuthenticator)) {
    throw new Error(`e2ee: ${what}: the two states disagree after the commit (epoch ${a.epoch} vs ${b.epoch})`);
  }
}

async function newDevice(userId: string, deviceId: string, kpMs?: number[]): Promise<Device> {
  const identity = await newIdentity({ userId, deviceId });
  const t = await timed(() => newKeyPackage(identity));
  kpMs?.push(t.ms);
  return { userId, deviceId, kp: t.v };
}

/** A group id as the SDK makes one: `<chatId>:<12 random base64url characters>`. */
const groupId = (): Uint8Array => new TextEncoder().encode(`${newId('chat')}:${randomIdBody(12)}`);

interface Built {
  devices: Device[];
  /** The creator's state (leaf 0) and the joiners' states (leaves 1..joins). */
  creator: MlsGroup;
  joined: MlsGroup[];
  kpMs: number[];
  kpBytes: number;
  createMs: number;
  commitMs: number;
  commitBytes: number;
  welcomeBytes: number;
  joinMs: number[];
  stateBytes: number;
}

/**
 * The creator's group with every other device added by one commit (as the SDK creates a chat's
 * group), and `joins` of them joined from its Welcome.
 */
async function build(devices: Device[], joins: number, kpMs: number[]): Promise<Built> {
  const [first, ...rest] = devices;
  if (!first || rest.length < joins) throw new Error('e2ee: not enough devices');
  const c = await timed(() => MlsGroup.create(groupId(), first.kp));
  const add = await timed(() => c.v.commit({ add: rest.map((d) => d.kp.data) }));
  const { group: creator, commit, welcome } = add.v;
  if (!welcome) throw new Error('e2ee: no Welcome for the adds');
  const joined: MlsGroup[] = [];
  const joinMs: number[] = [];
  for (const d of rest.slice(0, joins)) {
    const j = await timed(() => MlsGroup.join(welcome, d.kp));
    inSync(creator, j.v, 'join');
    joined.push(j.v);
    joinMs.push(j.ms);
  }
  return {
    devices, creator, joined, kpMs, kpBytes: first.kp.data.length, createMs: c.ms, commitMs: add.ms,
    commitBytes: commit.length, welcomeBytes: welcome.length, joinMs, stateBytes: creator.encode().length,
  };
}

/** One message as the SDK sends it: content map, MLS PrivateMessage, end-to-end body. */
async function send(g: MlsGroup, deviceId: string, text: string): Promise<{ group: MlsGroup; body: Uint8Array }> {
  const { group, message } = await g.encrypt(encodeContent({ d: deviceId, t: text }));
  return { group, body: encodeE2ee({ type: 'app', mls: message }) };
}

/** And as the SDK reads it: end-to-end body, MLS, content map. */
async function receive(g: MlsGroup, body: Uint8Array): Promise<{ group: MlsGroup; text: string | undefined }> {
  const b = decodeE2ee(body);
  if (b.type !== 'app') throw new Error('e2ee: not an app body');
  const { group, plaintext } = await g.decrypt(b.mls);
  return { group, text: decodeContent(plaintext).t };
}

interface PerMessage {
  label: string;
  devices: number;
  enc: Stat;
  dec: Stat;
  /**
   * By text size: the content map's length (`encodeContent`, with any padding the SDK adds), the
   * body's length and what it adds to the text.
   */
  sizes: Array<{ text: number; content: number; body: number; added: number }>;
}

/**
 * Messages in several groups, interleaved (one in each group in turn) so that every group sees the
 * same machine load and the same JIT state; then one message of each text size for the byte counts.
 */
async function perMessage(groups: Array<{ label: string; b: Built }>, n: number): Promise<PerMessage[]> {
  const text = textOf(TEXT_SIZES[0]);
  const st = groups.map(({ label, b }) => ({
    label, devices: b.devices.length, from: b.devices[0]!.deviceId, s: b.creator, r: b.joined[0]!, enc: [] as number[], dec: [] as number[],
  }));
  const roundTrip = async (g: (typeof st)[number], t: string): Promise<{ body: number; encMs: number; decMs: number }> => {
    const t0 = performance.now();
    const out = await send(g.s, g.from, t);
    const t1 = performance.now();
    const got = await receive(g.r, out.body);
    const t2 = performance.now();
    if (got.text !== t) throw new Error('e2ee: the text did not survive the round trip');
    g.s = out.group;
    g.r = got.group;
    return { body: out.body.length, encMs: t1 - t0, decMs: t2 - t1 };
  };
  for (let i = 0; i < WARMUP + n; i++) {
    for (const g of st) {
      const m = await roundTrip(g, text);
      if (i >= WARMUP) {
        g.enc.push(m.encMs);
        g.dec.push(m.decMs);
      }
    }
  }
  const out: PerMessage[] = [];
  for (const g of st) {
    const sizes: PerMessage['sizes'] = [];
    for (const size of TEXT_SIZES) {
      const t = textOf(size);
      const { body } = await roundTrip(g, t);
      const content = encodeContent({ d: g.from, t }).length;
      sizes.push({ text: utf8Len(t), content, body, added: body - utf8Len(t) });
    }
    out.push({ label: g.label, devices: g.devices, enc: stat(g.enc), dec: stat(g.dec), sizes });
  }
  return out;
}

interface Change {
  op: 'remove' | 'add' | 'update';
  committerMs: Stat;
  commitBytes: number[];
  welcomeBytes: number[];
  processMs: Stat;
  joinMs: Stat | null;
}

/**
 * Each change `reps` times from the same pre-state (states are immutable): the creator commits, the
 * first joiner processes the commit, an added device joins from the Welcome. Every repetition checks
 * that all of them reach the committer's epoch authenticator.
 */
async function changes(ctx: BenchContext, b: Built, reps: number, label: string): Promise<Change[]> {
  const c0 = b.creator;
  const r0 = b.joined[0]!;
  const n = b.devices.length;
  const out: Change[] = [];
  const run = async (op: Change['op'], make: (i: number) => Promise<{ remove?: number[]; add?: Uint8Array[]; joiner?: Device }>): Promise<void> => {
    ctx.log(`  ${label}: ${op} ×${reps}`);
    const cm: number[] = [];
    const pm: number[] = [];
    const jm: number[] = [];
    const cb: number[] = [];
    const wb: number[] = [];
    for (let i = 0; i < reps; i++) {
      const { joiner, ...change } = await make(i);
      const c = await timed(() => c0.commit(change));
      const p = await timed(() => r0.process(c.v.commit));
      inSync(c.v.group, p.v, `${label} ${op}: member`);
      cm.push(c.ms);
      pm.push(p.ms);
      cb.push(c.v.commit.length);
      if (joiner) {
        const welcome = c.v.welcome;
        if (!welcome) throw new Error('e2ee: no Welcome for an add');
        const j = await timed(() => MlsGroup.join(welcome, joiner.kp));
        inSync(c.v.group, j.v, `${label} ${op}: joiner`);
        jm.push(j.ms);
        wb.push(welcome.length);
      }
    }
    out.push({ op, committerMs: stat(cm), commitBytes: cb, welcomeBytes: wb, processMs: stat(pm), joinMs: jm.length ? stat(jm) : null });
  };
  // A member other than the committer (leaf 0) and the measured receiver (leaf 1).
  const leaves = c0.members().map((m) => m.leaf).filter((l) => l !== c0.ownLeaf && l !== r0.ownLeaf);
  if (leaves.length !== n - 2) throw new Error(`e2ee: expected ${n - 2} other members, found ${leaves.length}`);
  await run('remove', (i) => Promise.resolve({ remove: [leaves[Math.floor(((i + 0.5) / reps) * leaves.length)]!] }));
  await run('add', async () => {
    const joiner = await newDevice(newId('user'), newId('device'));
    return { add: [joiner.kp.data], joiner };
  });
  await run('update', () => Promise.resolve({}));
  return out;
}

const OP_LABEL: Record<Change['op'], string> = {
  remove: 'remove one member',
  add: 'add one member (a new device)',
  update: 'key rotation (an empty commit: new path secrets)',
};

export const e2ee: Scenario = {
  name: 'e2ee',
  title: '12. End-to-end encryption on the device (MLS)',
  about:
    'Client CPU, not server: MLS (RFC 9420) through the SDK\'s wrapper of ts-mls 1.6.4 ' +
    '(`client-sdk/src/e2ee/mls.ts`, ciphersuite `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`), run in ' +
    'the benchmark process with no broker: the method of docs/E2EE-CHOICE.md ("How it was measured"), ' +
    'automated. Two groups, each made as the SDK makes a chat\'s group (one commit adding every other ' +
    'device, as a PublicMessage, its Welcome carrying the ratchet tree; group id `<chatId>:<12 random ' +
    'characters>`): a **1:1 chat as MLS sees it** (two users with two devices each: 4 leaves) and a ' +
    '**1,024-device group** (quick: 32). **Per message**: a 60-byte ASCII text wrapped as the SDK sends ' +
    'it (`encodeContent({ d, t })`, `MlsGroup.encrypt`, `encodeE2ee({ type: \'app\' })`) and read as it ' +
    'reads it (`decodeE2ee`, `MlsGroup.decrypt`, `decodeContent`), creator to one joiner, 500 messages ' +
    '(quick: 50) after 20 untimed ones, one in each group in turn; no storage, no network. **Bytes added** = the end-to-end body ' +
    'minus the text\'s UTF-8 bytes, for 60-, 200- and 1,000-byte texts. **Membership changes** in both ' +
    'groups, right after their creation (a *fresh* tree: the adds carried no UpdatePath, so every ' +
    'parent node is blank): the creator (leaf 0) commits, one joined member processes the commit; ' +
    'removes take a different member each time, adds a new device\'s key package, whose join from the ' +
    'Welcome is timed too. Each change is repeated 5 times (quick: 2) from the same pre-state (ts-mls ' +
    'states are immutable), and every repetition checks that committer, member and joiner reach the ' +
    'same epoch authenticator. Times: `performance.now()` around each call, median (p95, nearest rank).',
  async run(ctx) {
    const big = ctx.pick(1024, 32);
    const msgs = ctx.pick(500, 50);
    const reps = ctx.pick(5, 2);
    const cpu = cpus();
    const machine = `${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} cores, Node ${process.version}`;

    // 1:1 chat: users A and B, two devices each; A's first device creates the group.
    const [ua, ub] = [newId('user'), newId('user')];
    const smallKpMs: number[] = [];
    const small: Device[] = [];
    for (const u of [ua, ua, ub, ub]) small.push(await newDevice(u, newId('device'), smallKpMs));
    // Put B's first device at leaf 1 (the measured receiver): the creator adds A2, B1, B2 in that order.
    const one = await build([small[0]!, small[2]!, small[1]!, small[3]!], 1, smallKpMs);
    const oneChanges = await changes(ctx, one, reps, '4 devices');

    ctx.log(`  ${big} devices: ${big} key packages`);
    const bigKpMs: number[] = [];
    const devices: Device[] = [];
    for (let i = 0; i < big; i++) devices.push(await newDevice(newId('user'), newId('device'), bigKpMs));
    ctx.log(`  ${big} devices: one commit of ${big - 1} adds, ${reps} joins`);
    const grp = await build(devices, reps, bigKpMs);
    ctx.log(`  ${msgs} messages in each group, interleaved`);
    const [oneMsg, grpMsg] = await perMessage([
      { label: '1:1 chat (2 users × 2 devices = 4 leaves)', b: one },
      { label: `group of ${int(big)} devices`, b: grp },
    ], msgs) as [PerMessage, PerMessage];
    const grpChanges = await changes(ctx, grp, reps, `${big} devices`);

    // Parley's own server CPU per delivered message, when the cost scenario ran in this run.
    let serverUs: number | null = null;
    try {
      const steady = await ctx.peek<RelayOutcome>(`steady:parley:${RATE}`);
      if (steady && Number.isFinite(steady.cpuPerMsgUs) && steady.cpuPerMsgUs > 0) serverUs = steady.cpuPerMsgUs;
    } catch { /* that run failed: absolute figures only */ }
    const vsServer = (x: number): string => (serverUs ? `${num((x * 1000) / serverUs, 1)}×` : '');

    const perMsgRows: Cell[][] = [oneMsg, grpMsg].map((m) => [
      m.label, int(m.enc.n), mp(m.enc), mp(m.dec), int(m.sizes[0]!.body), int(m.sizes[0]!.added),
      ...(serverUs ? [vsServer(m.enc.median), vsServer(m.dec.median)] : []),
    ]);
    const tables: Table[] = [
      {
        title: `Per message: a ${TEXT_SIZES[0]}-byte text, encrypted by one device and decrypted by another (ms, median (p95))`,
        columns: [
          'group', 'messages', 'encrypt ms', 'decrypt ms', 'body bytes', 'bytes added',
          ...(serverUs ? [`encrypt ÷ server CPU per delivered msg (${num(serverUs, 1)} µs)`, 'decrypt ÷ server CPU per delivered msg'] : []),
        ],
        rows: perMsgRows,
      },
      {
        title: `Bytes added per message by text size (end-to-end body minus the text's UTF-8 bytes), ${int(grpMsg.devices)}-device group`,
        columns: ['text bytes', 'content map bytes (`encodeContent`)', 'body bytes (`encodeE2ee`)', 'bytes added', 'of which content map', 'of which MLS and body framing'],
        rows: grpMsg.sizes.map((z) => [int(z.text), int(z.content), int(z.body), `**${int(z.added)}**`, int(z.content - z.text), int(z.body - z.content)]),
      },
      {
        title: `Creating the ${int(big)}-device group (one commit of ${int(big - 1)} adds) and joining it`,
        columns: ['', 'value'],
        rows: [
          [`one key package: make, ms, median (p95) over ${int(bigKpMs.length)}`, mp(stat(bigKpMs))],
          ['one key package, bytes', int(grp.kpBytes)],
          ['`MlsGroup.create` (a group of one), ms', ms(grp.createMs)],
          [`the commit of ${int(big - 1)} adds with its Welcome, ms (n = 1)`, ms(grp.commitMs)],
          ['that commit, bytes', int(grp.commitBytes)],
          ['its Welcome (with the ratchet tree), bytes', int(grp.welcomeBytes)],
          [`one device joining from that Welcome, ms, median (p95) over ${grp.joinMs.length}`, mp(stat(grp.joinMs))],
          ['the creator\'s encoded group state (`encode()`), bytes', int(grp.stateBytes)],
          ['the same for the 4-device 1:1 group: commit of 3 adds ms / bytes / Welcome bytes / join ms', `${ms(one.commitMs)} / ${int(one.commitBytes)} / ${int(one.welcomeBytes)} / ${ms(one.joinMs[0])}`],
        ],
      },
    ];
    const changeRows = (label: string, cs: Change[]): Cell[][] => cs.map((c) => [
      label, OP_LABEL[c.op], mp(c.committerMs), bytesRange(c.commitBytes), c.welcomeBytes.length ? bytesRange(c.welcomeBytes) : '',
      mp(c.processMs), c.joinMs ? mp(c.joinMs) : '',
    ]);
    tables.push({
      title: `Membership change and key rotation, fresh tree: ${reps} repetitions from the same pre-state (ms, median (p95); bytes)`,
      columns: ['group', 'operation', 'committer ms', 'commit bytes', 'Welcome bytes', 'each other member: process ms', 'the new device: join ms'],
      rows: [...changeRows(`${int(big)} devices`, grpChanges), ...changeRows('4 devices (1:1)', oneChanges)],
    });

    const ch = (op: Change['op']): Change => grpChanges.find((c) => c.op === op)!;
    const sz = grpMsg.sizes as [PerMessage['sizes'][number], PerMessage['sizes'][number], PerMessage['sizes'][number]];
    const sameSize = oneMsg.sizes.every((z, i) => z.body === grpMsg.sizes[i]!.body);
    const notes = [
      'These figures are **client CPU** on one device, measured in the benchmark process: there is no ' +
      'broker in this scenario and no Mosquitto equivalent to compare with. ' +
      (serverUs
        ? `The ratio columns divide them by Parley's own server CPU per delivered message in this run (${num(serverUs, 1)} µs, ` +
          `scenario 6 at ${int(RATE)} msg/s, every server process): how many delivered messages' worth of server work one ` +
          'encryption or decryption costs the device.'
        : `Scenario 6 (server CPU per delivered message) did not run in this run, so they are absolute, measured on ${machine}; ` +
          'read them with the machine\'s load in the table at the top.'),
      `A ${sz[0].text}-byte text becomes a ${int(sz[0].body)}-byte body (+${int(sz[0].added)}), a ${sz[1].text}-byte one ` +
      `${int(sz[1].body)} (+${int(sz[1].added)}), a ${int(sz[2].text)}-byte one ${int(sz[2].body)} (+${int(sz[2].added)}). ` +
      'The added bytes are the content map (the sending device\'s id, the field names and whatever padding the SDK adds ' +
      'to hide the length: `encodeContent` in client-sdk/src/e2ee/wire.ts) and the MLS framing (the PrivateMessage ' +
      'header with group id and epoch, the encrypted sender data, the AEAD tags, the Ed25519 signature inside the ' +
      'ciphertext, and ts-mls\'s own padding of contents shorter than 256 bytes, its default `padUntilLength`) with the ' +
      'end-to-end body\'s header. ' +
      (sameSize ? `The ${int(big)}-device group's bodies are the same size as the 1:1 chat's: ` : 'The sizes barely depend on the group: ') +
      'a message is one ciphertext for the whole group, fanned out by the server.',
      `${big >= 1024 ? `At ${int(big)} devices` : `At ${int(big)} devices the figures are small; in the full run (1,024 devices)`} ` +
      'the costs of ts-mls 1.6.4 are dominated by O(n) tree hashing (docs/E2EE-CHOICE.md, pitfall 9): every commit ' +
      `recomputes the whole tree hash, so even adding one device, a commit of only ${bytesRange(ch('add').commitBytes)} bytes ` +
      `with no path, takes ${ms(ch('add').committerMs.median)} ms to commit and ${ms(ch('add').processMs.median)} ms for each ` +
      'member to process here. In this fresh tree a remove or an update also encrypts its path ' +
      `secret to every other leaf (${bytesRange(ch('update').commitBytes)} bytes for an update); once members have ` +
      'committed, those commits shrink (docs/E2EE-CHOICE.md measured 1.6 KB for an update in a warm tree) but the tree ' +
      'hashing stays. These are costs of the implementation, ' +
      'not of MLS; the issue gives no figure for them, so they are reported here without a target.',
    ];
    return {
      summary: [
        `per 60-byte message, 1:1 (4 devices): encrypt ${mp(oneMsg.enc)} ms, decrypt ${mp(oneMsg.dec)} ms, +${oneMsg.sizes[0]!.added} bytes`,
        `per 60-byte message, ${big} devices: encrypt ${mp(grpMsg.enc)} ms, decrypt ${mp(grpMsg.dec)} ms, +${grpMsg.sizes[0]!.added} bytes`,
        `${big} devices: create (one commit of ${big - 1} adds) ${ms(grp.commitMs)} ms, join ${mp(stat(grp.joinMs))} ms; ` +
        grpChanges.map((c) => `${c.op} ${mp(c.committerMs)} ms / member ${mp(c.processMs)} ms${c.joinMs ? ` / joiner ${mp(c.joinMs)} ms` : ''}`).join('; '),
      ],
      tables,
      notes,
      data: {
        machine, bigGroup: big, messages: msgs, reps, serverCpuPerMsgUs: serverUs,
        perMessage: [oneMsg, grpMsg],
        create: {
          keyPackageMs: stat(bigKpMs), keyPackageBytes: grp.kpBytes, createMs: grp.createMs, commitMs: grp.commitMs,
          commitBytes: grp.commitBytes, welcomeBytes: grp.welcomeBytes, joinMs: stat(grp.joinMs), stateBytes: grp.stateBytes,
          oneToOne: { commitMs: one.commitMs, commitBytes: one.commitBytes, welcomeBytes: one.welcomeBytes, joinMs: one.joinMs },
        },
        changes: { big: grpChanges, oneToOne: oneChanges },
      },
    };
  },
};
