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
import type { Body, ChatEvent, MediaRef } from '@parley/client-sdk/protocol';
import {
  StoreError,
  type AppendResult,
  type Attachment,
  type AttachmentMeta,
  type AttachmentState,
  type MediaKind,
  type Chat,
  type ChatDevice,
  type ChatListEntry,
  type Grant,
  type GroupChange,
  type NewGroup,
  type SystemMessage,
  type ChatKind,
  type DeliveryAck,
  type Device,
  type DeviceProgress,
  type ExpireResult,
  type Member,
  type MemberRole,
  type MessageStatus,
  type NewMessage,
  type PendingRegistration,
  type Store,
  type StoredMessage,
  type User,
  type WatermarkChange,
} from './types.js';
import { memberDelivered } from './watermarks.js';
import { hashPhone } from '@parley/client-sdk/protocol';
import { backfillPhoneHashes, createSqliteSocialStore } from './sqlite-social.js';
import { createSqlitePushStore } from './sqlite-push.js';
import { createSqliteStatusStore } from './sqlite-status.js';
import { createSqliteKeyStore } from './sqlite-keys.js';
import { createSqliteAccountStore } from './sqlite-account.js';

const SCHEMA_VERSION = 6;

/** v1 (release 0.1): one delivery row per message per recipient device. Kept to create, then migrate. */
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
  own          INTEGER NOT NULL DEFAULT 0,
  delivered_at INTEGER,
  read_at      INTEGER,
  PRIMARY KEY (chat_id, seq, device_id),
  FOREIGN KEY (chat_id, seq) REFERENCES messages (chat_id, seq) ON DELETE CASCADE
) WITHOUT ROWID;
`;

/**
 * v2: store once, deliver by position. `device_chats` holds one watermark per (device, chat) and
 * `marks` the history of each member's delivered/read watermark (one row per move, for the times
 * in status queries). The v1 delivery rows are folded into both, then dropped.
 */
const SCHEMA_V2 = `
CREATE TABLE IF NOT EXISTS device_chats (
  device_id     TEXT NOT NULL,
  chat_id       TEXT NOT NULL,
  user_id       TEXT NOT NULL,
  since_seq     INTEGER NOT NULL,
  delivered_seq INTEGER NOT NULL,
  delivered_at  INTEGER,
  PRIMARY KEY (device_id, chat_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS device_chats_chat ON device_chats (chat_id, device_id);
CREATE INDEX IF NOT EXISTS device_chats_user ON device_chats (chat_id, user_id);

-- kind 1 = delivered, 2 = read; one row per watermark move of a member.
CREATE TABLE IF NOT EXISTS marks (
  chat_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  kind    INTEGER NOT NULL,
  seq     INTEGER NOT NULL,
  at      INTEGER NOT NULL,
  PRIMARY KEY (chat_id, user_id, kind, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS marks_at ON marks (at);
CREATE INDEX IF NOT EXISTS members_user_chat ON members (user_id, chat_id);
`;

/** v1 -> v2: each device's watermark is the seq before its first undelivered row. */
const MIGRATE_V1_V2 = `
INSERT OR IGNORE INTO device_chats (device_id, chat_id, user_id, since_seq, delivered_seq, delivered_at)
SELECT d.device_id, m.chat_id, m.user_id, x.since_seq,
       COALESCE((SELECT MIN(r.seq) - 1 FROM deliveries r
                  WHERE r.chat_id = m.chat_id AND r.device_id = d.device_id AND r.delivered_at IS NULL),
                (SELECT MAX(r.seq) FROM deliveries r WHERE r.chat_id = m.chat_id AND r.device_id = d.device_id),
                x.last_seq),
       (SELECT MAX(r.delivered_at) FROM deliveries r WHERE r.chat_id = m.chat_id AND r.device_id = d.device_id)
  FROM members m
  JOIN devices d ON d.user_id = m.user_id AND d.revoked_at IS NULL
  -- since: the last message of another device before the device's first row. Not its first row
  -- minus one: the device's own messages before that had no rows for it, yet it was in the chat.
  JOIN (SELECT m2.chat_id AS chat_id, d2.device_id AS device_id, c.last_seq AS last_seq,
               COALESCE((SELECT MAX(g.seq) FROM messages g
                          WHERE g.chat_id = m2.chat_id AND g.sender_device_id <> d2.device_id
                            AND g.seq < COALESCE((SELECT MIN(r.seq) FROM deliveries r
                                                   WHERE r.chat_id = m2.chat_id AND r.device_id = d2.device_id),
                                                 c.last_seq + 1)),
                        0) AS since_seq
          FROM members m2 JOIN devices d2 ON d2.user_id = m2.user_id JOIN chats c ON c.chat_id = m2.chat_id) x
    ON x.chat_id = m.chat_id AND x.device_id = d.device_id;

-- Own rows (a user's message on that user's other devices) did not move the v1 member watermark,
-- so one above it is kept too: without its mark, its time would be lost.
INSERT OR IGNORE INTO marks (chat_id, user_id, kind, seq, at)
SELECT r.chat_id, r.user_id, 1, r.seq, MIN(r.delivered_at) FROM deliveries r
  JOIN members m ON m.chat_id = r.chat_id AND m.user_id = r.user_id
 WHERE r.delivered_at IS NOT NULL AND (r.seq <= m.delivered_seq OR r.own = 1)
 GROUP BY r.chat_id, r.user_id, r.seq;
INSERT OR IGNORE INTO marks (chat_id, user_id, kind, seq, at)
SELECT r.chat_id, r.user_id, 2, r.seq, MIN(r.read_at) FROM deliveries r
  JOIN members m ON m.chat_id = r.chat_id AND m.user_id = r.user_id
 WHERE r.read_at IS NOT NULL AND r.seq <= m.read_seq
 GROUP BY r.chat_id, r.user_id, r.seq;

DROP TABLE deliveries;
`;

/**
 * v3: groups. Group settings on `chats` (and a version that orders concurrent changes), the
 * visible window of each membership (`since_seq`, `left_seq`) and each device's (`until_seq`),
 * per-user chat-list flags, system messages (`event`, JSON of a ChatEvent), and `grants` (hashed
 * device link codes and group invitations). Existing rows keep working as they were: every v2
 * membership is current and sees its chat from the start.
 */
const SCHEMA_V3 = `
ALTER TABLE chats ADD COLUMN name TEXT;
ALTER TABLE chats ADD COLUMN description TEXT;
ALTER TABLE chats ADD COLUMN avatar TEXT;
ALTER TABLE chats ADD COLUMN share_history INTEGER NOT NULL DEFAULT 0;
ALTER TABLE chats ADD COLUMN deleted_at INTEGER;
ALTER TABLE chats ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN since_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN left_seq INTEGER;
ALTER TABLE members ADD COLUMN muted_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE device_chats ADD COLUMN until_seq INTEGER;
ALTER TABLE messages ADD COLUMN event TEXT;
CREATE TABLE IF NOT EXISTS grants (
  code_hash  TEXT PRIMARY KEY,
  kind       TEXT NOT NULL CHECK (kind IN ('link', 'invite')),
  user_id    TEXT NOT NULL,
  device_id  TEXT,
  chat_id    TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS grants_chat ON grants (chat_id, expires_at);
CREATE INDEX IF NOT EXISTS grants_expiry ON grants (expires_at);
`;

/** v4: media. Attachments (what was uploaded and what the server made of it) and their links to messages. */
const SCHEMA_V4 = `
CREATE TABLE IF NOT EXISTS attachments (
  attachment_id   TEXT PRIMARY KEY,
  owner_user_id   TEXT NOT NULL,
  owner_device_id TEXT NOT NULL,
  kind            TEXT NOT NULL,
  content_type    TEXT NOT NULL,
  size            INTEGER NOT NULL,
  sha256          TEXT NOT NULL,
  key             TEXT NOT NULL,
  upload_id       TEXT,
  state           TEXT NOT NULL CHECK (state IN ('uploading', 'processing', 'ready', 'failed')),
  error           TEXT,
  encrypted       INTEGER NOT NULL,
  thumb_key       TEXT,
  preview         TEXT,
  width           INTEGER,
  height          INTEGER,
  meta            TEXT NOT NULL,
  created_at      INTEGER NOT NULL,
  expires_at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_expiry ON attachments (expires_at);
ALTER TABLE messages ADD COLUMN media TEXT;
CREATE TABLE IF NOT EXISTS attachment_links (
  attachment_id TEXT NOT NULL,
  chat_id       TEXT NOT NULL,
  seq           INTEGER NOT NULL,
  PRIMARY KEY (attachment_id, chat_id, seq)
) WITHOUT ROWID;
`;

/**
 * v5: the social layer (issue 12): profiles and privacy, contacts and blocks, push registrations,
 * status posts. Their adapters live in their own modules (sqlite-*.ts) on this database.
 */
const SCHEMA_V5 = `
-- profiles, privacy, contacts, blocks (sqlite-social.ts); users.phone_hash for contacts discovery
-- (SHA-256 of the phone, hex: filled in for existing users in JS by backfillPhoneHashes).
ALTER TABLE users ADD COLUMN phone_hash TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS users_phone_hash ON users (phone_hash);
CREATE TABLE IF NOT EXISTS profiles (
  user_id    TEXT PRIMARY KEY,
  name       TEXT NOT NULL,
  about      TEXT NOT NULL,
  avatar     TEXT,
  updated_at INTEGER NOT NULL
);
-- A NULL setting was never chosen: it reads as its default.
CREATE TABLE IF NOT EXISTS privacy (
  user_id       TEXT PRIMARY KEY,
  last_seen     TEXT,
  photo         TEXT,
  about         TEXT,
  read_receipts INTEGER,
  group_add     TEXT
);
CREATE TABLE IF NOT EXISTS contacts (
  user_id    TEXT NOT NULL,
  contact_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, contact_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contacts_of ON contacts (contact_id, user_id);
CREATE TABLE IF NOT EXISTS blocks (
  user_id    TEXT NOT NULL,
  blocked_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, blocked_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_of ON blocks (blocked_id, user_id);

-- push registrations (sqlite-push.ts): one per device; an address (endpoint or token) is one
-- device's per kind. No foreign key: account deletion removes them through the port.
CREATE TABLE IF NOT EXISTS push_registrations (
  device_id    TEXT PRIMARY KEY,
  user_id      TEXT NOT NULL,
  kind         TEXT NOT NULL,
  address      TEXT NOT NULL,
  registration TEXT NOT NULL,
  at           INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS push_registrations_address ON push_registrations (kind, address);
CREATE INDEX IF NOT EXISTS push_registrations_user ON push_registrations (user_id);

-- status posts (sqlite-status.ts): the post (media: the MediaRef JSON; attachment_id: its id, kept
-- after a removal clears the content), its audience and its views. expires_at is copied to the
-- audience rows so the feed reads one index.
CREATE TABLE IF NOT EXISTS statuses (
  status_id        TEXT PRIMARY KEY,
  author_user_id   TEXT NOT NULL,
  author_device_id TEXT NOT NULL,
  ts               INTEGER NOT NULL,
  expires_at       INTEGER NOT NULL,
  text             TEXT,
  background       INTEGER,
  font             INTEGER,
  media            TEXT,
  attachment_id    TEXT,
  removed_at       INTEGER
);
CREATE INDEX IF NOT EXISTS statuses_author ON statuses (author_user_id, ts);
CREATE INDEX IF NOT EXISTS statuses_expiry ON statuses (expires_at);
CREATE TABLE IF NOT EXISTS status_audience (
  status_id  TEXT NOT NULL,
  user_id    TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (status_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS status_audience_user ON status_audience (user_id, expires_at);
CREATE TABLE IF NOT EXISTS status_views (
  status_id      TEXT NOT NULL,
  viewer_user_id TEXT NOT NULL,
  at             INTEGER NOT NULL,
  PRIMARY KEY (status_id, viewer_user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS status_views_viewer ON status_views (viewer_user_id);

-- account deletion and export (sqlite-account.ts): a user's attachments and grants by user.
CREATE INDEX IF NOT EXISTS attachments_owner ON attachments (owner_user_id, attachment_id);
CREATE INDEX IF NOT EXISTS grants_user ON grants (user_id);
`;

/**
 * v6: the MLS key directory (sqlite-keys.ts): per device its identity, its pool of one-time key
 * packages and its last-resort package, all opaque bytes. No foreign keys: device revocation and
 * account deletion remove them through the port.
 */
const SCHEMA_V6 = `
CREATE TABLE IF NOT EXISTS key_identities (
  device_id     TEXT PRIMARY KEY,
  user_id       TEXT NOT NULL,
  credential    BLOB NOT NULL,
  signature_key BLOB NOT NULL,
  changed_at    INTEGER NOT NULL,
  changed       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS key_identities_user ON key_identities (user_id);
-- A rowid table: a device's pool in rowid order (insertion) is what claims take, oldest first.
CREATE TABLE IF NOT EXISTS key_packages (
  device_id TEXT NOT NULL,
  ref       TEXT NOT NULL,
  user_id   TEXT NOT NULL,
  data      BLOB NOT NULL,
  added_at  INTEGER NOT NULL,
  UNIQUE (device_id, ref)
);
CREATE INDEX IF NOT EXISTS key_packages_device ON key_packages (device_id);
CREATE INDEX IF NOT EXISTS key_packages_user ON key_packages (user_id);
CREATE TABLE IF NOT EXISTS key_last_resort (
  device_id TEXT PRIMARY KEY,
  ref       TEXT NOT NULL,
  user_id   TEXT NOT NULL,
  data      BLOB NOT NULL,
  added_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS key_last_resort_user ON key_last_resort (user_id);
`;

const MARK = { delivered: 1, read: 2 } as const;

/** Above any seq: the end of a membership that has not ended. */
const OPEN_END = Number.MAX_SAFE_INTEGER;

interface UserRow { user_id: string; phone: string; created_at: number }
interface DeviceRow {
  device_id: string; user_id: string; token_hash: string; name: string; created_at: number; revoked_at: number | null;
}
interface RegRow { phone: string; code_hash: string; expires_at: number; attempts: number; created_at: number }
interface ChatRow {
  chat_id: string; kind: ChatKind; created_at: number; last_seq: number; name: string | null; description: string | null;
  avatar: string | null; share_history: number; deleted_at: number | null; version: number;
}
interface MemberRow {
  chat_id: string; user_id: string; role: MemberRole; joined_at: number; delivered_seq: number; read_seq: number;
  since_seq: number; left_seq: number | null; muted_until: number; archived: number;
}
interface MessageRow {
  chat_id: string; seq: number; sender_user_id: string; sender_device_id: string; client_msg_id: string;
  body: Buffer | string; body_is_text: number; ts: number; event: string | null; media: string | null;
}
interface ProgressRow {
  device_id: string; chat_id: string; user_id: string; since_seq: number; delivered_seq: number; until_seq: number | null;
}
interface AttachmentRow {
  attachment_id: string; owner_user_id: string; owner_device_id: string; kind: MediaKind; content_type: string; size: number;
  sha256: string; key: string; upload_id: string | null; state: AttachmentState; error: string | null; encrypted: number;
  thumb_key: string | null; preview: string | null; width: number | null; height: number | null; meta: string; created_at: number;
  expires_at: number;
}
interface GrantRow {
  code_hash: string; kind: 'link' | 'invite'; user_id: string; device_id: string | null; chat_id: string | null; created_at: number; expires_at: number;
}
interface StatusRow { user_id: string; device_id: string; delivered: number; read: number }

const toUser = (r: UserRow): User => ({ userId: r.user_id, phone: r.phone, createdAt: r.created_at });
const toDevice = (r: DeviceRow): Device => ({
  deviceId: r.device_id, userId: r.user_id, tokenHash: r.token_hash, name: r.name, createdAt: r.created_at,
  revokedAt: r.revoked_at,
});
const toReg = (r: RegRow): PendingRegistration => ({
  phone: r.phone, codeHash: r.code_hash, expiresAt: r.expires_at, attempts: r.attempts, createdAt: r.created_at,
});
const toChat = (r: ChatRow): Chat => ({
  chatId: r.chat_id, kind: r.kind, createdAt: r.created_at, lastSeq: r.last_seq, name: r.name, description: r.description,
  avatar: r.avatar, shareHistory: r.share_history === 1, deletedAt: r.deleted_at, version: r.version,
});
const toMember = (r: MemberRow): Member => ({
  chatId: r.chat_id, userId: r.user_id, role: r.role, joinedAt: r.joined_at, sinceSeq: r.since_seq, leftSeq: r.left_seq,
  deliveredSeq: r.delivered_seq, readSeq: r.read_seq, mutedUntil: r.muted_until, archived: r.archived === 1,
});
const toProgress = (r: ProgressRow): DeviceProgress => ({
  deviceId: r.device_id, chatId: r.chat_id, userId: r.user_id, sinceSeq: r.since_seq, deliveredSeq: r.delivered_seq,
  untilSeq: r.until_seq,
});
const toGrant = (r: GrantRow): Grant => ({
  codeHash: r.code_hash, kind: r.kind, userId: r.user_id, deviceId: r.device_id, chatId: r.chat_id, createdAt: r.created_at,
  expiresAt: r.expires_at,
});
const toAttachment = (r: AttachmentRow): Attachment => ({
  attachmentId: r.attachment_id, ownerUserId: r.owner_user_id, ownerDeviceId: r.owner_device_id, kind: r.kind,
  contentType: r.content_type, size: r.size, sha256: r.sha256, key: r.key, uploadId: r.upload_id, state: r.state, error: r.error,
  encrypted: r.encrypted === 1, thumbKey: r.thumb_key, preview: r.preview, width: r.width, height: r.height,
  meta: JSON.parse(r.meta) as AttachmentMeta, createdAt: r.created_at, expiresAt: r.expires_at,
});
/** Attachment fields to columns (for inserts and updates). */
const ATTACHMENT_COLUMNS: Record<string, string> = {
  kind: 'kind', contentType: 'content_type', size: 'size', sha256: 'sha256', uploadId: 'upload_id', state: 'state', error: 'error',
  encrypted: 'encrypted', thumbKey: 'thumb_key', preview: 'preview', width: 'width', height: 'height', meta: 'meta', expiresAt: 'expires_at',
};
const attachmentValue = (field: string, v: unknown): unknown =>
  field === 'meta' ? JSON.stringify(v) : field === 'encrypted' ? (v ? 1 : 0) : v;
const toChatDevice = (r: { device_id: string; user_id: string; since_seq: number; until_seq: number | null }): ChatDevice => ({
  deviceId: r.device_id, userId: r.user_id, sinceSeq: r.since_seq, untilSeq: r.until_seq,
});

/** A stored event is the JSON of the ChatEvent object (written only by this adapter, from a validated event). */
function eventFromColumn(raw: string | null): ChatEvent | undefined {
  if (raw === null) return undefined;
  return JSON.parse(raw) as ChatEvent;
}

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

const toMessage = (r: MessageRow): StoredMessage => {
  const m: StoredMessage = {
    chatId: r.chat_id, seq: r.seq, senderUserId: r.sender_user_id, senderDeviceId: r.sender_device_id,
    clientMsgId: r.client_msg_id, body: bodyFromColumn(r.body, r.body_is_text), ts: r.ts,
  };
  const event = eventFromColumn(r.event);
  if (event) m.event = event;
  if (r.media) m.media = JSON.parse(r.media) as MediaRef;
  return m;
};

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
    if (version < 2) {
      db.exec(SCHEMA_V2);
      db.exec(MIGRATE_V1_V2);
    }
    if (version < 3) db.exec(SCHEMA_V3);
    if (version < 4) db.exec(SCHEMA_V4);
    if (version < 5) {
      db.exec(SCHEMA_V5);
      backfillPhoneHashes(db);
    }
    if (version < 6) db.exec(SCHEMA_V6);
    if (version < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
  });

  let q: ReturnType<typeof prepare> | null = null;
  let closed = false;

  function prepare() {
    return {
      insUser: db.prepare<[string, string, number, string]>(
        'INSERT OR IGNORE INTO users (user_id, phone, created_at, phone_hash) VALUES (?, ?, ?, ?)'),
      userById: db.prepare<[string], UserRow>('SELECT * FROM users WHERE user_id = ?'),
      userByPhone: db.prepare<[string], UserRow>('SELECT * FROM users WHERE phone = ?'),

      countActiveDevices: db.prepare<[string], { n: number }>(
        'SELECT COUNT(*) AS n FROM devices WHERE user_id = ? AND revoked_at IS NULL'),
      insDevice: db.prepare<[string, string, string, string, number]>(
        'INSERT OR IGNORE INTO devices (device_id, user_id, token_hash, name, created_at) VALUES (?, ?, ?, ?, ?)'),
      deviceById: db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE device_id = ?'),
      devicesOfUser: db.prepare<[string], DeviceRow>(
        'SELECT * FROM devices WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at, device_id'),
      allDevicesOfUser: db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE user_id = ? ORDER BY created_at, device_id'),
      devicesOfUsers: db.prepare<[string], DeviceRow>(
        `SELECT * FROM devices WHERE user_id IN (SELECT value FROM json_each(?)) AND revoked_at IS NULL
         ORDER BY user_id, created_at, device_id`),
      revokeDevice: db.prepare<[number, string]>(
        'UPDATE devices SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL'),
      dropDeviceChats: db.prepare<[string]>('DELETE FROM device_chats WHERE device_id = ?'),
      // A new device joins each of its user's current chats `depth` messages before the chat's end
      // (not before what the member may see): the catch-up then delivers that recent history.
      joinUserChats: db.prepare<[string, number, number, string]>(
        `INSERT OR IGNORE INTO device_chats (device_id, chat_id, user_id, since_seq, delivered_seq)
         SELECT ?, c.chat_id, m.user_id, MAX(m.since_seq, c.last_seq - ?), MAX(m.since_seq, c.last_seq - ?)
           FROM members m JOIN chats c ON c.chat_id = m.chat_id WHERE m.user_id = ? AND m.left_seq IS NULL`),
      // Every active device of one member joins a chat at a seq.
      joinMemberDevices: db.prepare<[string, number, number, string]>(
        `INSERT OR IGNORE INTO device_chats (device_id, chat_id, user_id, since_seq, delivered_seq)
         SELECT device_id, ?, user_id, ?, ? FROM devices WHERE user_id = ? AND revoked_at IS NULL`),

      putReg: db.prepare<[string, string, number, number]>(
        `INSERT OR REPLACE INTO pending_registrations (phone, code_hash, expires_at, attempts, created_at)
         VALUES (?, ?, ?, 0, ?)`),
      getReg: db.prepare<[string], RegRow>('SELECT * FROM pending_registrations WHERE phone = ?'),
      bumpReg: db.prepare<[string], { attempts: number }>(
        'UPDATE pending_registrations SET attempts = attempts + 1 WHERE phone = ? RETURNING attempts'),
      delReg: db.prepare<[string]>('DELETE FROM pending_registrations WHERE phone = ?'),

      insDirectChat: db.prepare<[string, string, number]>(
        `INSERT OR IGNORE INTO chats (chat_id, kind, direct_key, created_at, last_seq) VALUES (?, 'direct', ?, ?, 0)`),
      insGroupChat: db.prepare<[{ id: string; at: number; name: string; description: string | null; avatar: string | null; share: number }]>(
        `INSERT OR IGNORE INTO chats (chat_id, kind, direct_key, created_at, last_seq, name, description, avatar, share_history, version)
         VALUES (@id, 'group', NULL, @at, 0, @name, @description, @avatar, @share, 1)`),
      chatByDirectKey: db.prepare<[string], ChatRow>('SELECT * FROM chats WHERE direct_key = ?'),
      chatById: db.prepare<[string], ChatRow>('SELECT * FROM chats WHERE chat_id = ?'),
      insMember: db.prepare<[string, string, string, number]>(
        'INSERT OR IGNORE INTO members (chat_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)'),
      members: db.prepare<[string], MemberRow>(
        'SELECT * FROM members WHERE chat_id = ? AND left_seq IS NULL ORDER BY joined_at, user_id'),
      member: db.prepare<[string, string], MemberRow>(
        'SELECT * FROM members WHERE chat_id = ? AND user_id = ? AND left_seq IS NULL'),
      membership: db.prepare<[string, string], MemberRow>('SELECT * FROM members WHERE chat_id = ? AND user_id = ?'),
      memberships: db.prepare<[string], MemberRow>('SELECT * FROM members WHERE user_id = ?'),
      chatDevices: db.prepare<[string, string, number, number], { device_id: string; user_id: string; since_seq: number; until_seq: number | null }>(
        `SELECT dc.device_id, dc.user_id, dc.since_seq, dc.until_seq FROM device_chats dc JOIN devices d ON d.device_id = dc.device_id
          WHERE dc.chat_id = ? AND dc.device_id > ? AND d.revoked_at IS NULL AND (dc.until_seq IS NULL OR dc.until_seq >= ?)
          ORDER BY dc.device_id LIMIT ?`),
      lastVisible: db.prepare<[string, number, number], MessageRow>(
        'SELECT * FROM messages WHERE chat_id = ? AND seq > ? AND seq <= ? ORDER BY seq DESC LIMIT 1'),
      unread: db.prepare<[string, number, number, string], { n: number }>(
        `SELECT COUNT(*) AS n FROM messages
          WHERE chat_id = ? AND seq > ? AND seq <= ? AND sender_user_id <> ? AND event IS NULL`),
      setFlags: db.prepare<[number | null, number | null, string, string]>(
        `UPDATE members SET muted_until = COALESCE(?, muted_until), archived = COALESCE(?, archived)
          WHERE chat_id = ? AND user_id = ?`),
      // Group changes.
      bumpVersion: db.prepare<[string, number]>('UPDATE chats SET version = version + 1 WHERE chat_id = ? AND version = ?'),
      upsertMember: db.prepare<[{ chat: string; user: string; role: string; at: number; since: number; start: number }]>(
        `INSERT INTO members (chat_id, user_id, role, joined_at, since_seq, left_seq, delivered_seq, read_seq)
         VALUES (@chat, @user, @role, @at, @since, NULL, @start, @start)
         ON CONFLICT (chat_id, user_id) DO UPDATE SET role = @role, joined_at = @at, since_seq = @since, left_seq = NULL,
           delivered_seq = MAX(delivered_seq, @start), read_seq = MAX(read_seq, @start)`),
      upsertMemberDevices: db.prepare<[{ chat: string; user: string; since: number; start: number }]>(
        `INSERT INTO device_chats (device_id, chat_id, user_id, since_seq, delivered_seq, until_seq)
         SELECT device_id, @chat, user_id, @since, @start, NULL FROM devices WHERE user_id = @user AND revoked_at IS NULL
         ON CONFLICT (device_id, chat_id) DO UPDATE SET since_seq = @since, delivered_seq = MAX(delivered_seq, @start), until_seq = NULL`),
      endMember: db.prepare<[number, string, string]>(
        'UPDATE members SET left_seq = ? WHERE chat_id = ? AND user_id = ? AND left_seq IS NULL'),
      endMemberDevices: db.prepare<[number, string, string]>(
        'UPDATE device_chats SET until_seq = ? WHERE chat_id = ? AND user_id = ? AND until_seq IS NULL'),
      endAllMembers: db.prepare<[number, string]>('UPDATE members SET left_seq = ? WHERE chat_id = ? AND left_seq IS NULL'),
      endAllDevices: db.prepare<[number, string]>('UPDATE device_chats SET until_seq = ? WHERE chat_id = ? AND until_seq IS NULL'),
      setRole: db.prepare<[string, string, string]>('UPDATE members SET role = ? WHERE chat_id = ? AND user_id = ? AND left_seq IS NULL'),
      setSettings: db.prepare<[{ chat: string; name: string | null; setDesc: number; description: string | null; setAvatar: number; avatar: string | null }]>(
        `UPDATE chats SET name = COALESCE(@name, name),
                          description = CASE WHEN @setDesc THEN @description ELSE description END,
                          avatar = CASE WHEN @setAvatar THEN @avatar ELSE avatar END
          WHERE chat_id = @chat`),
      deleteChat: db.prepare<[number, string]>('UPDATE chats SET deleted_at = ? WHERE chat_id = ?'),
      insEvent: db.prepare<[string, number, string, string, number, string]>(
        `INSERT INTO messages (chat_id, seq, sender_user_id, sender_device_id, client_msg_id, body, body_is_text, ts, event)
         VALUES (?, ?, ?, '', ?, '', 1, ?, ?)`),
      eventByClientId: db.prepare<[string, string], MessageRow>(
        `SELECT * FROM messages WHERE sender_device_id = '' AND client_msg_id = ? AND chat_id = ?`),

      putGrant: db.prepare<[string, string, string, string | null, string | null, number, number]>(
        'INSERT OR REPLACE INTO grants (code_hash, kind, user_id, device_id, chat_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      getGrant: db.prepare<[string, number], GrantRow>('SELECT * FROM grants WHERE code_hash = ? AND expires_at > ?'),
      delGrant: db.prepare<[string]>('DELETE FROM grants WHERE code_hash = ?'),
      grantsOfChat: db.prepare<[string, number], GrantRow>(
        "SELECT * FROM grants WHERE chat_id = ? AND kind = 'invite' AND expires_at > ? ORDER BY created_at, code_hash"),
      expireGrants: db.prepare<[number]>('DELETE FROM grants WHERE expires_at <= ?'),
      chatKind: db.prepare<[string], { kind: ChatKind; deleted_at: number | null }>('SELECT kind, deleted_at FROM chats WHERE chat_id = ?'),
      insAttachment: db.prepare<[Record<string, unknown>]>(
        `INSERT INTO attachments (attachment_id, owner_user_id, owner_device_id, kind, content_type, size, sha256, key, upload_id, state,
           error, encrypted, thumb_key, preview, width, height, meta, created_at, expires_at)
         VALUES (@attachmentId, @ownerUserId, @ownerDeviceId, @kind, @contentType, @size, @sha256, @key, @uploadId, @state,
           @error, @encrypted, @thumbKey, @preview, @width, @height, @meta, @createdAt, @expiresAt)`),
      attachment: db.prepare<[string], AttachmentRow>('SELECT * FROM attachments WHERE attachment_id = ?'),
      linkAttachment: db.prepare<[string, string, number]>('INSERT OR IGNORE INTO attachment_links (attachment_id, chat_id, seq) VALUES (?, ?, ?)'),
      keepAttachment: db.prepare<[number, string]>('UPDATE attachments SET expires_at = MAX(expires_at, ?) WHERE attachment_id = ?'),
      attachmentLinks: db.prepare<[string], { chat_id: string; seq: number }>(
        'SELECT chat_id, seq FROM attachment_links WHERE attachment_id = ? ORDER BY chat_id, seq'),
      expiredAttachments: db.prepare<[number, number], AttachmentRow>(
        'SELECT * FROM attachments WHERE expires_at < ? ORDER BY expires_at, attachment_id LIMIT ?'),
      delAttachment: db.prepare<[string]>('DELETE FROM attachments WHERE attachment_id = ?'),
      delAttachmentLinks: db.prepare<[string]>('DELETE FROM attachment_links WHERE attachment_id = ?'),
      attachmentsOf: db.prepare<[string, string, number], AttachmentRow>(
        'SELECT * FROM attachments WHERE owner_user_id = ? AND attachment_id > ? ORDER BY attachment_id LIMIT ?'),
      memberActive: db.prepare<[string, string], { one: number }>(
        'SELECT 1 AS one FROM members WHERE chat_id = ? AND user_id = ? AND left_seq IS NULL'),

      msgByClientId: db.prepare<[string, string], MessageRow>(
        'SELECT * FROM messages WHERE sender_device_id = ? AND client_msg_id = ?'),
      reserveSeqs: db.prepare<[number, string], { last_seq: number }>(
        'UPDATE chats SET last_seq = last_seq + ? WHERE chat_id = ? RETURNING last_seq'),
      insMsg: db.prepare<[string, number, string, string, string, string | Buffer, number, number, string | null]>(
        `INSERT INTO messages (chat_id, seq, sender_user_id, sender_device_id, client_msg_id, body, body_is_text, ts, media)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      // The sender never receives its own message: when it was caught up, its watermark passes it.
      passOwn: db.prepare<[number, number, string, string, number]>(
        `UPDATE device_chats SET delivered_seq = ?, delivered_at = COALESCE(delivered_at, ?)
          WHERE device_id = ? AND chat_id = ? AND delivered_seq = ?`),

      progress: db.prepare<[string, string], ProgressRow>(
        'SELECT * FROM device_chats WHERE device_id = ? AND chat_id = ?'),
      // Catch-up: the device's chats in order, each from its watermark (messages' primary key).
      pending: db.prepare<[string, string, string, string, number, number], MessageRow>(
        `SELECT m.* FROM device_chats dc
           JOIN messages m ON m.chat_id = dc.chat_id AND m.seq > dc.delivered_seq
          WHERE dc.device_id = ? AND m.sender_device_id <> ?
            AND (dc.until_seq IS NULL OR m.seq <= dc.until_seq)
            AND (dc.chat_id > ? OR (dc.chat_id = ? AND m.seq > ?))
          ORDER BY dc.chat_id, m.seq LIMIT ?`),
      // pending's conditions, counted over a LIMITed subquery: stops at the limit.
      pendingCount: db.prepare<[string, string, number], { n: number }>(
        `SELECT COUNT(*) AS n FROM (
           SELECT 1 FROM device_chats dc
             JOIN messages m ON m.chat_id = dc.chat_id AND m.seq > dc.delivered_seq
            WHERE dc.device_id = ? AND m.sender_device_id <> ?
              AND (dc.until_seq IS NULL OR m.seq <= dc.until_seq)
            LIMIT ?)`),
      pendingInChat: db.prepare<[string, string, number, number, string, number], MessageRow>(
        `SELECT m.* FROM device_chats dc JOIN messages m ON m.chat_id = dc.chat_id
          WHERE dc.device_id = ? AND dc.chat_id = ? AND m.seq > ? AND m.seq < ? AND m.sender_device_id <> ?
            AND m.seq > dc.since_seq AND (dc.until_seq IS NULL OR m.seq <= dc.until_seq)
          ORDER BY m.seq LIMIT ?`),
      raiseDevice: db.prepare<[number, number, string, string, number], { user_id: string }>(
        `UPDATE device_chats SET delivered_seq = ?, delivered_at = ?
          WHERE device_id = ? AND chat_id = ? AND delivered_seq < ? RETURNING user_id`),
      spans: db.prepare<[string, string], { since_seq: number; delivered_seq: number }>(
        'SELECT since_seq, delivered_seq FROM device_chats WHERE chat_id = ? AND user_id = ?'),
      ownSeqs: db.prepare<[string, string, number, number], { seq: number }>(
        'SELECT seq FROM messages WHERE chat_id = ? AND sender_user_id = ? AND seq > ? AND seq <= ? ORDER BY seq'),
      raiseDelivered: db.prepare<[number, string, string, number]>(
        'UPDATE members SET delivered_seq = ? WHERE chat_id = ? AND user_id = ? AND delivered_seq < ?'),
      raiseRead: db.prepare<[number, string, string, number]>(
        'UPDATE members SET read_seq = ? WHERE chat_id = ? AND user_id = ? AND read_seq < ?'),
      insMark: db.prepare<[string, string, number, number, number]>(
        'INSERT OR IGNORE INTO marks (chat_id, user_id, kind, seq, at) VALUES (?, ?, ?, ?, ?)'),
      tally: db.prepare<[{ seq: number; chat: string; except: string }], { of: number; delivered: number | null; read: number | null }>(
        `SELECT COUNT(*) AS "of", SUM(delivered_seq >= @seq) AS delivered, SUM(read_seq >= @seq) AS read
           FROM members WHERE chat_id = @chat AND user_id <> @except AND left_seq IS NULL`),
      isRecipient: db.prepare<[string, string, number], { one: number }>(
        `SELECT 1 AS one FROM device_chats dc JOIN messages m ON m.chat_id = dc.chat_id
          WHERE dc.device_id = ? AND dc.chat_id = ? AND m.sender_device_id <> dc.device_id
            AND m.seq = ? AND m.seq > dc.since_seq AND (dc.until_seq IS NULL OR m.seq <= dc.until_seq)`),

      history: db.prepare<[string, number, number], MessageRow>(
        'SELECT * FROM messages WHERE chat_id = ? AND seq > ? ORDER BY seq LIMIT ?'),
      historyBefore: db.prepare<[string, number, number, number], MessageRow>(
        'SELECT * FROM messages WHERE chat_id = ? AND seq < ? AND seq > ? ORDER BY seq DESC LIMIT ?'),
      message: db.prepare<[string, number], MessageRow>('SELECT * FROM messages WHERE chat_id = ? AND seq = ?'),
      status: db.prepare<[{ chat: string; seq: number; sender: string }], StatusRow>(
        `SELECT dc.user_id, dc.device_id, dc.delivered_seq >= @seq AS delivered, m.read_seq >= @seq AS read
           FROM device_chats dc
           JOIN devices d ON d.device_id = dc.device_id AND d.revoked_at IS NULL
           JOIN members m ON m.chat_id = dc.chat_id AND m.user_id = dc.user_id
          WHERE dc.chat_id = @chat AND dc.device_id <> @sender AND dc.since_seq < @seq
            AND (dc.until_seq IS NULL OR dc.until_seq >= @seq)
          ORDER BY dc.user_id, dc.device_id`),
      // The first move of a member's watermark that covered a seq: when it was delivered / read.
      markAt: db.prepare<[string, string, number, number], { at: number }>(
        'SELECT at FROM marks WHERE chat_id = ? AND user_id = ? AND kind = ? AND seq >= ? ORDER BY seq LIMIT 1'),

      expireMessages: db.prepare<[number]>('DELETE FROM messages WHERE ts < ?'),
      expireMarks: db.prepare<[number]>('DELETE FROM marks WHERE at < ?'),
      expireRegs: db.prepare<[number]>('DELETE FROM pending_registrations WHERE expires_at < ?'),
    };
  }

  function st(): NonNullable<typeof q> {
    if (closed) throw new Error('store is closed');
    if (!q) throw new Error('store not initialised: call init() first');
    return q;
  }

  /**
   * Stores a system message with the chat's next seq (idempotent by its clientMsgId: a change
   * retried after a lost answer finds its message).
   */
  function appendEvent(s: NonNullable<typeof q>, chatId: string, m: SystemMessage): StoredMessage {
    const existing = s.eventByClientId.get(m.clientMsgId, chatId);
    if (existing) return toMessage(existing);
    const seq = s.reserveSeqs.get(1, chatId)?.last_seq;
    if (seq === undefined) throw new StoreError('NOT_FOUND', `chat ${chatId} not found`);
    s.insEvent.run(chatId, seq, m.senderUserId, m.clientMsgId, m.ts, JSON.stringify(m.event));
    return { chatId, seq, senderUserId: m.senderUserId, senderDeviceId: '', clientMsgId: m.clientMsgId, body: '', ts: m.ts, event: m.event };
  }

  /** Raises a member's delivered watermark to `seq` and records the move; true when it moved. */
  function raiseMemberDelivered(s: NonNullable<typeof q>, chatId: string, userId: string, seq: number, at: number): boolean {
    if (s.raiseDelivered.run(seq, chatId, userId, seq).changes !== 1) return false;
    s.insMark.run(chatId, userId, MARK.delivered, seq, at);
    return true;
  }

  const tx = {
    getOrCreateUser: db.transaction((phone: string, newUserId: string, now: number, phoneHash: string) => {
      const s = st();
      const created = s.insUser.run(newUserId, phone, now, phoneHash).changes === 1;
      const row = s.userByPhone.get(phone);
      if (!row) throw new StoreError('DUPLICATE', `user id ${newUserId} already taken`);
      return { user: toUser(row), created };
    }),

    addDevice: db.transaction((d: Omit<Device, 'revokedAt'>, maxActive: number, historyDepth: number) => {
      const s = st();
      const n = s.countActiveDevices.get(d.userId)?.n ?? 0;
      if (n >= maxActive) throw new StoreError('DEVICE_LIMIT', `user ${d.userId} already has ${n} active devices`);
      if (s.insDevice.run(d.deviceId, d.userId, d.tokenHash, d.name, d.createdAt).changes !== 1) {
        throw new StoreError('DUPLICATE', `device ${d.deviceId} already exists`);
      }
      const depth = Math.max(0, Math.floor(historyDepth));
      s.joinUserChats.run(d.deviceId, depth, depth, d.userId);
    }),

    revokeDevice: db.transaction((deviceId: string, at: number) => {
      const s = st();
      if (s.revokeDevice.run(at, deviceId).changes !== 1) return false;
      s.dropDeviceChats.run(deviceId);
      return true;
    }),

    directChat: db.transaction((a: string, b: string, newChatId: string, now: number) => {
      const s = st();
      const key = directKey(a, b);
      if (s.insDirectChat.run(newChatId, key, now).changes === 1) {
        for (const u of a === b ? [a] : [a, b]) {
          s.insMember.run(newChatId, u, 'member', now);
          s.joinMemberDevices.run(newChatId, 0, 0, u);
        }
      }
      const row = s.chatByDirectKey.get(key);
      if (!row) throw new StoreError('DUPLICATE', `chat id ${newChatId} already taken`);
      return toChat(row);
    }),

    groupChat: db.transaction((g: NewGroup) => {
      const s = st();
      const at = g.created.ts;
      const row = { id: g.chatId, at, name: g.name, description: g.description, avatar: g.avatar, share: g.shareHistory ? 1 : 0 };
      if (s.insGroupChat.run(row).changes !== 1) throw new StoreError('DUPLICATE', `chat id ${g.chatId} already taken`);
      for (const m of g.members) {
        s.insMember.run(g.chatId, m.userId, m.role, at);
        s.joinMemberDevices.run(g.chatId, 0, 0, m.userId);
      }
      const message = appendEvent(s, g.chatId, g.created);
      return { chat: toChat(s.chatById.get(g.chatId)!), message };
    }),

    commitGroupChange: db.transaction((c: GroupChange): StoredMessage => {
      const s = st();
      const chat = s.chatById.get(c.chatId);
      if (!chat) throw new StoreError('NOT_FOUND', `chat ${c.chatId} not found`);
      // A change retried after a lost answer finds its message and applies nothing again.
      const done = s.eventByClientId.get(c.message.clientMsgId, c.chatId);
      if (done) return toMessage(done);
      // Nothing follows a deletion: the caller plans again and finds the group deleted.
      if (chat.deleted_at !== null) throw new StoreError('CONFLICT', `chat ${c.chatId} was deleted`);
      if (s.bumpVersion.run(c.chatId, c.version).changes !== 1) {
        throw new StoreError('CONFLICT', `chat ${c.chatId} is at version ${chat.version}, not ${c.version}`);
      }
      const message = appendEvent(s, c.chatId, c.message);
      const seq = message.seq;
      // Joining members see from this message on (or everything over history, when the group
      // shares it); their devices receive from it on and have nothing older to acknowledge (nor
      // count as recipients of older messages in status queries).
      const since = chat.share_history ? 0 : seq - 1;
      for (const a of c.add ?? []) {
        s.upsertMember.run({ chat: c.chatId, user: a.userId, role: a.role, at: message.ts, since, start: seq - 1 });
        s.upsertMemberDevices.run({ chat: c.chatId, user: a.userId, since: seq - 1, start: seq - 1 });
      }
      // Leaving members get this message and nothing after it.
      for (const u of c.remove ?? []) {
        s.endMember.run(seq, c.chatId, u);
        s.endMemberDevices.run(seq, c.chatId, u);
      }
      for (const r of c.roles ?? []) s.setRole.run(r.role, c.chatId, r.userId);
      if (c.settings) {
        const st2 = c.settings;
        s.setSettings.run({
          chat: c.chatId, name: st2.name ?? null,
          setDesc: st2.description !== undefined ? 1 : 0, description: st2.description ?? null,
          setAvatar: st2.avatar !== undefined ? 1 : 0, avatar: st2.avatar ?? null,
        });
      }
      if (c.delete) {
        s.deleteChat.run(message.ts, c.chatId);
        s.endAllMembers.run(seq, c.chatId);
        s.endAllDevices.run(seq, c.chatId);
      }
      return message;
    }),

    append: db.transaction((batch: NewMessage[]): AppendResult[] => {
      const s = st();
      const results = new Array<AppendResult | undefined>(batch.length);
      // 1. What is new (a resend, or a repeat within the batch, is not), and how many per chat.
      // A sender no longer in the chat (or a deleted group) is refused here, in the transaction
      // that assigns seqs: nothing can be stored after the message that removed its sender.
      const firstOf = new Map<string, number>();
      const repeats: Array<[number, number]> = [];
      const perChat = new Map<string, number[]>();
      const allowed = new Map<string, AppendResult | null>();
      const admit = (m: NewMessage): AppendResult | null => {
        const key = `${m.chatId}\u0000${m.senderUserId}`;
        let r = allowed.get(key);
        if (r === undefined) {
          // A direct chat's two members never change: only groups need the membership read.
          const chat = s.chatKind.get(m.chatId);
          r = chat?.deleted_at != null ? { message: null, created: false, refused: 'CHAT_DELETED' }
            : chat?.kind === 'group' && !s.memberActive.get(m.chatId, m.senderUserId) ? { message: null, created: false, refused: 'NOT_MEMBER' }
              : null;
          allowed.set(key, r);
        }
        return r;
      };
      batch.forEach((m, i) => {
        const key = `${m.senderDeviceId}\u0000${m.clientMsgId}`;
        const first = firstOf.get(key);
        if (first !== undefined) return void repeats.push([i, first]);
        firstOf.set(key, i);
        const existing = s.msgByClientId.get(m.senderDeviceId, m.clientMsgId);
        if (existing) return void (results[i] = { message: toMessage(existing), created: false });
        const refused = admit(m);
        if (refused) return void (results[i] = refused);
        const list = perChat.get(m.chatId);
        if (list) list.push(i);
        else perChat.set(m.chatId, [i]);
      });
      // 2. One seq reservation per chat, then the rows in batch order.
      const ownRuns = new Map<string, { chatId: string; deviceId: string; from: number; to: number; ts: number }>();
      for (const [chatId, idx] of perChat) {
        const last = s.reserveSeqs.get(idx.length, chatId)?.last_seq;
        if (last === undefined) throw new StoreError('NOT_FOUND', `chat ${chatId} not found`);
        let seq = last - idx.length;
        for (const i of idx) {
          const m = batch[i]!;
          seq++;
          const body = bodyToColumn(m.body);
          s.insMsg.run(m.chatId, seq, m.senderUserId, m.senderDeviceId, m.clientMsgId, body.value, body.isText, m.ts, m.media ? JSON.stringify(m.media) : null);
          results[i] = {
            message: {
              chatId: m.chatId, seq, senderUserId: m.senderUserId, senderDeviceId: m.senderDeviceId,
              clientMsgId: m.clientMsgId, body: bodyFromColumn(body.value, body.isText), ts: m.ts, ...(m.media ? { media: m.media } : {}),
            },
            created: true,
          };
          // The sender's first run of consecutive seqs in this chat moves its watermark in one step.
          const runKey = `${m.senderDeviceId}\u0000${chatId}`;
          const run = ownRuns.get(runKey);
          if (!run) ownRuns.set(runKey, { chatId, deviceId: m.senderDeviceId, from: seq, to: seq, ts: m.ts });
          else if (run.to === seq - 1) run.to = seq;
        }
      }
      for (const r of ownRuns.values()) s.passOwn.run(r.to, r.ts, r.deviceId, r.chatId, r.from - 1);
      for (const [i, first] of repeats) {
        const r = results[first]!;
        results[i] = r.refused ? r : { message: r.message, created: false };
      }
      return results as AppendResult[];
    }),

    markDelivered: db.transaction((acks: DeliveryAck[]): WatermarkChange[] => {
      const s = st();
      // (chat, user) -> latest ack time among the devices this call moved.
      const affected = new Map<string, { chatId: string; userId: string; at: number }>();
      for (const a of acks) {
        const row = s.raiseDevice.get(a.seq, a.at, a.deviceId, a.chatId, a.seq);
        if (!row) continue;
        const key = `${a.chatId}\u0000${row.user_id}`;
        const cur = affected.get(key);
        if (!cur) affected.set(key, { chatId: a.chatId, userId: row.user_id, at: a.at });
        else if (a.at > cur.at) cur.at = a.at;
      }
      const changes: WatermarkChange[] = [];
      for (const { chatId, userId, at } of affected.values()) {
        // A former member's devices still acknowledge what they got before the end.
        const m = s.membership.get(chatId, userId);
        if (!m) continue;
        const spans = s.spans.all(chatId, userId).map((r) => ({ sinceSeq: r.since_seq, deliveredSeq: r.delivered_seq }));
        const top = Math.max(m.delivered_seq, ...spans.map((x) => x.deliveredSeq));
        const own = s.ownSeqs.all(chatId, userId, m.delivered_seq, top).map((r) => r.seq);
        const seq = memberDelivered(m.delivered_seq, spans, own);
        if (seq > m.delivered_seq && raiseMemberDelivered(s, chatId, userId, seq, at)) changes.push({ chatId, userId, seq, at });
      }
      return changes;
    }),

    markRead: db.transaction((chatId: string, userId: string, upToSeq: number, at: number): WatermarkChange | null => {
      const s = st();
      if (s.raiseRead.run(upToSeq, chatId, userId, upToSeq).changes !== 1) return null;
      s.insMark.run(chatId, userId, MARK.read, upToSeq, at);
      // Read implies delivered.
      raiseMemberDelivered(s, chatId, userId, upToSeq, at);
      return { chatId, userId, seq: upToSeq, at };
    }),

    status: db.transaction((chatId: string, seq: number): MessageStatus | null => {
      const s = st();
      const m = s.message.get(chatId, seq);
      if (!m) return null;
      const times = new Map<string, { d: number | null; r: number | null }>();
      const timesOf = (userId: string) => {
        let t = times.get(userId);
        if (!t) {
          t = {
            d: s.markAt.get(chatId, userId, MARK.delivered, seq)?.at ?? null,
            r: s.markAt.get(chatId, userId, MARK.read, seq)?.at ?? null,
          };
          times.set(userId, t);
        }
        return t;
      };
      const recipients = s.status.all({ chat: chatId, seq, sender: m.sender_device_id }).map((r) => {
        const t = timesOf(r.user_id);
        return { userId: r.user_id, deviceId: r.device_id, deliveredAt: r.delivered ? t.d : null, readAt: r.read ? t.r : null };
      });
      return { message: toMessage(m), recipients };
    }),

    expire: db.transaction((before: number, now: number): ExpireResult => {
      const s = st();
      const messages = s.expireMessages.run(before).changes;
      const marks = s.expireMarks.run(before).changes;
      const registrations = s.expireRegs.run(now).changes + s.expireGrants.run(now).changes;
      return { messages, marks, registrations };
    }),
  };

  return {
    ...createSqliteSocialStore(db),
    ...createSqlitePushStore(db),
    ...createSqliteStatusStore(db),
    ...createSqliteKeyStore(db),
    ...createSqliteAccountStore(db),
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
      return tx.getOrCreateUser.immediate(phone, newUserId, now, await hashPhone(phone));
    },
    async getUser(userId) {
      const r = st().userById.get(userId);
      return r ? toUser(r) : null;
    },
    async getUserByPhone(phone) {
      const r = st().userByPhone.get(phone);
      return r ? toUser(r) : null;
    },

    async addDevice(device, limits) {
      tx.addDevice.immediate(device, limits.maxActive, limits.historyDepth);
    },
    async getDevice(deviceId) {
      const r = st().deviceById.get(deviceId);
      return r ? toDevice(r) : null;
    },
    async listDevices(userId) {
      return st().devicesOfUser.all(userId).map(toDevice);
    },
    async listAllDevices(userId) {
      return st().allDevicesOfUser.all(userId).map(toDevice);
    },
    async listDevicesOfUsers(userIds) {
      if (userIds.length === 0) return [];
      return st().devicesOfUsers.all(JSON.stringify(userIds)).map(toDevice);
    },
    async revokeDevice(deviceId, at) {
      return tx.revokeDevice.immediate(deviceId, at);
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
    async createAttachment(a) {
      const row: Record<string, unknown> = { ...a, meta: JSON.stringify(a.meta), encrypted: a.encrypted ? 1 : 0 };
      try {
        st().insAttachment.run(row);
      } catch (err) {
        if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new StoreError('DUPLICATE', `attachment ${a.attachmentId} exists`);
        throw err;
      }
    },
    async getAttachment(attachmentId) {
      const r = st().attachment.get(attachmentId);
      return r ? toAttachment(r) : null;
    },
    async updateAttachment(attachmentId, from, patch) {
      const fields = Object.keys(patch).filter((f) => ATTACHMENT_COLUMNS[f] && (patch as Record<string, unknown>)[f] !== undefined);
      const sets = fields.map((f) => `${ATTACHMENT_COLUMNS[f]} = @${f}`);
      const params: Record<string, unknown> = { id: attachmentId, from };
      for (const f of fields) params[f] = attachmentValue(f, (patch as Record<string, unknown>)[f]);
      const sql = `UPDATE attachments SET ${sets.length ? sets.join(', ') : 'state = state'} WHERE attachment_id = @id AND state = @from RETURNING *`;
      const r = db.prepare<[Record<string, unknown>], AttachmentRow>(sql).get(params);
      return r ? toAttachment(r) : null;
    },
    async linkAttachment(attachmentId, chatId, seq, keepUntil) {
      const s = st();
      db.transaction(() => {
        s.linkAttachment.run(attachmentId, chatId, seq);
        s.keepAttachment.run(keepUntil, attachmentId);
      }).immediate();
    },
    async attachmentLinks(attachmentId) {
      return st().attachmentLinks.all(attachmentId).map((r) => ({ chatId: r.chat_id, seq: r.seq }));
    },
    async expiredAttachments(before, limit) {
      return st().expiredAttachments.all(before, limit).map(toAttachment);
    },
    async deleteAttachment(attachmentId) {
      const s = st();
      db.transaction(() => {
        s.delAttachmentLinks.run(attachmentId);
        s.delAttachment.run(attachmentId);
      }).immediate();
    },
    async attachmentsOf(ownerUserId, afterId, limit) {
      return st().attachmentsOf.all(ownerUserId, afterId, limit).map(toAttachment);
    },
    async putGrant(g) {
      st().putGrant.run(g.codeHash, g.kind, g.userId, g.deviceId, g.chatId, g.createdAt, g.expiresAt);
    },
    async getGrant(codeHash, now) {
      const r = st().getGrant.get(codeHash, now);
      return r ? toGrant(r) : null;
    },
    async deleteGrant(codeHash) {
      return st().delGrant.run(codeHash).changes === 1;
    },
    async listGrants(chatId, now) {
      return st().grantsOfChat.all(chatId, now).map(toGrant);
    },

    async getOrCreateDirectChat(userA, userB, newChatId, now) {
      // Almost always it exists: a plain read then, without taking the write lock.
      const existing = st().chatByDirectKey.get(directKey(userA, userB));
      if (existing) return toChat(existing);
      return tx.directChat.immediate(userA, userB, newChatId, now);
    },
    async createGroupChat(group) {
      return tx.groupChat.immediate(group);
    },
    async commitGroupChange(change) {
      return tx.commitGroupChange.immediate(change);
    },
    async getMembership(chatId, userId) {
      const r = st().membership.get(chatId, userId);
      return r ? toMember(r) : null;
    },
    async listChats(userId, limit) {
      const s = st();
      const out: ChatListEntry[] = [];
      for (const mr of s.memberships.all(userId)) {
        const c = s.chatById.get(mr.chat_id);
        if (!c) continue;
        const end = mr.left_seq ?? OPEN_END;
        const lastRow = s.lastVisible.get(mr.chat_id, mr.since_seq, end);
        const unread = s.unread.get(mr.chat_id, Math.max(mr.read_seq, mr.since_seq), end, userId)?.n ?? 0;
        out.push({ chat: toChat(c), member: toMember(mr), last: lastRow ? toMessage(lastRow) : null, unread });
      }
      out.sort((a, b) => (b.last?.ts ?? b.chat.createdAt) - (a.last?.ts ?? a.chat.createdAt) || (a.chat.chatId < b.chat.chatId ? -1 : 1));
      return out.slice(0, limit);
    },
    async setChatFlags(chatId, userId, flags) {
      const r = st().setFlags.run(flags.mutedUntil ?? null, flags.archived === undefined ? null : flags.archived ? 1 : 0, chatId, userId);
      return r.changes === 1;
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
    async chatDevices(chatId, afterDeviceId, limit, fromSeq = 0) {
      return st().chatDevices.all(chatId, afterDeviceId, fromSeq, limit).map(toChatDevice);
    },

    async appendMessages(batch) {
      if (batch.length === 0) return [];
      return tx.append.immediate(batch);
    },
    async history(chatId, afterSeq, limit) {
      return st().history.all(chatId, afterSeq, limit).map(toMessage);
    },
    async historyBefore(chatId, beforeSeq, limit, afterSeq = 0) {
      return st().historyBefore.all(chatId, beforeSeq, afterSeq, limit).map(toMessage).reverse();
    },
    async getMessage(chatId, seq) {
      const r = st().message.get(chatId, seq);
      return r ? toMessage(r) : null;
    },

    async progress(deviceId, chatId) {
      const r = st().progress.get(deviceId, chatId);
      return r ? toProgress(r) : null;
    },
    async pending(deviceId, after, limit) {
      const c = after?.chatId ?? '';
      return st().pending.all(deviceId, deviceId, c, c, after?.seq ?? 0, limit).map(toMessage);
    },
    async pendingCount(deviceId, limit) {
      if (limit <= 0) return 0;
      return st().pendingCount.get(deviceId, deviceId, limit)?.n ?? 0;
    },
    async pendingInChat(deviceId, chatId, afterSeq, beforeSeq, limit) {
      return st().pendingInChat.all(deviceId, chatId, afterSeq, beforeSeq, deviceId, limit).map(toMessage);
    },
    async markDelivered(acks) {
      if (acks.length === 0) return [];
      return tx.markDelivered.immediate(acks);
    },
    async markRead(chatId, userId, upToSeq, at) {
      return tx.markRead.immediate(chatId, userId, upToSeq, at);
    },
    async tally(chatId, seq, exceptUserId) {
      const r = st().tally.get({ seq, chat: chatId, except: exceptUserId });
      return { of: r?.of ?? 0, delivered: r?.delivered ?? 0, read: r?.read ?? 0 };
    },
    async isRecipient(deviceId, chatId, seq) {
      return st().isRecipient.get(deviceId, chatId, seq) !== undefined;
    },
    async messageStatus(chatId, seq) {
      // A deferred (read) transaction: the message and its progress come from one snapshot.
      return tx.status(chatId, seq);
    },
    async expire(before, now) {
      return tx.expire.immediate(before, now);
    },
  };
}
