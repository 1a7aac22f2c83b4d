/**
 * The HTTP API's request schemas (zod) and response types, declared once: the server validates
 * with these schemas (services/src/api/) and the SDK's request and response types are these
 * types. The SDK imports this module for types only, so zod is not in a browser bundle.
 */
import { z } from 'zod';
import type { ChatEvent, MediaRef } from './codec.js';
import { GROUP_LIMITS } from './codec.js';
import { isAttachmentId, isMsgId, isUserId } from './ids.js';

/** E.164: a plus sign, a non-zero country digit, at most 15 digits in all. */
export const E164 = /^\+[1-9][0-9]{6,14}$/;

const phone = z.string().regex(E164, 'E.164 phone number, e.g. +447700900123');
const userId = z.string().refine(isUserId, 'a userId');
const deviceName = z.string().min(1).max(64);
/** Members named in one request: a whole group of the largest allowed size fits. */
const MAX_USERS_PER_REQUEST = 4096;
const users = z.array(userId).min(1).max(MAX_USERS_PER_REQUEST);
const seq = z.coerce.number().int().min(0);

export const schemas = {
  register: z.object({ phone }).strict(),
  verify: z.object({ phone, code: z.string().regex(/^[0-9]{6}$/, '6 digits'), deviceName: deviceName.optional() }).strict(),
  /** POST /v1/devices (authenticated) */
  addDevice: z.object({ deviceName: deviceName.optional() }).strict(),
  /** POST /v1/devices/link-codes */
  linkCode: z.object({}).strict(),
  /** POST /v1/devices/link: a link code (or the QR payload that carries it). */
  linkDevice: z.object({ code: z.string().min(1).max(128), deviceName: deviceName.optional() }).strict(),
  lookup: z.object({ phones: z.array(z.string().max(32)).min(1).max(256) }).strict(),
  /** POST /v1/chats: `{ userId }` for a direct chat, `{ name, members, ... }` for a group. */
  createChat: z.union([
    z.object({ userId }).strict(),
    z.object({
      name: z.string().max(GROUP_LIMITS.name * 4),
      members: z.array(userId).max(MAX_USERS_PER_REQUEST),
      admins: z.array(userId).max(MAX_USERS_PER_REQUEST).optional(),
      description: z.string().max(GROUP_LIMITS.description).optional(),
      avatar: z.string().max(GROUP_LIMITS.avatar).optional(),
      shareHistory: z.boolean().optional(),
    }).strict(),
  ]),
  updateChat: z.object({
    name: z.string().max(GROUP_LIMITS.name * 4).optional(),
    description: z.string().max(GROUP_LIMITS.description).optional(),
    avatar: z.string().max(GROUP_LIMITS.avatar).optional(),
  }).strict(),
  participants: z.object({ add: users.optional(), remove: users.optional() }).strict(),
  admins: z.object({ users }).strict(),
  chatSettings: z.object({
    mutedUntil: z.number().int().min(0).max(8_640_000_000_000_000).optional(),
    archived: z.boolean().optional(),
  }).strict(),
  invite: z.object({ ttlSec: z.number().int().min(60).max(30 * 86_400).optional() }).strict(),
  chatList: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(500) }).strict(),
  /** POST /v1/attachments (createAttachment). */
  createAttachment: z.object({
    kind: z.enum(['image', 'video', 'audio', 'voice', 'document']),
    contentType: z.string().regex(/^[a-z0-9][a-z0-9.+-]*\/[a-z0-9][a-z0-9.+-]*$/i, 'a MIME type').max(127),
    size: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'hex SHA-256'),
    // No control characters: the name goes into HTTP headers and signed URLs.
    filename: z.string().min(1).max(255).refine((f) => ![...f].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f), 'no control characters').optional(),
    durationMs: z.number().int().min(0).max(86_400_000).optional(),
    waveform: z.array(z.number().int().min(0).max(255)).max(128).optional(),
    /** Video: an image attachment (already uploaded) used as its poster. */
    poster: z.string().refine(isAttachmentId, 'an attachmentId').optional(),
    /** The bytes are client-encrypted (key and digest travel in the message body). */
    encrypted: z.boolean().optional(),
  }).strict(),
  /** POST /v1/attachments/:id/parts: fresh URLs for these parts (a resumed upload). */
  attachmentParts: z.object({ parts: z.array(z.number().int().min(1).max(10_000)).min(1).max(10_000) }).strict(),
  /** POST /v1/attachments/:id/complete */
  completeAttachment: z.object({
    parts: z.array(z.object({ partNumber: z.number().int().min(1).max(10_000), etag: z.string().min(1).max(128) }).strict()).min(1).max(10_000),
  }).strict(),
  download: z.object({ thumbnail: z.enum(['0', '1', 'true', 'false']).optional() }).strict(),
  history: z.object({
    after: seq.optional(),
    afterMsgId: z.string().refine(isMsgId, 'a msgId').optional(),
    before: seq.optional(),
    limit: z.coerce.number().int().min(1).max(500).default(100),
  }).strict(),
  // [presence] schemas above this line
  // [social] schemas above this line
  // [push] schemas above this line
  // [status] schemas above this line
  // [account] schemas above this line
};

/**
 * A new group: its name, the other members, optionally more admins (the creator is one), a
 * description, an avatar reference, and whether new members see earlier messages.
 * @useDeclaredType
 */
export type CreateGroupInput = Extract<z.input<typeof schemas.createChat>, { name: string }>;
/**
 * A group's new name, description or avatar reference (only the fields given change; an empty
 * string clears description or avatar).
 * @useDeclaredType
 */
export type UpdateChatInput = z.input<typeof schemas.updateChat>;
/**
 * Members to add and to remove, in one change.
 * @useDeclaredType
 */
export type ParticipantsInput = z.input<typeof schemas.participants>;
/**
 * The caller's own settings of a chat: muted until (epoch ms; 0 = not muted), archived.
 * @useDeclaredType
 */
export type ChatSettingsInput = z.input<typeof schemas.chatSettings>;

export interface VerifyResult {
  userId: string;
  deviceId: string;
  /** The device token: the MQTT password and the HTTP bearer token. Keep it secret. */
  token: string;
}

export interface LookupEntry {
  phone: string;
  userId: string;
}

export interface DeviceInfo {
  deviceId: string;
  name: string;
  createdAt: number;
}

export interface LinkCode {
  /** Typed on the new device (or scanned from `qr`). Single use. */
  code: string;
  /** The QR payload: `parley:link:<code>`; `linkDevice` takes it as well as the code. */
  qr: string;
  expiresAt: number;
}

/** What every message carries, live (`ChatMessage`) or from history (`HistoryMessage`). */
export interface MessageFields {
  /** `<chatId>.<seq in base 36>`: what `markRead` takes. */
  msgId: string;
  chatId: string;
  seq: number;
  /** Sender's userId (for a group change: who made it). */
  from: string;
  /** Sender's deviceId; '' for a group change (written by the server). */
  fromDevice: string;
  /** Server time when stored (epoch ms). */
  ts: number;
  /** The body, when it is text. */
  text?: string;
  /** A group change recorded in the chat (then the body is empty). */
  event?: ChatEvent;
  /** A media message's attachment, with its inline preview (the body is the caption). */
  media?: MediaRef;
}

/** One message as the HTTP API returns it. */
export interface HistoryMessage extends MessageFields {
  /** The body, when it is bytes: base64. */
  data?: string;
}

export interface HistoryPage {
  messages: HistoryMessage[];
  /** More messages follow the page in its direction. */
  more: boolean;
}

export interface ChatMemberInfo {
  userId: string;
  role: 'member' | 'admin';
  joinedAt: number;
}

export interface ChatInfo {
  chatId: string;
  kind: 'direct' | 'group';
  name: string | null;
  description: string | null;
  avatar: string | null;
  shareHistory: boolean;
  createdAt: number;
  lastSeq: number;
  deleted: boolean;
  /** Current members (empty for a former member). */
  members: ChatMemberInfo[];
  /** The caller's own place in it. */
  me: { role: 'member' | 'admin'; left: boolean; mutedUntil: number; archived: boolean };
}

export interface ChatListItem {
  chatId: string;
  kind: 'direct' | 'group';
  name: string | null;
  lastMessage: HistoryMessage | null;
  /** Messages of others after the caller's read watermark (group changes not counted). */
  unread: number;
  mutedUntil: number;
  archived: boolean;
  left: boolean;
  deleted: boolean;
}

/** A group change's answer: the chat as it is now, and the system message(s) that recorded it. */
export interface ChatChange {
  chat: ChatInfo;
  msgIds: string[];
}

export interface InviteInfo {
  /** The invitation's id (for revoking it); not the code. */
  inviteId: string;
  expiresAt: number;
}

export interface NewInvite extends InviteInfo {
  /** What a user gives to `joinGroup`. Shown once. */
  code: string;
}

export interface MessageStatusResponse {
  msgId: string;
  /** `read` once any recipient read it, `delivered` once any device got it. */
  status: 'sent' | 'delivered' | 'read';
  sentAt: number;
  /** When the last recipient device got it (null until all have). */
  deliveredAt: number | null;
  /** Every recipient user has it on a device / has read it. */
  deliveredToAll: boolean;
  readByAll: boolean;
  /** Per recipient user: when it first reached one of their devices, when they read it. */
  users: Array<{ userId: string; deliveredAt: number | null; readAt: number | null }>;
  /** Per recipient device. */
  recipients: Array<{ userId: string; deviceId: string; deliveredAt: number | null; readAt: number | null }>;
}

/** @useDeclaredType */
export type CreateAttachmentInput = z.input<typeof schemas.createAttachment>;

/** An upload URL for one part. */
export interface PartUrl {
  partNumber: number;
  url: string;
}

/** What a client knows of an attachment (owner, or a member of a chat that references it). */
export interface AttachmentInfo {
  attachmentId: string;
  kind: 'image' | 'video' | 'audio' | 'voice' | 'document';
  /** The type sniffed from the bytes once uploaded (declared until then). */
  contentType: string;
  size: number;
  sha256: string;
  state: 'uploading' | 'processing' | 'ready' | 'failed';
  /** The catalogue code when `failed`. */
  error: string | null;
  encrypted: boolean;
  /** ThumbHash of the image (base64), for an instant blurred preview. */
  preview: string | null;
  width: number | null;
  height: number | null;
  hasThumbnail: boolean;
  filename?: string;
  durationMs?: number;
  waveform?: number[];
  poster?: string;
  expiresAt: number;
}

/** `POST /v1/attachments`: the attachment and where its parts go. */
export interface NewAttachment {
  attachment: AttachmentInfo;
  uploadId: string;
  /** Every part but the last has exactly this many bytes. */
  partSize: number;
  partCount: number;
  /** A URL per part, valid until `urlsExpireAt` (ask `…/parts` for fresh ones). */
  parts: PartUrl[];
  urlsExpireAt: number;
}

export interface DownloadUrl {
  url: string;
  expiresAt: number;
}

// [presence] types above this line
// [social] types above this line
// [push] types above this line
// [status] types above this line
// [account] types above this line
