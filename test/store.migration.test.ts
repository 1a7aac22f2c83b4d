/**
 * The SQLite store opens a database written by the previous release (schema v1: one delivery row
 * per message per device) and migrates it to v2 (watermarks) on init(). The fixture,
 * test/fixtures/store-v1.sqlite, was written by the v1 code:
 * - users A (+447700900101) and B (+447700900102); devices dA1 (A), dB1 and dB2 (B);
 * - their direct chat; A's device sent seq 1..5 ('hello 1'..'hello 5', ts 3001..3005, clientMsgIds
 *   a1..a5), dB1 sent seq 6 (bytes [1, 2, 3], clientMsgId b1, ts 3010);
 * - dB1 acked 1..3 (at 4001..4003), dB2 acked 1..6 (at 4101..4106); B read up to 2 at 5000.
 * Each test works on a copy; the fixture itself is never opened.
 */
import { DIRECT_DEFAULTS, MEMBER_DEFAULTS, devicesOnly } from './contract/helpers.js';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '@parley/client-sdk/protocol';
import { createSqliteStore } from '../services/src/store/sqlite.js';
import type { Store } from '../services/src/store/types.js';
import { byDevice, expectBody, seqsOf } from './contract/helpers.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/store-v1.sqlite', import.meta.url));

const A = 'uAAAAAAAAAAAA';
const B = 'uBBBBBBBBBBBB';
const DA1 = 'dA1AAAAAAAAAA';
const DB1 = 'dB1BBBBBBBBBB';
const DB2 = 'dB2BBBBBBBBBB';
const CHAT = 'cABABABABABAB';

const sha256 = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** Every table's rows (sorted) and the schema, read from the file without the store. */
function snapshot(file: string): unknown {
  const raw = new Database(file, { readonly: true });
  try {
    const schema = raw.prepare<[], { type: string; name: string; sql: string | null }>(
      "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").all();
    const tables = Object.fromEntries(schema.filter((s) => s.type === 'table').map((t) => [
      t.name,
      raw.prepare(`SELECT * FROM "${t.name}"`).all().map((r) => JSON.stringify(r)).sort(),
    ]));
    return { userVersion: raw.pragma('user_version', { simple: true }), schema, tables };
  } finally {
    raw.close();
  }
}

describe('SQLite store: migrating a v1 database', () => {
  let fixtureHash = '';
  beforeAll(() => {
    fixtureHash = sha256(FIXTURE);
  });
  afterAll(() => {
    // Nothing here may write to the fixture.
    expect(sha256(FIXTURE)).toBe(fixtureHash);
  });

  const toClean: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of toClean.splice(0).reverse()) await fn();
  });

  /** A copy of the fixture in a temp dir of its own. */
  function copyOfFixture(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-migrate-'));
    toClean.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'parley.db');
    fs.copyFileSync(FIXTURE, file);
    return file;
  }

  async function open(file: string): Promise<Store> {
    const store = createSqliteStore({ file });
    toClean.push(() => store.close());
    await store.init();
    return store;
  }

  /** What the migrated database holds, through the port. */
  async function expectMigrated(store: Store): Promise<void> {
    // Accounts.
    expect(await store.getUser(A)).toEqual({ userId: A, phone: '+447700900101', createdAt: 1_000 });
    expect(await store.getUserByPhone('+447700900102')).toEqual({ userId: B, phone: '+447700900102', createdAt: 1_000 });
    expect(await store.listDevices(B)).toEqual([
      { deviceId: DB1, userId: B, tokenHash: 'b'.repeat(64), name: 'b phone', createdAt: 1_002, revokedAt: null },
      { deviceId: DB2, userId: B, tokenHash: 'c'.repeat(64), name: 'b laptop', createdAt: 1_003, revokedAt: null },
    ]);
    expect((await store.getDevice(DA1))?.userId).toBe(A);

    // The chat and its members' watermarks, as v1 left them.
    expect(await store.getChat(CHAT)).toEqual({ chatId: CHAT, kind: 'direct', createdAt: 2_000, lastSeq: 6, ...DIRECT_DEFAULTS });
    expect(await store.getMember(CHAT, A)).toEqual(
      { chatId: CHAT, userId: A, role: 'member', joinedAt: 2_000, deliveredSeq: 0, readSeq: 0, ...MEMBER_DEFAULTS },
    );
    expect(await store.getMember(CHAT, B)).toEqual(
      { chatId: CHAT, userId: B, role: 'member', joinedAt: 2_000, deliveredSeq: 5, readSeq: 2, ...MEMBER_DEFAULTS },
    );
    expect(devicesOnly(await store.chatDevices(CHAT, '', 10))).toEqual(
      [{ deviceId: DA1, userId: A }, { deviceId: DB1, userId: B }, { deviceId: DB2, userId: B }],
    );

    // The messages, with their bodies' types.
    const history = await store.history(CHAT, 0, 100);
    expect(history.map(({ body: _body, ...rest }) => rest)).toEqual([
      ...[1, 2, 3, 4, 5].map((seq) => ({
        chatId: CHAT, seq, senderUserId: A, senderDeviceId: DA1, clientMsgId: `a${seq}`, ts: 3_000 + seq,
      })),
      { chatId: CHAT, seq: 6, senderUserId: B, senderDeviceId: DB1, clientMsgId: 'b1', ts: 3_010 },
    ]);
    history.slice(0, 5).forEach((m, i) => expectBody(m.body, `hello ${i + 1}`));
    expectBody(history[5]!.body, new Uint8Array([1, 2, 3]));

    // Each device's watermark: up to its first unacknowledged row.
    expect(await store.progress(DB1, CHAT)).toEqual({ deviceId: DB1, chatId: CHAT, userId: B, sinceSeq: 0, deliveredSeq: 3, untilSeq: null });
    expect(await store.progress(DB2, CHAT)).toEqual({ deviceId: DB2, chatId: CHAT, userId: B, sinceSeq: 0, deliveredSeq: 6, untilSeq: null });
    // dA1 had rows only from seq 6 on, yet it was in the chat from the start: 1..5 were its own.
    expect(await store.progress(DA1, CHAT)).toEqual({ deviceId: DA1, chatId: CHAT, userId: A, sinceSeq: 0, deliveredSeq: 5, untilSeq: null });
    expect(seqsOf(await store.pending(DB1, null, 100))).toEqual([4, 5]);
    expect(seqsOf(await store.pending(DA1, null, 100))).toEqual([6]);
    expect(await store.pending(DB2, null, 100)).toEqual([]);
    expect(seqsOf(await store.pendingInChat(DB1, CHAT, 0, 100, 100))).toEqual([1, 2, 3, 4, 5]);
    expect(seqsOf(await store.pendingInChat(DA1, CHAT, 0, 100, 100))).toEqual([6]);

    // Who each message was meant for.
    expect(await store.isRecipient(DB1, CHAT, 4)).toBe(true);
    expect(await store.isRecipient(DB2, CHAT, 6)).toBe(true);
    expect(await store.isRecipient(DB1, CHAT, 6)).toBe(false);
    expect(await store.isRecipient(DA1, CHAT, 6)).toBe(true);
    expect(await store.isRecipient(DA1, CHAT, 1)).toBe(false);

    // Status times: the first time one of B's devices had the seq, and B's read time.
    const recipients = async (seq: number) => byDevice((await store.messageStatus(CHAT, seq))!.recipients);
    const r = (userId: string, deviceId: string, deliveredAt: number | null, readAt: number | null) =>
      ({ userId, deviceId, deliveredAt, readAt });
    expect(await recipients(1)).toEqual([r(B, DB1, 4_001, 5_000), r(B, DB2, 4_001, 5_000)]);
    expect(await recipients(2)).toEqual([r(B, DB1, 4_002, 5_000), r(B, DB2, 4_002, 5_000)]);
    expect(await recipients(3)).toEqual([r(B, DB1, 4_003, null), r(B, DB2, 4_003, null)]);
    expect(await recipients(4)).toEqual([r(B, DB1, null, null), r(B, DB2, 4_104, null)]);
    expect(await recipients(5)).toEqual([r(B, DB1, null, null), r(B, DB2, 4_105, null)]);
    // B's own message: dB2 got it at 4106; A has not.
    expect(await recipients(6)).toEqual([r(A, DA1, null, null), r(B, DB2, 4_106, null)]);
    expect((await store.messageStatus(CHAT, 6))?.message.clientMsgId).toBe('b1');
  }

  it('keeps accounts, chats and messages and turns delivery rows into watermarks', async () => {
    const file = copyOfFixture();
    const store = await open(file);
    await expectMigrated(store);

    const raw = snapshot(file) as { userVersion: number; tables: Record<string, unknown> };
    expect(raw.userVersion).toBe(6);
    expect(Object.keys(raw.tables)).not.toContain('deliveries');
  });

  it('goes on from where v1 stopped', async () => {
    const store = await open(copyOfFixture());

    // The next seq is 7; idempotency holds for messages stored by v1.
    const [next, dupA, dupB] = await store.appendMessages([
      { chatId: CHAT, senderUserId: A, senderDeviceId: DA1, clientMsgId: 'a6', body: 'hello 7', ts: 6_000 },
      { chatId: CHAT, senderUserId: A, senderDeviceId: DA1, clientMsgId: 'a1', body: 'retry', ts: 6_001 },
      { chatId: CHAT, senderUserId: B, senderDeviceId: DB1, clientMsgId: 'b1', body: 'retry', ts: 6_002 },
    ]);
    expect(next).toMatchObject({ created: true, message: { seq: 7, body: 'hello 7' } });
    expect(dupA).toMatchObject({ created: false, message: { seq: 1, body: 'hello 1', ts: 3_001 } });
    expect(dupB?.created).toBe(false);
    expect(dupB?.message!.seq).toBe(6);
    expectBody(dupB!.message!.body, new Uint8Array([1, 2, 3]));
    expect((await store.getChat(CHAT))?.lastSeq).toBe(7);

    expect(seqsOf(await store.pending(DB1, null, 100))).toEqual([4, 5, 7]);
    expect(seqsOf(await store.pending(DB2, null, 100))).toEqual([7]);
    expect(seqsOf(await store.pending(DA1, null, 100))).toEqual([6]);
    // dA1 still has 6 to get, so its own 7 does not move it.
    expect((await store.progress(DA1, CHAT))?.deliveredSeq).toBe(5);

    // Acks and reads move the migrated watermarks on.
    expect(await store.markDelivered([{ chatId: CHAT, seq: 7, deviceId: DB1, at: 7_000 }]))
      .toEqual([{ chatId: CHAT, userId: B, seq: 7, at: 7_000 }]);
    expect(await store.pending(DB1, null, 100)).toEqual([]);
    expect(await store.markDelivered([{ chatId: CHAT, seq: 6, deviceId: DA1, at: 7_001 }]))
      .toEqual([{ chatId: CHAT, userId: A, seq: 6, at: 7_001 }]);
    expect(await store.markRead(CHAT, B, 2, 7_050)).toBeNull();
    expect(await store.markRead(CHAT, B, 7, 7_100)).toEqual({ chatId: CHAT, userId: B, seq: 7, at: 7_100 });

    const recipients = async (seq: number) => byDevice((await store.messageStatus(CHAT, seq))!.recipients);
    // dB1 has 4 now; B had it first at 4104.
    expect(await recipients(4)).toEqual([
      { userId: B, deviceId: DB1, deliveredAt: 4_104, readAt: 7_100 },
      { userId: B, deviceId: DB2, deliveredAt: 4_104, readAt: 7_100 },
    ]);
    expect(await recipients(6)).toEqual([
      { userId: A, deviceId: DA1, deliveredAt: 7_001, readAt: null },
      { userId: B, deviceId: DB2, deliveredAt: 4_106, readAt: 7_100 },
    ]);
    expect(await recipients(7)).toEqual([
      { userId: B, deviceId: DB1, deliveredAt: 7_000, readAt: 7_100 },
      { userId: B, deviceId: DB2, deliveredAt: null, readAt: 7_100 },
    ]);

    // New users, devices and chats work as usual next to the migrated ones.
    const { user: a } = await store.getOrCreateUserByPhone('+447700900101', newId('user'), 9_000);
    expect(a.userId).toBe(A);
    expect((await store.getOrCreateDirectChat(B, A, newId('chat'), 9_000)).chatId).toBe(CHAT);
    const dB3 = newId('device');
    await store.addDevice({ deviceId: dB3, userId: B, tokenHash: 'd'.repeat(64), name: 'b tablet', createdAt: 9_000 }, { maxActive: 5, historyDepth: 0 });
    expect(await store.progress(dB3, CHAT)).toEqual({ deviceId: dB3, chatId: CHAT, userId: B, sinceSeq: 7, deliveredSeq: 7, untilSeq: null });
  });

  it('migrates once: init() again, in this or another process, changes nothing', async () => {
    const file = copyOfFixture();
    const first = createSqliteStore({ file });
    await first.init();
    await first.init();
    await first.close();
    const migrated = snapshot(file);

    const again = await open(file);
    await expectMigrated(again);
    await again.close();
    expect(snapshot(file)).toEqual(migrated);
  });
});
