import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newId } from '@parley/client-sdk/protocol';
import { createSqliteStore } from '../services/src/store/sqlite.js';
import type { NewMessage, Store } from '../services/src/store/types.js';
import { seqsOf } from './contract/helpers.js';
import { storeContracts } from './contract/index.js';

function tempFile(): { dir: string; file: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-store-'));
  return { dir, file: path.join(dir, 'parley.db') };
}

storeContracts('Store contracts: SQLite', async () => {
  const { dir, file } = tempFile();
  const store = createSqliteStore({ file });
  return {
    store,
    cleanup: async () => {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('SQLite store', () => {
  const toClean: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of toClean.splice(0).reverse()) await fn();
  });

  function open(file: string): Store {
    const store = createSqliteStore({ file });
    toClean.push(() => store.close());
    return store;
  }

  function tmp(): string {
    const { dir, file } = tempFile();
    toClean.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
    return file;
  }

  async function setup(store: Store) {
    const a = (await store.getOrCreateUserByPhone('+447700900001', newId('user'), 1)).user.userId;
    const b = (await store.getOrCreateUserByPhone('+447700900002', newId('user'), 1)).user.userId;
    const da = newId('device');
    const db = newId('device');
    await store.addDevice({ deviceId: da, userId: a, tokenHash: 'x', name: 'a', createdAt: 1 }, { maxActive: 5, historyDepth: 0 });
    await store.addDevice({ deviceId: db, userId: b, tokenHash: 'y', name: 'b', createdAt: 1 }, { maxActive: 5, historyDepth: 0 });
    const chat = await store.getOrCreateDirectChat(a, b, newId('chat'), 1);
    return { a, b, da, db, chatId: chat.chatId };
  }

  let n = 0;
  const msg = (s: Awaited<ReturnType<typeof setup>>, body: string): NewMessage => ({
    chatId: s.chatId, senderUserId: s.a, senderDeviceId: s.da, clientMsgId: `k${(++n).toString(36)}`, body, ts: 10,
  });

  it('uses WAL and records its schema version; init() twice on one file is harmless', async () => {
    const file = tmp();
    const s1 = open(file);
    await s1.init();
    await s1.init();
    const s2 = open(file);
    await s2.init();
    const Database = (await import('better-sqlite3')).default;
    const raw = new Database(file, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(raw.pragma('user_version', { simple: true })).toBe(6);
    } finally {
      raw.close();
    }
  });

  it('two instances on one file (as two processes) get distinct increasing seqs', async () => {
    const file = tmp();
    const s1 = open(file);
    const s2 = open(file);
    await Promise.all([s1.init(), s2.init()]);
    const ctx = await setup(s1);
    // The second instance sees the same users and chat.
    expect((await s2.getOrCreateDirectChat(ctx.b, ctx.a, newId('chat'), 2)).chatId).toBe(ctx.chatId);

    const seqs: number[] = [];
    for (let i = 0; i < 20; i++) {
      const store = i % 2 ? s2 : s1;
      const res = await store.appendMessages([msg(ctx, `m${i}`), msg(ctx, `m${i}b`)]);
      seqs.push(...res.map((r) => r.message!.seq));
    }
    expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect((await s1.getChat(ctx.chatId))?.lastSeq).toBe(40);
    expect((await s2.history(ctx.chatId, 0, 100)).map((m) => m.seq)).toEqual(seqs);

    // A retry through the other instance is still a duplicate.
    const first = (await s1.getMessage(ctx.chatId, 1))!;
    const [dup] = await s2.appendMessages([{ ...msg(ctx, 'again'), clientMsgId: first.clientMsgId }]);
    expect(dup?.created).toBe(false);
    expect(dup?.message!.seq).toBe(1);
  });

  it('separate processes appending concurrently never reuse a seq and agree on direct chats', async () => {
    const file = tmp();
    const s1 = open(file);
    await s1.init();
    const ctx = await setup(s1);
    const c = (await s1.getOrCreateUserByPhone('+447700900003', newId('user'), 1)).user.userId;

    const { execFile } = await import('node:child_process');
    const { fileURLToPath, pathToFileURL } = await import('node:url');
    const storeUrl = pathToFileURL(fileURLToPath(new URL('../services/src/store/sqlite.ts', import.meta.url))).href;
    const root = fileURLToPath(new URL('..', import.meta.url));
    // Each child is its own process with its own connection, going through the port.
    const child = (w: number) => new Promise<{ seqs: number[]; chatId: string }>((resolve, reject) => {
      const code = `
        import { createSqliteStore } from ${JSON.stringify(storeUrl)};
        const [file, chatId, a, b, c, da, db, w] = process.argv.slice(1);
        const s = createSqliteStore({ file });
        await s.init();
        const direct = await s.getOrCreateDirectChat(w === '1' ? a : c, w === '1' ? c : a, 'c' + 'x'.repeat(11) + w, 5);
        const seqs = [];
        for (let i = 0; i < 10; i++) {
          const batch = Array.from({ length: 10 }, (_, j) => ({
            chatId, senderUserId: a, senderDeviceId: da, clientMsgId: 'w' + w + 'b' + i + 'm' + j, body: 'x', ts: 1,
          }));
          for (const r of await s.appendMessages(batch)) seqs.push(r.message.seq);
        }
        await s.close();
        process.stdout.write(JSON.stringify({ seqs, chatId: direct.chatId }));
      `;
      execFile(
        process.execPath,
        ['--conditions=parley-source', '--import', 'tsx', '--input-type=module', '-e', code, file, ctx.chatId, ctx.a, ctx.b, c, ctx.da, ctx.db, String(w)],
        { cwd: root, timeout: 30_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout))),
      );
    });
    // Meanwhile this process appends too.
    const mine = (async () => {
      const out: number[] = [];
      for (let i = 0; i < 20; i++) out.push(...(await s1.appendMessages([msg(ctx, `p${i}`)])).map((r) => r.message!.seq));
      return out;
    })();
    const [r1, r2] = await Promise.all([child(1), child(2)]);
    const own = await mine;

    // Within each writer, seqs increase; across writers, none is reused.
    for (const seqs of [r1.seqs, r2.seqs, own]) expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    const all = [...r1.seqs, ...r2.seqs, ...own].sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: 220 }, (_, i) => i + 1));
    expect((await s1.history(ctx.chatId, 0, 1000)).map((m) => m.seq)).toEqual(all);
    expect((await s1.getChat(ctx.chatId))?.lastSeq).toBe(220);
    expect(await s1.pending(ctx.db, null, 1000)).toHaveLength(220);
    // The sender's device was caught up all along: its own messages moved it to the end.
    expect((await s1.progress(ctx.da, ctx.chatId))?.deliveredSeq).toBe(220);

    // Both processes got the same (a, c) chat, with its two members.
    expect(r1.chatId).toBe(r2.chatId);
    expect((await s1.getOrCreateDirectChat(ctx.a, c, newId('chat'), 9)).chatId).toBe(r1.chatId);
    expect((await s1.getMembers(r1.chatId)).map((m) => m.userId).sort()).toEqual([ctx.a, c].sort());
  });

  it('separate processes claiming key packages concurrently never get the same one', async () => {
    const file = tmp();
    const s1 = open(file);
    await s1.init();
    const u = (await s1.getOrCreateUserByPhone('+447700900009', newId('user'), 1)).user.userId;
    const devices = [newId('device'), newId('device')];
    for (const d of devices) {
      await s1.addDevice({ deviceId: d, userId: u, tokenHash: 'x', name: 'k', createdAt: 1 }, { maxActive: 5, historyDepth: 0 });
      const packages = Array.from({ length: 60 }, (_, i) => ({ ref: `${d}-${i}`, data: new Uint8Array([i]) }));
      await s1.addKeyPackages({ deviceId: d, userId: u }, packages, { ref: `${d}-last`, data: new Uint8Array([255]) }, 1, 200);
    }

    const { execFile } = await import('node:child_process');
    const { fileURLToPath, pathToFileURL } = await import('node:url');
    const storeUrl = pathToFileURL(fileURLToPath(new URL('../services/src/store/sqlite.ts', import.meta.url))).href;
    const root = fileURLToPath(new URL('..', import.meta.url));
    // Each child is its own process with its own connection: 40 claims of both devices each.
    const child = () => new Promise<string[]>((resolve, reject) => {
      const code = `
        import { createSqliteStore } from ${JSON.stringify(storeUrl)};
        const [file, ...devices] = process.argv.slice(1);
        const s = createSqliteStore({ file });
        await s.init();
        const refs = [];
        for (let i = 0; i < 40; i++) for (const c of await s.claimKeyPackages(devices)) refs.push(c.ref);
        await s.close();
        process.stdout.write(JSON.stringify(refs));
      `;
      execFile(
        process.execPath,
        ['--conditions=parley-source', '--import', 'tsx', '--input-type=module', '-e', code, file, ...devices],
        { cwd: root, timeout: 30_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout))),
      );
    });
    // Meanwhile this process claims too (through a second connection of its own).
    const s2 = open(file);
    await s2.init();
    const mine = (async () => {
      const out: string[] = [];
      for (let i = 0; i < 20; i++) for (const c of await s2.claimKeyPackages(devices)) out.push(c.ref);
      return out;
    })();
    const all = (await Promise.all([child(), child(), mine])).flat();
    // 100 claims of each device: its 60 packages once each, then its last resort 40 times.
    expect(all).toHaveLength(200);
    const pool = all.filter((r) => !r.endsWith('-last'));
    expect(pool).toHaveLength(120);
    expect(new Set(pool).size).toBe(120);
    for (const d of devices) expect(all.filter((r) => r === `${d}-last`)).toHaveLength(40);
    expect(await s1.countKeyPackages(devices[0]!)).toEqual({ count: 0, lastResort: true });
  });

  it('migrates a v5 database to v6 (the key directory\'s tables), keeping its data', async () => {
    const file = tmp();
    const s1 = open(file);
    await s1.init();
    const ctx = await setup(s1);
    await s1.close();
    // Back to what release v5 had: no key tables, user_version 5.
    const Database = (await import('better-sqlite3')).default;
    const raw = new Database(file);
    raw.exec('DROP TABLE key_identities; DROP TABLE key_packages; DROP TABLE key_last_resort;');
    raw.pragma('user_version = 5');
    raw.close();

    const s2 = open(file);
    await s2.init();
    expect((await s2.getChat(ctx.chatId))?.chatId).toBe(ctx.chatId);
    await s2.putIdentity({ deviceId: ctx.da, userId: ctx.a, credential: new Uint8Array([1]), signatureKey: new Uint8Array([2]) }, 5);
    expect(await s2.addKeyPackages({ deviceId: ctx.da, userId: ctx.a }, [{ ref: 'r', data: new Uint8Array([3]) }], null, 5, 10)).toEqual({ added: ['r'], count: 1 });
    const check = new Database(file, { readonly: true });
    try {
      expect(check.pragma('user_version', { simple: true })).toBe(6);
    } finally {
      check.close();
    }
  });

  it('appends a batch of 2,000 messages in order', async () => {
    const store = open(tmp());
    await store.init();
    const ctx = await setup(store);
    const batch = Array.from({ length: 2_000 }, (_, i) => msg(ctx, `bulk ${i}`));
    const t0 = performance.now();
    const res = await store.appendMessages(batch);
    const ms = performance.now() - t0;
    expect(res).toHaveLength(2_000);
    expect(res.every((r, i) => r.created && r.message.seq === i + 1 && r.message.body === `bulk ${i}`)).toBe(true);
    expect((await store.getChat(ctx.chatId))?.lastSeq).toBe(2_000);
    expect(seqsOf(await store.pending(ctx.db, null, 5_000))).toEqual(res.map((r) => r.message!.seq));
    const last = await store.history(ctx.chatId, 1_998, 10);
    expect(last.map((m) => m.body)).toEqual(['bulk 1998', 'bulk 1999']);
    // Generous bound: one transaction, not 2,000 fsyncs.
    expect(ms).toBeLessThan(2_000);

    // Delivering them all moves the watermarks in one call.
    const ch = await store.markDelivered(res.map((r) => ({ chatId: ctx.chatId, seq: r.message!.seq, deviceId: ctx.db, at: 1 })));
    expect(ch).toEqual([{ chatId: ctx.chatId, userId: ctx.b, seq: 2_000, at: 1 }]);
    expect((await store.progress(ctx.db, ctx.chatId))?.deliveredSeq).toBe(2_000);
    expect(await store.pending(ctx.db, null, 10)).toEqual([]);
  });

  it('rejects calls before init() and after close()', async () => {
    const store = createSqliteStore({ file: tmp() });
    await expect(store.getUser(newId('user'))).rejects.toThrow(/init/);
    await store.init();
    await store.close();
    await expect(store.getUser(newId('user'))).rejects.toThrow(/closed/);
  });
});
