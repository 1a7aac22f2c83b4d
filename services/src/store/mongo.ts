/**
 * MongoDB adapter of the Store port (official `mongodb` driver v7), for production.
 *
 * Same semantics as the SQLite adapter (delivery model v2: a message is stored once; each
 * (device, chat) has one watermark document in `deviceChats`, and each move of a member's
 * delivered/read watermark is one document in `marks`), with these differences forced by MongoDB
 * without multi-document transactions (which would need a replica set and conflict-retry loops on
 * the hot chat document):
 * - Multi-document writes are not atomic. Each is made safe by idempotency instead: every step is
 *   keyed (`_id`s derived from the natural key, inserted "if absent") so that a retry after a crash
 *   or a network error converges, and steps are ordered so that what a reader finds first is
 *   complete (a chat's members and device watermarks are written before the chat document, a
 *   device's watermarks before the device).
 * - appendMessages: the unique (senderDeviceId, clientMsgId) index decides which of two concurrent
 *   writers stored a message. Seqs come from one atomic `findOneAndUpdate($inc: { lastSeq })` on
 *   the chat per chat in the batch; when a concurrent writer wins an insert race, the seq reserved
 *   for the losing copy is left unused (a gap), which the rest of the port tolerates (catch-up and
 *   status only look at messages that exist). The sender's own watermark passes its message
 *   (`passOwn`) after the insert; a crash in between only leaves that watermark one behind, which
 *   the device's next ack repairs (catch-up never returns a device its own messages).
 * - Watermarks only move up, each with one conditional update (`deliveredSeq: { $lt: seq }`), so
 *   concurrent writers cannot move them back. A member's move is recorded in `marks` after the
 *   move itself.
 * - The device limit is enforced with a per-user counter document updated conditionally
 *   (`active < maxActive`), because "count then insert" is not atomic here.
 * - init() migrates a v1 database (one `deliveries` document per message per recipient device):
 *   it folds those into `deviceChats` and `marks` with insert-if-absent writes, drops
 *   `deliveries`, and then records the schema version in `meta`, so an interrupted migration is
 *   simply run again. v2 -> v3 (groups) rewrites nothing: a field that v2 documents lack reads as
 *   its default (chats: no name/description/avatar, history not shared, not deleted, version 0;
 *   members: since 0, not left, not muted, not archived; device watermarks: no end; messages: no
 *   event), as SQLite's `ALTER TABLE ... DEFAULT` gives them. Queries on "not ended" / "not
 *   deleted" use `{ field: null }`, which matches a missing field too.
 * - Group changes (commitGroupChange) check, in SQLite's order: NOT_FOUND; a system message with
 *   the change's clientMsgId already in the chat is returned and nothing is applied (a retry after
 *   a lost answer); a deleted chat, then a version other than the planned one, is CONFLICT. Then:
 *   (1) the removed members are fenced out: each current one gets `leftSeq` = the chat's lastSeq
 *   as read before, marked with the change's token (`closing`), then so do its devices' open
 *   windows (`untilSeq`); (2) one atomic `findOneAndUpdate` on the chat checks and bumps its
 *   `version` (and that it is not deleted), reserves the seq R of the change's message, and
 *   applies the settings and the deletion; (3) the message is stored; (4) the added members, then
 *   the fences are widened to R (by token: a member added back meanwhile no longer has it), the
 *   roles, and on deletion every membership and window ends at R. A change that loses the version
 *   check lifts its fences; one that finds a member it removes fenced by another change under way
 *   lifts its own and answers CONFLICT (it never relies on a fence it does not own).
 *   What holds: no message of a removed member, and no delivery to its devices, after R.
 *   appendMessages checks the membership again once its seqs are reserved and refuses (the seq
 *   left unused) a sender whose membership ends before its seq: a seq above R was reserved after
 *   the fence was written, so that check sees the fence or R (a fence still under way is waited
 *   for, up to a second, then refused). The windows are fenced before R too, so every reader of
 *   windows (chatDevices, pending, pendingInChat, isRecipient, messageStatus) ends a removed
 *   member's devices at or before R; chatDevices also ends each window no later than its member's
 *   `leftSeq`, for a window that a concurrent addDevice wrote after the fence. A deletion needs no
 *   fence: it is atomic with R (appendMessages and group changes reserve only in a chat that is
 *   not deleted), so no message at all follows it.
 *   What still differs from SQLite (which does all of it in one transaction):
 *   - While a removal is under way (milliseconds), the removed member already looks gone
 *     (getMember, getMembers, tally), and its devices get the messages between the fence and R
 *     from catch-up only, not live (fail closed). The same happens, briefly and for nothing, when
 *     the change then loses its version check; a message the member sends in that moment waits
 *     for the fence to be lifted.
 *   - A crash or a lost connection part-way leaves the change partial, and the version may have
 *     moved on: a fence without its message (the member out of the group with no `removed`
 *     message), a `deleted` group whose members were not ended yet, an `added` message without
 *     the membership. A retry with the same clientMsgId only finds the message. A failure whose
 *     outcome is unknown keeps the fences (fail closed).
 *   - Of two changes removing the same member at once, the second answers CONFLICT even when the
 *     first then loses its own version check (the groups service plans again).
 *   - A device linked at the very moment of a removal may keep its window at the fence instead of
 *     R (missing the removal message) or, if the removal is lifted, stay out of that chat.
 *   The next change may be committed while this one's writes are still under way, and an addDevice
 *   may run beside either: writes of device windows re-check the membership after writing (the
 *   membership is always written before its windows), so a race neither leaves a former member's
 *   device window open nor a re-added member's closed.
 * - Events, and a media message's `media` (v4), are stored as subdocuments copied through JSON
 *   (what SQLite stores), so an optional key left `undefined` is absent when read back, not null;
 *   a message without them has no such field (and no such key when read).
 * - Media (v4): `attachments` (`_id` = attachmentId) and `attachment_links` (one document per
 *   referencing message, unique by (attachmentId, chatId, seq)). updateAttachment is one
 *   conditional `findOneAndUpdate` on `state`, so of concurrent steps one wins, as in SQLite; an
 *   attachment's meta is a subdocument copied through JSON, like events. deleteAttachment is two
 *   writes (links, then the attachment) instead of one transaction.
 *
 * Write concern: the collections that hold messages and their bookkeeping (chats.lastSeq,
 * messages, deviceChats, marks, meta) write with `{ w: 'majority' }`. A message is acknowledged to
 * its sender (the `stored` envelope) only after its write returns, so it must survive a primary
 * failover: with w:1 a rolled-back message would be lost although the sender was told it was
 * stored, and a rolled-back lastSeq could hand the same seq out twice.
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
import type { Body, ChatEvent, MediaRef } from '@parley/client-sdk/protocol';
import {
  StoreError,
  type AppendRefusal,
  type AppendResult,
  type Attachment,
  type AttachmentMeta,
  type AttachmentState,
  type Chat,
  type ChatDevice,
  type ChatKind,
  type ChatListEntry,
  type Grant,
  type GroupChange,
  type MediaKind,
  type NewGroup,
  type DeliveryAck,
  type Device,
  type DeviceProgress,
  type Member,
  type MemberRole,
  type NewMessage,
  type PendingRegistration,
  type RecipientStatus,
  type Store,
  type StoredMessage,
  type SystemMessage,
  type User,
  type WatermarkChange,
} from './types.js';
import { randomUUID } from 'node:crypto';
import { memberDelivered } from './watermarks.js';
import { hashPhone } from '@parley/client-sdk/protocol';
import { createMongoSocial } from './mongo-social.js';
import { createMongoPushStore } from './mongo-push.js';
import { createMongoStatusStore } from './mongo-status.js';
import { createMongoKeyStore } from './mongo-keys.js';
import { createMongoAccount } from './mongo-account.js';

/**
 * v3 (groups) only adds fields, read with defaults when missing; v4 (media) only adds collections
 * (`attachments`, `attachment_links`) and their indexes: nothing to rewrite. Later collections
 * (the social layer's, the key directory's: mongo-keys.ts) are new too, created with their
 * indexes by init(): no version step.
 */
const SCHEMA_VERSION = 4;

interface UserDoc { _id: string; phone: string; createdAt: number; /** mongo-social.ts: contacts discovery. */ phoneHash?: string }
interface DeviceDoc {
  _id: string; userId: string; tokenHash: string; name: string; createdAt: number; revokedAt: number | null;
}
/** Active device count of a user: the atomic guard of the device limit. */
interface DeviceCountDoc { _id: string; active: number }
interface RegDoc { _id: string; codeHash: string; expiresAt: number; attempts: number; createdAt: number }
interface ChatDoc {
  _id: string; kind: ChatKind; directKey?: string; createdAt: number; lastSeq: number;
  // v3: missing in v2 documents (null, null, null, false, null, 0).
  name?: string | null; description?: string | null; avatar?: string | null; shareHistory?: boolean;
  deletedAt?: number | null; version?: number;
}
interface MemberDoc {
  /** `${chatId}|${userId}` */
  _id: string;
  chatId: string; userId: string; role: MemberRole; joinedAt: number; deliveredSeq: number; readSeq: number;
  // v3: missing in v2 documents (0, null, 0, false).
  sinceSeq?: number; leftSeq?: number | null; mutedUntil?: number; archived?: boolean;
  /**
   * Set while a group change that removes the member is under way: `leftSeq` is then a fence (the
   * chat's lastSeq before the change reserved its seq), widened to the change's seq when its
   * message is stored, or lifted if the change loses its version check. The change's own token.
   */
  closing?: string;
}
interface MessageDoc {
  _id?: ObjectId;
  chatId: string; seq: number; senderUserId: string; senderDeviceId: string; clientMsgId: string;
  /** Text as a BSON string, bytes as BSON Binary: the type survives the round trip. */
  body: string | Binary;
  ts: number;
  /** v3: a system message's ChatEvent (then senderDeviceId and body are ''); absent otherwise. */
  event?: ChatEvent;
  /** v4: a media message's attachment, a subdocument copied through JSON; absent otherwise. */
  media?: MediaRef;
}
/** A device link code or a group invitation (v3). */
interface GrantDoc {
  /** The code hash. */
  _id: string;
  kind: 'link' | 'invite'; userId: string;
  /** The device that made it; missing in documents written before it was kept (null). */
  deviceId?: string | null;
  chatId: string | null; createdAt: number; expiresAt: number;
}
/** Where a device stands in a chat (v2). */
interface DeviceChatDoc {
  /** `${deviceId}|${chatId}` */
  _id: string;
  deviceId: string; chatId: string; userId: string;
  /** The device gets the messages after this seq. */
  sinceSeq: number;
  /** The device acknowledged everything meant for it up to here. */
  deliveredSeq: number;
  deliveredAt: number | null;
  /** v3: the device gets nothing after this seq (its user left); null or missing while a member. */
  untilSeq?: number | null;
  /** The token of the group change whose fence `untilSeq` is, while it is under way (see MemberDoc). */
  closing?: string;
}
/** One move of a member's delivered (kind 1) or read (kind 2) watermark (v2). */
interface MarkDoc {
  /** `${chatId}|${userId}|${kind}|${seq}` */
  _id: string;
  chatId: string; userId: string; kind: MarkKind; seq: number; at: number;
}
interface MetaDoc { _id: string; version: number }
/** An uploaded media object (v4). Every field is always present; the nullable ones hold null. */
interface AttachmentDoc {
  /** The attachmentId. */
  _id: string;
  ownerUserId: string; ownerDeviceId: string; kind: MediaKind; contentType: string; size: number; sha256: string; key: string;
  uploadId: string | null; state: AttachmentState; error: string | null; encrypted: boolean; thumbKey: string | null;
  preview: string | null; width: number | null; height: number | null;
  /** A subdocument: the JSON copy of the meta as given (what SQLite's JSON column stores). */
  meta: AttachmentMeta;
  createdAt: number; expiresAt: number;
}
/** A message (chatId, seq) that references an attachment (v4); unique per (attachmentId, chatId, seq). */
interface AttachmentLinkDoc { _id?: ObjectId; attachmentId: string; chatId: string; seq: number }
/** v1: one row per message per recipient device. Read only by the migration. */
interface V1DeliveryDoc {
  chatId: string; seq: number; deviceId: string; userId: string;
  own: boolean;
  state: 'pending' | 'queued';
  deliveredAt: number | null;
  readAt: number | null;
}

const MARK = { delivered: 1, read: 2 } as const;
type MarkKind = (typeof MARK)[keyof typeof MARK];

const DUPLICATE_KEY = 11000;
/** Documents per round trip when walking a large set (migration, a user's chats, a device's chats). */
const PAGE = 500;
/** Concurrent queries of one call (status times of a large group). */
const PARALLEL = 32;
/** An append waits this long at most (tries x ms) for a removal of its sender under way to settle. */
const SETTLE_TRIES = 40;
const SETTLE_STEP_MS = 25;

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

/** insertMany, ordered:false, ignoring duplicate keys (INSERT OR IGNORE); returns the indexes that were duplicates. */
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

/** The `_id`s of the docs an insertIgnoringDuplicates call actually inserted. */
function insertedIds<T extends { _id: string }>(docs: T[], dup: Set<number>): string[] {
  return docs.filter((_, i) => !dup.has(i)).map((d) => d._id);
}

/** Runs `fn` over `items`, at most PARALLEL at a time; results in input order. */
async function mapLimited<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += PARALLEL) {
    out.push(...(await Promise.all(items.slice(i, i + PARALLEL).map(fn))));
  }
  return out;
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
const toChat = (d: ChatDoc): Chat => ({
  chatId: d._id, kind: d.kind, createdAt: d.createdAt, lastSeq: d.lastSeq,
  name: d.name ?? null, description: d.description ?? null, avatar: d.avatar ?? null,
  shareHistory: d.shareHistory === true, deletedAt: d.deletedAt ?? null, version: d.version ?? 0,
});
const toMember = (d: MemberDoc): Member => ({
  chatId: d.chatId, userId: d.userId, role: d.role, joinedAt: d.joinedAt, sinceSeq: d.sinceSeq ?? 0, leftSeq: d.leftSeq ?? null,
  deliveredSeq: d.deliveredSeq, readSeq: d.readSeq, mutedUntil: d.mutedUntil ?? 0, archived: d.archived === true,
});
const toMessage = (d: MessageDoc): StoredMessage => {
  const m: StoredMessage = {
    chatId: d.chatId, seq: d.seq, senderUserId: d.senderUserId, senderDeviceId: d.senderDeviceId,
    clientMsgId: d.clientMsgId, body: bodyFromDoc(d.body), ts: d.ts,
  };
  // Only a system message has the key (callers and tests compare whole objects).
  if (d.event !== undefined && d.event !== null) m.event = d.event;
  // Likewise only a media message has `media`.
  if (d.media !== undefined && d.media !== null) m.media = d.media;
  return m;
};
const toProgress = (d: DeviceChatDoc): DeviceProgress => ({
  deviceId: d.deviceId, chatId: d.chatId, userId: d.userId, sinceSeq: d.sinceSeq, deliveredSeq: d.deliveredSeq,
  untilSeq: d.untilSeq ?? null,
});
const toGrant = (d: GrantDoc): Grant => ({
  codeHash: d._id, kind: d.kind, userId: d.userId, deviceId: d.deviceId ?? null, chatId: d.chatId ?? null, createdAt: d.createdAt,
  expiresAt: d.expiresAt,
});

const toAttachment = (d: AttachmentDoc): Attachment => ({
  attachmentId: d._id, ownerUserId: d.ownerUserId, ownerDeviceId: d.ownerDeviceId, kind: d.kind, contentType: d.contentType,
  size: d.size, sha256: d.sha256, key: d.key, uploadId: d.uploadId ?? null, state: d.state, error: d.error ?? null,
  encrypted: d.encrypted === true, thumbKey: d.thumbKey ?? null, preview: d.preview ?? null, width: d.width ?? null,
  height: d.height ?? null, meta: d.meta ?? {}, createdAt: d.createdAt, expiresAt: d.expiresAt,
});
/** An attachment's meta as stored: its JSON copy (keys left undefined are dropped, as in SQLite's JSON column). */
const metaToDoc = (m: AttachmentMeta): AttachmentMeta => JSON.parse(JSON.stringify(m ?? {})) as AttachmentMeta;
/** The attachment fields updateAttachment may change (SQLite's ATTACHMENT_COLUMNS). */
const ATTACHMENT_PATCHABLE: ReadonlySet<string> = new Set([
  'kind', 'contentType', 'size', 'sha256', 'uploadId', 'state', 'error', 'encrypted', 'thumbKey', 'preview', 'width', 'height', 'meta',
  'expiresAt',
]);
/** A patched field's stored value. */
const attachmentValue = (field: string, v: unknown): unknown =>
  field === 'meta' ? metaToDoc(v as AttachmentMeta) : field === 'encrypted' ? Boolean(v) : v;

/** A ChatEvent as stored: its JSON copy (keys left undefined are dropped, as SQLite's JSON column drops them). */
const eventToDoc = (e: ChatEvent): ChatEvent => JSON.parse(JSON.stringify(e)) as ChatEvent;
/** A message's MediaRef as stored: its JSON copy (keys left undefined are dropped, as in SQLite's JSON column). */
const mediaToDoc = (m: MediaRef): MediaRef => JSON.parse(JSON.stringify(m)) as MediaRef;

/** A system message's document: no sending device, an empty text body. */
function eventDoc(chatId: string, seq: number, m: SystemMessage): MessageDoc {
  return {
    chatId, seq, senderUserId: m.senderUserId, senderDeviceId: '', clientMsgId: m.clientMsgId, body: '', ts: m.ts,
    event: eventToDoc(m.event),
  };
}

/** A system message as appendEvent returns it when it stores one (with the event as given). */
function eventMessage(chatId: string, seq: number, m: SystemMessage): StoredMessage {
  return { chatId, seq, senderUserId: m.senderUserId, senderDeviceId: '', clientMsgId: m.clientMsgId, body: '', ts: m.ts, event: m.event };
}

/** SQLite's UNIQUE (sender_device_id, client_msg_id) refuses a system message id used in another chat. */
const eventIdTaken = (clientMsgId: string): Error =>
  new Error(`system message id ${clientMsgId} is already used in another chat`);

const directKey = (a: string, b: string): string => (a < b ? `${a}|${b}` : `${b}|${a}`);
/**
 * The chat of a direct key. `$type` as well as the value: the planner uses the partial index
 * `directKey_unique` only for a query that contains its filter expression (it does not infer
 * `$type: 'string'` from a string value); without it every look-up scans the chats.
 */
const byDirectKey = (key: string): Filter<ChatDoc> => ({ directKey: { $eq: key, $type: 'string' } });
const memberId = (chatId: string, userId: string): string => `${chatId}|${userId}`;
const deviceChatId = (deviceId: string, chatId: string): string => `${deviceId}|${chatId}`;
const markId = (chatId: string, userId: string, kind: MarkKind, seq: number): string => `${chatId}|${userId}|${kind}|${seq}`;
const clientKey = (senderDeviceId: string, clientMsgId: string): string => `${senderDeviceId}\u0000${clientMsgId}`;

/** A device's watermark document in a chat it joins at `seq`. */
function deviceChatDoc(deviceId: string, chatId: string, userId: string, seq: number): DeviceChatDoc {
  return {
    _id: deviceChatId(deviceId, chatId), deviceId, chatId, userId, sinceSeq: seq, deliveredSeq: seq, deliveredAt: null, untilSeq: null,
  };
}

/** Not a system message (`event IS NULL`: the field is missing, or null). */
const NO_EVENT = { event: null } as unknown as Filter<MessageDoc>;

/** A device's window still open at `seq` (SQLite: `until_seq IS NULL OR until_seq >= seq`). */
const openAt = (seq: number): Filter<DeviceChatDoc> => ({ $or: [{ untilSeq: null }, { untilSeq: { $gte: seq } }] });

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
  const deviceChats = db.collection<DeviceChatDoc>('deviceChats', majority);
  const marks = db.collection<MarkDoc>('marks', majority);
  const meta = db.collection<MetaDoc>('meta', majority);
  const grants = db.collection<GrantDoc>('grants');
  const attachments = db.collection<AttachmentDoc>('attachments');
  const attachmentLinks = db.collection<AttachmentLinkDoc>('attachment_links');
  const social = createMongoSocial(db);
  const push = createMongoPushStore(db);
  const statusPosts = createMongoStatusStore(db);
  const keys = createMongoKeyStore(db);
  const account = createMongoAccount(db);

  async function init(): Promise<void> {
    await Promise.all([
      social.indexes(),
      push.indexes(),
      statusPosts.indexes(),
      keys.indexes(),
      account.indexes(),
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
      deviceChats.createIndexes([
        // chatDevices(): a chat's devices by deviceId, a page at a time.
        { key: { chatId: 1, deviceId: 1 }, name: 'chat_device' },
        // A member's devices in a chat (its delivered watermark, status).
        { key: { chatId: 1, userId: 1 }, name: 'chat_user' },
        // pending(): a device's chats in chatId order; revokeDevice().
        { key: { deviceId: 1, chatId: 1 }, name: 'device_chat' },
      ]),
      marks.createIndexes([
        // The first move of a member's watermark that covered a seq.
        { key: { chatId: 1, userId: 1, kind: 1, seq: 1 }, name: 'member_kind_seq' },
        { key: { at: 1 }, name: 'expiry' },
      ]),
      // Grants are keyed by their code hash (`_id`, unique); expire() deletes the expired ones.
      grants.createIndexes([
        { key: { chatId: 1, expiresAt: 1 }, name: 'chat' },
        { key: { expiresAt: 1 }, name: 'expiry' },
      ]),
      // Attachments are keyed by their id (`_id`); expiredAttachments() walks them by expiry, ties by id.
      attachments.createIndexes([{ key: { expiresAt: 1, _id: 1 }, name: 'expiry' }]),
      // linkAttachment() is idempotent by this key; attachmentLinks() and deleteAttachment() find an attachment's links by it.
      attachmentLinks.createIndexes([{ key: { attachmentId: 1, chatId: 1, seq: 1 }, name: 'attachment_chat_seq_unique', unique: true }]),
    ]);
    const m = await meta.findOne({ _id: 'schema' });
    if ((m?.version ?? 0) >= SCHEMA_VERSION) return;
    await migrateV1V2();
    try {
      await meta.updateOne({ _id: 'schema' }, { $max: { version: SCHEMA_VERSION } }, { upsert: true });
    } catch (err) {
      if (!isDuplicateKey(err)) throw err; // a concurrent init recorded it first
    }
  }

  async function collectionExists(name: string): Promise<boolean> {
    return (await db.listCollections({ name }, { nameOnly: true }).toArray()).length > 0;
  }

  /**
   * v1 -> v2, as MIGRATE_V1_V2 in the SQLite adapter. Every write is an insert-if-absent of a
   * keyed document computed from the v1 rows alone, so a rerun after a crash (or a concurrent
   * init in another process) writes the same documents; `deliveries` is dropped last.
   */
  async function migrateV1V2(): Promise<void> {
    if (!(await collectionExists('deliveries'))) return;
    const deliveries = db.collection<V1DeliveryDoc>('deliveries');
    try {
      await migrateDeviceChats(deliveries);
      await migrateMarks(deliveries);
      await db.dropCollection('deliveries', majority);
    } catch (err) {
      // Another process finished the migration (and dropped `deliveries`) under this one.
      if (!(await collectionExists('deliveries'))) return;
      throw err;
    }
  }

  /** Walks a cursor in pages of PAGE documents. */
  async function forPages<T>(cursor: AsyncIterable<T> & { close(): Promise<void> }, fn: (page: T[]) => Promise<void>): Promise<void> {
    let page: T[] = [];
    try {
      for await (const d of cursor) {
        page.push(d);
        if (page.length >= PAGE) {
          await fn(page);
          page = [];
        }
      }
      if (page.length > 0) await fn(page);
    } finally {
      await cursor.close();
    }
  }

  /** The lastSeq of those chats that exist. */
  async function lastSeqs(chatIds: string[]): Promise<Map<string, number>> {
    if (chatIds.length === 0) return new Map();
    const found = await chats.find({ _id: { $in: [...new Set(chatIds)] } }, { projection: { lastSeq: 1 } }).toArray();
    return new Map(found.map((c) => [c._id, c.lastSeq]));
  }

  async function migrateDeviceChats(deliveries: Collection<V1DeliveryDoc>): Promise<void> {
    // 1. (member, active device) pairs with v1 rows: since = the seq before the device's first
    //    row, delivered = the seq before its first undelivered row (else its last row).
    interface Group {
      _id: { chatId: string; deviceId: string };
      minSeq: number; maxSeq: number; minUndelivered: number | null; deliveredAt: number | null;
    }
    const groups = deliveries.aggregate<Group>([
      {
        $group: {
          _id: { chatId: '$chatId', deviceId: '$deviceId' },
          minSeq: { $min: '$seq' },
          maxSeq: { $max: '$seq' },
          // $min / $max ignore nulls: null when every row was delivered / none was.
          minUndelivered: { $min: { $cond: [{ $eq: [{ $ifNull: ['$deliveredAt', null] }, null] }, '$seq', null] } },
          deliveredAt: { $max: '$deliveredAt' },
        },
      },
    ], { allowDiskUse: true, batchSize: PAGE });
    await forPages(groups, async (page) => {
      const active = await devices
        .find({ _id: { $in: [...new Set(page.map((g) => g._id.deviceId))] }, revokedAt: null }, { projection: { userId: 1 } })
        .toArray();
      const userOf = new Map(active.map((d) => [d._id, d.userId]));
      const candidates = page.filter((g) => userOf.has(g._id.deviceId));
      const memberIds = candidates.map((g) => memberId(g._id.chatId, userOf.get(g._id.deviceId)!));
      const isMember = new Set(
        (await members.find({ _id: { $in: memberIds } }, { projection: { _id: 1 } }).toArray()).map((m) => m._id),
      );
      const chatExists = await lastSeqs(candidates.map((g) => g._id.chatId));
      const docs: DeviceChatDoc[] = [];
      for (const g of candidates) {
        const { chatId, deviceId } = g._id;
        const userId = userOf.get(deviceId)!;
        if (!isMember.has(memberId(chatId, userId)) || !chatExists.has(chatId)) continue;
        docs.push({
          _id: deviceChatId(deviceId, chatId), deviceId, chatId, userId,
          sinceSeq: g.minSeq - 1,
          deliveredSeq: g.minUndelivered !== null && g.minUndelivered !== undefined ? g.minUndelivered - 1 : g.maxSeq,
          deliveredAt: g.deliveredAt ?? null,
        });
      }
      await insertIgnoringDuplicates(deviceChats, docs);
    });

    // 2. Every other (member, active device) pair: at the chat's end. Runs only once step 1 is
    //    complete, so it never shadows a pair that has v1 rows.
    const memberCursor = members.find({}, { projection: { chatId: 1, userId: 1 }, sort: { _id: 1 }, batchSize: PAGE });
    await forPages(memberCursor, async (page) => {
      const active = await devices
        .find({ userId: { $in: [...new Set(page.map((m) => m.userId))] }, revokedAt: null }, { projection: { userId: 1 } })
        .toArray();
      const devicesOf = new Map<string, string[]>();
      for (const d of active) {
        const list = devicesOf.get(d.userId);
        if (list) list.push(d._id);
        else devicesOf.set(d.userId, [d._id]);
      }
      const last = await lastSeqs(page.map((m) => m.chatId));
      const docs: DeviceChatDoc[] = [];
      for (const m of page) {
        const seq = last.get(m.chatId);
        if (seq === undefined) continue;
        for (const deviceId of devicesOf.get(m.userId) ?? []) docs.push(deviceChatDoc(deviceId, m.chatId, m.userId, seq));
      }
      await insertIgnoringDuplicates(deviceChats, docs);
    });
  }

  async function migrateMarks(deliveries: Collection<V1DeliveryDoc>): Promise<void> {
    // The first delivered / read time of each (chat, user, seq), kept up to the member's watermark.
    interface Group { _id: { chatId: string; userId: string; seq: number }; d: number | null; r: number | null }
    const groups = deliveries.aggregate<Group>([
      { $match: { $or: [{ deliveredAt: { $ne: null } }, { readAt: { $ne: null } }] } },
      {
        $group: {
          _id: { chatId: '$chatId', userId: '$userId', seq: '$seq' },
          d: { $min: '$deliveredAt' },
          r: { $min: '$readAt' },
        },
      },
    ], { allowDiskUse: true, batchSize: PAGE });
    await forPages(groups, async (page) => {
      const ids = [...new Set(page.map((g) => memberId(g._id.chatId, g._id.userId)))];
      const found = await members.find({ _id: { $in: ids } }, { projection: { deliveredSeq: 1, readSeq: 1 } }).toArray();
      const byId = new Map(found.map((m) => [m._id, m]));
      const docs: MarkDoc[] = [];
      for (const g of page) {
        const { chatId, userId, seq } = g._id;
        const m = byId.get(memberId(chatId, userId));
        if (!m) continue;
        if (g.d !== null && g.d !== undefined && seq <= m.deliveredSeq) {
          docs.push({ _id: markId(chatId, userId, MARK.delivered, seq), chatId, userId, kind: MARK.delivered, seq, at: g.d });
        }
        if (g.r !== null && g.r !== undefined && seq <= m.readSeq) {
          docs.push({ _id: markId(chatId, userId, MARK.read, seq), chatId, userId, kind: MARK.read, seq, at: g.r });
        }
      }
      await insertIgnoringDuplicates(marks, docs);
    });
  }

  /**
   * A device joins each chat its user is a current member of `depth` seqs before the chat's end,
   * but not before what the member may see (joinUserChats): the catch-up then delivers that
   * recent history. A member whose chat document is not there yet belongs to a chat being created
   * (members are written first), which starts at 0. Adds the ids it inserted to `inserted` as it
   * goes.
   */
  async function joinUserChats(deviceId: string, userId: string, depth: number, inserted: string[] = []): Promise<void> {
    const cursor = members.find({ userId, leftSeq: null }, { projection: { chatId: 1, sinceSeq: 1 }, batchSize: PAGE });
    await forPages(cursor, async (page) => {
      const last = await lastSeqs(page.map((m) => m.chatId));
      const docs = page.map((m) =>
        deviceChatDoc(deviceId, m.chatId, userId, Math.max(m.sinceSeq ?? 0, (last.get(m.chatId) ?? 0) - depth)));
      const dup = await insertIgnoringDuplicates(deviceChats, docs);
      inserted.push(...insertedIds(docs, dup));
      await closeEndedWindows(page.filter((_, i) => !dup.has(i)).map((m) => m._id));
    });
  }

  /**
   * Closes the device windows of those memberships that ended meanwhile: a group change that
   * removed the member between our read of the membership and our write of a window closed the
   * windows it found, maybe before ours existed. It ends the membership before it closes the
   * windows, and this runs after our write, so one of the two closes each window. A window closed
   * at a removal's fence carries that change's token, so that the change widens (or lifts) it too.
   */
  async function closeEndedWindows(memberIds: string[]): Promise<void> {
    if (memberIds.length === 0) return;
    const ended = await members
      .find({ _id: { $in: memberIds }, leftSeq: { $ne: null } }, { projection: { chatId: 1, userId: 1, leftSeq: 1, closing: 1 } })
      .toArray();
    for (const m of ended) {
      await deviceChats.updateMany(
        { chatId: m.chatId, userId: m.userId, untilSeq: null },
        { $set: m.closing ? { untilSeq: m.leftSeq!, closing: m.closing } : { untilSeq: m.leftSeq! } },
      );
    }
  }

  /** A bulk write of idempotent upserts; run again once if a concurrent upsert of the same `_id` inserted first. */
  async function upsertAll<T extends { _id: string }>(coll: Collection<T>, ops: AnyBulkWriteOperation<T>[]): Promise<void> {
    if (ops.length === 0) return;
    try {
      await coll.bulkWrite(ops, { ordered: true });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError) || duplicateIndexes(err).size === 0) throw err;
      await coll.bulkWrite(ops, { ordered: true });
    }
  }

  /**
   * The members join (or come back to) the chat at the message `seq` (upsertMember and
   * upsertMemberDevices): they see the messages after `since` (0 when the group shares history),
   * and every active device of theirs receives from the message on (since `seq - 1` in every case),
   * with nothing older to acknowledge. A removal of theirs still under way (a fence) is overridden.
   */
  async function addMembers(
    chatId: string, add: Array<{ userId: string; role: MemberRole }>, since: number, seq: number, at: number,
  ): Promise<void> {
    if (add.length === 0) return;
    const start = seq - 1;
    // The members first, then their devices' windows: a concurrent addDevice either finds the
    // membership (its second pass) or has its device found here.
    await upsertAll(members, add.map((a) => ({
      updateOne: {
        filter: { _id: memberId(chatId, a.userId) },
        update: {
          $set: { chatId, userId: a.userId, role: a.role, joinedAt: at, sinceSeq: since, leftSeq: null },
          $max: { deliveredSeq: start, readSeq: start },
          $setOnInsert: { mutedUntil: 0, archived: false },
          $unset: { closing: '' },
        },
        upsert: true,
      },
    })));
    const userIds = [...new Set(add.map((a) => a.userId))];
    const active = await devices.find({ userId: { $in: userIds }, revokedAt: null }, { projection: { userId: 1 } }).toArray();
    await upsertAll(deviceChats, active.map((d) => ({
      updateOne: {
        filter: { _id: deviceChatId(d._id, chatId) },
        update: {
          $set: { deviceId: d._id, chatId, userId: d.userId, sinceSeq: start, untilSeq: null },
          $max: { deliveredSeq: start },
          $setOnInsert: { deliveredAt: null },
          $unset: { closing: '' },
        },
        upsert: true,
      },
    })));
    // A later change that removed one of them may have closed their windows before ours reopened them.
    await closeEndedWindows(userIds.map((u) => memberId(chatId, u)));
  }

  /** Every active device of those members joins the chat at seq 0 (joinMemberDevices). Returns the ids it inserted. */
  async function joinMemberDevices(chatId: string, userIds: string[]): Promise<string[]> {
    if (userIds.length === 0) return [];
    const active = await devices.find({ userId: { $in: userIds }, revokedAt: null }, { projection: { userId: 1 } }).toArray();
    const docs = active.map((d) => deviceChatDoc(d._id, chatId, d.userId, 0));
    return insertedIds(docs, await insertIgnoringDuplicates(deviceChats, docs));
  }

  /** Records a move of a member's watermark (INSERT OR IGNORE). */
  async function insertMark(chatId: string, userId: string, kind: MarkKind, seq: number, at: number): Promise<void> {
    try {
      await marks.insertOne({ _id: markId(chatId, userId, kind, seq), chatId, userId, kind, seq, at });
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
    }
  }

  /** Raises a member's delivered watermark to `seq` and records the move; true when it moved. */
  async function raiseMemberDelivered(chatId: string, userId: string, seq: number, at: number): Promise<boolean> {
    // Conditional, so that concurrent writers only ever move it forward.
    const r = await members.updateOne({ _id: memberId(chatId, userId), deliveredSeq: { $lt: seq } }, { $set: { deliveredSeq: seq } });
    if (r.modifiedCount !== 1) return false;
    await insertMark(chatId, userId, MARK.delivered, seq, at);
    return true;
  }

  /** `at` of the first move of the member's watermark of that kind that covered `seq`, or null. */
  async function markAt(chatId: string, userId: string, kind: MarkKind, seq: number): Promise<number | null> {
    const d = await marks.findOne(
      { chatId, userId, kind, seq: { $gte: seq } },
      { sort: { seq: 1 }, projection: { at: 1 } },
    );
    return d?.at ?? null;
  }

  /**
   * Those members' end of membership once no removal of theirs is under way (no `closing`
   * token), waiting for that up to SETTLE_TRIES * SETTLE_STEP_MS; what is still under way then
   * (a change that stopped half-way) is returned as it is.
   */
  async function settledMembers(ids: string[]): Promise<Array<Pick<MemberDoc, '_id' | 'leftSeq' | 'closing'>>> {
    const read = () => members.find({ _id: { $in: ids } }, { projection: { leftSeq: 1, closing: 1 } }).toArray();
    let docs = await read();
    for (let i = 0; i < SETTLE_TRIES && docs.some((d) => d.closing !== undefined); i++) {
      await new Promise((resolve) => setTimeout(resolve, SETTLE_STEP_MS));
      docs = await read();
    }
    return docs;
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

    // 3. Every chat must exist before anything is reserved or written. A sender who is not (or no
    //    longer) a member of the chat, or a deleted group, is refused (as SQLite's `admit`, after
    //    the resend check: a message stored before the sender left is still returned).
    const refusedOf = new Map<number, AppendRefusal>();
    const chatIds = [...new Set(fresh.map((i) => batch[i]!.chatId))];
    if (chatIds.length > 0) {
      const found = await chats.find({ _id: { $in: chatIds } }, { projection: { deletedAt: 1 } }).toArray();
      if (found.length !== chatIds.length) {
        const have = new Set(found.map((c) => c._id));
        const missing = chatIds.find((c) => !have.has(c));
        throw new StoreError('NOT_FOUND', `chat ${missing ?? '?'} not found`);
      }
      const deleted = new Set(found.filter((c) => c.deletedAt !== null && c.deletedAt !== undefined).map((c) => c._id));
      const senders = [...new Set(
        fresh.filter((i) => !deleted.has(batch[i]!.chatId)).map((i) => memberId(batch[i]!.chatId, batch[i]!.senderUserId)),
      )];
      const current = senders.length === 0 ? new Set<string>() : new Set(
        (await members.find({ _id: { $in: senders }, leftSeq: null }, { projection: { _id: 1 } }).toArray()).map((m) => m._id),
      );
      for (const i of fresh) {
        const m = batch[i]!;
        if (deleted.has(m.chatId)) refusedOf.set(i, 'CHAT_DELETED');
        else if (!current.has(memberId(m.chatId, m.senderUserId))) refusedOf.set(i, 'NOT_MEMBER');
      }
    }
    let admitted = fresh.filter((i) => !refusedOf.has(i));

    // 4. Reserve seqs: one atomic $inc per chat, handed out in batch order. Only in a chat that is
    //    not deleted, so that no message can follow the one that deleted the group.
    const countByChat = new Map<string, number>();
    for (const i of admitted) countByChat.set(batch[i]!.chatId, (countByChat.get(batch[i]!.chatId) ?? 0) + 1);
    const nextSeq = new Map<string, number>();
    for (const [chatId, n] of countByChat) {
      const chat = await chats.findOneAndUpdate(
        { _id: chatId, deletedAt: null },
        { $inc: { lastSeq: n } },
        { returnDocument: 'after', projection: { lastSeq: 1 } },
      );
      if (!chat) {
        if (!(await chats.findOne({ _id: chatId }, { projection: { _id: 1 } }))) {
          throw new StoreError('NOT_FOUND', `chat ${chatId} not found`);
        }
        // Deleted since step 3.
        for (const i of admitted) if (batch[i]!.chatId === chatId) refusedOf.set(i, 'CHAT_DELETED');
        continue;
      }
      nextSeq.set(chatId, chat.lastSeq - n + 1);
    }
    admitted = admitted.filter((i) => !refusedOf.has(i));
    const seqOf = new Map<number, number>();
    for (const i of admitted) {
      const chatId = batch[i]!.chatId;
      const seq = nextSeq.get(chatId)!;
      nextSeq.set(chatId, seq + 1);
      seqOf.set(i, seq);
    }

    // 4b. The membership again, now that the seqs are reserved (SQLite checks it in the
    //     transaction that assigns them): a sender whose membership ends before its seq is refused,
    //     the seq left unused. A removal fences its members out (leftSeq at or below the chat's
    //     lastSeq) before it reserves its own seq, so a seq reserved after the removal's finds that
    //     fence, or the removal's seq, here. A fence still under way is waited for: the removal
    //     either gets a seq (this message came before it or after it) or is lifted.
    if (admitted.length > 0) {
      const firstSeq = new Map<string, number>();
      for (const i of admitted) {
        const id = memberId(batch[i]!.chatId, batch[i]!.senderUserId);
        firstSeq.set(id, Math.min(firstSeq.get(id) ?? Infinity, seqOf.get(i)!));
      }
      const ids = [...firstSeq.keys()];
      const docs = await members.find({ _id: { $in: ids } }, { projection: { leftSeq: 1, closing: 1 } }).toArray();
      const endOf = new Map(docs.map((d) => [d._id, { leftSeq: d.leftSeq ?? null, closing: d.closing }]));
      const fenced = ids.filter((id) => {
        const e = endOf.get(id);
        return e?.closing !== undefined && e.leftSeq !== null && e.leftSeq < firstSeq.get(id)!;
      });
      if (fenced.length > 0) {
        for (const d of await settledMembers(fenced)) endOf.set(d._id, { leftSeq: d.leftSeq ?? null, closing: d.closing });
      }
      for (const i of admitted) {
        const e = endOf.get(memberId(batch[i]!.chatId, batch[i]!.senderUserId));
        // Unsettled (a fence left by a change that never finished), or gone: refused (fail closed).
        if (!e || (e.leftSeq !== null && e.leftSeq < seqOf.get(i)!)) refusedOf.set(i, 'NOT_MEMBER');
      }
      admitted = admitted.filter((i) => !refusedOf.has(i));
    }

    // 5. Insert the messages; a duplicate here means a concurrent writer stored it first.
    const docs: MessageDoc[] = admitted.map((i) => {
      const m = batch[i]!;
      return {
        chatId: m.chatId, seq: seqOf.get(i)!, senderUserId: m.senderUserId, senderDeviceId: m.senderDeviceId,
        clientMsgId: m.clientMsgId, body: bodyToDoc(m.body), ts: m.ts, ...(m.media ? { media: mediaToDoc(m.media) } : {}),
      };
    });
    const lost = await insertIgnoringDuplicates(messages, docs);
    const created: number[] = [];
    const lostIdx: number[] = [];
    admitted.forEach((i, j) => (lost.has(j) ? lostIdx.push(i) : created.push(i)));
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

    // 6. passOwn: the sender never receives its own message; when its device was caught up, its
    //    watermark passes it. Ordered, in seq order, so that a run of messages of one device in a
    //    chat moves its watermark along the whole run (each step is conditional on the previous).
    const passOwn: AnyBulkWriteOperation<DeviceChatDoc>[] = created
      .map((i) => ({ m: batch[i]!, seq: seqOf.get(i)! }))
      .sort((a, b) => a.seq - b.seq)
      .map(({ m, seq }) => ({
        updateOne: {
          filter: { _id: deviceChatId(m.senderDeviceId, m.chatId), deliveredSeq: seq - 1 },
          update: [{ $set: { deliveredSeq: seq, deliveredAt: { $ifNull: ['$deliveredAt', m.ts] } } }],
        },
      }));
    if (passOwn.length > 0) await deviceChats.bulkWrite(passOwn, { ordered: true });

    // 7. Results, in batch order.
    const createdSet = new Set(created);
    const results: AppendResult[] = new Array<AppendResult>(batch.length);
    for (let i = 0; i < batch.length; i++) {
      if (dupOfIndex[i] !== -1) continue;
      const m = batch[i]!;
      const refused = refusedOf.get(i);
      if (refused) {
        results[i] = { message: null, created: false, refused };
      } else if (createdSet.has(i)) {
        results[i] = {
          message: {
            chatId: m.chatId, seq: seqOf.get(i)!, senderUserId: m.senderUserId, senderDeviceId: m.senderDeviceId,
            clientMsgId: m.clientMsgId, body: typeof m.body === 'string' ? m.body : new Uint8Array(m.body), ts: m.ts,
            ...(m.media ? { media: m.media } : {}),
          },
          created: true,
        };
      } else {
        results[i] = { message: toMessage(stored.get(clientKey(m.senderDeviceId, m.clientMsgId))!), created: false };
      }
    }
    for (let i = 0; i < batch.length; i++) {
      const first = dupOfIndex[i]!;
      if (first === -1) continue;
      const r = results[first]!;
      if (r.refused) {
        results[i] = r;
        continue;
      }
      const body = r.message.body;
      results[i] = { message: { ...r.message, body: typeof body === 'string' ? body : new Uint8Array(body) }, created: false };
    }
    return results;
  }

  /** markDelivered: see ProgressStore. */
  async function markDelivered(acks: DeliveryAck[]): Promise<WatermarkChange[]> {
    if (acks.length === 0) return [];
    // The acks of each (device, chat), in call order.
    const byDeviceChat = new Map<string, Array<{ a: DeliveryAck; index: number }>>();
    acks.forEach((a, index) => {
      const k = deviceChatId(a.deviceId, a.chatId);
      const list = byDeviceChat.get(k);
      if (list) list.push({ a, index });
      else byDeviceChat.set(k, [{ a, index }]);
    });
    // One atomic conditional update per (device, chat), with the effect of applying its acks in
    // order ("raise to seq where lower"): the watermark ends at the highest acked seq, with the
    // time of the first ack that reached it. The pre-image says which of the acks moved it.
    const moved = await mapLimited([...byDeviceChat], async ([_id, list]) => {
      let top = list[0]!.a;
      for (const { a } of list) if (a.seq > top.seq) top = a;
      const before = await deviceChats.findOneAndUpdate(
        { _id, deliveredSeq: { $lt: top.seq } },
        { $set: { deliveredSeq: top.seq, deliveredAt: top.at } },
        { returnDocument: 'before', projection: { chatId: 1, userId: 1, deliveredSeq: 1 } },
      );
      if (!before) return null;
      let w = before.deliveredSeq;
      let at = -Infinity;
      let firstIndex = -1;
      for (const { a, index } of list) {
        if (a.seq <= w) continue;
        w = a.seq;
        if (firstIndex === -1) firstIndex = index;
        if (a.at > at) at = a.at;
      }
      return { chatId: before.chatId, userId: before.userId, at, firstIndex };
    });
    // (chat, user) -> latest ack time among the devices this call moved, in the order of the
    // first ack that moved one of them.
    const affected = new Map<string, { chatId: string; userId: string; at: number }>();
    const movedInOrder = moved
      .filter((x): x is NonNullable<typeof x> => x !== null)
      .sort((x, y) => x.firstIndex - y.firstIndex);
    for (const { chatId, userId, at } of movedInOrder) {
      const key = `${chatId}\u0000${userId}`;
      const cur = affected.get(key);
      if (!cur) affected.set(key, { chatId, userId, at });
      else if (at > cur.at) cur.at = at;
    }
    const changes = await mapLimited([...affected.values()], async ({ chatId, userId, at }): Promise<WatermarkChange | null> => {
      // The member's delivered watermark: as far as that user's devices' spans cover (watermarks.ts).
      const member = await members.findOne({ _id: memberId(chatId, userId) }, { projection: { deliveredSeq: 1 } });
      if (!member) return null;
      const spans = await deviceChats.find({ chatId, userId }, { projection: { sinceSeq: 1, deliveredSeq: 1 } }).toArray();
      const top = Math.max(member.deliveredSeq, ...spans.map((x) => x.deliveredSeq));
      const own = await messages.find(
        { chatId, senderUserId: userId, seq: { $gt: member.deliveredSeq, $lte: top } },
        { projection: { seq: 1 }, sort: { seq: 1 } },
      ).map((d) => d.seq).toArray();
      const seq = memberDelivered(member.deliveredSeq, spans, own);
      if (seq <= member.deliveredSeq) return null;
      return (await raiseMemberDelivered(chatId, userId, seq, at)) ? { chatId, userId, seq, at } : null;
    });
    return changes.filter((c): c is WatermarkChange => c !== null);
  }

  /**
   * createGroupChat (SQLite's groupChat): the members and their devices' windows (at 0), then the
   * `created` message at seq 1, then the chat document (lastSeq 1, version 1), which makes the
   * group visible: what a reader finds first is complete. The chat insert decides a race on the id.
   */
  async function createGroupChat(g: NewGroup): Promise<{ chat: Chat; message: StoredMessage }> {
    const chatId = g.chatId;
    const cm = g.created;
    if (await chats.findOne({ _id: chatId }, { projection: { _id: 1 } })) {
      throw new StoreError('DUPLICATE', `chat id ${chatId} already taken`);
    }
    const taken = await messages.findOne({ senderDeviceId: '', clientMsgId: cm.clientMsgId }, { projection: { chatId: 1 } });
    if (taken && taken.chatId !== chatId) throw eventIdTaken(cm.clientMsgId);
    const at = cm.ts;
    // One document per user, the first one listed (INSERT OR IGNORE).
    const seen = new Set<string>();
    const memberDocs: MemberDoc[] = [];
    for (const m of g.members) {
      if (seen.has(m.userId)) continue;
      seen.add(m.userId);
      memberDocs.push({
        _id: memberId(chatId, m.userId), chatId, userId: m.userId, role: m.role, joinedAt: at, sinceSeq: 0, leftSeq: null,
        deliveredSeq: 0, readSeq: 0, mutedUntil: 0, archived: false,
      });
    }
    const ourMembers = insertedIds(memberDocs, await insertIgnoringDuplicates(members, memberDocs));
    const ourDeviceChats = await joinMemberDevices(chatId, [...seen]);
    try {
      await messages.insertOne(eventDoc(chatId, 1, cm));
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      // The same creation, retried or concurrent, stored it first: the chat insert below decides.
      // Anything else is another group under this id, or this message id used in another chat.
      const there = await messages.findOne({ chatId, seq: 1 }, { projection: { senderDeviceId: 1, clientMsgId: 1 } });
      if (!there || there.senderDeviceId !== '' || there.clientMsgId !== cm.clientMsgId) {
        await members.deleteMany({ _id: { $in: ourMembers } });
        await deviceChats.deleteMany({ _id: { $in: ourDeviceChats } });
        if (!there) throw eventIdTaken(cm.clientMsgId);
        throw new StoreError('DUPLICATE', `chat id ${chatId} already taken`);
      }
    }
    const doc: ChatDoc = {
      _id: chatId, kind: 'group', createdAt: at, lastSeq: 1, name: g.name, description: g.description, avatar: g.avatar,
      shareHistory: g.shareHistory, deletedAt: null, version: 1,
    };
    try {
      await chats.insertOne(doc);
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      // The message at seq 1 is this creation's (stored above, or found there), so whoever
      // inserted the chat first ran this same creation, and uses the members, windows and
      // message written here: nothing to undo.
      throw new StoreError('DUPLICATE', `chat id ${chatId} already taken`);
    }
    return { chat: toChat(doc), message: eventMessage(chatId, 1, cm) };
  }

  /**
   * Fences the removed members out before the change reserves its seq: each current one gets
   * `leftSeq` = `fenceAt` (the chat's lastSeq as read before) with the change's token, then so do
   * the open windows of its devices. A seq reserved after this (the change's own, and any later
   * message's) is above the fence, so neither the append check nor a window lets a removed member
   * past it. Returns the users fenced; throws CONFLICT (with its own fences lifted) when another
   * change's removal of one of them is under way, rather than rely on a fence it does not own.
   */
  async function fenceRemovals(chatId: string, remove: string[], fenceAt: number, token: string): Promise<string[]> {
    if (remove.length === 0) return [];
    const ids = remove.map((u) => memberId(chatId, u));
    await members.updateMany({ _id: { $in: ids }, leftSeq: null }, { $set: { leftSeq: fenceAt, closing: token } });
    const docs = await members.find({ _id: { $in: ids } }, { projection: { userId: 1, leftSeq: 1, closing: 1 } }).toArray();
    const owned = docs.filter((d) => d.closing === token).map((d) => d.userId);
    // Not ours and not simply a former member (a no-op, as in SQLite): another change is at it.
    if (docs.some((d) => d.closing !== token && (d.closing || d.leftSeq === null || d.leftSeq === undefined))) {
      await liftFence(chatId, owned, token);
      throw new StoreError('CONFLICT', `chat ${chatId}: another change is removing the same member`);
    }
    if (owned.length > 0) {
      await deviceChats.updateMany({ chatId, userId: { $in: owned }, untilSeq: null }, { $set: { untilSeq: fenceAt, closing: token } });
    }
    return owned;
  }

  /** The change's message is stored at `seq`: its fences become the end of those memberships. */
  async function widenFence(chatId: string, owned: string[], token: string, seq: number): Promise<void> {
    if (owned.length === 0) return;
    // Filtered by the token: a later change that added one of them back has removed it.
    await members.updateMany(
      { _id: { $in: owned.map((u) => memberId(chatId, u)) }, closing: token },
      { $set: { leftSeq: seq }, $unset: { closing: '' } },
    );
    await deviceChats.updateMany({ chatId, userId: { $in: owned }, closing: token }, { $set: { untilSeq: seq }, $unset: { closing: '' } });
  }

  /** The change lost its version check (or its message id): its fences are lifted. */
  async function liftFence(chatId: string, owned: string[], token: string): Promise<void> {
    if (owned.length === 0) return;
    const reopen = () => deviceChats.updateMany(
      { chatId, userId: { $in: owned }, closing: token }, { $set: { untilSeq: null }, $unset: { closing: '' } },
    );
    // Windows, then the memberships, then the windows a concurrent addDevice closed meanwhile.
    await reopen();
    await members.updateMany(
      { _id: { $in: owned.map((u) => memberId(chatId, u)) }, closing: token },
      { $set: { leftSeq: null }, $unset: { closing: '' } },
    );
    await reopen();
  }

  /** commitGroupChange: see ChatStore, and the header for what is atomic here. */
  async function commitGroupChange(c: GroupChange): Promise<StoredMessage> {
    const chatId = c.chatId;
    const sm = c.message;
    const chat = await chats.findOne({ _id: chatId }, { projection: { version: 1, lastSeq: 1, deletedAt: 1 } });
    if (!chat) throw new StoreError('NOT_FOUND', `chat ${chatId} not found`);
    // A change retried after a lost answer finds its message and applies nothing again.
    const existing = await messages.findOne({ senderDeviceId: '', clientMsgId: sm.clientMsgId });
    if (existing && existing.chatId === chatId) return toMessage(existing);
    // Nothing follows a deletion: the caller plans again and finds the group deleted.
    const deleted = () => new StoreError('CONFLICT', `chat ${chatId} was deleted`);
    const conflict = (at: number | undefined) => new StoreError('CONFLICT', `chat ${chatId} is at version ${at ?? 0}, not ${c.version}`);
    if (chat.deletedAt !== null && chat.deletedAt !== undefined) throw deleted();
    if ((chat.version ?? 0) !== c.version) throw conflict(chat.version);
    if (existing) throw eventIdTaken(sm.clientMsgId);

    // 1. Removed members are fenced out before the seq is reserved (see fenceRemovals).
    const remove = [...new Set(c.remove ?? [])];
    const token = randomUUID();
    const owned = await fenceRemovals(chatId, remove, chat.lastSeq, token);

    // 2. One atomic step: the version check and bump, the message's seq, the chat's own changes
    //    (a deletion among them: appendMessages reserves only in a chat that is not deleted).
    const set: { name?: string; description?: string | null; avatar?: string | null; deletedAt?: number } = {};
    if (c.settings) {
      if (c.settings.name !== undefined && c.settings.name !== null) set.name = c.settings.name;
      if (c.settings.description !== undefined) set.description = c.settings.description;
      if (c.settings.avatar !== undefined) set.avatar = c.settings.avatar;
    }
    if (c.delete) set.deletedAt = sm.ts;
    const bumped = await chats.findOneAndUpdate(
      // A v2 chat document has no version: it is at 0.
      c.version === 0
        ? { _id: chatId, deletedAt: null, $or: [{ version: 0 }, { version: { $exists: false } }] }
        : { _id: chatId, deletedAt: null, version: c.version },
      { $inc: { version: 1, lastSeq: 1 }, ...(Object.keys(set).length > 0 ? { $set: set } : {}) },
      { returnDocument: 'after', projection: { lastSeq: 1, shareHistory: 1 } },
    );
    if (!bumped) {
      await liftFence(chatId, owned, token);
      const now = await chats.findOne({ _id: chatId }, { projection: { version: 1, deletedAt: 1 } });
      if (!now) throw new StoreError('NOT_FOUND', `chat ${chatId} not found`);
      if (now.deletedAt !== null && now.deletedAt !== undefined) throw deleted();
      throw conflict(now.version);
    }

    // 3. The message.
    let message: StoredMessage;
    try {
      await messages.insertOne(eventDoc(chatId, bumped.lastSeq, sm));
      message = eventMessage(chatId, bumped.lastSeq, sm);
    } catch (err) {
      if (!isDuplicateKey(err)) throw err; // outcome unknown: the fences stay (fail closed)
      // A concurrent commit of the same change stored its message first: that is the change's
      // message (the seq reserved here stays unused).
      const winner = await messages.findOne({ senderDeviceId: '', clientMsgId: sm.clientMsgId });
      if (!winner) throw new Error(`seq ${bumped.lastSeq} of chat ${chatId} is already taken`, { cause: err });
      if (winner.chatId !== chatId) {
        await liftFence(chatId, owned, token);
        throw eventIdTaken(sm.clientMsgId);
      }
      message = toMessage(winner);
      if (c.delete && winner.ts !== set.deletedAt) await chats.updateOne({ _id: chatId }, { $set: { deletedAt: winner.ts } });
    }
    const seq = message.seq;

    // 4. The membership changes. Joining members see from this message on (or everything over
    //    history, when the group shares it); their devices receive from it on.
    await addMembers(chatId, c.add ?? [], bumped.shareHistory === true ? 0 : seq - 1, seq, message.ts);
    // Leaving members get this message and nothing after it: the fence moves up to it.
    await widenFence(chatId, owned, token, seq);
    if (c.roles && c.roles.length > 0) {
      await members.bulkWrite(c.roles.map((r) => ({
        updateOne: { filter: { _id: memberId(chatId, r.userId), leftSeq: null }, update: { $set: { role: r.role } } },
      })), { ordered: true });
    }
    if (c.delete) {
      // Every membership ends here, those another change was fencing too (that change can no
      // longer commit: its fences are taken over, so that lifting them cannot reopen them).
      await members.updateMany(
        { chatId, $or: [{ leftSeq: null }, { closing: { $exists: true } }] },
        { $set: { leftSeq: seq }, $unset: { closing: '' } },
      );
      await deviceChats.updateMany(
        { chatId, $or: [{ untilSeq: null }, { closing: { $exists: true } }] },
        { $set: { untilSeq: seq }, $unset: { closing: '' } },
      );
    }
    return message;
  }

  /**
   * The walk `pending` and `pendingCount` share: the device's chats in chatId order, from `after`,
   * each as the filter of its messages past the watermark (inside the device's window, not its
   * own); `visit` returns true to stop.
   */
  async function walkPending(
    deviceId: string, after: { chatId: string; seq: number } | null, visit: (filter: Filter<MessageDoc>) => Promise<boolean>,
  ): Promise<void> {
    const filter: Filter<DeviceChatDoc> = after ? { deviceId, chatId: { $gte: after.chatId } } : { deviceId };
    const cursor = deviceChats.find(filter, {
      sort: { chatId: 1 }, projection: { chatId: 1, deliveredSeq: 1, untilSeq: 1 }, batchSize: PAGE,
    });
    // `until`: the device's window ends there (its user left the chat); nothing after it is its to get.
    let page: Array<{ chatId: string; from: number; until: number | null }> = [];
    /** Visits the page's chats in order; true once `visit` says stop. */
    const readPage = async (): Promise<boolean> => {
      // Only the chats with something past the watermark cost a query of the messages.
      const last = await lastSeqs(page.map((c) => c.chatId));
      for (const { chatId, from, until } of page) {
        if ((last.get(chatId) ?? 0) <= from || (until !== null && until <= from)) continue;
        if (await visit({ chatId, seq: until === null ? { $gt: from } : { $gt: from, $lte: until }, senderDeviceId: { $ne: deviceId } })) return true;
      }
      page = [];
      return false;
    };
    try {
      for await (const dc of cursor) {
        const from = after && dc.chatId === after.chatId ? Math.max(dc.deliveredSeq, after.seq) : dc.deliveredSeq;
        page.push({ chatId: dc.chatId, from, until: dc.untilSeq ?? null });
        if (page.length >= PAGE && (await readPage())) return;
      }
      if (page.length > 0) await readPage();
    } finally {
      await cursor.close();
    }
  }

  /** What the device has not acknowledged, over its chats in chatId order; see ProgressStore. */
  async function pending(deviceId: string, after: { chatId: string; seq: number } | null, limit: number): Promise<StoredMessage[]> {
    if (limit <= 0) return [];
    const out: StoredMessage[] = [];
    await walkPending(deviceId, after, async (filter) => {
      const docs = await messages.find(filter).sort({ seq: 1 }).limit(limit - out.length).toArray();
      for (const d of docs) out.push(toMessage(d));
      return out.length >= limit;
    });
    return out;
  }

  /** pending's messages counted, not read: the same walk, up to `limit`. */
  async function pendingCount(deviceId: string, limit: number): Promise<number> {
    if (limit <= 0) return 0;
    let n = 0;
    await walkPending(deviceId, null, async (filter) => {
      n += await messages.countDocuments(filter, { limit: limit - n });
      return n >= limit;
    });
    return n;
  }

  return {
    ...social.store,
    ...push.store,
    ...statusPosts.store,
    ...keys.store,
    ...account.store,
    init,
    async close() {
      await client.close();
    },
    async expire(before, now) {
      const messagesDeleted = (await messages.deleteMany({ ts: { $lt: before } })).deletedCount;
      const marksDeleted = (await marks.deleteMany({ at: { $lt: before } })).deletedCount;
      // As SQLite: a pending registration expires strictly before `now`, a grant at `now`.
      const regsDeleted = (await regs.deleteMany({ expiresAt: { $lt: now } })).deletedCount;
      const grantsDeleted = (await grants.deleteMany({ expiresAt: { $lte: now } })).deletedCount;
      return { messages: messagesDeleted, marks: marksDeleted, registrations: regsDeleted + grantsDeleted };
    },

    async getOrCreateUserByPhone(phone, newUserId, now) {
      const existing = await users.findOne({ phone });
      if (existing) return { user: toUser(existing), created: false };
      try {
        await users.insertOne({ _id: newUserId, phone, createdAt: now, phoneHash: await hashPhone(phone) });
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

    async addDevice(device, limits) {
      const { maxActive } = limits;
      const depth = Math.max(0, Math.floor(limits.historyDepth)) || 0;
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
      const release = async () => {
        await deviceCounts.updateOne({ _id: userId, active: { $gt: 0 } }, { $inc: { active: -1 } });
      };
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
      if (await devices.findOne({ _id: device.deviceId }, { projection: { _id: 1 } })) {
        await release();
        throw new StoreError('DUPLICATE', `device ${device.deviceId} already exists`);
      }
      // Its watermarks first: once the device is visible, it is in its user's chats. Watermarks
      // of a device that never gets written are what its own would have been, and the readers
      // that list devices (chatDevices, messageStatus) skip unknown ones, so only a definite
      // failure is rolled back.
      const joined: string[] = [];
      try {
        await joinUserChats(device.deviceId, userId, depth, joined);
      } catch (err) {
        await release(); // the device was not written
        throw err;
      }
      try {
        await devices.insertOne({ _id: device.deviceId, userId, tokenHash: device.tokenHash, name: device.name, createdAt: device.createdAt, revokedAt: null });
      } catch (err) {
        // Any other error leaves the outcome unknown: a counter left too high self-heals above.
        if (!isDuplicateKey(err)) throw err;
        await release();
        if (joined.length > 0) await deviceChats.deleteMany({ _id: { $in: joined } });
        throw new StoreError('DUPLICATE', `device ${device.deviceId} already exists`);
      }
      // Again, for a chat that a concurrent createGroupChat / getOrCreateDirectChat wrote the
      // members of after the first pass read them but read the user's devices before this one
      // was inserted (either that writer sees the device or this pass sees the member).
      await joinUserChats(device.deviceId, userId, depth);
    },
    async getDevice(deviceId) {
      const d = await devices.findOne({ _id: deviceId });
      return d ? toDevice(d) : null;
    },
    async listDevices(userId) {
      return (await devices.find({ userId, revokedAt: null }).sort({ createdAt: 1, _id: 1 }).toArray()).map(toDevice);
    },
    async listAllDevices(userId) {
      return (await devices.find({ userId }).sort({ createdAt: 1, _id: 1 }).toArray()).map(toDevice);
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
      if (!d) {
        // Already revoked: finish the cleanup of a revocation interrupted before it dropped the
        // device's watermarks (a no-op otherwise).
        const cur = await devices.findOne({ _id: deviceId }, { projection: { revokedAt: 1 } });
        if (cur && cur.revokedAt !== null && cur.revokedAt !== undefined) await deviceChats.deleteMany({ deviceId });
        return false;
      }
      await deviceChats.deleteMany({ deviceId });
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
    async createAttachment(a) {
      try {
        await attachments.insertOne({
          _id: a.attachmentId, ownerUserId: a.ownerUserId, ownerDeviceId: a.ownerDeviceId, kind: a.kind, contentType: a.contentType,
          size: a.size, sha256: a.sha256, key: a.key, uploadId: a.uploadId ?? null, state: a.state, error: a.error ?? null,
          encrypted: Boolean(a.encrypted), thumbKey: a.thumbKey ?? null, preview: a.preview ?? null, width: a.width ?? null,
          height: a.height ?? null, meta: metaToDoc(a.meta), createdAt: a.createdAt, expiresAt: a.expiresAt,
        });
      } catch (err) {
        // `_id` is the only unique key of `attachments`.
        if (isDuplicateKey(err)) throw new StoreError('DUPLICATE', `attachment ${a.attachmentId} exists`);
        throw err;
      }
    },
    async getAttachment(attachmentId) {
      const d = await attachments.findOne({ _id: attachmentId });
      return d ? toAttachment(d) : null;
    },
    async updateAttachment(attachmentId, from, patch) {
      // As SQLite: only the patchable fields, and only those given (a null is written, an undefined skipped).
      const set: Record<string, unknown> = {};
      for (const [f, v] of Object.entries(patch)) {
        if (ATTACHMENT_PATCHABLE.has(f) && v !== undefined) set[f] = attachmentValue(f, v);
      }
      // One conditional write: of concurrent steps from the same state, one wins.
      const d = Object.keys(set).length === 0
        ? await attachments.findOne({ _id: attachmentId, state: from })
        : await attachments.findOneAndUpdate(
          { _id: attachmentId, state: from },
          { $set: set as Partial<AttachmentDoc> },
          { returnDocument: 'after' },
        );
      return d ? toAttachment(d) : null;
    },
    async linkAttachment(attachmentId, chatId, seq, keepUntil) {
      // INSERT OR IGNORE: the unique (attachmentId, chatId, seq) index makes a repeat (or a racing twin) a no-op.
      try {
        await attachmentLinks.insertOne({ attachmentId, chatId, seq });
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
      }
      await attachments.updateOne({ _id: attachmentId }, { $max: { expiresAt: keepUntil } });
    },
    async attachmentLinks(attachmentId) {
      const docs = await attachmentLinks
        .find({ attachmentId }, { projection: { _id: 0, chatId: 1, seq: 1 } })
        .sort({ chatId: 1, seq: 1 })
        .toArray();
      return docs.map((d) => ({ chatId: d.chatId, seq: d.seq }));
    },
    async expiredAttachments(before, limit) {
      if (limit <= 0) return [];
      const docs = await attachments.find({ expiresAt: { $lt: before } }).sort({ expiresAt: 1, _id: 1 }).limit(limit).toArray();
      return docs.map(toAttachment);
    },
    async deleteAttachment(attachmentId) {
      // Not atomic (SQLite: one transaction): the links go first, so an interrupted delete leaves an
      // attachment with fewer links (nobody gains access), still found by expiredAttachments, and a
      // retry finishes it; never links of an attachment that no longer exists.
      await attachmentLinks.deleteMany({ attachmentId });
      await attachments.deleteOne({ _id: attachmentId });
    },
    async attachmentsOf(ownerUserId, afterId, limit) {
      const docs = await attachments.find({ ownerUserId, _id: { $gt: afterId } }).sort({ _id: 1 }).limit(limit).toArray();
      return docs.map(toAttachment);
    },
    async putGrant(g) {
      // INSERT OR REPLACE; racing upserts of one code: the loser's duplicate key is a lost race, run again.
      const put = () => grants.replaceOne(
        { _id: g.codeHash },
        { kind: g.kind, userId: g.userId, deviceId: g.deviceId, chatId: g.chatId, createdAt: g.createdAt, expiresAt: g.expiresAt },
        { upsert: true },
      );
      try {
        await put();
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
        await put();
      }
    },
    async getGrant(codeHash, now) {
      const d = await grants.findOne({ _id: codeHash, expiresAt: { $gt: now } });
      return d ? toGrant(d) : null;
    },
    async deleteGrant(codeHash) {
      return (await grants.deleteOne({ _id: codeHash })).deletedCount === 1;
    },
    async listGrants(chatId, now) {
      // Invitations only (a link code has no chat, but match SQLite's `kind = 'invite'` anyway).
      const docs = await grants.find({ chatId, kind: 'invite', expiresAt: { $gt: now } }).sort({ createdAt: 1, _id: 1 }).toArray();
      return docs.map(toGrant);
    },

    async getOrCreateDirectChat(userA, userB, newChatId, now) {
      const key = directKey(userA, userB);
      const existing = await chats.findOne(byDirectKey(key));
      if (existing) return toChat(existing);
      if (await chats.findOne({ _id: newChatId }, { projection: { _id: 1 } })) {
        throw new StoreError('DUPLICATE', `chat id ${newChatId} already taken`);
      }
      // Members and their devices' watermarks first: once the chat document is visible, they are too.
      const userIds = userA === userB ? [userA] : [userA, userB];
      const memberDocs: MemberDoc[] = userIds.map((userId) => ({
        _id: memberId(newChatId, userId), chatId: newChatId, userId, role: 'member', joinedAt: now, sinceSeq: 0, leftSeq: null,
        deliveredSeq: 0, readSeq: 0, mutedUntil: 0, archived: false,
      }));
      const ourMembers = insertedIds(memberDocs, await insertIgnoringDuplicates(members, memberDocs));
      const ourDeviceChats = await joinMemberDevices(newChatId, userIds);
      const doc: ChatDoc = {
        _id: newChatId, kind: 'direct', directKey: key, createdAt: now, lastSeq: 0,
        name: null, description: null, avatar: null, shareHistory: false, deletedAt: null, version: 0,
      };
      try {
        await chats.insertOne(doc);
        return toChat(doc);
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
      }
      // Another process created it first. When newChatId is still free, everything under it is
      // an orphan of the chat that lost (ours, or a crashed earlier attempt's); when it was taken
      // meanwhile, only what we inserted is ours to remove.
      if (await chats.findOne({ _id: newChatId }, { projection: { _id: 1 } })) {
        await members.deleteMany({ _id: { $in: ourMembers } });
        await deviceChats.deleteMany({ _id: { $in: ourDeviceChats } });
      } else {
        await members.deleteMany({ chatId: newChatId });
        await deviceChats.deleteMany({ chatId: newChatId });
      }
      const winner = await chats.findOne(byDirectKey(key));
      if (!winner) throw new StoreError('DUPLICATE', `chat id ${newChatId} already taken`);
      return toChat(winner);
    },
    createGroupChat,
    commitGroupChange,
    async getChat(chatId) {
      const d = await chats.findOne({ _id: chatId });
      return d ? toChat(d) : null;
    },
    async getMembers(chatId) {
      return (await members.find({ chatId, leftSeq: null }).sort({ joinedAt: 1, userId: 1 }).toArray()).map(toMember);
    },
    async getMember(chatId, userId) {
      const d = await members.findOne({ _id: memberId(chatId, userId), leftSeq: null });
      return d ? toMember(d) : null;
    },
    async getMembership(chatId, userId) {
      const d = await members.findOne({ _id: memberId(chatId, userId) });
      return d ? toMember(d) : null;
    },
    async listChats(userId, limit) {
      const mine = await members.find({ userId }).toArray();
      const chatOf = new Map<string, ChatDoc>();
      for (let i = 0; i < mine.length; i += PAGE) {
        const ids = mine.slice(i, i + PAGE).map((m) => m.chatId);
        for (const c of await chats.find({ _id: { $in: ids } }).toArray()) chatOf.set(c._id, c);
      }
      const entries = await mapLimited(mine, async (md): Promise<ChatListEntry | null> => {
        const c = chatOf.get(md.chatId);
        if (!c) return null;
        const member = toMember(md);
        // What the user may see: (sinceSeq, leftSeq].
        const upTo = (after: number) => (member.leftSeq === null ? { $gt: after } : { $gt: after, $lte: member.leftSeq });
        const [lastDoc, unread] = await Promise.all([
          messages.findOne({ chatId: md.chatId, seq: upTo(member.sinceSeq) }, { sort: { seq: -1 } }),
          messages.countDocuments({
            chatId: md.chatId, seq: upTo(Math.max(member.readSeq, member.sinceSeq)), senderUserId: { $ne: userId }, ...NO_EVENT,
          }),
        ]);
        return { chat: toChat(c), member, last: lastDoc ? toMessage(lastDoc) : null, unread };
      });
      const out = entries.filter((e): e is ChatListEntry => e !== null);
      out.sort((a, b) => (b.last?.ts ?? b.chat.createdAt) - (a.last?.ts ?? a.chat.createdAt) || (a.chat.chatId < b.chat.chatId ? -1 : 1));
      return out.slice(0, limit);
    },
    async setChatFlags(chatId, userId, flags) {
      const set: { mutedUntil?: number; archived?: boolean } = {};
      if (flags.mutedUntil !== undefined && flags.mutedUntil !== null) set.mutedUntil = flags.mutedUntil;
      if (flags.archived !== undefined && flags.archived !== null) set.archived = flags.archived;
      const _id = memberId(chatId, userId);
      if (Object.keys(set).length === 0) return (await members.findOne({ _id }, { projection: { _id: 1 } })) !== null;
      return (await members.updateOne({ _id }, { $set: set })).matchedCount === 1;
    },
    async chatDevices(chatId, afterDeviceId, limit, fromSeq = 0) {
      const out: ChatDevice[] = [];
      let after = afterDeviceId;
      // Pages of the chat's watermarks, keeping the active devices (a revoked device's watermarks
      // are dropped, but a revocation interrupted in between may have left some). Each window ends
      // no later than its member's membership: a removal fences the membership before it reserves
      // its seq, and a window written by a concurrent addDevice may lag behind that.
      while (out.length < limit) {
        const want = limit - out.length;
        const page = await deviceChats
          .find(
            { chatId, deviceId: { $gt: after }, ...openAt(fromSeq) },
            { sort: { deviceId: 1 }, limit: want, projection: { deviceId: 1, userId: 1, sinceSeq: 1, untilSeq: 1 } },
          )
          .toArray();
        if (page.length === 0) break;
        const userIds = [...new Set(page.map((d) => d.userId))];
        const [activeDocs, endedDocs] = await Promise.all([
          devices.find({ _id: { $in: page.map((d) => d.deviceId) }, revokedAt: null }, { projection: { _id: 1 } }).toArray(),
          members.find(
            { _id: { $in: userIds.map((u) => memberId(chatId, u)) }, leftSeq: { $ne: null } },
            { projection: { userId: 1, leftSeq: 1 } },
          ).toArray(),
        ]);
        const active = new Set(activeDocs.map((d) => d._id));
        const leftAt = new Map(endedDocs.map((m) => [m.userId, m.leftSeq!]));
        for (const d of page) {
          if (!active.has(d.deviceId)) continue;
          const left = leftAt.get(d.userId);
          const own = d.untilSeq ?? null;
          const untilSeq = left === undefined ? own : own === null ? left : Math.min(own, left);
          if (untilSeq !== null && untilSeq < fromSeq) continue;
          out.push({ deviceId: d.deviceId, userId: d.userId, sinceSeq: d.sinceSeq, untilSeq });
        }
        if (page.length < want) break;
        after = page[page.length - 1]!.deviceId;
      }
      return out;
    },

    appendMessages,
    async history(chatId, afterSeq, limit) {
      if (limit <= 0) return [];
      const docs = await messages.find({ chatId, seq: { $gt: afterSeq } }).sort({ seq: 1 }).limit(limit).toArray();
      return docs.map(toMessage);
    },
    async historyBefore(chatId, beforeSeq, limit, afterSeq = 0) {
      if (limit <= 0) return [];
      const docs = await messages.find({ chatId, seq: { $gt: afterSeq, $lt: beforeSeq } }).sort({ seq: -1 }).limit(limit).toArray();
      return docs.map(toMessage).reverse();
    },
    async getMessage(chatId, seq) {
      const d = await messages.findOne({ chatId, seq });
      return d ? toMessage(d) : null;
    },

    async progress(deviceId, chatId) {
      const d = await deviceChats.findOne({ _id: deviceChatId(deviceId, chatId) });
      return d ? toProgress(d) : null;
    },
    pending,
    pendingCount,
    async pendingInChat(deviceId, chatId, afterSeq, beforeSeq, limit) {
      if (limit <= 0) return [];
      const dc = await deviceChats.findOne({ _id: deviceChatId(deviceId, chatId) }, { projection: { sinceSeq: 1, untilSeq: 1 } });
      if (!dc) return [];
      const from = Math.max(afterSeq, dc.sinceSeq);
      // Nothing after the end of the device's window (untilSeq) either.
      const until = dc.untilSeq ?? null;
      const before = until === null ? beforeSeq : Math.min(beforeSeq, until + 1);
      if (before <= from + 1) return [];
      const docs = await messages
        .find({ chatId, seq: { $gt: from, $lt: before }, senderDeviceId: { $ne: deviceId } })
        .sort({ seq: 1 })
        .limit(limit)
        .toArray();
      return docs.map(toMessage);
    },
    markDelivered,
    async markRead(chatId, userId, upToSeq, at) {
      const r = await members.updateOne(
        { _id: memberId(chatId, userId), readSeq: { $lt: upToSeq } },
        { $set: { readSeq: upToSeq } },
      );
      if (r.modifiedCount !== 1) return null;
      await insertMark(chatId, userId, MARK.read, upToSeq, at);
      // Read implies delivered.
      await raiseMemberDelivered(chatId, userId, upToSeq, at);
      return { chatId, userId, seq: upToSeq, at };
    },
    async tally(chatId, seq, exceptUserId) {
      const [r] = await members.aggregate<{ of: number; delivered: number; read: number }>([
        { $match: { chatId, userId: { $ne: exceptUserId }, leftSeq: null } },
        {
          $group: {
            _id: null,
            of: { $sum: 1 },
            delivered: { $sum: { $cond: [{ $gte: ['$deliveredSeq', seq] }, 1, 0] } },
            read: { $sum: { $cond: [{ $gte: ['$readSeq', seq] }, 1, 0] } },
          },
        },
      ]).toArray();
      return { of: r?.of ?? 0, delivered: r?.delivered ?? 0, read: r?.read ?? 0 };
    },
    async isRecipient(deviceId, chatId, seq) {
      const dc = await deviceChats.findOne({ _id: deviceChatId(deviceId, chatId) }, { projection: { sinceSeq: 1, untilSeq: 1 } });
      if (!dc || seq <= dc.sinceSeq) return false;
      if (dc.untilSeq !== null && dc.untilSeq !== undefined && seq > dc.untilSeq) return false;
      const m = await messages.findOne({ chatId, seq, senderDeviceId: { $ne: deviceId } }, { projection: { _id: 1 } });
      return m !== null;
    },
    async messageStatus(chatId, seq) {
      const d = await messages.findOne({ chatId, seq });
      if (!d) return null;
      // Recipient devices: in the chat from before this seq and still at it, not the sending one,
      // still active, of a member (current or former).
      const dcs = await deviceChats
        .find(
          { chatId, sinceSeq: { $lt: seq }, deviceId: { $ne: d.senderDeviceId }, ...openAt(seq) },
          { projection: { deviceId: 1, userId: 1, deliveredSeq: 1 } },
        )
        .sort({ userId: 1, deviceId: 1 })
        .toArray();
      if (dcs.length === 0) return { message: toMessage(d), recipients: [] };
      const active = new Set(
        (await devices.find({ _id: { $in: dcs.map((r) => r.deviceId) }, revokedAt: null }, { projection: { _id: 1 } }).toArray())
          .map((x) => x._id),
      );
      const userIds = [...new Set(dcs.map((r) => r.userId))];
      const readSeqOf = new Map(
        (await members.find({ _id: { $in: userIds.map((u) => memberId(chatId, u)) } }, { projection: { userId: 1, readSeq: 1 } }).toArray())
          .map((m) => [m.userId, m.readSeq]),
      );
      const rows = dcs.filter((r) => active.has(r.deviceId) && readSeqOf.has(r.userId));
      // The times, per user, only where some row shows them.
      const wantDelivered = new Set(rows.filter((r) => r.deliveredSeq >= seq).map((r) => r.userId));
      const wantRead = new Set(rows.filter((r) => readSeqOf.get(r.userId)! >= seq).map((r) => r.userId));
      const lookups: Array<{ userId: string; kind: MarkKind }> = [
        ...[...wantDelivered].map((userId) => ({ userId, kind: MARK.delivered })),
        ...[...wantRead].map((userId) => ({ userId, kind: MARK.read })),
      ];
      const found = await mapLimited(lookups, async (l) => markAt(chatId, l.userId, l.kind, seq));
      const timeOf = new Map(lookups.map((l, i) => [`${l.kind}\u0000${l.userId}`, found[i]!]));
      const recipients: RecipientStatus[] = rows.map((r) => ({
        userId: r.userId,
        deviceId: r.deviceId,
        deliveredAt: r.deliveredSeq >= seq ? (timeOf.get(`${MARK.delivered}\u0000${r.userId}`) ?? null) : null,
        readAt: readSeqOf.get(r.userId)! >= seq ? (timeOf.get(`${MARK.read}\u0000${r.userId}`) ?? null) : null,
      }));
      return { message: toMessage(d), recipients };
    },
  };
}
