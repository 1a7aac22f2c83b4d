/**
 * The persist worker's block check, with the SQLite store and a recording publisher: a batch
 * without 1:1 messages asks the RelationStore nothing, a batch with them asks once (however many
 * pairs and messages), and a blocked pair's messages are refused with E_BLOCKED (ref =
 * clientMsgId) and never stored, in either direction, while the rest of the batch is stored; the
 * same when the message is addressed to the direct chat's id instead of the user id (one member
 * query per distinct direct chat, none for a group).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encode, newId, type Envelope } from '@parley/client-sdk/protocol';
import type { IngestMessage } from '../../broker/src/index.js';
import { createSqliteStore } from '../../services/src/store/sqlite.js';
import { userPairKey, type Store } from '../../services/src/store/types.js';
import { processPersist } from '../../services/src/workers/persist.js';
import type { WorkerContext } from '../../services/src/workers/context.js';
import { newGroup } from '../contract/helpers.js';

let dir: string;
let store: Store;
let calls: number;
/** getMembers calls (the direct chats' member look-ups). */
let memberCalls: number;
let sent: Array<{ deviceId: string; env: Envelope }>;
let ctx: WorkerContext;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-persist-blocks-'));
  const real = createSqliteStore({ file: path.join(dir, 'db.sqlite') });
  await real.init();
  calls = 0;
  memberCalls = 0;
  // The store, counting blockedPairs and getMembers calls.
  store = new Proxy(real, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === 'blockedPairs') return (...args: Parameters<Store['blockedPairs']>) => { calls++; return target.blockedPairs(...args); };
      if (prop === 'getMembers') return (...args: Parameters<Store['getMembers']>) => { memberCalls++; return target.getMembers(...args); };
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  sent = [];
  ctx = {
    store,
    publisher: {
      async publish(deviceId, env) { sent.push({ deviceId, env }); },
      async publishAll(items) { sent.push(...items); return []; },
      async close() {},
    },
    log: pino({ level: 'silent' }), now: () => 10_000, workerId: 'test', retentionMs: 86_400_000, fanoutChunk: 128,
    enqueueFanout: async () => {}, enqueueStatusFanout: async () => {},
  } as WorkerContext;
});

afterEach(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function user(): Promise<{ userId: string; deviceId: string }> {
  const { user: u } = await store.getOrCreateUserByPhone(`+4477009${String(Math.floor(Math.random() * 1e5)).padStart(5, '0')}`, newId('user'), 1);
  const deviceId = newId('device');
  await store.addDevice({ deviceId, userId: u.userId, tokenHash: 'h', name: 'p', createdAt: 1 }, { maxActive: 5, historyDepth: 0 });
  return { userId: u.userId, deviceId };
}

let n = 0;
const send = (from: { userId: string; deviceId: string }, to: string): IngestMessage & { clientMsgId: string } => {
  const clientMsgId = `k${(++n).toString(36)}${newId('chat').slice(1, 6)}`;
  const isUser = to.startsWith('u');
  return {
    d: from.deviceId, u: from.userId, k: isUser ? userPairKey(from.userId, to) : to, t: 1, clientMsgId,
    p: Buffer.from(encode({ kind: 'send', clientMsgId, to, body: 'x' })).toString('base64'),
  };
};
const storedIds = () => sent.flatMap(({ env }) => (env.kind === 'stored' ? [env.clientMsgId, ...(env.more ?? []).map((m) => m.clientMsgId)] : []));
const errors = () => sent.flatMap(({ deviceId, env }) => (env.kind === 'error' ? [{ deviceId, code: env.code, ref: env.ref }] : []));

describe('persist: blocked 1:1 messages', () => {
  it('asks nothing for a batch of group messages only', async () => {
    const a = await user();
    const b = await user();
    const g = await newGroup(store, newId('group'), [{ userId: a.userId, role: 'admin' }, { userId: b.userId, role: 'member' }], 1);
    const batch = [send(a, g.chatId), send(b, g.chatId), send(a, g.chatId)];
    await processPersist(ctx, batch);
    expect(calls).toBe(0);
    expect(memberCalls).toBe(0);
    expect(storedIds().sort()).toEqual(batch.map((m) => m.clientMsgId).sort());
  });

  it('asks once per batch of 1:1 messages, refuses the blocked pairs both ways, stores the rest', async () => {
    const [a, b, c, d] = [await user(), await user(), await user(), await user()];
    await store.block(b.userId, a.userId, 1);
    const g = await newGroup(store, newId('group'), [{ userId: a.userId, role: 'admin' }, { userId: b.userId, role: 'member' }], 1);
    const blockedAB = send(a, b.userId);
    const blockedBA = send(b, a.userId);
    const fine = [send(a, c.userId), send(c, a.userId), send(d, b.userId), send(a, a.userId), send(a, g.chatId), send(b, g.chatId)];
    await processPersist(ctx, [blockedAB, fine[0]!, blockedBA, ...fine.slice(1), send(a, b.userId)]);
    expect(calls).toBe(1);
    expect(storedIds().sort()).toEqual(fine.map((m) => m.clientMsgId).sort());
    expect(errors().filter((e) => e.code === 'E_BLOCKED').map((e) => e.ref).slice(0, 2)).toEqual([blockedAB.clientMsgId, blockedBA.clientMsgId]);
    expect(errors().every((e) => e.code === 'E_BLOCKED')).toBe(true);
    expect(errors()).toHaveLength(3);
    // No 1:1 chat was opened between the blocked pair (Bob's only one is with Dave); the group is
    // not affected by the block.
    const direct = (await store.listChats(b.userId, 10)).filter((e) => e.chat.kind === 'direct');
    expect(direct).toHaveLength(1);
    expect((await store.getMembers(direct[0]!.chat.chatId)).map((m) => m.userId).sort()).toEqual([b.userId, d.userId].sort());
  });

  it('refuses a message to the direct chat\'s id between a blocked pair, either way, like one to the user id', async () => {
    const [a, b, c] = [await user(), await user(), await user()];
    // Direct chats opened before the block: Alice–Bob, Alice–Carol, and Alice's chat with herself.
    const ab = await store.getOrCreateDirectChat(a.userId, b.userId, newId('chat'), 1);
    const ac = await store.getOrCreateDirectChat(a.userId, c.userId, newId('chat'), 1);
    const aa = await store.getOrCreateDirectChat(a.userId, a.userId, newId('chat'), 1);
    const g = await newGroup(store, newId('group'), [{ userId: a.userId, role: 'admin' }, { userId: b.userId, role: 'member' }], 1);
    await store.block(a.userId, b.userId, 1);
    const blockedBA = send(b, ab.chatId);
    const blockedAB = send(a, ab.chatId);
    const blockedByUser = send(b, a.userId);
    const fine = [send(a, ac.chatId), send(c, ac.chatId), send(a, aa.chatId), send(a, g.chatId), send(b, g.chatId)];
    await processPersist(ctx, [blockedBA, fine[0]!, blockedAB, ...fine.slice(1), blockedByUser, send(b, ab.chatId)]);
    // One block query for the whole batch; one member query per distinct direct chat, none for the group.
    expect(calls).toBe(1);
    expect(memberCalls).toBe(3);
    expect(storedIds().sort()).toEqual(fine.map((m) => m.clientMsgId).sort());
    expect(errors().slice(0, 3)).toEqual([
      { deviceId: b.deviceId, code: 'E_BLOCKED', ref: blockedBA.clientMsgId },
      { deviceId: a.deviceId, code: 'E_BLOCKED', ref: blockedAB.clientMsgId },
      { deviceId: b.deviceId, code: 'E_BLOCKED', ref: blockedByUser.clientMsgId },
    ]);
    expect(errors()).toHaveLength(4);
    expect(errors().every((e) => e.code === 'E_BLOCKED')).toBe(true);
    expect((await store.getChat(ab.chatId))?.lastSeq).toBe(0);
  });

  it('asks nothing more of a direct chat by id when the sender is not in it', async () => {
    const [a, b, c] = [await user(), await user(), await user()];
    const ab = await store.getOrCreateDirectChat(a.userId, b.userId, newId('chat'), 1);
    const intruder = send(c, ab.chatId);
    await processPersist(ctx, [intruder]);
    expect(calls).toBe(0);
    expect(memberCalls).toBe(1);
    expect(errors()).toEqual([{ deviceId: c.deviceId, code: 'E_NOT_MEMBER', ref: intruder.clientMsgId }]);
  });
});
