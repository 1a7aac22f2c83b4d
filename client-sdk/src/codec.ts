/**
 * The envelope codec: every MQTT payload Parley sends or accepts. Imported by the SDK, the broker
 * and the services, so there is exactly one definition of the wire format.
 *
 * Format v1: a CBOR (RFC 8949) array whose first item is the kind. Fields are positional, so an
 * envelope carries no field names; measured sizes are in docs/PROTOCOL.md. Evolution rule: a new
 * version only appends optional fields or adds kinds; decoders ignore trailing fields they do not
 * know, and reject unknown kinds with E_BAD_ENVELOPE. `toDebugJSON` is the human-readable view.
 */
import { Decoder, Encoder } from 'cbor-x';
import { ParleyError, isErrorCode, type ErrorCode } from './errors.js';
import { isAttachmentId, isChatId, isClientMsgId, isDeviceId, isId, isStatusId, isUserId } from './ids.js';
import { base64ToBytes, bytesToBase64, bytesToHex, hexToBytes } from './bytes.js';

export const KIND = {
  send: 1,
  msg: 2,
  stored: 3,
  receipt: 4,
  error: 5,
  read: 6,
  sync: 7,
  synced: 8,
  tally: 9,
  typing: 10,
  watch: 11,
  presence: 12,
  status: 13,
  keys: 14,
} as const;

export const RECEIPT_STATUS = { delivered: 1, read: 2 } as const;
export type ReceiptStatus = keyof typeof RECEIPT_STATUS;

/** Message bodies: UTF-8 text, or opaque bytes (end-to-end ciphertext the server cannot read). */
export type Body = string | Uint8Array;

/** device -> server on `outbox/<clientId>`: a new message. `to` is a userId (1:1) or a chatId. */
export interface SendEnvelope {
  kind: 'send'; clientMsgId: string; to: string; body: Body;
  /** A media message: the attachment (uploaded, ready, the sender's own); the body is its caption. */
  media?: string | undefined;
}
/**
 * server -> device on `inbox/<clientId>`: a stored message. Its msgId is `<chatId>.<seq36>`.
 * A group's membership and settings changes are messages too, in the same seq stream, so every
 * device sees the same history of who was in the group when: they carry an `event`, an empty
 * body, `from` = the user who made the change, and no `fromDevice` (the server wrote them).
 */
export interface MsgEnvelope {
  kind: 'msg'; chatId: string; seq: number; from: string; ts: number; body: Body; fromDevice: string;
  event?: ChatEvent | undefined;
  /** The attachment of a media message, as the server knows it (with its inline preview). */
  media?: MediaRef | undefined;
}

export type MediaKind = 'image' | 'video' | 'audio' | 'voice' | 'document';
const MEDIA_KINDS: readonly MediaKind[] = ['image', 'video', 'audio', 'voice', 'document'];

/**
 * What a media message says of its attachment: enough to show it (the ThumbHash `preview` draws
 * the picture's shape and colours at once) and to check the download (`sha256`). On the wire an
 * array: [attachmentId, kind (0-4), contentType, size, sha256 (32 bytes), preview? (bytes),
 * width?, height?, durationMs?, waveform? (bytes), filename?, poster?, encrypted?].
 */
export interface MediaRef {
  attachmentId: string;
  kind: MediaKind;
  contentType: string;
  size: number;
  /** Hex. */
  sha256: string;
  /** ThumbHash, base64. */
  preview?: string | undefined;
  width?: number | undefined;
  height?: number | undefined;
  durationMs?: number | undefined;
  waveform?: number[] | undefined;
  filename?: string | undefined;
  /** Video: the attachmentId of its poster image (or an encrypted image's client-made thumbnail). */
  poster?: string | undefined;
  /** The bytes are client-encrypted: key and digest are in the message body. */
  encrypted?: boolean | undefined;
}

/**
 * A change to a group, as recorded in its seq stream. `from` of the message is who made it.
 * - `created`: the group with its name, members and admins (the creator is an admin).
 * - `added` / `removed`: members added or removed by an admin; `joined`: `from` joined through an
 *   invitation link; `left`: `from` left (and `promoted` lists who became admin because the last
 *   admin left).
 * - `promoted` / `demoted`: admin rights given or taken.
 * - `updated`: the name, description or avatar reference changed (only the changed ones are set;
 *   an empty string clears description or avatar).
 * - `deleted`: the group was deleted; nothing more is delivered in it.
 * - `identity`: a device of `from` published its MLS identity for the first time (`added`),
 *   published other bytes (`changed`: its security code changed), or was revoked after publishing
 *   one (`removed`). Written by the server into every chat `from` is in, direct chats too, so that
 *   each member device learns it in order with the messages (and re-keys the chat's MLS group).
 */
export type ChatEvent =
  | { type: 'created'; name: string; members: string[]; admins: string[] }
  | { type: 'added'; users: string[] }
  | { type: 'removed'; users: string[] }
  | { type: 'joined' }
  | { type: 'left'; promoted?: string[] | undefined }
  | { type: 'promoted'; users: string[] }
  | { type: 'demoted'; users: string[] }
  | { type: 'updated'; name?: string | undefined; description?: string | undefined; avatar?: string | undefined }
  | { type: 'deleted' }
  | { type: 'identity'; device: string; change: IdentityChange };

/** What happened to a device's MLS identity (an `identity` chat event). */
export type IdentityChange = 'added' | 'changed' | 'removed';
/** On the wire: the index in this list. */
const IDENTITY_CHANGES: readonly IdentityChange[] = ['added', 'changed', 'removed'];

export type ChatEventType = ChatEvent['type'];

/** Wire codes of chat events (the first item of the event array). */
export const CHAT_EVENT = {
  created: 1, added: 2, removed: 3, joined: 4, left: 5, promoted: 6, demoted: 7, updated: 8, deleted: 9, identity: 10,
} as const;

/** Longest group name, description and avatar reference (characters). */
export const GROUP_LIMITS = Object.freeze({ name: 100, description: 2048, avatar: 512 });
/**
 * server -> sending device: the message is stored with this seq (follows the PUBACK = sent tick).
 * `more` lists further messages of the same device in the same chat that were stored in the same
 * batch at the same time: one envelope (and one PUBACK) answers a burst instead of one each.
 */
export interface StoredEnvelope {
  kind: 'stored'; clientMsgId: string; chatId: string; seq: number; ts: number;
  more?: StoredMore[] | undefined;
}
export interface StoredMore { clientMsgId: string; seq: number }

/** Most `more` entries in one `stored` envelope (keeps it far below any payload limit). */
export const MAX_STORED_MORE = 500;
/**
 * server -> devices: `by` has `status` for every message of the chat up to `seq`. On the wire `by`
 * is the last field and is left out where the receiver knows it: in a direct chat, a receipt
 * without `by` is the other member's (decoded as `by: undefined`).
 */
export interface ReceiptEnvelope {
  kind: 'receipt'; chatId: string; seq: number; status: ReceiptStatus; ts: number; by?: string | undefined;
}
/**
 * server -> the sender's devices in a group: of the `of` other members, `delivered` have received
 * every message up to `seq` and `read` have read it. One per sender, chat and batch of receipts,
 * instead of one receipt per member.
 */
export interface TallyEnvelope {
  kind: 'tally'; chatId: string; seq: number; delivered: number; read: number; of: number;
}
/** server -> device: something the device sent was refused. `ref` names it (e.g. its clientMsgId). */
export interface ErrorEnvelope { kind: 'error'; code: ErrorCode; detail?: string | undefined; ref?: string | undefined }
/** device -> server on `receipts/<msgId>`: read up to that message. An empty payload means the same. */
export interface ReadEnvelope { kind: 'read' }
/** device -> server on `outbox/<clientId>`: resend what is undelivered (optionally one chat after a seq). */
export interface SyncEnvelope { kind: 'sync'; chatId?: string | undefined; after?: number | undefined }
/** server -> device: a sync finished after resending `count` messages. */
export interface SyncedEnvelope { kind: 'synced'; count: number; chatId?: string | undefined }


/** What a typing envelope says: stopped, typing text, or recording a voice message. */
export type TypingState = 'stop' | 'typing' | 'recording';
const TYPING_STATES: readonly TypingState[] = ['stop', 'typing', 'recording'];
/**
 * How long a typing state holds without being repeated (ms): a sender repeats it while typing
 * (at most every TYPING_REPEAT_MS), a receiver drops it after TYPING_TTL_MS without news, so a
 * lost `stop` never leaves "typing…" on screen.
 */
export const TYPING_TTL_MS = 6000;
export const TYPING_REPEAT_MS = 3000;
/**
 * Ephemeral, never stored or queued. device -> server on `outbox/` (QoS 0): the device's user is
 * typing in `chatId`; server -> the chat's watching devices on `live/` (QoS 0), with `from`.
 */
export interface TypingEnvelope { kind: 'typing'; chatId: string; state: TypingState; from?: string | undefined }

/** Most chats one device watches at a time. */
export const MAX_WATCHED_CHATS = 64;
/** A watch lasts this long (ms) unless repeated: the SDK repeats it while the chats are on screen. */
export const WATCH_TTL_MS = 60_000;
/**
 * device -> server on `outbox/` (QoS 0 or 1): the chats on screen. Replaces the device's earlier
 * watch; an empty list stops watching. The device then gets, on `live/`, the typing of those
 * chats and the presence of their other members (direct chats), at once and on every change.
 */
export interface WatchEnvelope { kind: 'watch'; chatIds: string[] }

/**
 * server -> device on `live/` (QoS 0): a user's presence as the watcher may see it. `lastSeen`
 * (epoch ms) is left out while online and when the user's privacy hides it from the watcher;
 * a user who hides it from the watcher shows offline too. `v` counts the user's transitions: of
 * two envelopes about one user, the one with the lower `v` is older (they can race).
 */
export interface PresenceEnvelope { kind: 'presence'; userId: string; online: boolean; lastSeen?: number | undefined; v?: number | undefined }

/** Longest status text (characters). */
export const STATUS_TEXT_MAX = 700;
/**
 * server -> the audience's devices on `inbox/` (QoS 1): a status post of `from`, visible until
 * `expiresAt` (the SDK drops it then), or its removal (`removed`: no content). A text post has
 * `text` with `background` (0xRRGGBB) and `font` (0-9); a media post has `media` (and `text`
 * as its caption). Wire: [13, statusId, from, ts, expiresAt, removed (0/1), text?, background?,
 * font?, media?].
 */
export interface StatusEnvelope {
  kind: 'status'; statusId: string; from: string; ts: number; expiresAt: number;
  removed?: boolean | undefined;
  text?: string | undefined;
  background?: number | undefined;
  font?: number | undefined;
  media?: MediaRef | undefined;
}

/**
 * server -> device on `live/` (QoS 0): the device's pool of MLS key packages is down to `count`
 * (under the server's low-water mark when `low`) after others claimed from it: upload more. Sent
 * at once by the claim that took it there; a device that missed it learns the same from
 * `GET /v1/keys/packages/count` when it connects. Wire: [14, count, low (0/1)].
 */
export interface KeysEnvelope { kind: 'keys'; count: number; low: boolean }

export type Envelope =
  | SendEnvelope | MsgEnvelope | StoredEnvelope | ReceiptEnvelope
  | ErrorEnvelope | ReadEnvelope | SyncEnvelope | SyncedEnvelope | TallyEnvelope
  | TypingEnvelope | WatchEnvelope | PresenceEnvelope | StatusEnvelope | KeysEnvelope;

const encoder = new Encoder({ useRecords: false, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

const STATUS_BY_CODE: Record<number, ReceiptStatus> = { 1: 'delivered', 2: 'read' };

/** Trailing `undefined` fields are dropped so optional fields cost nothing. */
function trim(fields: unknown[]): unknown[] {
  let n = fields.length;
  while (n > 0 && fields[n - 1] === undefined) n--;
  return fields.slice(0, n).map((f) => (f === undefined ? null : f));
}

export function encode(env: Envelope): Uint8Array {
  let fields: unknown[];
  switch (env.kind) {
    case 'send': fields = [KIND.send, env.clientMsgId, env.to, env.body, env.media]; break;
    case 'msg':
      fields = [
        KIND.msg, env.chatId, env.seq, env.from, env.ts, env.body, env.fromDevice || undefined,
        env.event ? encodeEvent(env.event) : undefined, env.media ? encodeMedia(env.media) : undefined,
      ];
      break;
    case 'stored':
      fields = [KIND.stored, env.clientMsgId, env.chatId, env.seq, env.ts, env.more?.length ? env.more.flatMap((m) => [m.clientMsgId, m.seq]) : undefined];
      break;
    case 'receipt': fields = [KIND.receipt, env.chatId, env.seq, RECEIPT_STATUS[env.status], env.ts, env.by]; break;
    case 'error': fields = [KIND.error, env.code, env.detail, env.ref]; break;
    case 'read': fields = [KIND.read]; break;
    case 'sync': fields = [KIND.sync, env.chatId, env.after]; break;
    case 'synced': fields = [KIND.synced, env.count, env.chatId]; break;
    case 'tally': fields = [KIND.tally, env.chatId, env.seq, env.delivered, env.read, env.of]; break;
    case 'typing': fields = [KIND.typing, env.chatId, TYPING_STATES.indexOf(env.state), env.from]; break;
    case 'watch': fields = [KIND.watch, env.chatIds]; break;
    case 'presence': fields = [KIND.presence, env.userId, env.online ? 1 : 0, env.lastSeen, env.v]; break;
    case 'status':
      fields = env.removed
        ? [KIND.status, env.statusId, env.from, env.ts, env.expiresAt, 1]
        : [KIND.status, env.statusId, env.from, env.ts, env.expiresAt, 0, env.text, env.background, env.font, env.media ? encodeMedia(env.media) : undefined];
      break;
    case 'keys': fields = [KIND.keys, env.count, env.low ? 1 : 0]; break;
  }
  return encoder.encode(trim(fields));
}

const bad = (detail: string): ParleyError => new ParleyError('E_BAD_ENVELOPE', detail);

const isSeq = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1;
const isTs = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isCount = isTs;
const isBody = (v: unknown): v is Body => typeof v === 'string' || v instanceof Uint8Array;
const optional = <T>(v: unknown, check: (x: unknown) => x is T): v is T | null | undefined =>
  v === undefined || v === null || check(v);
const orUndef = <T>(v: T | null | undefined): T | undefined => (v === null ? undefined : v);

/** Decodes and validates a payload; throws ParleyError(E_BAD_ENVELOPE) on anything malformed. */
const KIND_NAME = Object.fromEntries(Object.entries(KIND).map(([k, v]) => [v, k])) as Record<number, Envelope['kind']>;

/**
 * The kind of an encoded envelope from its first two bytes (a CBOR array head of up to 23 items,
 * then the kind as a small unsigned integer), without decoding it; null when it is not one. The
 * broker sorts every packet it forwards with this, so it must stay cheap.
 */
export function peekKind(payload: Uint8Array): Envelope['kind'] | null {
  if (payload.length < 2) return null;
  const head = payload[0]!;
  if (head < 0x81 || head > 0x97) return null;
  return KIND_NAME[payload[1]!] ?? null;
}

/**
 * The chat and seq of an encoded `msg` envelope, read from its first bytes without decoding the
 * rest (the broker does this for every message it forwards and every PUBACK it gets); null when
 * the payload is not a `msg` laid out as `encode` writes it. A msg starts [kind 2, chatId (a
 * 13-character text), seq (an unsigned integer)].
 */
export function peekPosition(payload: Uint8Array): { chatId: string; seq: number } | null {
  if (payload.length < 17 || peekKind(payload) !== 'msg' || payload[2] !== 0x6d) return null;
  let chatId = '';
  for (let i = 3; i < 16; i++) chatId += String.fromCharCode(payload[i]!);
  if (!isChatId(chatId)) return null;
  const major = payload[16]!;
  let seq: number;
  if (major <= 0x17) seq = major;
  else if (major === 0x18) seq = payload[17] ?? -1;
  else if (major === 0x19 && payload.length >= 19) seq = (payload[17]! << 8) | payload[18]!;
  else if (major === 0x1a && payload.length >= 21) seq = ((payload[17]! << 24) >>> 0) + ((payload[18]! << 16) | (payload[19]! << 8) | payload[20]!);
  else return null;
  return seq >= 1 ? { chatId, seq } : null;
}

/**
 * The `ts` of an encoded `msg` envelope, read from its bytes without decoding it (the broker reads
 * it at every delivery PUBACK for the delivery-latency histogram; a large group has a PUBACK per
 * member device): after [kind, chatId, seq] comes `from` (a text) and then `ts` (an unsigned
 * integer or a float). Null when the payload is not laid out so.
 */
export function peekTs(payload: Uint8Array): number | null {
  // The same layout peekPosition reads (not its chatId check: the broker calls both on a PUBACK).
  if (payload.length < 17 || peekKind(payload) !== 'msg' || payload[2] !== 0x6d) return null;
  // After the 13-character chatId, the seq's head and its extra bytes.
  const seqHead = payload[16]!;
  if (seqHead > 0x1a) return null;
  let i = 17 + (seqHead <= 0x17 ? 0 : seqHead === 0x18 ? 1 : seqHead === 0x19 ? 2 : 4);
  const textHead = payload[i];
  if (textHead === undefined) return null;
  let len: number;
  if (textHead >= 0x60 && textHead <= 0x77) { len = textHead - 0x60; i += 1; }
  else if (textHead === 0x78 && i + 1 < payload.length) { len = payload[i + 1]!; i += 2; }
  else return null;
  i += len;
  if (i >= payload.length) return null;
  const head = payload[i]!;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  if (head <= 0x17) return head;
  if (head === 0x18 && i + 2 <= payload.length) return payload[i + 1]!;
  if (head === 0x19 && i + 3 <= payload.length) return view.getUint16(i + 1);
  if (head === 0x1a && i + 5 <= payload.length) return view.getUint32(i + 1);
  if (head === 0x1b && i + 9 <= payload.length) return Number(view.getBigUint64(i + 1));
  if (head === 0xfb && i + 9 <= payload.length) return view.getFloat64(i + 1);
  if (head === 0xfa && i + 5 <= payload.length) return view.getFloat32(i + 1);
  return null;
}

export function decode(payload: Uint8Array): Envelope {
  if (payload.length === 0) throw bad('empty payload');
  let raw: unknown;
  try {
    raw = decoder.decode(payload);
  } catch {
    throw bad('not CBOR');
  }
  if (!Array.isArray(raw) || raw.length === 0) throw bad('not an envelope array');
  const [kind, a, b, c, d, e, f] = raw as unknown[];
  switch (kind) {
    case KIND.send:
      if (!isClientMsgId(a)) throw bad('clientMsgId');
      if (!isId(b)) throw bad('to');
      if (!isBody(c)) throw bad('body');
      if (!optional(d, isAttachmentId)) throw bad('media');
      return { kind: 'send', clientMsgId: a, to: b, body: c, ...(d ? { media: d } : {}) };
    case KIND.msg: {
      if (!isChatId(a) || !isSeq(b) || !isUserId(c) || !isTs(d) || !isBody(e)) throw bad('msg fields');
      const g = (raw as unknown[])[7];
      const h = (raw as unknown[])[8];
      if (g === undefined || g === null) {
        if (!isId(f)) throw bad('msg fields');
        return { kind: 'msg', chatId: a, seq: b, from: c, ts: d, body: e, fromDevice: f, ...(h != null ? { media: decodeMedia(h) } : {}) };
      }
      if (!optional(f, isId)) throw bad('msg fields');
      return { kind: 'msg', chatId: a, seq: b, from: c, ts: d, body: e, fromDevice: f ?? '', event: decodeEvent(g) };
    }
    case KIND.stored: {
      if (!isClientMsgId(a) || !isChatId(b) || !isSeq(c) || !isTs(d)) throw bad('stored fields');
      if (e === undefined || e === null) return { kind: 'stored', clientMsgId: a, chatId: b, seq: c, ts: d };
      // `more` is flat: clientMsgId, seq, clientMsgId, seq, ...
      if (!Array.isArray(e) || e.length === 0 || e.length % 2 !== 0 || e.length > 2 * MAX_STORED_MORE) throw bad('stored more');
      const more: StoredMore[] = [];
      for (let i = 0; i < e.length; i += 2) {
        const [m, q] = [e[i] as unknown, e[i + 1] as unknown];
        if (!isClientMsgId(m) || !isSeq(q)) throw bad('stored more');
        more.push({ clientMsgId: m, seq: q });
      }
      return { kind: 'stored', clientMsgId: a, chatId: b, seq: c, ts: d, more };
    }
    case KIND.receipt: {
      const status = typeof c === 'number' ? STATUS_BY_CODE[c] : undefined;
      if (!isChatId(a) || !isSeq(b) || !status || !isTs(d) || !optional(e, isUserId)) throw bad('receipt fields');
      return { kind: 'receipt', chatId: a, seq: b, status, ts: d, ...(e ? { by: e } : {}) };
    }
    case KIND.error:
      if (!isErrorCode(a)) throw bad('error code');
      if (!optional(b, (x): x is string => typeof x === 'string')) throw bad('error detail');
      if (!optional(c, (x): x is string => typeof x === 'string')) throw bad('error ref');
      return { kind: 'error', code: a, detail: orUndef(b), ref: orUndef(c) };
    case KIND.read:
      return { kind: 'read' };
    case KIND.sync:
      if (!optional(a, isChatId) || !optional(b, (x): x is number => Number.isSafeInteger(x) && (x as number) >= 0)) {
        throw bad('sync fields');
      }
      return { kind: 'sync', chatId: orUndef(a), after: orUndef(b) };
    case KIND.synced:
      if (!Number.isSafeInteger(a) || (a as number) < 0 || !optional(b, isChatId)) throw bad('synced fields');
      return { kind: 'synced', count: a as number, chatId: orUndef(b) };
    case KIND.tally:
      if (!isChatId(a) || !isSeq(b) || !isCount(c) || !isCount(d) || !isCount(e) || (c as number) > (e as number) || (d as number) > (e as number)) {
        throw bad('tally fields');
      }
      return { kind: 'tally', chatId: a, seq: b, delivered: c as number, read: d as number, of: e as number };
    case KIND.typing: {
      const state = typeof b === 'number' ? TYPING_STATES[b] : undefined;
      if (!isChatId(a) || !state || !optional(c, isUserId)) throw bad('typing fields');
      return { kind: 'typing', chatId: a, state, ...(c ? { from: c } : {}) };
    }
    case KIND.watch:
      if (!Array.isArray(a) || a.length > MAX_WATCHED_CHATS || !a.every(isChatId)) throw bad('watch fields');
      return { kind: 'watch', chatIds: [...new Set(a as string[])] };
    case KIND.presence:
      if (!isUserId(a) || (b !== 0 && b !== 1) || !optional(c, isTs) || !optional(d, isCount)) throw bad('presence fields');
      return { kind: 'presence', userId: a, online: b === 1, ...(c != null ? { lastSeen: c } : {}), ...(d != null ? { v: d } : {}) };
    case KIND.status: {
      if (!isStatusId(a) || !isUserId(b) || !isTs(c) || !isTs(d) || (e !== 0 && e !== 1)) throw bad('status fields');
      if (e === 1) return { kind: 'status', statusId: a, from: b, ts: c, expiresAt: d, removed: true };
      const [text, background, font, media] = (raw as unknown[]).slice(6);
      if (!optional(text, isText(STATUS_TEXT_MAX)) || !optional(background, (x): x is number => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= 0xffffff)
        || !optional(font, (x): x is number => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= 9)) throw bad('status fields');
      if (text == null && media == null) throw bad('status without content');
      return {
        kind: 'status', statusId: a, from: b, ts: c, expiresAt: d,
        ...(text != null ? { text } : {}), ...(background != null ? { background } : {}), ...(font != null ? { font } : {}),
        ...(media != null ? { media: decodeMedia(media) } : {}),
      };
    }
    case KIND.keys:
      if (!isCount(a) || (b !== 0 && b !== 1)) throw bad('keys fields');
      return { kind: 'keys', count: a, low: b === 1 };
    default:
      throw bad('unknown kind');
  }
}

const isUserList = (v: unknown): v is string[] => Array.isArray(v) && v.length > 0 && v.length <= 4096 && v.every(isUserId);
const isText = (max: number) => (v: unknown): v is string => typeof v === 'string' && v.length <= max;

function encodeEvent(ev: ChatEvent): unknown[] {
  switch (ev.type) {
    case 'created': return [CHAT_EVENT.created, ev.name, ev.members, ev.admins];
    case 'added': case 'removed': case 'promoted': case 'demoted': return [CHAT_EVENT[ev.type], ev.users];
    case 'left': return ev.promoted?.length ? [CHAT_EVENT.left, ev.promoted] : [CHAT_EVENT.left];
    case 'updated': return trim([CHAT_EVENT.updated, ev.name, ev.description, ev.avatar]);
    case 'joined': case 'deleted': return [CHAT_EVENT[ev.type]];
    case 'identity': return [CHAT_EVENT.identity, ev.device, IDENTITY_CHANGES.indexOf(ev.change)];
  }
}


function encodeMedia(m: MediaRef): unknown[] {
  return trim([
    m.attachmentId, MEDIA_KINDS.indexOf(m.kind), m.contentType, m.size, hexToBytes(m.sha256),
    m.preview ? base64ToBytes(m.preview) : undefined, m.width, m.height, m.durationMs,
    m.waveform ? Uint8Array.from(m.waveform) : undefined, m.filename, m.poster, m.encrypted ? true : undefined,
  ]);
}

const isDim = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) > 0 && (v as number) <= 1_000_000;

/** Validates a media reference from the wire. */
export function decodeMedia(raw: unknown): MediaRef {
  if (!Array.isArray(raw)) throw bad('media');
  const [id, k, type, size, sum, preview, width, height, duration, wave, filename, poster, encrypted] = raw as unknown[];
  const kind = typeof k === 'number' ? MEDIA_KINDS[k] : undefined;
  if (!isAttachmentId(id) || !kind || typeof type !== 'string' || type.length > 127 || !Number.isSafeInteger(size) || (size as number) < 1
    || !(sum instanceof Uint8Array) || sum.length !== 32) throw bad('media fields');
  if (!optional(preview, (x): x is Uint8Array => x instanceof Uint8Array && x.length <= 64)
    || !optional(width, isDim) || !optional(height, isDim) || !optional(duration, isTs)
    || !optional(wave, (x): x is Uint8Array => x instanceof Uint8Array && x.length <= 128)
    || !optional(filename, isText(255)) || !optional(poster, isAttachmentId) || !optional(encrypted, (x): x is boolean => typeof x === 'boolean')) {
    throw bad('media fields');
  }
  return {
    attachmentId: id, kind, contentType: type, size: size as number, sha256: bytesToHex(sum),
    ...(preview ? { preview: bytesToBase64(preview) } : {}), ...(width != null ? { width } : {}), ...(height != null ? { height } : {}),
    ...(duration != null ? { durationMs: duration } : {}), ...(wave ? { waveform: Array.from(wave) } : {}),
    ...(filename != null ? { filename } : {}), ...(poster != null ? { poster } : {}), ...(encrypted ? { encrypted: true } : {}),
  };
}

/** Validates a chat event (from the wire, or from JSON where it has the object form). */
export function decodeEvent(raw: unknown): ChatEvent {
  if (!Array.isArray(raw) || raw.length === 0) throw bad('event');
  const [code, a, b, c] = raw as unknown[];
  switch (code) {
    case CHAT_EVENT.created:
      if (!isText(GROUP_LIMITS.name)(a) || !isUserList(b) || !isUserList(c)) throw bad('created event');
      return { type: 'created', name: a, members: b, admins: c };
    case CHAT_EVENT.added: case CHAT_EVENT.removed: case CHAT_EVENT.promoted: case CHAT_EVENT.demoted: {
      if (!isUserList(a)) throw bad('event users');
      const type = code === CHAT_EVENT.added ? 'added' : code === CHAT_EVENT.removed ? 'removed' : code === CHAT_EVENT.promoted ? 'promoted' : 'demoted';
      return { type, users: a };
    }
    case CHAT_EVENT.left:
      if (!optional(a, isUserList)) throw bad('left event');
      return a ? { type: 'left', promoted: a } : { type: 'left' };
    case CHAT_EVENT.updated: {
      if (!optional(a, isText(GROUP_LIMITS.name)) || !optional(b, isText(GROUP_LIMITS.description)) || !optional(c, isText(GROUP_LIMITS.avatar))) {
        throw bad('updated event');
      }
      return { type: 'updated', ...(a != null ? { name: a } : {}), ...(b != null ? { description: b } : {}), ...(c != null ? { avatar: c } : {}) };
    }
    case CHAT_EVENT.joined: return { type: 'joined' };
    case CHAT_EVENT.deleted: return { type: 'deleted' };
    case CHAT_EVENT.identity: {
      const change = typeof b === 'number' ? IDENTITY_CHANGES[b] : undefined;
      if (!isDeviceId(a) || !change) throw bad('identity event');
      return { type: 'identity', device: a, change };
    }
    default: throw bad('unknown event');
  }
}

/** JSON view of an envelope for logs and debugging (bytes as base64). Never used on the wire. */
export function toDebugJSON(env: Envelope): string {
  return JSON.stringify(env, (_k, v: unknown) =>
    v instanceof Uint8Array ? { bytes: bytesToBase64(v) } : v,
  );
}
