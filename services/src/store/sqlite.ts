/**
 * SQLite adapter of the Store port (better-sqlite3), the embedded default.
 *
 * Several processes (broker, API, workers) may open the same file, so:
 * - the database runs in WAL mode with a busy timeout, so readers never block the writer and
 *   writers wait for each other instead of failing;
 * - every multi-statement write runs in one `db.transaction(...)`, and writes that read then write
 *   (seq assignment, the device limit, watermarks) use `.immediate()` so the write lock is taken
 *   before the read and two processes cannot interleave between them;
 * - schema creation is idempotent (`CREATE ... IF NOT EXISTS`, versioned by `PRAGMA user_version`).
 *
 * better-sqlite3 is synchronous; the async methods only wrap it so both adapters share one port.
 */
import Database from 'better-sqlite3';
import type { Body } from '@parley/client-sdk';
import {
  StoreError,
  type AppendResult,
  type Chat,
  type ChatKind,
  type DeliveryAck,
  type DeliveryKey,
  type Device,
  type ExpireResult,
  type Member,
  type MessageStatus,
  type NewMessage,
  type PendingRegistration,
  type Store,
  type StoredMessage,
  type UndeliveredQuery,
  type User,
  type WatermarkChange,
} from './types.js';

const SCHEMA_VERSION = 1;

const SCHEMA_V1 = `
CREATE TABLE IF NOT EXISTS users (
  user_id    TEXT PRIMARY KEY,
  phone      TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS devices (
  device_id  TEXT PRIMARY KEY,
  user_id    TEXT NOT NULL,
  token_hash TEXT NOT NULL,
  name       TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS devices_user ON devices (user_id, revoked_at, created_at);

CREATE TABLE IF NOT EXISTS pending_registrations (
  phone      TEXT PRIMARY KEY,
  code_hash  TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  attempts   INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_registrations_expiry ON pending_registrations (expires_at);

CREATE TABLE IF NOT EXISTS chats (
  chat_id    TEXT PRIMARY KEY,
  kind       TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
  direct_key TEXT UNIQUE,
  created_at INTEGER NOT NULL,
  last_seq   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS members (
  chat_id       TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
  user_id       TEXT NOT NULL,
  role          TEXT NOT NULL CHECK (role IN ('member', 'admin')),
  joined_at     INTEGER NOT NULL,
  delivered_seq INTEGER NOT NULL DEFAULT 0,
  read_seq      INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (chat_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_user ON members (user_id);

CREATE TABLE IF NOT EXISTS messages (
  chat_id          TEXT NOT NULL REFERENCES chats (chat_id),
  seq              INTEGER NOT NULL,
  sender_user_id   TEXT NOT NULL,
  sender_device_id TEXT NOT NULL,
  client_msg_id    TEXT NOT NULL,
  body             BLOB NOT NULL,
  body_is_text     INTEGER NOT NULL,
  ts               INTEGER NOT NULL,
  PRIMARY KEY (chat_id, seq),
  UNIQUE (sender_device_id, client_msg_id)
);
CREATE INDEX IF NOT EXISTS messages_ts ON messages (ts);

CREATE TABLE IF NOT EXISTS deliveries (
  chat_id      TEXT NOT NULL,
  seq          INTEGER NOT NULL,
  device_id    TEXT NOT NULL,
  user_id      TEXT NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('pending', 'queued')),
  -- 1 on rows for the sender's own other devices: they never hold the sender's watermark back.
  own          INTEGER NOT NULL DEFAULT 0,
  delivered_at INTEGER,
  read_at      INTEGER,
  PRIMARY KEY (chat_id, seq, device_id),
  FOREIGN KEY (chat_id, seq) REFERENCES messages (chat_id, seq) ON DELETE CASCADE
) WITHOUT ROWID;
-- undelivered(): one device's rows not yet delivered, in (chat, seq) order.
CREATE INDEX IF NOT EXISTS deliveries_undelivered ON deliveries (device_id, delivered_at, chat_id, seq);
-- markRead(): one user's rows in one chat from a seq on.
CREATE INDEX IF NOT EXISTS deliveries_user ON deliveries (chat_id, user_id, seq);
-- Delivered watermarks: one user's rows for others' messages in one chat from a seq on (covering).
CREATE INDEX IF NOT EXISTS deliveries_watermark ON deliveries (chat_id, user_id, own, seq, delivered_at);
`;

interface UserRow { user_id: string; phone: string; created_at: number }
interface DeviceRow {
  device_id: string; user_id: string; token_hash: string; name: string; created_at: number; revoked_at: number | null;
}
interface RegRow { phone: string; code_hash: string; expires_at: number; attempts: number; created_at: number }
interface ChatRow { chat_id: string; kind: ChatKind; created_at: number; last_seq: number }
interface MemberRow {
  chat_id: string; user_id: string; role: 'member' | 'admin'; joined_at: number; delivered_seq: number; read_seq: number;
}
interface MessageRow {
  chat_id: string; seq: number; sender_user_id: string; sender_device_id: string; client_msg_id: string;
  body: Buffer | string; body_is_text: number; ts: number;
}
interface RecipientRow { device_id: string; user_id: string }
interface StatusRow { user_id: string; device_id: string; delivered_at: number | null; read_at: number | null }

const toUser = (r: UserRow): User => ({ userId: r.user_id, phone: r.phone, createdAt: r.created_at });
const toDevice = (r: DeviceRow): Device => ({
  deviceId: r.device_id, userId: r.user_id, tokenHash: r.token_hash, name: r.name, createdAt: r.created_at,
  revokedAt: r.revoked_at,
});
const toReg = (r: RegRow): PendingRegistration => ({
  phone: r.phone, codeHash: r.code_hash, expiresAt: r.expires_at, attempts: r.attempts, createdAt: r.created_at,
});
const toChat = (r: ChatRow): Chat => ({ chatId: r.chat_id, kind: r.kind, createdAt: r.created_at, lastSeq: r.last_seq });
const toMember = (r: MemberRow): Member => ({
  chatId: r.chat_id, userId: r.user_id, role: r.role, joinedAt: r.joined_at, deliveredSeq: r.delivered_seq,
  readSeq: r.read_seq,
});

/** Text is stored as TEXT, bytes as a BLOB; `body_is_text` says which type to give back. */
function bodyToColumn(body: Body): { value: string | Buffer; isText: number } {
  if (typeof body === 'string') return { value: body, isText: 1 };
  return { value: Buffer.from(body.buffer, body.byteOffset, body.byteLength), isText: 0 };
}

function bodyFromColumn(value: Buffer | string, isText: number): Body {
  if (isText) return typeof value === 'string' ? value : value.toString('utf8');
  const buf = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  // A plain Uint8Array (not a Buffer) over its own copy of the bytes.
  return new Uint8Array(buf);
}

const toMessage = (r: MessageRow): StoredMessage => ({
  chatId: r.chat_id, seq: r.seq, senderUserId: r.sender_user_id, senderDeviceId: r.sender_device_id,
  clientMsgId: r.client_msg_id, body: bodyFromColumn(r.body, r.body_is_text), ts: r.ts,
});

const directKey = (a: string, b: string): string => (a < b ? `${a}|${b}` : `${b}|${a}`);

export function createSqliteStore(opts: { file: string }): Store {
  const db = new Database(opts.file);
  // busy_timeout first: switching to WAL needs a lock another process may hold.
  db.pragma('busy_timeout = 5000');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');

  const migrate = db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version < 1) db.exec(SCHEMA_V1);
    if (version < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
  });

  let q: ReturnType<typeof prepare> | null = null;
  let closed = false;

  function prepare() {
    return {
      insUser: db.prepare<[string, string, number]>(
        'INSERT OR IGNORE INTO users (user_id, phone, created_at) VALUES (?, ?, ?)'),
      userById: db.prepare<[string], UserRow>('SELECT * FROM users WHERE user_id = ?'),
      userByPhone: db.prepare<[string], UserRow>('SELECT * FROM users WHERE phone = ?'),
      usersByPhones: db.prepare<[string], UserRow>(
        'SELECT * FROM users WHERE phone IN (SELECT value FROM json_each(?)) ORDER BY phone'),

      countActiveDevices: db.prepare<[string], { n: number }>(
        'SELECT COUNT(*) AS n FROM devices WHERE user_id = ? AND revoked_at IS NULL'),
      insDevice: db.prepare<[string, string, string, string, number]>(
        'INSERT OR IGNORE INTO devices (device_id, user_id, token_hash, name, created_at) VALUES (?, ?, ?, ?, ?)'),
      deviceById: db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE device_id = ?'),
      devicesOfUser: db.prepare<[string], DeviceRow>(
        'SELECT * FROM devices WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at, device_id'),
      devicesOfUsers: db.prepare<[string], DeviceRow>(
        `SELECT * FROM devices WHERE user_id IN (SELECT value FROM json_each(?)) AND revoked_at IS NULL
         ORDER BY user_id, created_at, device_id`),
      revokeDevice: db.prepare<[number, string]>(
        'UPDATE devices SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL'),

      putReg: db.prepare<[string, string, number, number]>(
        `INSERT OR REPLACE INTO pending_registrations (phone, code_hash, expires_at, attempts, created_at)
         VALUES (?, ?, ?, 0, ?)`),
      getReg: db.prepare<[string], RegRow>('SELECT * FROM pending_registrations WHERE phone = ?'),
      bumpReg: db.prepare<[string], { attempts: number }>(
        'UPDATE pending_registrations SET attempts = attempts + 1 WHERE phone = ? RETURNING attempts'),
      delReg: db.prepare<[string]>('DELETE FROM pending_registrations WHERE phone = ?'),

      insDirectChat: db.prepare<[string, string, number]>(
        `INSERT OR IGNORE INTO chats (chat_id, kind, direct_key, created_at, last_seq) VALUES (?, 'direct', ?, ?, 0)`),
      chatByDirectKey: db.prepare<[string], ChatRow>(
        'SELECT chat_id, kind, created_at, last_seq FROM chats WHERE direct_key = ?'),
      chatById: db.prepare<[string], ChatRow>('SELECT chat_id, kind, created_at, last_seq FROM chats WHERE chat_id = ?'),
      insMember: db.prepare<[string, string, string, number]>(
        'INSERT OR IGNORE INTO members (chat_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)'),
      members: db.prepare<[string], MemberRow>('SELECT * FROM members WHERE chat_id = ? ORDER BY joined_at, user_id'),
      member: db.prepare<[string, string], MemberRow>('SELECT * FROM members WHERE chat_id = ? AND user_id = ?'),

      msgByClientId: db.prepare<[string, string], MessageRow>(
        'SELECT * FROM messages WHERE sender_device_id = ? AND client_msg_id = ?'),
      nextSeq: db.prepare<[string], { last_seq: number }>(
        'UPDATE chats SET last_seq = last_seq + 1 WHERE chat_id = ? RETURNING last_seq'),
      insMsg: db.prepare<[string, number, string, string, string, string | Buffer, number, number]>(
        `INSERT INTO messages (chat_id, seq, sender_user_id, sender_device_id, client_msg_id, body, body_is_text, ts)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
      insDelivery: db.prepare<[string, number, string, string, number]>(
        `INSERT OR IGNORE INTO deliveries (chat_id, seq, device_id, user_id, state, own) VALUES (?, ?, ?, ?, 'pending', ?)`),
      pendingOf: db.prepare<[string, number], RecipientRow>(
        `SELECT device_id, user_id FROM deliveries WHERE chat_id = ? AND seq = ? AND state = 'pending'
         ORDER BY device_id`),

      markQueued: db.prepare<[string, number, string]>(
        `UPDATE deliveries SET state = 'queued' WHERE chat_id = ? AND seq = ? AND device_id = ? AND state = 'pending'`),
      markDelivered: db.prepare<[number, string, number, string], { user_id: string }>(
        `UPDATE deliveries SET delivered_at = ?
         WHERE chat_id = ? AND seq = ? AND device_id = ? AND delivered_at IS NULL RETURNING user_id`),
      /*
       * The delivered watermark of (chat @chat, user @user) currently at @w: one less than the first seq
       * above @w whose rows for that user are all undelivered, or else the user's highest seq.
       * Only messages of others count (own = 0): a user's own messages sent to their other
       * devices never hold their watermark back. Walks deliveries_watermark from the current
       * watermark, so it reads only the rows the watermark is about to pass (amortised O(1) per
       * delivered row).
       */
      watermark: db.prepare<[{ chat: string; user: string; w: number }], { s: number | null }>(
        `SELECT COALESCE(
           (SELECT d.seq - 1 FROM deliveries d
             WHERE d.chat_id = @chat AND d.user_id = @user AND d.own = 0 AND d.seq > @w AND d.delivered_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM deliveries e
                                WHERE e.chat_id = d.chat_id AND e.user_id = d.user_id AND e.own = 0
                                  AND e.seq = d.seq AND e.delivered_at IS NOT NULL)
             ORDER BY d.seq LIMIT 1),
           (SELECT MAX(seq) FROM deliveries WHERE chat_id = @chat AND user_id = @user AND own = 0)
         ) AS s`),
      raiseDelivered: db.prepare<[number, string, string, number]>(
        'UPDATE members SET delivered_seq = ? WHERE chat_id = ? AND user_id = ? AND delivered_seq < ?'),
      markReadRows: db.prepare<[number, number, string, string, number, number]>(
        `UPDATE deliveries INDEXED BY deliveries_user SET read_at = ?, delivered_at = COALESCE(delivered_at, ?)
         WHERE chat_id = ? AND user_id = ? AND seq > ? AND seq <= ? AND read_at IS NULL`),
      raiseRead: db.prepare<[number, string, string, number]>(
        'UPDATE members SET read_seq = ? WHERE chat_id = ? AND user_id = ? AND read_seq < ?'),

      hasDelivery: db.prepare<[string, number, string], { one: number }>(
        'SELECT 1 AS one FROM deliveries WHERE chat_id = ? AND seq = ? AND device_id = ?'),
      undeliveredAll: db.prepare<[string, string, string, number, number], MessageRow>(
        `SELECT m.* FROM deliveries d JOIN messages m ON m.chat_id = d.chat_id AND m.seq = d.seq
         WHERE d.device_id = ? AND d.delivered_at IS NULL
           AND (d.chat_id > ? OR (d.chat_id = ? AND d.seq > ?))
         ORDER BY d.chat_id, d.seq LIMIT ?`),
      undeliveredChat: db.prepare<[string, string, number, number], MessageRow>(
        `SELECT m.* FROM deliveries d JOIN messages m ON m.chat_id = d.chat_id AND m.seq = d.seq
         WHERE d.device_id = ? AND d.delivered_at IS NULL AND d.chat_id = ? AND d.seq > ?
         ORDER BY d.seq LIMIT ?`),
      history: db.prepare<[string, number, number], MessageRow>(
        'SELECT * FROM messages WHERE chat_id = ? AND seq > ? ORDER BY seq LIMIT ?'),
      message: db.prepare<[string, number], MessageRow>('SELECT * FROM messages WHERE chat_id = ? AND seq = ?'),
      status: db.prepare<[string, number], StatusRow>(
        `SELECT user_id, device_id, delivered_at, read_at FROM deliveries WHERE chat_id = ? AND seq = ?
         ORDER BY user_id, device_id`),

      expireDeliveries: db.prepare<[number]>(
        'DELETE FROM deliveries WHERE (chat_id, seq) IN (SELECT chat_id, seq FROM messages WHERE ts < ?)'),
      expireMessages: db.prepare<[number]>('DELETE FROM messages WHERE ts < ?'),
      expireRegs: db.prepare<[number]>('DELETE FROM pending_registrations WHERE expires_at < ?'),
    };
  }

  function st(): NonNullable<typeof q> {
    if (closed) throw new Error('store is closed');
    if (!q) throw new Error('store not initialised: call init() first');
    return q;
  }

  /** Moves (chat, user)'s delivered watermark forward if it can; returns the new value or null. */
  function advanceDelivered(s: NonNullable<typeof q>, chatId: string, userId: string): number | null {
    const m = s.member.get(chatId, userId);
    if (!m) return null;
    const next = s.watermark.get({ chat: chatId, user: userId, w: m.delivered_seq })?.s ?? null;
    if (next === null || next <= m.delivered_seq) return null;
    s.raiseDelivered.run(next, chatId, userId, next);
    return next;
  }

  const tx = {
    getOrCreateUser: db.transaction((phone: string, newUserId: string, now: number) => {
      const s = st();
      const created = s.insUser.run(newUserId, phone, now).changes === 1;
      const row = s.userByPhone.get(phone);
      if (!row) throw new StoreError('DUPLICATE', `user id ${newUserId} already taken`);
      return { user: toUser(row), created };
    }),

    addDevice: db.transaction((d: Omit<Device, 'revokedAt'>, maxActive: number) => {
      const s = st();
      const n = s.countActiveDevices.get(d.userId)?.n ?? 0;
      if (n >= maxActive) throw new StoreError('DEVICE_LIMIT', `user ${d.userId} already has ${n} active devices`);
      if (s.insDevice.run(d.deviceId, d.userId, d.tokenHash, d.name, d.createdAt).changes !== 1) {
        throw new StoreError('DUPLICATE', `device ${d.deviceId} already exists`);
      }
    }),

    directChat: db.transaction((a: string, b: string, newChatId: string, now: number) => {
      const s = st();
      const key = directKey(a, b);
      if (s.insDirectChat.run(newChatId, key, now).changes === 1) {
        s.insMember.run(newChatId, a, 'member', now);
        if (b !== a) s.insMember.run(newChatId, b, 'member', now);
      }
      const row = s.chatByDirectKey.get(key);
      if (!row) throw new StoreError('DUPLICATE', `chat id ${newChatId} already taken`);
      return toChat(row);
    }),

    append: db.transaction((batch: NewMessage[]): AppendResult[] => {
      const s = st();
      const results: AppendResult[] = [];
      for (const m of batch) {
        const existing = s.msgByClientId.get(m.senderDeviceId, m.clientMsgId);
        if (existing) {
          const pending = s.pendingOf.all(existing.chat_id, existing.seq).map((r) => ({ deviceId: r.device_id, userId: r.user_id }));
          results.push({ message: toMessage(existing), created: false, pending });
          continue;
        }
        const seq = s.nextSeq.get(m.chatId)?.last_seq;
        if (seq === undefined) throw new StoreError('NOT_FOUND', `chat ${m.chatId} not found`);
        const body = bodyToColumn(m.body);
        s.insMsg.run(m.chatId, seq, m.senderUserId, m.senderDeviceId, m.clientMsgId, body.value, body.isText, m.ts);
        const pending: Array<{ deviceId: string; userId: string }> = [];
        for (const r of m.recipients) {
          const own = r.userId === m.senderUserId ? 1 : 0;
          if (s.insDelivery.run(m.chatId, seq, r.deviceId, r.userId, own).changes === 1) {
            pending.push({ deviceId: r.deviceId, userId: r.userId });
          }
        }
        results.push({
          message: {
            chatId: m.chatId, seq, senderUserId: m.senderUserId, senderDeviceId: m.senderDeviceId,
            clientMsgId: m.clientMsgId, body: bodyFromColumn(body.value, body.isText), ts: m.ts,
          },
          created: true,
          pending,
        });
      }
      return results;
    }),

    markQueued: db.transaction((keys: DeliveryKey[]) => {
      const s = st();
      for (const k of keys) s.markQueued.run(k.chatId, k.seq, k.deviceId);
    }),

    markDelivered: db.transaction((acks: DeliveryAck[]): WatermarkChange[] => {
      const s = st();
      // (chat, user) -> latest ack time among the rows this call delivered.
      const affected = new Map<string, { chatId: string; userId: string; at: number }>();
      for (const a of acks) {
        const row = s.markDelivered.get(a.at, a.chatId, a.seq, a.deviceId);
        if (!row) continue;
        const key = `${a.chatId}\u0000${row.user_id}`;
        const cur = affected.get(key);
        if (!cur) affected.set(key, { chatId: a.chatId, userId: row.user_id, at: a.at });
        else if (a.at > cur.at) cur.at = a.at;
      }
      const changes: WatermarkChange[] = [];
      for (const { chatId, userId, at } of affected.values()) {
        const seq = advanceDelivered(s, chatId, userId);
        if (seq !== null) changes.push({ chatId, userId, seq, at });
      }
      return changes;
    }),

    markRead: db.transaction((chatId: string, userId: string, upToSeq: number, at: number): WatermarkChange | null => {
      const s = st();
      const m = s.member.get(chatId, userId);
      if (!m || m.read_seq >= upToSeq) return null;
      s.markReadRows.run(at, at, chatId, userId, m.read_seq, upToSeq);
      s.raiseRead.run(upToSeq, chatId, userId, upToSeq);
      // Read implies delivered: the rows just marked may let the delivered watermark move too.
      advanceDelivered(s, chatId, userId);
      return { chatId, userId, seq: upToSeq, at };
    }),

    status: db.transaction((chatId: string, seq: number): MessageStatus | null => {
      const s = st();
      const m = s.message.get(chatId, seq);
      if (!m) return null;
      const recipients = s.status.all(chatId, seq).map((r) => ({
        userId: r.user_id, deviceId: r.device_id, deliveredAt: r.delivered_at, readAt: r.read_at,
      }));
      return { message: toMessage(m), recipients };
    }),

    expire: db.transaction((before: number, now: number): ExpireResult => {
      const s = st();
      const deliveries = s.expireDeliveries.run(before).changes;
      const messages = s.expireMessages.run(before).changes;
      const registrations = s.expireRegs.run(now).changes;
      return { messages, deliveries, registrations };
    }),
  };

  return {
    async init() {
      if (closed) throw new Error('store is closed');
      if (q) return;
      migrate.immediate();
      q = prepare();
    },
    async close() {
      if (closed) return;
      closed = true;
      q = null;
      db.close();
    },

    async getOrCreateUserByPhone(phone, newUserId, now) {
      return tx.getOrCreateUser.immediate(phone, newUserId, now);
    },
    async getUser(userId) {
      const r = st().userById.get(userId);
      return r ? toUser(r) : null;
    },
    async getUserByPhone(phone) {
      const r = st().userByPhone.get(phone);
      return r ? toUser(r) : null;
    },
    async getUsersByPhones(phones) {
      if (phones.length === 0) return [];
      return st().usersByPhones.all(JSON.stringify(phones)).map(toUser);
    },

    async addDevice(device, maxActive) {
      tx.addDevice.immediate(device, maxActive);
    },
    async getDevice(deviceId) {
      const r = st().deviceById.get(deviceId);
      return r ? toDevice(r) : null;
    },
    async listDevices(userId) {
      return st().devicesOfUser.all(userId).map(toDevice);
    },
    async listDevicesOfUsers(userIds) {
      if (userIds.length === 0) return [];
      return st().devicesOfUsers.all(JSON.stringify(userIds)).map(toDevice);
    },
    async revokeDevice(deviceId, at) {
      return st().revokeDevice.run(at, deviceId).changes === 1;
    },

    async putPendingRegistration(p) {
      st().putReg.run(p.phone, p.codeHash, p.expiresAt, p.createdAt);
    },
    async getPendingRegistration(phone) {
      const r = st().getReg.get(phone);
      return r ? toReg(r) : null;
    },
    async bumpRegistrationAttempts(phone) {
      return st().bumpReg.get(phone)?.attempts ?? 0;
    },
    async deletePendingRegistration(phone) {
      st().delReg.run(phone);
    },

    async getOrCreateDirectChat(userA, userB, newChatId, now) {
      return tx.directChat.immediate(userA, userB, newChatId, now);
    },
    async getChat(chatId) {
      const r = st().chatById.get(chatId);
      return r ? toChat(r) : null;
    },
    async getMembers(chatId) {
      return st().members.all(chatId).map(toMember);
    },
    async getMember(chatId, userId) {
      const r = st().member.get(chatId, userId);
      return r ? toMember(r) : null;
    },

    async appendMessages(batch) {
      if (batch.length === 0) return [];
      return tx.append.immediate(batch);
    },
    async markQueued(keys) {
      if (keys.length === 0) return;
      tx.markQueued.immediate(keys);
    },
    async markDelivered(acks) {
      if (acks.length === 0) return [];
      return tx.markDelivered.immediate(acks);
    },
    async markRead(chatId, userId, upToSeq, at) {
      return tx.markRead.immediate(chatId, userId, upToSeq, at);
    },
    async hasDelivery(key) {
      return st().hasDelivery.get(key.chatId, key.seq, key.deviceId) !== undefined;
    },
    async undelivered(deviceId, query: UndeliveredQuery) {
      const s = st();
      const rows = query.chatId !== undefined
        ? s.undeliveredChat.all(deviceId, query.chatId, query.afterSeq ?? 0, query.limit)
        : s.undeliveredAll.all(deviceId, query.after?.chatId ?? '', query.after?.chatId ?? '', query.after?.seq ?? 0, query.limit);
      return rows.map(toMessage);
    },
    async history(chatId, afterSeq, limit) {
      return st().history.all(chatId, afterSeq, limit).map(toMessage);
    },
    async getMessage(chatId, seq) {
      const r = st().message.get(chatId, seq);
      return r ? toMessage(r) : null;
    },
    async messageStatus(chatId, seq) {
      // A deferred (read) transaction: the message and its rows come from one snapshot.
      return tx.status(chatId, seq);
    },
    async expire(before, now) {
      return tx.expire.immediate(before, now);
    },
  };
}
