import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newId } from '@parley/client-sdk';
import { createSqliteStore } from '../services/src/store/sqlite.js';
import type { NewMessage, Store } from '../services/src/store/types.js';
import { storeContract } from './contract/store.contract.js';

function tempFile(): { dir: string; file: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-store-'));
  return { dir, file: path.join(dir, 'parley.db') };
}

storeContract('Store contract: SQLite', async () => {
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
    await store.addDevice({ deviceId: da, userId: a, tokenHash: 'x', name: 'a', createdAt: 1 }, 5);
    await store.addDevice({ deviceId: db, userId: b, tokenHash: 'y', name: 'b', createdAt: 1 }, 5);
    const chat = await store.getOrCreateDirectChat(a, b, newId('chat'), 1);
    return { a, b, da, db, chatId: chat.chatId };
  }

  let n = 0;
  const msg = (s: Awaited<ReturnType<typeof setup>>, body: string): NewMessage => ({
    chatId: s.chatId, senderUserId: s.a, senderDeviceId: s.da, clientMsgId: `k${(++n).toString(36)}`, body, ts: 10,
    recipients: [{ deviceId: s.db, userId: s.b }],
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
      expect(raw.pragma('user_version', { simple: true })).toBe(1);
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
      seqs.push(...res.map((r) => r.message.seq));
    }
    expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect((await s1.getChat(ctx.chatId))?.lastSeq).toBe(40);
    expect((await s2.history(ctx.chatId, 0, 100)).map((m) => m.seq)).toEqual(seqs);

    // A retry through the other instance is still a duplicate.
    const first = (await s1.getMessage(ctx.chatId, 1))!;
    const [dup] = await s2.appendMessages([{ ...msg(ctx, 'again'), clientMsgId: first.clientMsgId }]);
    expect(dup?.created).toBe(false);
    expect(dup?.message.seq).toBe(1);
  });

  it('two instances appending concurrently from worker threads never reuse a seq', async () => {
    const file = tmp();
    const s1 = open(file);
    await s1.init();
    const ctx = await setup(s1);
    const { Worker } = await import('node:worker_threads');
    // Each worker is its own connection (as another process would be) appending 10 batches of 10.
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const Database = require(workerData.sqlite);
      const db = new Database(workerData.file);
      db.pragma('busy_timeout = 5000');
      const next = db.prepare('UPDATE chats SET last_seq = last_seq + 1 WHERE chat_id = ? RETURNING last_seq');
      const ins = db.prepare("INSERT INTO messages (chat_id, seq, sender_user_id, sender_device_id, client_msg_id, body, body_is_text, ts) VALUES (?, ?, ?, ?, ?, ?, 1, 0)");
      const batch = db.transaction((w, b) => {
        for (let i = 0; i < 10; i++) {
          const seq = next.get(workerData.chatId).last_seq;
          ins.run(workerData.chatId, seq, workerData.a, workerData.da, 'w' + w + 'b' + b + 'i' + i, 'x');
        }
      });
      for (let b = 0; b < 10; b++) batch.immediate(workerData.w, b);
      db.close();
      parentPort.postMessage('done');
    `;
    const { createRequire } = await import('node:module');
    const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
    const run = (w: number) => new Promise<void>((resolve, reject) => {
      const worker = new Worker(code, { eval: true, workerData: { file, chatId: ctx.chatId, a: ctx.a, da: ctx.da, w, sqlite } });
      worker.once('message', () => resolve());
      worker.once('error', reject);
    });
    // Meanwhile this instance appends through the port.
    const mine = (async () => {
      const out: number[] = [];
      for (let i = 0; i < 10; i++) out.push(...(await s1.appendMessages([msg(ctx, `p${i}`)])).map((r) => r.message.seq));
      return out;
    })();
    await Promise.all([run(1), run(2)]);
    const ownSeqs = await mine;
    expect(new Set(ownSeqs).size).toBe(10);
    const all = await s1.history(ctx.chatId, 0, 1000);
    expect(all.map((m) => m.seq)).toEqual(Array.from({ length: 210 }, (_, i) => i + 1));
    expect((await s1.getChat(ctx.chatId))?.lastSeq).toBe(210);
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
    expect(await store.undelivered(ctx.db, { limit: 5_000 })).toHaveLength(2_000);
    const last = await store.history(ctx.chatId, 1_998, 10);
    expect(last.map((m) => m.body)).toEqual(['bulk 1998', 'bulk 1999']);
    // Generous bound: one transaction, not 2,000 fsyncs.
    expect(ms).toBeLessThan(2_000);

    // Delivering them all moves the watermark in one call.
    const ch = await store.markDelivered(res.map((r) => ({ chatId: ctx.chatId, seq: r.message.seq, deviceId: ctx.db, at: 1 })));
    expect(ch).toEqual([{ chatId: ctx.chatId, userId: ctx.b, seq: 2_000, at: 1 }]);
  });

  it('rejects calls before init() and after close()', async () => {
    const store = createSqliteStore({ file: tmp() });
    await expect(store.getUser(newId('user'))).rejects.toThrow(/init/);
    await store.init();
    await store.close();
    await expect(store.getUser(newId('user'))).rejects.toThrow(/closed/);
  });
});
