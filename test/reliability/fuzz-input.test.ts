/**
 * Bad application input, fuzzed with seeded PRNGs (a failure names its seed and iteration):
 * - the envelope decoder (`decode` of @parley/client-sdk) only ever returns a valid envelope or
 *   throws ParleyError E_BAD_ENVELOPE, on random bytes, mutated valid envelopes and hostile CBOR;
 * - every HTTP endpoint, with random and boundary JSON, wrong types, huge and odd unicode strings,
 *   missing and extra fields, wrong methods, bad auth headers, bad content types and raw HTTP:
 *   every answer is a catalogue error (4xx with {error:{code}} and the catalogue's status for that
 *   code) or a success, never a 5xx, and the platform keeps serving.
 */
import { connect as netConnect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Encoder } from 'cbor-x';
import { ERRORS, ParleyError, isErrorCode } from '@parley/client-sdk';
import { decode, encode, peekPosition, peekTs, type Envelope } from '@parley/client-sdk/protocol';
import { startTestPlatform, type Registered, type TestPlatform } from '../helpers/platform.js';
import { prng } from './helpers.js';

const cbor = new Encoder({ useRecords: false, tagUint8Array: false });

describe('envelope decoder fuzz', () => {
  const KINDS = new Set(['send', 'msg', 'stored', 'receipt', 'error', 'read', 'sync', 'synced', 'tally', 'typing', 'watch', 'presence', 'status', 'keys']);

  /** decode() either gives a well-formed envelope (that encodes again) or throws E_BAD_ENVELOPE. */
  function check(payload: Uint8Array, label: string): 'ok' | 'refused' {
    let env: Envelope;
    try {
      env = decode(payload);
    } catch (err) {
      if (!(err instanceof ParleyError) || err.code !== 'E_BAD_ENVELOPE') {
        throw new Error(`${label}: decode threw ${String(err)} for ${Buffer.from(payload).toString('hex').slice(0, 200)}`, { cause: err });
      }
      return 'refused';
    }
    expect(KINDS.has(env.kind), label).toBe(true);
    expect(() => encode(env), label).not.toThrow();
    // The broker's shortcut reads the same chat and seq as the decoder, or nothing.
    const pos = peekPosition(payload);
    if (pos) expect(env.kind === 'msg' ? { chatId: env.chatId, seq: env.seq } : null, label).toEqual(pos);
    // And the same ts (the PUBACK's latency), when it finds one.
    const ts = peekTs(payload);
    if (ts !== null) expect(env.kind === 'msg' ? env.ts : null, label).toBe(ts);
    return 'ok';
  }

  const samples = (): Envelope[] => [
    { kind: 'send', clientMsgId: 'abc_123-XYZ', to: 'uAbCdEfGhIjKl', body: 'hello ☃ 😀' },
    { kind: 'send', clientMsgId: 'x', to: 'cAbCdEfGhIjKl', body: new Uint8Array([0, 1, 2, 255]) },
    { kind: 'msg', chatId: 'cAbCdEfGhIjKl', seq: 42, from: 'uAbCdEfGhIjKl', ts: 1_700_000_000_000, body: 'hi', fromDevice: 'dAbCdEfGhIjKl' },
    { kind: 'msg', chatId: 'cAbCdEfGhIjKl', seq: 43, from: 'uAbCdEfGhIjKl', ts: 1_700_000_000_000, body: '', fromDevice: '', event: { type: 'identity', device: 'dAbCdEfGhIjKl', change: 'changed' } },
    { kind: 'stored', clientMsgId: 'm1', chatId: 'cAbCdEfGhIjKl', seq: 1, ts: 0 },
    { kind: 'receipt', chatId: 'cAbCdEfGhIjKl', seq: 9, status: 'read', by: 'uAbCdEfGhIjKl', ts: 5 },
    { kind: 'receipt', chatId: 'cAbCdEfGhIjKl', seq: 9, status: 'delivered', ts: 5 },
    { kind: 'tally', chatId: 'cAbCdEfGhIjKl', seq: 3, delivered: 1000, read: 12, of: 1023 },
    { kind: 'error', code: 'E_ACL_DENIED', detail: 'nope', ref: 'r' },
    { kind: 'read' },
    { kind: 'sync', chatId: 'cAbCdEfGhIjKl', after: 7 },
    { kind: 'synced', count: 3 },
    { kind: 'typing', chatId: 'cAbCdEfGhIjKl', state: 'recording' },
    { kind: 'typing', chatId: 'gAbCdEfGhIjKl', state: 'stop', from: 'uAbCdEfGhIjKl' },
    { kind: 'watch', chatIds: ['cAbCdEfGhIjKl', 'gAbCdEfGhIjKl'] },
    { kind: 'watch', chatIds: [] },
    { kind: 'presence', userId: 'uAbCdEfGhIjKl', online: false, lastSeen: 1_700_000_000_000 },
    { kind: 'status', statusId: 'sAbCdEfGhIjKl', from: 'uAbCdEfGhIjKl', ts: 5, expiresAt: 86_400_005, text: 'hi', background: 0x112233, font: 2 },
    { kind: 'status', statusId: 'sAbCdEfGhIjKl', from: 'uAbCdEfGhIjKl', ts: 5, expiresAt: 86_400_005, removed: true },
    {
      kind: 'status', statusId: 'sAbCdEfGhIjKl', from: 'uAbCdEfGhIjKl', ts: 5, expiresAt: 86_400_005, text: 'caption',
      media: { attachmentId: 'mAbCdEfGhIjKl', kind: 'image', contentType: 'image/png', size: 10, sha256: 'ab'.repeat(32), preview: 'AAAA', width: 4, height: 3 },
    },
    { kind: 'keys', count: 4, low: true },
  ];

  it('random bytes (seed 1, 20,000 payloads of 0-300 bytes)', () => {
    const rnd = prng(1);
    let refused = 0;
    for (let i = 0; i < 20_000; i++) if (check(rnd.bytes(rnd.int(300)), `seed 1 #${i}`) === 'refused') refused++;
    expect(refused).toBeGreaterThan(19_000);
  });

  it('mutated valid envelopes (seed 2, 30,000 mutations: bit flips, byte changes, truncation, insertion, splicing)', () => {
    const rnd = prng(2);
    const valid = samples().map((e) => Buffer.from(encode(e)));
    let ok = 0;
    for (let i = 0; i < 30_000; i++) {
      let b = Buffer.from(rnd.pick(valid));
      for (let m = 0, n = 1 + rnd.int(3); m < n; m++) {
        switch (rnd.int(6)) {
          case 0: if (b.length) b[rnd.int(b.length)]! ^= 1 << rnd.int(8); break;
          case 1: if (b.length) b[rnd.int(b.length)] = rnd.int(256); break;
          case 2: b = b.subarray(0, rnd.int(b.length + 1)); break;
          case 3: { const at = rnd.int(b.length + 1); b = Buffer.concat([b.subarray(0, at), rnd.bytes(1 + rnd.int(8)), b.subarray(at)]); break; }
          case 4: b = Buffer.concat([b, rnd.pick(valid)]); break;
          default: { const at = rnd.int(b.length + 1); b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rnd.int(4))]); }
        }
      }
      if (check(b, `seed 2 #${i}`) === 'ok') ok++;
    }
    // Some mutations leave a valid envelope (e.g. a changed body byte): those must be well-formed.
    expect(ok).toBeGreaterThan(0);
  });

  it('structured fuzz: every kind with fields of random types and boundary values (seed 3, 30,000)', () => {
    const rnd = prng(3);
    const values: unknown[] = [
      null, undefined, true, false, 0, -1, 1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 2 ** 64,
      BigInt(2) ** BigInt(70), '', 'x', 'uAbCdEfGhIjKl', 'cAbCdEfGhIjKl', 'dAbCdEfGhIjKl', 'E_ACL_DENIED', 'E_NOPE',
      'a'.repeat(25), 'a b', '\u0000', '\ud800', '😀'.repeat(10), 'x'.repeat(70_000), new Uint8Array(0),
      new Uint8Array(1000), [], [1, [2, [3]]], {}, { a: 1 }, { __proto__: { polluted: true } }, new Date(0), new Map([[1, 2]]),
    ];
    for (let i = 0; i < 30_000; i++) {
      const kind = rnd.int(16); // 0 and 15 are not kinds
      const fields = Array.from({ length: rnd.int(8) }, () => rnd.pick(values));
      let payload: Uint8Array;
      try {
        payload = cbor.encode([kind, ...fields]);
      } catch {
        continue; // a value cbor-x cannot encode
      }
      check(payload, `seed 3 #${i}`);
    }
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });

  it('hostile CBOR: huge declared lengths, deep nesting, tags, indefinite lengths, records', () => {
    const hostile: Buffer[] = [
      Buffer.from('9bffffffffffffffff', 'hex'), // array of 2^64-1 items, no items
      Buffer.from('9a7fffffff01', 'hex'), // array of 2^31-1 items
      Buffer.from('5bffffffffffffffff', 'hex'), // byte string of 2^64-1 bytes
      Buffer.from('7a7fffffff61', 'hex'), // text string of 2^31-1 bytes
      Buffer.from('bb00000000ffffffff', 'hex'), // map of 2^32-1 pairs
      Buffer.concat([Buffer.alloc(100_000, 0x81), Buffer.from([0x01])]), // 100,000 nested arrays
      Buffer.alloc(50_000, 0x9f), // indefinite arrays never closed
      Buffer.from('c11a5f5e1000', 'hex'), // tag 1 (epoch date)
      Buffer.from('c2581f' + 'ff'.repeat(31), 'hex'), // tag 2 bignum
      Buffer.from('d8258201a0', 'hex'), // tag 37 with junk
      Buffer.from('d9dff98101', 'hex'), // cbor-x record tag
      Buffer.from('d81c01', 'hex'), // shared-reference tags
      Buffer.from('d81d00', 'hex'),
      Buffer.from('f97e00', 'hex'), // half-float NaN
      Buffer.from('ff', 'hex'), // stray break
      Buffer.from('82017f6161ff', 'hex'), // [1, indefinite text]
      Buffer.from('8201a16b5f5f70726f746f5f5fa0', 'hex'), // [1, {"__proto__": {}}]
    ];
    for (const [i, h] of hostile.entries()) check(h, `hostile #${i}`);
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });
});

// --- HTTP ---------------------------------------------------------------------------------------

let tp: TestPlatform;
let alice: Registered;
let bob: Registered;
let chatId: string;
let groupId: string;
/** A status post of alice's, for the status routes. */
let statusId: string;
/** The dashboard's admin credential, and a device of its own for the admin routes to disconnect and revoke. */
const ADMIN_TOKEN = `fuzz-admin-${'x'.repeat(32)}`;
let dave: Registered;

beforeAll(async () => {
  // Behind a "proxy": every fuzz request comes from its own address, so the per-address limits
  // do not turn every authenticated case into E_RATE_LIMITED (they are tested in security.test.ts).
  tp = await startTestPlatform({ PARLEY_TRUST_PROXY: 'true', PARLEY_CODE_RATE_PER_IP: '100000', PARLEY_CODE_RATE_PER_PHONE: '100000', PARLEY_ADMIN_TOKEN: ADMIN_TOKEN });
  alice = await tp.register();
  bob = await tp.register();
  dave = await tp.register();
  // A chat with a message, so that history and status have something to find.
  const { ParleyClient } = await import('@parley/client-sdk');
  const c = new ParleyClient({ url: tp.mqttUrl, deviceId: alice.deviceId, token: alice.token, userId: alice.userId });
  await c.connect();
  const sent = await c.send(bob.userId, 'fuzz target');
  chatId = (await c.waitStored(sent.clientMsgId)).chatId;
  await c.close();
  // A group, so that the group routes have something to change.
  const g = await fetch(`${tp.httpUrl}/v1/chats`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${alice.token}` },
    body: JSON.stringify({ name: 'fuzz group', members: [bob.userId] }),
  });
  groupId = ((await g.json()) as { chatId: string }).chatId;
  const st = await fetch(`${tp.httpUrl}/v1/status`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${alice.token}` }, body: JSON.stringify({ text: 'fuzz status' }),
  });
  statusId = ((await st.json()) as { statusId: string }).statusId;
}, 60_000);

afterAll(async () => { await tp?.close(); });

interface Answer {
  status: number;
  body: string;
}

const problems: string[] = [];

/** Records anything that is not a success or a catalogue error with the catalogue's status. */
function judge(label: string, a: Answer, method: string): void {
  if (a.status >= 500) {
    problems.push(`${label}: ${a.status} ${a.body.slice(0, 200)}`);
    return;
  }
  if (a.status < 400 || method === 'HEAD') return;
  let code: unknown;
  try {
    code = (JSON.parse(a.body) as { error?: { code?: unknown } }).error?.code;
  } catch {
    problems.push(`${label}: ${a.status} with a body that is not JSON: ${a.body.slice(0, 120)}`);
    return;
  }
  if (!isErrorCode(code)) problems.push(`${label}: ${a.status} without a catalogue code: ${a.body.slice(0, 200)}`);
  else if (ERRORS[code].status !== a.status) problems.push(`${label}: ${code} answered with ${a.status}, the catalogue says ${ERRORS[code].status}`);
}

let ipCounter = 0;
const nextIp = (): string => { ipCounter++; return `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter & 255}`; };

async function request(method: string, path: string, opts: { body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await fetch(`${tp.httpUrl}${path}`, {
    method,
    headers: { 'x-forwarded-for': nextIp(), ...opts.headers },
    ...(opts.body !== undefined ? { body: typeof opts.body === 'string' ? opts.body : new Uint8Array(opts.body) } : {}),
  });
  return { status: res.status, body: await res.text() };
}

/** A raw HTTP/1.1 exchange over TCP: for what fetch refuses to send. */
function rawHttp(bytes: Buffer | string): Promise<Answer> {
  return new Promise((resolve) => {
    const port = Number(new URL(tp.httpUrl).port);
    const s = netConnect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    const done = (): void => {
      const text = Buffer.concat(chunks).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      if (!status) { resolve({ status: 0, body: `no HTTP answer: ${JSON.stringify(text.slice(0, 200))}` }); return; }
      const sep = text.indexOf('\r\n\r\n');
      let body = sep >= 0 ? text.slice(sep + 4) : '';
      if (/transfer-encoding: chunked/i.test(text.slice(0, sep))) body = body.replace(/^[0-9a-f]+\r\n/i, '').replace(/\r\n0\r\n\r\n$/, '');
      resolve({ status, body });
    };
    s.on('close', done);
    s.setTimeout(3000, () => s.destroy());
    s.on('connect', () => s.write(bytes));
  });
}

describe('HTTP fuzz: every answer is a catalogue error, never a 5xx', () => {
  beforeEach(() => { problems.length = 0; });

  /** `admin`: the route takes the admin token (device tokens are among the wrong ones tried). */
  const ROUTES: Array<{ method: string; path: () => string; auth: boolean; admin?: boolean; body?: () => Record<string, unknown> }> = [
    { method: 'POST', path: () => '/v1/register', auth: false, body: () => ({ phone: '+15550001234' }) },
    { method: 'POST', path: () => '/v1/verify', auth: false, body: () => ({ phone: '+15550001234', code: '123456', deviceName: 'x' }) },
    { method: 'POST', path: () => '/v1/devices', auth: true, body: () => ({ deviceName: 'web' }) },
    { method: 'GET', path: () => '/v1/devices', auth: true },
    { method: 'DELETE', path: () => `/v1/devices/${bob.deviceId}`, auth: true },
    { method: 'GET', path: () => '/v1/users/me', auth: true },
    // social (services/src/api/social.ts)
    { method: 'POST', path: () => '/v1/contacts/lookup', auth: true, body: () => ({ hashes: ['ab'.repeat(32)], save: false }) },
    { method: 'GET', path: () => '/v1/contacts', auth: true },
    { method: 'POST', path: () => '/v1/contacts', auth: true, body: () => ({ add: [bob.userId], remove: [alice.userId] }) },
    { method: 'GET', path: () => '/v1/profile', auth: true },
    { method: 'PATCH', path: () => '/v1/profile', auth: true, body: () => ({ name: 'Al', about: 'hi', avatar: 'mAAAAAAAAAAAA' }) },
    { method: 'GET', path: () => `/v1/users/${bob.userId}/profile`, auth: true },
    { method: 'GET', path: () => `/v1/users/${bob.userId}/avatar?thumbnail=1`, auth: true },
    { method: 'GET', path: () => '/v1/privacy', auth: true },
    { method: 'PATCH', path: () => '/v1/privacy', auth: true, body: () => ({ lastSeen: 'contacts', photo: 'nobody', about: 'everyone', readReceipts: false, groupAdd: 'contacts' }) },
    { method: 'POST', path: () => '/v1/blocks', auth: true, body: () => ({ userId: bob.userId }) },
    { method: 'GET', path: () => '/v1/blocks', auth: true },
    { method: 'DELETE', path: () => `/v1/blocks/${bob.userId}`, auth: true },
    { method: 'GET', path: () => `/v1/messages/${chatId}.1/status`, auth: true },
    { method: 'GET', path: () => `/v1/chats/${chatId}/messages?after=0&limit=10`, auth: true },
    { method: 'GET', path: () => '/healthz', auth: false },
    { method: 'GET', path: () => '/readyz', auth: false },
    { method: 'GET', path: () => '/metrics', auth: false },
    { method: 'POST', path: () => '/v1/devices/link-codes', auth: true, body: () => ({}) },
    { method: 'POST', path: () => '/v1/devices/link', auth: false, body: () => ({ code: 'ABCDE-FGHJK', deviceName: 'x' }) },
    { method: 'POST', path: () => '/v1/chats', auth: true, body: () => ({ name: 'g', members: [bob.userId], admins: [bob.userId], description: 'd', avatar: 'a', shareHistory: true }) },
    { method: 'GET', path: () => '/v1/chats?limit=5', auth: true },
    { method: 'GET', path: () => `/v1/chats/${groupId}`, auth: true },
    { method: 'PATCH', path: () => `/v1/chats/${groupId}`, auth: true, body: () => ({ name: 'n', description: 'd', avatar: 'a' }) },
    { method: 'POST', path: () => `/v1/chats/${groupId}/participants`, auth: true, body: () => ({ add: [bob.userId], remove: [alice.userId] }) },
    { method: 'POST', path: () => `/v1/chats/${groupId}/admins`, auth: true, body: () => ({ users: [bob.userId] }) },
    { method: 'POST', path: () => `/v1/chats/${groupId}/admins/remove`, auth: true, body: () => ({ users: [bob.userId] }) },
    { method: 'POST', path: () => `/v1/chats/${groupId}/leave`, auth: true, body: () => ({}) },
    { method: 'PUT', path: () => `/v1/chats/${groupId}/settings`, auth: true, body: () => ({ mutedUntil: 5, archived: true }) },
    { method: 'POST', path: () => `/v1/chats/${groupId}/invites`, auth: true, body: () => ({ ttlSec: 600 }) },
    { method: 'GET', path: () => `/v1/chats/${groupId}/invites`, auth: true },
    { method: 'DELETE', path: () => `/v1/chats/${groupId}/invites/${'a'.repeat(32)}`, auth: true },
    { method: 'POST', path: () => '/v1/invites/abcdefghijklmnopqrstuv', auth: true, body: () => ({}) },
    { method: 'GET', path: () => `/v1/chats/${groupId}/messages?before=5&limit=3`, auth: true },
    { method: 'DELETE', path: () => `/v1/chats/${groupId}`, auth: true },
    { method: 'POST', path: () => '/v1/attachments', auth: true, body: () => ({ kind: 'image', contentType: 'image/png', size: 1000, sha256: 'a'.repeat(64), filename: 'x.png', durationMs: 5, waveform: [1, 2], encrypted: false }) },
    { method: 'POST', path: () => '/v1/attachments/mAAAAAAAAAAAA/parts', auth: true, body: () => ({ parts: [1, 2] }) },
    { method: 'POST', path: () => '/v1/attachments/mAAAAAAAAAAAA/complete', auth: true, body: () => ({ parts: [{ partNumber: 1, etag: 'x' }] }) },
    { method: 'GET', path: () => '/v1/attachments/mAAAAAAAAAAAA', auth: true },
    { method: 'GET', path: () => '/v1/attachments/mAAAAAAAAAAAA/download?thumbnail=1', auth: true },
    { method: 'GET', path: () => '/v1/blobs/media/mAAAAAAAAAAAA?op=get&exp=1&sig=x', auth: false },
    { method: 'PUT', path: () => '/v1/blobs/media/mAAAAAAAAAAAA?op=part&upload=x&part=1&exp=1&sig=x', auth: false, body: () => ({ raw: 'bytes' }) },
    // push (services/src/api/push.ts): FCM and APNs are not configured here (E_PUSH_UNSUPPORTED).
    { method: 'GET', path: () => '/v1/push/config', auth: false },
    { method: 'PUT', path: () => '/v1/push', auth: true, body: () => ({ kind: 'webpush', endpoint: 'https://fcm.googleapis.com/fcm/send/abc', expirationTime: null, keys: { p256dh: `B${'A'.repeat(86)}`, auth: 'A'.repeat(22) } }) },
    { method: 'PUT', path: () => '/v1/push', auth: true, body: () => ({ kind: 'apns', token: 'ab'.repeat(32), environment: 'development', topic: 'chat.parley.app' }) },
    { method: 'PUT', path: () => '/v1/push', auth: true, body: () => ({ kind: 'fcm', token: 'fcmtoken:APA91b'.padEnd(160, 'x') }) },
    { method: 'GET', path: () => '/v1/push', auth: true },
    { method: 'DELETE', path: () => '/v1/push', auth: true },
    { method: 'POST', path: () => '/v1/status', auth: true, body: () => ({ text: 'hi', background: 0x336699, font: 2, audience: { except: [bob.userId] } }) },
    { method: 'POST', path: () => '/v1/status', auth: true, body: () => ({ media: 'mAAAAAAAAAAAA', caption: 'c', audience: { only: [bob.userId] } }) },
    { method: 'GET', path: () => '/v1/status', auth: true },
    { method: 'POST', path: () => `/v1/status/${statusId}/views`, auth: true, body: () => ({}) },
    { method: 'GET', path: () => `/v1/status/${statusId}/viewers`, auth: true },
    { method: 'DELETE', path: () => `/v1/status/${statusId}`, auth: true },
    // the MLS key directory (services/src/api/keys.ts)
    { method: 'PUT', path: () => '/v1/keys/identity', auth: true, body: () => ({ credential: 'AAECAwQF', signatureKey: 'A'.repeat(43) }) },
    { method: 'POST', path: () => '/v1/keys/packages', auth: true, body: () => ({ packages: [{ ref: 'cmVm', data: 'AAECAwQF' }, { ref: 'b'.repeat(43), data: 'A'.repeat(432) }], lastResort: { ref: 'last', data: 'AAAA' } }) },
    { method: 'GET', path: () => '/v1/keys/packages/count', auth: true },
    { method: 'POST', path: () => '/v1/keys/claim', auth: true, body: () => ({ users: [bob.userId, alice.userId, 'uAAAAAAAAAAAA'] }) },
    { method: 'POST', path: () => '/v1/keys/claim', auth: true, body: () => ({ users: [bob.userId], devices: [bob.deviceId, 'dAAAAAAAAAAAA'] }) },
    { method: 'POST', path: () => '/v1/keys/identities', auth: true, body: () => ({ users: [bob.userId, alice.userId, 'uAAAAAAAAAAAA'] }) },
    { method: 'GET', path: () => `/v1/users/${bob.userId}/identities`, auth: true },
    { method: 'POST', path: () => '/v1/account/deletion-code', auth: true, body: () => ({}) },
    // A wrong code: five of them lock the pending code (one right guess in a million would delete the caller).
    { method: 'POST', path: () => '/v1/account/delete', auth: true, body: () => ({ code: '123456' }) },
    { method: 'GET', path: () => '/v1/account/export', auth: true },
    // the dashboard (services/src/admin/)
    { method: 'GET', path: () => '/admin', auth: false },
    { method: 'GET', path: () => '/admin/dashboard.js', auth: false },
    { method: 'GET', path: () => '/admin/assets/uPlot.min.css', auth: false },
    { method: 'GET', path: () => '/admin/api/overview', auth: true, admin: true },
    { method: 'GET', path: () => `/admin/api/clients/${dave.deviceId}`, auth: true, admin: true },
    { method: 'POST', path: () => `/admin/api/clients/${dave.deviceId}/disconnect`, auth: true, admin: true, body: () => ({}) },
    { method: 'POST', path: () => `/admin/api/clients/${dave.deviceId}/revoke`, auth: true, admin: true, body: () => ({}) },
  ];

  it('random and boundary JSON bodies on every route (seed 4, 1,500 requests)', async () => {
    const rnd = prng(4);
    const strings = ['', ' ', 'x', '+15550001234', '+0000', '123456', '12345a', 'a'.repeat(70), 'ñ', '😀', '\u202e', '\u200b', '\u0000', '\ud800', 'x'.repeat(5000), '<script>', "' OR 1=1 --", '../../etc/passwd', '%00', '{}'];
    const anyValue = (depth = 0): unknown => {
      switch (rnd.int(depth > 2 ? 6 : 9)) {
        case 0: return rnd.pick(strings);
        case 1: return rnd.pick([0, -1, 1, 1.5, 1e308, -1e308, 2 ** 53 + 1, 123456]);
        case 2: return rnd.pick([true, false]);
        case 3: return null;
        case 4: return rnd.pick(strings) + rnd.pick(strings);
        case 5: return rnd.int(1_000_000);
        case 6: return Array.from({ length: rnd.int(5) }, () => anyValue(depth + 1));
        case 7: return Object.fromEntries(Array.from({ length: rnd.int(4) }, () => [rnd.pick(['phone', 'code', 'deviceName', 'phones', 'name', 'members', 'add', 'users', 'userId', 'kind', 'size', 'sha256', 'parts', 'packages', 'ref', 'data', 'lastResort', 'credential', 'devices', 'x', '__proto__', 'constructor']), anyValue(depth + 1)]));
        default: return rnd.pick(strings).repeat(1 + rnd.int(3));
      }
    };
    for (let i = 0; i < 1500; i++) {
      const r = rnd.pick(ROUTES);
      let body: unknown = r.body?.() ?? {};
      switch (rnd.int(6)) {
        case 0: body = anyValue(); break; // anything at all
        case 1: if (body && typeof body === 'object') { const k = rnd.pick(Object.keys(body)); if (k) delete (body as Record<string, unknown>)[k]; } break; // missing field
        case 2: if (body && typeof body === 'object') (body as Record<string, unknown>)[rnd.pick(['extra', 'admin', 'userId'])] = anyValue(); break; // extra field
        case 3: if (body && typeof body === 'object') { const k = rnd.pick(Object.keys(body)); if (k) (body as Record<string, unknown>)[k] = anyValue(); } break; // wrong type
        case 4: body = rnd.pick([[], 'str', 42, null, true]); break;
        default: break; // the valid template
      }
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (r.auth && rnd.next() < 0.8) headers.authorization = `Bearer ${r.admin ? rnd.pick([ADMIN_TOKEN, ADMIN_TOKEN, alice.token]) : rnd.pick([alice.token, bob.token])}`;
      const label = `seed 4 #${i} ${r.method} ${r.path()} ${JSON.stringify(body)?.slice(0, 80)}`;
      judge(label, await request(r.method, r.path(), { ...(r.method === 'GET' || r.method === 'DELETE' ? {} : { body: JSON.stringify(body) ?? '' }), headers }), r.method);
    }
    if (problems.length) console.log('FUZZ PROBLEMS', problems.slice(0, 12));
    expect(problems).toEqual([]);
  }, 60_000);

  it('path parameters and query strings: odd ids, huge values, bad encodings (seed 5, 600 requests)', async () => {
    const rnd = prng(5);
    const params = ['', 'x', chatId, `${chatId}.1`, `${chatId}.zzzzzzzzzzzz`, `${chatId}.-1`, `${chatId}.0`, 'c' + 'A'.repeat(12), 'cAAAAAAAAAAAA.1', '%00', '%ff', '%2e%2e%2f', '..', 'ñ', encodeURIComponent('😀'), 'a'.repeat(3000), '%E2%80%AE', bob.deviceId, alice.deviceId, 'dAAAAAAAAAAAA'];
    const queries = ['', '?before=0', '?before=-1', `?afterMsgId=${chatId}.1`, '?afterMsgId=x', '?after=1&before=2', '?after=-1', '?after=1e309', '?after=abc', '?limit=0', '?limit=501', '?limit=1.5', '?after[]=1', '?after=1&after=2', '?limit=%00', '?x=1', `?after=${'9'.repeat(400)}`, '?after=0x10', '?limit= 5', '?__proto__[x]=1'];
    for (let i = 0; i < 600; i++) {
      const p = rnd.pick(params);
      const path = rnd.pick([`/v1/messages/${p}/status`, `/v1/chats/${p}/messages${rnd.pick(queries)}`, `/v1/devices/${p}`, `/v1/${p}`,
        `/v1/chats/${p}`, `/v1/chats/${p}/invites/${rnd.pick(params)}`, `/v1/invites/${p}`, `/v1/attachments/${p}`,
        `/v1/attachments/${p}/download${rnd.pick(queries)}`, `/v1/blobs/${p}${rnd.pick(queries)}`, `/v1/status/${p}/viewers`, `/v1/users/${p}/identities`, `/v1/blobs/media/${p}?op=get&exp=99999999999&sig=${p}`, `/v1/account/export${rnd.pick(queries)}`,
        `/admin/api/clients/${p}`, `/admin/api/overview${rnd.pick(queries)}`, `/admin/${p}`]);
      const method = path.startsWith('/v1/devices/') || path.includes('/invites/') ? 'DELETE' : 'GET';
      const bearer = path.startsWith('/admin/') ? rnd.pick([ADMIN_TOKEN, alice.token]) : rnd.pick([alice.token, bob.token]);
      judge(`seed 5 #${i} ${method} ${path.slice(0, 100)}`, await request(method, path, { headers: { authorization: `Bearer ${bearer}` } }), method);
    }
    if (problems.length) console.log('FUZZ PROBLEMS', problems.slice(0, 12));
    expect(problems).toEqual([]);
  }, 60_000);

  it('wrong methods, content types, raw bodies and auth headers on every route', async () => {
    const methods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'];
    const auths = ['', 'Bearer', 'Bearer ', 'Bearer  ', 'bearer ' + alice.token, 'Basic dXNlcjpwYXNz', `Bearer ${alice.token} extra`, `Bearer ${alice.token.slice(0, -1)}`,
      `Bearer ${alice.deviceId}.`, `Bearer .${alice.token.split('.')[1]}`, `Bearer ${'a'.repeat(4000)}`, `Bearer ${bob.deviceId}.${alice.token.split('.')[1]}`, 'Bearer ' + '.'.repeat(50)];
    const bodies: Array<[string | undefined, string | Buffer]> = [
      ['application/json', '{"phone":'], ['application/json', ''], ['application/json', 'null'], ['application/json', '\ufeff{"phone":"+15550001234"}'],
      ['application/json', '{"phone":"+15550001234"} trailing'], ['application/json', Buffer.from([0x7b, 0xff, 0xfe, 0x7d])], ['application/json', '{"__proto__":{"x":1}}'],
      ['application/json', '{"constructor":{"prototype":{"x":1}}}'], ['application/json', '['.repeat(5000) + ']'.repeat(5000)], ['application/json', JSON.stringify({ phone: 'x'.repeat(70_000) })],
      ['application/json; charset=utf-16', '{}'], ['APPLICATION/JSON', '{}'], ['application/json;;', '{}'], ['text/plain', 'hi'], ['application/x-www-form-urlencoded', 'phone=1'],
      ['multipart/form-data; boundary=x', '--x\r\n\r\n--x--'], ['application/octet-stream', Buffer.from([1, 2, 3])], [undefined, '{"phone":"+15550001234"}'], ['', '{}'],
    ];
    for (const r of ROUTES) {
      const right = r.admin ? ADMIN_TOKEN : alice.token;
      for (const method of methods) judge(`${method} ${r.path()}`, await request(method, r.path(), { headers: { authorization: `Bearer ${right}` } }), method);
      const routeAuths = r.admin ? [...auths, `Bearer ${alice.token}`, `Bearer ${ADMIN_TOKEN} extra`, `Bearer ${ADMIN_TOKEN.slice(0, -1)}`, `bearer ${ADMIN_TOKEN}`] : auths;
      if (r.auth) for (const a of routeAuths) judge(`auth "${a.slice(0, 30)}" ${r.path()}`, await request(r.method, r.path(), { headers: a ? { authorization: a } : {} }), r.method);
      if (r.method === 'POST') {
        for (const [type, body] of bodies) {
          judge(`${type} ${String(body).slice(0, 30)} ${r.path()}`, await request('POST', r.path(), {
            body, headers: { ...(type !== undefined ? { 'content-type': type } : {}), authorization: `Bearer ${right}` },
          }), 'POST');
        }
      }
    }
    if (problems.length) console.log('FUZZ PROBLEMS', problems.slice(0, 12));
    expect(problems).toEqual([]);
  }, 60_000);

  it('raw HTTP that fetch would not send: odd header bytes, bad URLs, lying lengths', async () => {
    const port = Number(new URL(tp.httpUrl).port);
    const host = `Host: 127.0.0.1:${port}\r\n`;
    const cases: Array<[string, Buffer | string]> = [
      ['non-ASCII bearer', Buffer.concat([Buffer.from(`GET /v1/users/me HTTP/1.1\r\n${host}Authorization: Bearer `), Buffer.from([0xff, 0xfe, 0xc3, 0xa9]), Buffer.from('\r\nConnection: close\r\n\r\n')])],
      ['bad percent-encoding in the path', `GET /v1/chats/%E0%A4%A/messages HTTP/1.1\r\n${host}Connection: close\r\n\r\n`],
      ['invalid UTF-8 percent-encoded', `GET /v1/messages/%ff%fe/status HTTP/1.1\r\n${host}Connection: close\r\n\r\n`],
      ['a very long URL', `GET /v1/${'a'.repeat(20_000)} HTTP/1.1\r\n${host}Connection: close\r\n\r\n`],
      ['Content-Length shorter than the body', `POST /v1/register HTTP/1.1\r\n${host}Content-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{"phone":"+15550001234"}`],
      ['X-Forwarded-For garbage', `GET /v1/users/me HTTP/1.1\r\n${host}X-Forwarded-For: ;;;, , ::ffff:zz, 999.1.1.1\r\nAuthorization: Bearer x.y\r\nConnection: close\r\n\r\n`],
      ['absolute-form URL', `GET http://evil.example/v1/users/me HTTP/1.1\r\n${host}Connection: close\r\n\r\n`],
      ['asterisk-form URL', `OPTIONS * HTTP/1.1\r\n${host}Connection: close\r\n\r\n`],
      ['headers over 16 KB', `GET /v1/users/me HTTP/1.1\r\n${host}X-Big: ${'b'.repeat(20_000)}\r\nConnection: close\r\n\r\n`],
      ['a request line that is not HTTP', 'HELLO WORLD\r\n\r\n'],
      ['a control character in a header value', Buffer.concat([Buffer.from(`GET /healthz HTTP/1.1\r\n${host}X-A: a`), Buffer.from([0x01]), Buffer.from('b\r\n\r\n')])],
      ['both Content-Length and chunked', `POST /v1/register HTTP/1.1\r\n${host}Content-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`],
    ];
    for (const [label, bytes] of cases) {
      const a = await rawHttp(bytes);
      expect(a.status, `${label}: got an HTTP answer: ${a.body.slice(0, 200)}`).toBeGreaterThan(0);
      judge(`raw: ${label}`, a, 'GET');
    }
    if (problems.length) console.log('FUZZ PROBLEMS', problems.slice(0, 12));
    expect(problems).toEqual([]);
  });

  it('still serves afterwards', async () => {
    // (The fuzzer may well have revoked alice's and bob's devices with their own tokens.)
    const carol = await tp.register();
    const res = await fetch(`${tp.httpUrl}/v1/users/me`, { headers: { authorization: `Bearer ${carol.token}`, 'x-forwarded-for': nextIp() } });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { userId: string }).userId).toBe(carol.userId);
  });
});
