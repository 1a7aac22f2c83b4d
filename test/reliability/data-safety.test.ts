/**
 * Data safety of the SQLite store:
 * - a writer process appending batches through the Store is killed with SIGKILL mid-way, three
 *   times on the same file; after each kill the file passes integrity_check, every batch the
 *   writer reported committed is there in full, no batch is there in part, and seqs have no holes;
 * - `npm run backup` (scripts/backup.ts) takes an online backup while a writer keeps writing: the
 *   copy is a consistent snapshot (whole batches only, everything committed before it started),
 *   and `--restore` puts it back, over an existing store too, keeping the previous one aside.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { createSqliteStore } from '../../services/src/store/sqlite.js';
import { REPO, sleep, tempDir, until } from './helpers.js';

const BATCH = 100;
/** Between batches in the (longer) backup test: the writer stays busy without taking a whole core. */
const PAUSE_MS = 3;
let dir: string;
const children = new Set<ChildProcess>();

beforeAll(() => { dir = tempDir('data-safety'); });
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Writer {
  child: ChildProcess;
  /** Highest batch number the writer reported committed (-1: none yet). */
  committed(): number;
  exited: Promise<void>;
}

function startWriter(file: string, tag: string, pauseMs = 0): Writer {
  const child = spawn(process.execPath, ['--conditions=parley-source', '--import', 'tsx', 'test/reliability/fixtures/store-writer.ts', file, tag, String(BATCH), String(pauseMs)], {
    cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let last = -1;
  let err = '';
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines) {
      const m = /^committed (\d+)$/.exec(l);
      if (m) last = Number(m[1]);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<void>((r) => child.once('exit', () => { children.delete(child); r(); }));
  void exited.then(() => { if (err && !child.killed) console.log(`writer ${tag}: ${err}`); });
  return { child, committed: () => last, exited };
}

interface Audit {
  integrity: string;
  foreignKeys: number;
  /** batch number -> messages of it present */
  batches: Map<number, number>;
  /** seqs of the chat are exactly 1..n and last_seq = n */
  seqsContiguous: boolean;
  messages: number;
}

/** Opens the file afresh (as after a crash) and checks it. */
function audit(file: string, tag: string): Audit {
  const db = new Database(file);
  try {
    const integrity = db.pragma('integrity_check', { simple: true }) as string;
    const foreignKeys = (db.pragma('foreign_key_check') as unknown[]).length;
    const rows = db.prepare('SELECT client_msg_id AS id, chat_id AS chat, seq FROM messages WHERE client_msg_id LIKE ?').all(`${tag}b%`) as Array<{ id: string; chat: string; seq: number }>;
    const batches = new Map<number, number>();
    for (const r of rows) {
      const n = Number(/b(\d+)m/.exec(r.id)![1]);
      batches.set(n, (batches.get(n) ?? 0) + 1);
    }
    let seqsContiguous = true;
    const chat = rows[0]?.chat;
    if (chat) {
      const seqs = (db.prepare('SELECT seq FROM messages WHERE chat_id = ? ORDER BY seq').all(chat) as Array<{ seq: number }>).map((r) => r.seq);
      const last = (db.prepare('SELECT last_seq AS s FROM chats WHERE chat_id = ?').get(chat) as { s: number }).s;
      seqsContiguous = seqs.every((s, i) => s === i + 1) && last === seqs.length;
    }
    return { integrity, foreignKeys, batches, seqsContiguous, messages: rows.length };
  } finally {
    db.close();
  }
}

/** Whole batches only, and they are 0..k without a hole (the writer is sequential). */
function expectWholePrefix(a: Audit, atLeast: number): number {
  expect(a.integrity).toBe('ok');
  expect(a.foreignKeys).toBe(0);
  expect(a.seqsContiguous).toBe(true);
  const partial = [...a.batches].filter(([, n]) => n !== BATCH);
  expect(partial, 'partially written batches').toEqual([]);
  const ids = [...a.batches.keys()].sort((x, y) => x - y);
  expect(ids).toEqual(ids.map((_, i) => i));
  expect(ids.length - 1).toBeGreaterThanOrEqual(atLeast);
  return ids.length;
}

function chatOf(file: string, clientMsgId: string): string {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare('SELECT chat_id AS c FROM messages WHERE client_msg_id = ?').get(clientMsgId) as { c: string }).c;
  } finally {
    db.close();
  }
}

function runBackupScript(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--conditions=parley-source', '--import', 'tsx', 'scripts/backup.ts', ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code) => resolve({ code, out }));
  });
}

describe('the SQLite store under kill -9', () => {
  it('keeps every committed batch whole and nothing partial, across three kills during writes', async () => {
    const file = join(dir, 'killed.sqlite');
    const results: string[] = [];
    for (const [round, after] of [[1, 10], [2, 25], [3, 5]] as const) {
      const tag = `k${round}`;
      const w = startWriter(file, tag);
      await until(() => w.committed() >= after, 30_000, `${after} batches committed`);
      // Let it run on a little so the kill lands at an arbitrary point of a transaction.
      await sleep(5 + round * 7);
      w.child.kill('SIGKILL');
      await w.exited;
      const reported = w.committed();
      const a = audit(file, tag);
      const whole = expectWholePrefix(a, reported);
      results.push(`round ${round}: ${reported + 1} batches reported committed, ${whole} whole batches found (${a.messages} messages), integrity ${a.integrity}`);
      // The earlier rounds are untouched by the later ones.
      for (let r = 1; r < round; r++) expectWholePrefix(audit(file, `k${r}`), 0);
    }
    console.log(`kill -9 during writes:\n  ${results.join('\n  ')}`);
    // And the store opens and works normally afterwards.
    const store = createSqliteStore({ file });
    await store.init();
    const chat = chatOf(file, 'k1b0m0');
    expect((await store.history(chat, 0, 3)).map((m) => m.clientMsgId)).toEqual(['k1b0m0', 'k1b0m1', 'k1b0m2']);
    await store.close();
  }, 90_000);
});

describe('npm run backup', () => {
  it('takes a consistent online backup during writes and restores it, also over an existing store', async () => {
    const file = join(dir, 'live.sqlite');
    const w = startWriter(file, 'bk', PAUSE_MS);
    await until(() => w.committed() >= 20, 30_000, 'some batches before the backup');
    // Rows of the v5 tables (social, push, status) too, written beside the writer.
    const side = createSqliteStore({ file });
    await side.init();
    await side.putProfile('uBackupUser01', { name: 'Backup', about: 'kept' }, 1);
    await side.addContacts('uBackupUser01', ['uBackupUser02'], 1);
    await side.block('uBackupUser01', 'uBackupUser03', 1);
    await side.putPushRegistration({ deviceId: 'dBackupDevic1', userId: 'uBackupUser01', registration: { kind: 'fcm', token: 'backup-token-0123456789' }, at: 1 });
    await side.close();
    const before = w.committed();
    const out = join(dir, 'backup-1.sqlite');
    const b = await runBackupScript(['--file', file, '--out', out]);
    expect(b.code, b.out).toBe(0);
    const during = w.committed();
    // The writer kept writing during and after the backup.
    await until(() => w.committed() >= during + 5, 30_000, 'writes after the backup');
    w.child.kill('SIGKILL');
    await w.exited;
    const report = JSON.parse(b.out.trim().split('\n').at(-1)!) as { integrity: string; messages: number; ms: number; bytes: number };
    expect(report.integrity).toBe('ok');
    // The whole store: every table (schema v5's included) and the schema version.
    const schemaOf = (f: string): { tables: string[]; version: unknown } => {
      const d = new Database(f, { readonly: true });
      try {
        const tables = (d.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>).map((r) => r.name);
        return { tables, version: d.pragma('user_version', { simple: true }) };
      } finally {
        d.close();
      }
    };
    expect(schemaOf(out)).toEqual(schemaOf(file));
    expect(schemaOf(out).tables).toEqual(expect.arrayContaining(['users', 'devices', 'messages', 'attachments', 'profiles', 'privacy', 'contacts', 'blocks', 'push_registrations', 'statuses']));
    const copy = createSqliteStore({ file: out });
    await copy.init();
    expect(await copy.getProfile('uBackupUser01')).toMatchObject({ name: 'Backup', about: 'kept' });
    expect(await copy.listContacts('uBackupUser01')).toEqual(['uBackupUser02']);
    expect(await copy.listBlocked('uBackupUser01')).toEqual(['uBackupUser03']);
    expect(await copy.getPushRegistrations(['dBackupDevic1'])).toHaveLength(1);
    await copy.close();

    // A snapshot: whole batches, at least everything committed before the backup began.
    const snap = audit(out, 'bk');
    const whole = expectWholePrefix(snap, before);
    const live = audit(file, 'bk');
    expect(live.messages).toBeGreaterThan(snap.messages);
    console.log(`online backup during writes: ${before + 1} batches committed when it started, ${during + 1} when it ended; the copy holds ${whole} whole batches (${snap.messages} messages, ${report.bytes} bytes, ${report.ms} ms); the live store went on to ${live.batches.size} batches`);

    // --verify, then restore into a new store, then over the live one.
    expect((await runBackupScript(['--verify', out])).code).toBe(0);
    const fresh = join(dir, 'restored.sqlite');
    const r1 = await runBackupScript(['--restore', out, '--file', fresh]);
    expect(r1.code, r1.out).toBe(0);
    expect(audit(fresh, 'bk').messages).toBe(snap.messages);
    const r2 = await runBackupScript(['--restore', out, '--file', file]);
    expect(r2.code, r2.out).toBe(0);
    const restored = audit(file, 'bk');
    expectWholePrefix(restored, before);
    expect(restored.messages).toBe(snap.messages);
    const kept = readdirSync(dir).filter((f) => f.startsWith('live.sqlite.before-restore-'));
    expect(kept).toHaveLength(1);
    expect(audit(join(dir, kept[0]!), 'bk').messages).toBe(live.messages);

    // The restored store is a working Parley store.
    const store = createSqliteStore({ file });
    await store.init();
    const chat = chatOf(file, 'bkb0m0');
    expect((await store.history(chat, 0, 3)).map((m) => m.clientMsgId)).toEqual(['bkb0m0', 'bkb0m1', 'bkb0m2']);
    await store.close();
  }, 90_000);

  it('refuses bad arguments and a file that is not a backup', async () => {
    expect((await runBackupScript([])).code).toBe(2);
    expect((await runBackupScript(['--out', join(dir, 'x.sqlite'), '--file', join(dir, 'missing.sqlite')])).code).toBe(2);
    const junk = join(dir, 'junk.sqlite');
    const j = new Database(junk);
    j.exec('CREATE TABLE t (x)');
    j.close();
    expect((await runBackupScript(['--restore', junk, '--file', join(dir, 'never.sqlite')])).code).not.toBe(0);
    expect(existsSync(join(dir, 'never.sqlite'))).toBe(false);
  }, 60_000);
});
