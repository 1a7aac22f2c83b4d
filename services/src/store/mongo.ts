/**
 * MongoDB adapter of the Store port (official `mongodb` driver v7), for production.
 *
 * Same semantics as the SQLite adapter, with these differences forced by MongoDB without
 * multi-document transactions (which would need a replica set and conflict-retry loops on the hot
 * chat document):
 * - appendMessages is not one transaction. It is made safe by idempotency instead: every step is
 *   keyed so that a retry of the same batch (after a crash or a network error) converges, and the
 *   unique (senderDeviceId, clientMsgId) index decides which of two concurrent writers stored a
 *   message. Seqs come from one atomic `findOneAndUpdate($inc: { lastSeq })` on the chat per chat
 *   in the batch; when a concurrent writer wins an insert race, the seq reserved for the losing
 *   copy is left unused (a gap), which the rest of the port tolerates (watermarks only look at
 *   messages that exist).
 * - The device limit is enforced with a per-user counter document updated conditionally
 *   (`active < maxActive`), because "count then insert" is not atomic here.
 *
 * Write concern: the collections that hold messages and their bookkeeping (chats.lastSeq,
 * messages, deliveries) write with `{ w: 'majority' }`. A message is acknowledged to its sender
 * (the `stored` envelope) only after its write returns, so it must survive a primary failover:
 * with w:1 a rolled-back message would be lost although the sender was told it was stored, and a
 * rolled-back lastSeq could hand the same seq out twice.
 */
import {
  Binary,
  MongoBulkWriteError,
  MongoClient,
  MongoServerError,
  type AnyBulkWriteOperation,
  type Collection,
  type Db,
  type Filter,
  type ObjectId,
} from 'mongodb';
import type { Body } from '@parley/client-sdk';
import {
  StoreError,
  type AppendResult,
  type Chat,
  type ChatKind,
  type DeliveryAck,
  type Device,
  type Member,
  type NewMessage,
  type PendingRegistration,
  type Store,
  type StoredMessage,
  type User,
  type WatermarkChange,
} from './types.js';

interface UserDoc { _id: string; phone: string; createdAt: number }
interface DeviceDoc {
  _id: string; userId: string; tokenHash: string; name: string; createdAt: number; revokedAt: number | null;
}
/** Active device count of a user: the atomic guard of the device limit. */
interface DeviceCountDoc { _id: string; active: number }
interface RegDoc { _id: string; codeHash: string; expiresAt: number; attempts: number; createdAt: number }
interface ChatDoc { _id: string; kind: ChatKind; directKey?: string; createdAt: number; lastSeq: number }
interface MemberDoc {
  /** `${chatId}|${userId}` */
  _id: string;
  chatId: string; userId: string; role: 'member' | 'admin'; joinedAt: number; deliveredSeq: number; readSeq: number;
}
interface MessageDoc {
  _id?: ObjectId;
  chatId: string; seq: number; senderUserId: string; senderDeviceId: string; clientMsgId: string;
  /** Text as a BSON string, bytes as BSON Binary: the type survives the round trip. */
  body: string | Binary;
  ts: number;
  /** How many delivery rows were written for it (to repair a crash between the two inserts). */
  rc: number;
}
interface DeliveryDoc {
  _id?: ObjectId;
  chatId: string; seq: number; deviceId: string; userId: string;
  /** A row for the sender's own other device: never holds the sender's watermark back. */
  own: boolean;
  state: 'pending' | 'queued';
  deliveredAt: number | null;
  readAt: number | null;
}

const DUPLICATE_KEY = 11000;
const EXPIRE_CHUNK = 1_000;

function isDuplicateKey(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === DUPLICATE_KEY;
}

/** Indexes (in the batch) of the writes an unordered bulk write refused as duplicates; rethrows anything else. */
function duplicateIndexes(err: unknown): Set<number> {
  if (!(err instanceof MongoBulkWriteError)) {
    if (isDuplicateKey(err)) throw new Error('unexpected duplicate key error outside a bulk write', { cause: err });
    throw err;
  }
  const writeErrors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
  const dup = new Set<number>();
  for (const we of writeErrors) {
    if (we.code !== DUPLICATE_KEY) throw err;
    dup.add(we.index);
  }
  if (err.err) throw err; // a write concern error: we cannot claim durability
  return dup;
}

/** insertMany, ordered:false, ignoring duplicate keys; returns the indexes that were duplicates. */
async function insertIgnoringDuplicates<T extends { _id?: unknown }>(
  coll: Collection<T>,
  docs: Parameters<Collection<T>['insertMany']>[0],
): Promise<Set<number>> {
  if (docs.length === 0) return new Set();
  try {
    await coll.insertMany(docs, { ordered: false });
    return new Set();
  } catch (err) {
    return duplicateIndexes(err);
  }
}

function bodyToDoc(body: Body): string | Binary {
  return typeof body === 'string' ? body : new Binary(body);
}

function bodyFromDoc(body: unknown): Body {
  if (typeof body === 'string') return body;
  if (body instanceof Binary) return new Uint8Array(body.value()); // a plain copy, not a view/Buffer
  if (body instanceof Uint8Array) return new Uint8Array(body); // promoteBuffers: true
  throw new Error('message body of unknown BSON type');
}

const toUser = (d: UserDoc): User => ({ userId: d._id, phone: d.phone, createdAt: d.createdAt });
const toDevice = (d: DeviceDoc): Device => ({
  deviceId: d._id, userId: d.userId, tokenHash: d.tokenHash, name: d.name, createdAt: d.createdAt,
  revokedAt: d.revokedAt ?? null,
});
const toReg = (d: RegDoc): PendingRegistration => ({
  phone: d._id, codeHash: d.codeHash, expiresAt: d.expiresAt, attempts: d.attempts, createdAt: d.createdAt,
});
const toChat = (d: ChatDoc): Chat => ({ chatId: d._id, kind: d.kind, createdAt: d.createdAt, lastSeq: d.lastSeq });
const toMember = (d: MemberDoc): Member => ({
  chatId: d.chatId, userId: d.userId, role: d.role, joinedAt: d.joinedAt, deliveredSeq: d.deliveredSeq, readSeq: d.readSeq,
});
const toMessage = (d: MessageDoc): StoredMessage => ({
  chatId: d.chatId, seq: d.seq, senderUserId: d.senderUserId, senderDeviceId: d.senderDeviceId,
  clientMsgId: d.clientMsgId, body: bodyFromDoc(d.body), ts: d.ts,
});

const directKey = (a: string, b: string): string => (a < b ? `${a}|${b}` : `${b}|${a}`);
const memberId = (chatId: string, userId: string): string => `${chatId}|${userId}`;
const clientKey = (senderDeviceId: string, clientMsgId: string): string => `${senderDeviceId}\u0000${clientMsgId}`;
const msgKey = (chatId: string, seq: number): string => `${chatId}\u0000${seq}`;

/** `{ chatId, seq: { $in } }` clauses, one per chat, for a set of (chat, seq) pairs. */
function bySeqs(pairs: Array<{ chatId: string; seq: number }>): Array<{ chatId: string; seq: { $in: number[] } }> {
  const byChat = new Map<string, number[]>();
  for (const p of pairs) {
    const list = byChat.get(p.chatId);
    if (list) list.push(p.seq);
    else byChat.set(p.chatId, [p.seq]);
  }
  return [...byChat].map(([chatId, seqs]) => ({ chatId, seq: { $in: seqs } }));
}

export async function createMongoStore(opts: { url: string; dbName: string }): Promise<Store> {
  const client = new MongoClient(opts.url);
  await client.connect();
  const db: Db = client.db(opts.dbName);
  const majority = { writeConcern: { w: 'majority' as const } };

  const users = db.collection<UserDoc>('users');
  const devices = db.collection<DeviceDoc>('devices');
  const deviceCounts = db.collection<DeviceCountDoc>('deviceCounts');
  const regs = db.collection<RegDoc>('pendingRegistrations');
  const chats = db.collection<ChatDoc>('chats', majority);
  const members = db.collection<MemberDoc>('members');
  const messages = db.collection<MessageDoc>('messages', majority);
  const deliveries = db.collection<DeliveryDoc>('deliveries', majority);

  async function init(): Promise<void> {
    await Promise.all([
      users.createIndexes([{ key: { phone: 1 }, name: 'phone_unique', unique: true }]),
      devices.createIndexes([{ key: { userId: 1, revokedAt: 1, createdAt: 1 }, name: 'user_active' }]),
      regs.createIndexes([{ key: { expiresAt: 1 }, name: 'expiry' }]),
      chats.createIndexes([{
        key: { directKey: 1 }, name: 'directKey_unique', unique: true,
        partialFilterExpression: { directKey: { $type: 'string' } },
      }]),
      members.createIndexes([
        { key: { chatId: 1, joinedAt: 1, userId: 1 }, name: 'chat' },
        { key: { userId: 1 }, name: 'user' },
      ]),
      messages.createIndexes([
        { key: { chatId: 1, seq: 1 }, name: 'chat_seq_unique', unique: true },
        { key: { senderDeviceId: 1, clientMsgId: 1 }, name: 'idempotency_unique', unique: true },
        { key: { ts: 1 }, name: 'expiry' },
      ]),
      deliveries.createIndexes([
        { key: { chatId: 1, seq: 1, deviceId: 1 }, name: 'key_unique', unique: true },
        // undelivered(): one device's undelivered rows in (chat, seq) order.
        { key: { deviceId: 1, deliveredAt: 1, chatId: 1, seq: 1 }, name: 'undelivered' },
        // Delivered watermarks: one user's rows for others' messages in a chat from a seq on.
        { key: { chatId: 1, userId: 1, own: 1, seq: 1 }, name: 'watermark' },
        // markRead(): one user's rows in a chat in a seq range.
        { key: { chatId: 1, userId: 1, seq: 1 }, name: 'user_seq' },
      ]),
    ]);
  }

  /** The seq the (chat, user) delivered watermark can move to from `from`, or null if none. */
  async function computeDelivered(chatId: string, userId: string, from: number): Promise<number | null> {
    // Walk the user's rows (others' messages only) upwards from the watermark; stop at the first
    // seq none of whose rows is delivered. Reads only what the watermark passes, plus one seq.
    const cursor = deliveries.find(
      { chatId, userId, own: false, seq: { $gt: from } },
      { sort: { seq: 1 }, projection: { _id: 0, seq: 1, deliveredAt: 1 }, batchSize: 256 },
    );
    let curSeq: number | null = null;
    let curDelivered = false;
    let lastComplete: number | null = null;
    try {
      for await (const row of cursor) {
        if (row.seq !== curSeq) {
          if (curSeq !== null) {
            if (!curDelivered) return curSeq - 1;
            lastComplete = curSeq;
          }
          curSeq = row.seq;
          curDelivered = false;
        }
        if (row.deliveredAt !== null && row.deliveredAt !== undefined) curDelivered = true;
      }
    } finally {
      await cursor.close();
    }
    if (curSeq !== null) return curDelivered ? curSeq : curSeq - 1;
    return lastComplete;
  }

  /** Raises (chat, user)'s delivered watermark if it can move; returns the new value or null. */
  async function advanceDelivered(chatId: string, userId: string): Promise<number | null> {
    const _id = memberId(chatId, userId);
    const m = await members.findOne({ _id }, { projection: { deliveredSeq: 1 } });
    if (!m) return null;
    const next = await computeDelivered(chatId, userId, m.deliveredSeq);
    if (next === null || next <= m.deliveredSeq) return null;
    // Conditional, so that concurrent writers only ever move it forward.
    const r = await members.updateOne({ _id, deliveredSeq: { $lt: next } }, { $set: { deliveredSeq: next } });
    return r.modifiedCount === 1 ? next : null;
  }

  /** Pending recipients of an already stored message; re-creates missing rows after a crash. */
  async function pendingOfExisting(
    doc: MessageDoc,
    retry: NewMessage,
  ): Promise<Array<{ deviceId: string; userId: string }>> {
    let rows = await deliveries
      .find({ chatId: doc.chatId, seq: doc.seq }, { projection: { _id: 0, deviceId: 1, userId: 1, state: 1 } })
      .toArray();
    if (rows.length < doc.rc) {
      // The writer died between inserting the message and its delivery rows: finish its work.
      const have = new Set(rows.map((r) => r.deviceId));
      const missing = retry.recipients.filter((r) => !have.has(r.deviceId));
      await insertIgnoringDuplicates(deliveries, missing.map((r) => deliveryDoc(doc.chatId, doc.seq, r, doc.senderUserId)));
      rows = await deliveries
        .find({ chatId: doc.chatId, seq: doc.seq }, { projection: { _id: 0, deviceId: 1, userId: 1, state: 1 } })
        .toArray();
    }
    return rows
      .filter((r) => r.state === 'pending')
      .map((r) => ({ deviceId: r.deviceId, userId: r.userId }))
      .sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0));
  }

  function deliveryDoc(chatId: string, seq: number, r: { deviceId: string; userId: string }, senderUserId: string): DeliveryDoc {
    return {
      chatId, seq, deviceId: r.deviceId, userId: r.userId, own: r.userId === senderUserId,
      state: 'pending', deliveredAt: null, readAt: null,
    };
  }

  function uniqueRecipients(m: NewMessage): Array<{ deviceId: string; userId: string }> {
    const seen = new Set<string>();
    const out: Array<{ deviceId: string; userId: string }> = [];
    for (const r of m.recipients) {
      if (seen.has(r.deviceId)) continue;
      seen.add(r.deviceId);
      out.push({ deviceId: r.deviceId, userId: r.userId });
    }
    return out;
  }

  async function appendMessages(batch: NewMessage[]): Promise<AppendResult[]> {
    if (batch.length === 0) return [];

    // 1. Copies within the batch: only the first occurrence is considered for storing.
    const firstOf = new Map<string, number>();
    const dupOfIndex: number[] = batch.map((m, i) => {
      const k = clientKey(m.senderDeviceId, m.clientMsgId);
      const first = firstOf.get(k);
      if (first === undefined) {
        firstOf.set(k, i);
        return -1;
      }
      return first;
    });

    // 2. Already stored (a retry).
    const idsByDevice = new Map<string, string[]>();
    for (const i of firstOf.values()) {
      const m = batch[i]!;
      const list = idsByDevice.get(m.senderDeviceId);
      if (list) list.push(m.clientMsgId);
      else idsByDevice.set(m.senderDeviceId, [m.clientMsgId]);
    }
    const stored = new Map<string, MessageDoc>();
    const existingDocs = await messages
      .find({ $or: [...idsByDevice].map(([senderDeviceId, ids]) => ({ senderDeviceId, clientMsgId: { $in: ids } })) })
      .toArray();
    for (const d of existingDocs) stored.set(clientKey(d.senderDeviceId, d.clientMsgId), d);

    const fresh = [...firstOf.values()]
      .filter((i) => !stored.has(clientKey(batch[i]!.senderDeviceId, batch[i]!.clientMsgId)))
      .sort((a, b) => a - b);

    // 3. Every chat must exist before anything is reserved or written.
    const countByChat = new Map<string, number>();
    for (const i of fresh) countByChat.set(batch[i]!.chatId, (countByChat.get(batch[i]!.chatId) ?? 0) + 1);
    if (countByChat.size > 0) {
      const found = await chats.find({ _id: { $in: [...countByChat.keys()] } }, { projection: { _id: 1 } }).toArray();
      if (found.length !== countByChat.size) {
        const have = new Set(found.map((c) => c._id));
        const missing = [...countByChat.keys()].find((c) => !have.has(c));
        throw new StoreError('NOT_FOUND', `chat ${missing ?? '?'} not found`);
      }
    }

    // 4. Reserve seqs: one atomic $inc per chat, handed out in batch order.
    const nextSeq = new Map<string, number>();
    for (const [chatId, n] of countByChat) {
      const chat = await chats.findOneAndUpdate(
        { _id: chatId },
        { $inc: { lastSeq: n } },
        { returnDocument: 'after', projection: { lastSeq: 1 } },
      );
      if (!chat) throw new StoreError('NOT_FOUND', `chat ${chatId} not found`);
      nextSeq.set(chatId, chat.lastSeq - n + 1);
    }
    const seqOf = new Map<number, number>();
    for (const i of fresh) {
      const chatId = batch[i]!.chatId;
      const seq = nextSeq.get(chatId)!;
      nextSeq.set(chatId, seq + 1);
      seqOf.set(i, seq);
    }

    // 5. Insert the messages; a duplicate here means a concurrent writer stored it first.
    const docs: MessageDoc[] = fresh.map((i) => {
      const m = batch[i]!;
      return {
        chatId: m.chatId, seq: seqOf.get(i)!, senderUserId: m.senderUserId, senderDeviceId: m.senderDeviceId,
        clientMsgId: m.clientMsgId, body: bodyToDoc(m.body), ts: m.ts, rc: uniqueRecipients(m).length,
      };
    });
    const lost = await insertIgnoringDuplicates(messages, docs);
    const created = new Set<number>();
    const lostIdx: number[] = [];
    fresh.forEach((i, j) => (lost.has(j) ? lostIdx.push(i) : created.add(i)));
    if (lostIdx.length > 0) {
      const winners = await messages
        .find({ $or: lostIdx.map((i) => ({ senderDeviceId: batch[i]!.senderDeviceId, clientMsgId: batch[i]!.clientMsgId })) })
        .toArray();
      for (const d of winners) stored.set(clientKey(d.senderDeviceId, d.clientMsgId), d);
      for (const i of lostIdx) {
        if (!stored.has(clientKey(batch[i]!.senderDeviceId, batch[i]!.clientMsgId))) {
          // The duplicate was on (chatId, seq): lastSeq went backwards (e.g. a non-majority write rolled back).
          throw new Error(`seq ${seqOf.get(i)} of chat ${batch[i]!.chatId} is already taken`);
        }
      }
    }

    // 6. Delivery rows of the new messages.
    const rows: DeliveryDoc[] = [];
    for (const i of created) {
      const m = batch[i]!;
      for (const r of uniqueRecipients(m)) rows.push(deliveryDoc(m.chatId, seqOf.get(i)!, r, m.senderUserId));
    }
    await insertIgnoringDuplicates(deliveries, rows);

    // 7. Results, in batch order.
    const results: AppendResult[] = new Array<AppendResult>(batch.length);
    for (let i = 0; i < batch.length; i++) {
      if (dupOfIndex[i] !== -1) continue;
      const m = batch[i]!;
      if (created.has(i)) {
        results[i] = {
          message: {
            chatId: m.chatId, seq: seqOf.get(i)!, senderUserId: m.senderUserId, senderDeviceId: m.senderDeviceId,
            clientMsgId: m.clientMsgId, body: typeof m.body === 'string' ? m.body : new Uint8Array(m.body), ts: m.ts,
          },
          created: true,
          pending: uniqueRecipients(m),
        };
      } else {
        const doc = stored.get(clientKey(m.senderDeviceId, m.clientMsgId))!;
        results[i] = { message: toMessage(doc), created: false, pending: await pendingOfExisting(doc, m) };
      }
    }
    for (let i = 0; i < batch.length; i++) {
      const first = dupOfIndex[i]!;
      if (first === -1) continue;
      const r = results[first]!;
      results[i] = { message: r.message, created: false, pending: [...r.pending] };
    }
    return results;
  }

  return {
    init,
    async close() {
      await client.close();
    },

    async getOrCreateUserByPhone(phone, newUserId, now) {
      const existing = await users.findOne({ phone });
      if (existing) return { user: toUser(existing), created: false };
      try {
        await users.insertOne({ _id: newUserId, phone, createdAt: now });
        return { user: { userId: newUserId, phone, createdAt: now }, created: true };
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
      }
      const winner = await users.findOne({ phone });
      if (!winner) throw new StoreError('DUPLICATE', `user id ${newUserId} already taken`);
      return { user: toUser(winner), created: false };
    },
    async getUser(userId) {
      const d = await users.findOne({ _id: userId });
      return d ? toUser(d) : null;
    },
    async getUserByPhone(phone) {
      const d = await users.findOne({ phone });
      return d ? toUser(d) : null;
    },
    async getUsersByPhones(phones) {
      if (phones.length === 0) return [];
      return (await users.find({ phone: { $in: phones } }).sort({ phone: 1 }).toArray()).map(toUser);
    },

    async addDevice(device, maxActive) {
      const userId = device.userId;
      if (maxActive <= 0) throw new StoreError('DEVICE_LIMIT', `user ${userId} may have no devices`);
      // Make sure the counter exists (racing upserts: the loser's duplicate key is fine).
      try {
        await deviceCounts.updateOne({ _id: userId }, { $setOnInsert: { active: 0 } }, { upsert: true });
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
      }
      const reserve = async () =>
        (await deviceCounts.updateOne({ _id: userId, active: { $lt: maxActive } }, { $inc: { active: 1 } })).modifiedCount === 1;
      let ok = await reserve();
      if (!ok) {
        // Self-heal a counter left too high by a crash between its update and the device write.
        const counter = await deviceCounts.findOne({ _id: userId });
        const actual = await devices.countDocuments({ userId, revokedAt: null });
        if (counter && actual < counter.active) {
          await deviceCounts.updateOne({ _id: userId, active: counter.active }, { $set: { active: actual } });
          ok = await reserve();
        }
      }
      if (!ok) throw new StoreError('DEVICE_LIMIT', `user ${userId} already has ${maxActive} active devices`);
      try {
        await devices.insertOne({ _id: device.deviceId, userId, tokenHash: device.tokenHash, name: device.name, createdAt: device.createdAt, revokedAt: null });
      } catch (err) {
        await deviceCounts.updateOne({ _id: userId, active: { $gt: 0 } }, { $inc: { active: -1 } });
        if (isDuplicateKey(err)) throw new StoreError('DUPLICATE', `device ${device.deviceId} already exists`);
        throw err;
      }
    },
    async getDevice(deviceId) {
      const d = await devices.findOne({ _id: deviceId });
      return d ? toDevice(d) : null;
    },
    async listDevices(userId) {
      return (await devices.find({ userId, revokedAt: null }).sort({ createdAt: 1, _id: 1 }).toArray()).map(toDevice);
    },
    async listDevicesOfUsers(userIds) {
      if (userIds.length === 0) return [];
      const docs = await devices
        .find({ userId: { $in: userIds }, revokedAt: null })
        .sort({ userId: 1, createdAt: 1, _id: 1 })
        .toArray();
      return docs.map(toDevice);
    },
    async revokeDevice(deviceId, at) {
      const d = await devices.findOneAndUpdate(
        { _id: deviceId, revokedAt: null },
        { $set: { revokedAt: at } },
        { projection: { userId: 1 } },
      );
      if (!d) return false;
      await deviceCounts.updateOne({ _id: d.userId, active: { $gt: 0 } }, { $inc: { active: -1 } });
      return true;
    },

    async putPendingRegistration(p) {
      await regs.replaceOne(
        { _id: p.phone },
        { codeHash: p.codeHash, expiresAt: p.expiresAt, attempts: 0, createdAt: p.createdAt },
        { upsert: true },
      );
    },
    async getPendingRegistration(phone) {
      const d = await regs.findOne({ _id: phone });
      return d ? toReg(d) : null;
    },
    async bumpRegistrationAttempts(phone) {
      const d = await regs.findOneAndUpdate({ _id: phone }, { $inc: { attempts: 1 } }, { returnDocument: 'after' });
      return d?.attempts ?? 0;
    },
    async deletePendingRegistration(phone) {
      await regs.deleteOne({ _id: phone });
    },

    async getOrCreateDirectChat(userA, userB, newChatId, now) {
      const key = directKey(userA, userB);
      const existing = await chats.findOne({ directKey: key });
      if (existing) return toChat(existing);
      if (await chats.findOne({ _id: newChatId }, { projection: { _id: 1 } })) {
        throw new StoreError('DUPLICATE', `chat id ${newChatId} already taken`);
      }
      // Members first: once the chat document is visible, its members are too.
      const memberDocs: MemberDoc[] = (userA === userB ? [userA] : [userA, userB]).map((userId) => ({
        _id: memberId(newChatId, userId), chatId: newChatId, userId, role: 'member', joinedAt: now, deliveredSeq: 0, readSeq: 0,
      }));
      await insertIgnoringDuplicates(members, memberDocs);
      try {
        await chats.insertOne({ _id: newChatId, kind: 'direct', directKey: key, createdAt: now, lastSeq: 0 });
        return { chatId: newChatId, kind: 'direct', createdAt: now, lastSeq: 0 };
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
      }
      // Another process created it first: drop our members of the chat that lost.
      await members.deleteMany({ _id: { $in: memberDocs.map((m) => m._id) } });
      const winner = await chats.findOne({ directKey: key });
      if (!winner) throw new StoreError('DUPLICATE', `chat id ${newChatId} already taken`);
      return toChat(winner);
    },
    async getChat(chatId) {
      const d = await chats.findOne({ _id: chatId });
      return d ? toChat(d) : null;
    },
    async getMembers(chatId) {
      return (await members.find({ chatId }).sort({ joinedAt: 1, userId: 1 }).toArray()).map(toMember);
    },
    async getMember(chatId, userId) {
      const d = await members.findOne({ _id: memberId(chatId, userId) });
      return d ? toMember(d) : null;
    },

    appendMessages,

    async markQueued(keys) {
      if (keys.length === 0) return;
      const ops: AnyBulkWriteOperation<DeliveryDoc>[] = keys.map((k) => ({
        updateOne: {
          filter: { chatId: k.chatId, seq: k.seq, deviceId: k.deviceId, state: 'pending' },
          update: { $set: { state: 'queued' } },
        },
      }));
      await deliveries.bulkWrite(ops, { ordered: false });
    },

    async markDelivered(acks) {
      if (acks.length === 0) return [];
      // First ack of each key wins, as it would applied in order.
      const firstAck = new Map<string, DeliveryAck>();
      for (const a of acks) {
        const k = `${msgKey(a.chatId, a.seq)}\u0000${a.deviceId}`;
        if (!firstAck.has(k)) firstAck.set(k, a);
      }
      const unique = [...firstAck.values()];
      const rows = await deliveries
        .find(
          { deliveredAt: null, $or: unique.map((a) => ({ chatId: a.chatId, seq: a.seq, deviceId: a.deviceId })) },
          { projection: { _id: 0, chatId: 1, seq: 1, deviceId: 1, userId: 1 } },
        )
        .toArray();
      if (rows.length === 0) return [];
      const userOf = new Map(rows.map((r) => [`${msgKey(r.chatId, r.seq)}\u0000${r.deviceId}`, r.userId]));
      const toApply = unique.filter((a) => userOf.has(`${msgKey(a.chatId, a.seq)}\u0000${a.deviceId}`));
      await deliveries.bulkWrite(
        toApply.map((a) => ({
          updateOne: {
            filter: { chatId: a.chatId, seq: a.seq, deviceId: a.deviceId, deliveredAt: null },
            update: { $set: { deliveredAt: a.at } },
          },
        })),
        { ordered: false },
      );
      const affected = new Map<string, { chatId: string; userId: string; at: number }>();
      for (const a of toApply) {
        const userId = userOf.get(`${msgKey(a.chatId, a.seq)}\u0000${a.deviceId}`)!;
        const k = `${a.chatId}\u0000${userId}`;
        const cur = affected.get(k);
        if (!cur) affected.set(k, { chatId: a.chatId, userId, at: a.at });
        else if (a.at > cur.at) cur.at = a.at;
      }
      const changes: WatermarkChange[] = [];
      for (const { chatId, userId, at } of affected.values()) {
        const seq = await advanceDelivered(chatId, userId);
        if (seq !== null) changes.push({ chatId, userId, seq, at });
      }
      return changes;
    },

    async markRead(chatId, userId, upToSeq, at) {
      const _id = memberId(chatId, userId);
      const m = await members.findOne({ _id }, { projection: { readSeq: 1 } });
      if (!m || m.readSeq >= upToSeq) return null;
      // Rows first, then the watermark: a crash in between leaves a retry something to do.
      await deliveries.updateMany(
        { chatId, userId, seq: { $gt: m.readSeq, $lte: upToSeq }, readAt: null },
        [{ $set: { readAt: at, deliveredAt: { $ifNull: ['$deliveredAt', at] } } }],
      );
      const r = await members.updateOne({ _id, readSeq: { $lt: upToSeq } }, { $set: { readSeq: upToSeq } });
      if (r.modifiedCount !== 1) return null;
      // Read implies delivered: the rows just marked may let the delivered watermark move too.
      await advanceDelivered(chatId, userId);
      return { chatId, userId, seq: upToSeq, at };
    },

    async hasDelivery(key) {
      const d = await deliveries.findOne(
        { chatId: key.chatId, seq: key.seq, deviceId: key.deviceId },
        { projection: { _id: 1 } },
      );
      return d !== null;
    },

    async undelivered(deviceId, query) {
      if (query.limit <= 0) return [];
      const filter: Filter<DeliveryDoc> = query.chatId !== undefined
        ? { deviceId, deliveredAt: null, chatId: query.chatId, seq: { $gt: query.afterSeq ?? 0 } }
        : query.after
          ? { deviceId, deliveredAt: null, $or: [{ chatId: { $gt: query.after.chatId } }, { chatId: query.after.chatId, seq: { $gt: query.after.seq } }] }
          : { deviceId, deliveredAt: null };
      const rows = await deliveries
        .find(filter, { sort: { chatId: 1, seq: 1 }, limit: query.limit, projection: { _id: 0, chatId: 1, seq: 1 } })
        .toArray();
      if (rows.length === 0) return [];
      const docs = await messages.find({ $or: bySeqs(rows) }).toArray();
      const byKey = new Map(docs.map((d) => [msgKey(d.chatId, d.seq), d]));
      const out: StoredMessage[] = [];
      for (const r of rows) {
        const d = byKey.get(msgKey(r.chatId, r.seq));
        if (d) out.push(toMessage(d)); // missing only if expired meanwhile
      }
      return out;
    },

    async history(chatId, afterSeq, limit) {
      if (limit <= 0) return [];
      const docs = await messages.find({ chatId, seq: { $gt: afterSeq } }).sort({ seq: 1 }).limit(limit).toArray();
      return docs.map(toMessage);
    },
    async getMessage(chatId, seq) {
      const d = await messages.findOne({ chatId, seq });
      return d ? toMessage(d) : null;
    },
    async messageStatus(chatId, seq) {
      const d = await messages.findOne({ chatId, seq });
      if (!d) return null;
      const rows = await deliveries.find({ chatId, seq }).sort({ userId: 1, deviceId: 1 }).toArray();
      return {
        message: toMessage(d),
        recipients: rows.map((r) => ({ userId: r.userId, deviceId: r.deviceId, deliveredAt: r.deliveredAt ?? null, readAt: r.readAt ?? null })),
      };
    },

    async expire(before, now) {
      let messagesDeleted = 0;
      let deliveriesDeleted = 0;
      // In chunks; delivery rows before their message, so an interrupted run is finished by the next.
      for (;;) {
        const old = await messages
          .find({ ts: { $lt: before } }, { projection: { _id: 1, chatId: 1, seq: 1 }, limit: EXPIRE_CHUNK })
          .toArray();
        if (old.length === 0) break;
        deliveriesDeleted += (await deliveries.deleteMany({ $or: bySeqs(old) })).deletedCount;
        messagesDeleted += (await messages.deleteMany({ _id: { $in: old.map((m) => m._id) } })).deletedCount;
        if (old.length < EXPIRE_CHUNK) break;
      }
      const registrations = (await regs.deleteMany({ expiresAt: { $lt: now } })).deletedCount;
      return { messages: messagesDeleted, deliveries: deliveriesDeleted, registrations };
    },
  };
}
