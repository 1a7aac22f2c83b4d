/**
 * The HTTP API's request schemas (zod) and response types, declared once: the server validates
 * with these schemas (services/src/api/) and the SDK's request and response types are these
 * types. The SDK imports this module for types only, so zod is not in a browser bundle.
 */
import { z } from 'zod';
import type { ChatEvent, MediaRef } from './codec.js';
import { GROUP_LIMITS, STATUS_TEXT_MAX } from './codec.js';
import { isAttachmentId, isDeviceId, isMsgId, isUserId } from './ids.js';
import { CONTACT_LIMITS, PHONE_HASH, PROFILE_LIMITS } from './social.js';
/** Control characters (newlines allowed where `lines`). */
const hasControl = (s: string, lines = false): boolean =>
  [...s].some((ch) => { const c = ch.charCodeAt(0); return (c < 0x20 && !(lines && c === 0x0a)) || c === 0x7f; });
const visibility = z.enum(['everyone', 'contacts', 'nobody']);

/** E.164: a plus sign, a non-zero country digit, at most 15 digits in all. */
export const E164 = /^\+[1-9][0-9]{6,14}$/;

const phone = z.string().regex(E164, 'E.164 phone number, e.g. +447700900123');
const userId = z.string().refine(isUserId, 'a userId');
const deviceId = z.string().refine(isDeviceId, 'a deviceId');
const deviceName = z.string().min(1).max(64);
/** Members named in one request: a whole group of the largest allowed size fits. */
const MAX_USERS_PER_REQUEST = 4096;
const users = z.array(userId).min(1).max(MAX_USERS_PER_REQUEST);
const seq = z.coerce.number().int().min(0);

/**
 * The key directory's limits (bytes are decoded sizes). MLS key packages of the chosen
 * ciphersuite are about 324 bytes; the bounds leave room for other credentials and ciphersuites.
 */
export const KEY_LIMITS = Object.freeze({
  credentialBytes: 4096,
  /** Up to an ML-DSA-87 public key (2,592 bytes). */
  signatureKeyBytes: 2592,
  keyPackageBytes: 8192,
  /** A KeyPackageRef (a hash) in base64url. */
  refChars: 64,
  packagesPerUpload: 100,
  usersPerClaim: 1024,
});

/** Base64url (RFC 4648 §5, without padding) of 1 to `max` bytes: at most ceil(4·max/3) characters. */
const base64url = (max: number) => z.string()
  .min(2).max(Math.ceil((max * 4) / 3))
  .regex(/^[A-Za-z0-9_-]+$/, 'base64url without padding')
  .refine((v) => v.length % 4 !== 1, 'base64url of whole bytes');
const keyPackage = z.object({
  ref: z.string().regex(new RegExp(`^[A-Za-z0-9_-]{1,${KEY_LIMITS.refChars}}$`), `a KeyPackageRef, base64url, at most ${KEY_LIMITS.refChars} characters`),
  data: base64url(KEY_LIMITS.keyPackageBytes),
}).strict();

export const schemas = {
  register: z.object({ phone }).strict(),
  verify: z.object({ phone, code: z.string().regex(/^[0-9]{6}$/, '6 digits'), deviceName: deviceName.optional() }).strict(),
  /** POST /v1/devices (authenticated) */
  addDevice: z.object({ deviceName: deviceName.optional() }).strict(),
  /** POST /v1/devices/link-codes */
  linkCode: z.object({}).strict(),
  /** POST /v1/devices/link: a link code (or the QR payload that carries it). */
  linkDevice: z.object({ code: z.string().min(1).max(128), deviceName: deviceName.optional() }).strict(),
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
  /**
   * POST /v1/contacts/lookup: phone hashes (the SDK's `hashPhone` of each E.164 number), at most
   * CONTACT_LIMITS.hashesPerRequest; `save` (default true): the matched users become contacts.
   */
  contactsLookup: z.object({
    hashes: z.array(z.string().regex(PHONE_HASH, 'a phone hash (SHA-256 of the E.164 number, hex)')).min(1).max(CONTACT_LIMITS.hashesPerRequest),
    save: z.boolean().optional(),
  }).strict(),
  /** POST /v1/contacts: users to add to and remove from the caller's contacts. */
  contacts: z.object({
    add: z.array(userId).max(CONTACT_LIMITS.hashesPerRequest).optional(),
    remove: z.array(userId).max(CONTACT_LIMITS.hashesPerRequest).optional(),
  }).strict().refine((b) => (b.add?.length ?? 0) + (b.remove?.length ?? 0) > 0, 'add or remove: at least one user'),
  /** PATCH /v1/profile: only the fields given change; `avatar: null` removes the photo. */
  profile: z.object({
    name: z.string().max(PROFILE_LIMITS.name * 4)
      .transform((n) => n.trim())
      .refine((n) => n.length > 0 && [...n].length <= PROFILE_LIMITS.name && !hasControl(n), `1 to ${PROFILE_LIMITS.name} characters, no control characters`)
      .optional(),
    about: z.string().max(PROFILE_LIMITS.about * 4)
      .transform((a) => a.trim())
      .refine((a) => [...a].length <= PROFILE_LIMITS.about && !hasControl(a, true), `at most ${PROFILE_LIMITS.about} characters`)
      .optional(),
    avatar: z.string().refine(isAttachmentId, 'an attachmentId (an image you uploaded)').nullable().optional(),
  }).strict(),
  /** PATCH /v1/privacy: only the settings given change. */
  privacy: z.object({
    lastSeen: visibility.optional(),
    photo: visibility.optional(),
    about: visibility.optional(),
    readReceipts: z.boolean().optional(),
    groupAdd: visibility.optional(),
  }).strict(),
  /** POST /v1/blocks */
  block: z.object({ userId }).strict(),
  /** GET /v1/users/:userId/avatar */
  avatar: z.object({ thumbnail: z.enum(['0', '1', 'true', 'false']).optional() }).strict(),
  /**
   * PUT /v1/push: the calling device's push registration. `webpush` takes a browser's
   * `PushSubscription.toJSON()` (its `expirationTime` is ignored); `apns` a device token in hex.
   */
  pushRegistration: z.discriminatedUnion('kind', [
    z.object({
      kind: z.literal('webpush'),
      endpoint: z.string().max(2048).refine((u) => URL.canParse(u), 'a URL'),
      keys: z.object({
        // RFC 8291: an uncompressed P-256 public key (65 bytes) and a 16-byte secret, base64url.
        p256dh: z.string().regex(/^[A-Za-z0-9_-]{87}=?$/, 'a P-256 public key, base64url'),
        auth: z.string().regex(/^[A-Za-z0-9_-]{22}(==)?$/, '16 bytes, base64url'),
      }).strict(),
      expirationTime: z.number().nullable().optional(),
    }).strict(),
    z.object({ kind: z.literal('fcm'), token: z.string().regex(/^[A-Za-z0-9_:.-]{16,4096}$/, 'an FCM registration token') }).strict(),
    z.object({
      kind: z.literal('apns'),
      token: z.string().regex(/^[0-9a-fA-F]{64,200}$/, 'an APNs device token, hex'),
      environment: z.enum(['production', 'development']).optional(),
      topic: z.string().regex(/^[A-Za-z0-9.-]{1,255}$/, 'a bundle id').optional(),
    }).strict(),
  ]),
  /**
   * POST /v1/status (postStatus): a text post (`text`, `background` 0xRRGGBB, `font` 0-9) or a
   * media post (`media`: an attachmentId of the caller's, ready; `caption`), and who may see it
   * (`audience`, the caller's contacts by default).
   */
  postStatus: z.object({
    text: z.string().min(1).max(STATUS_TEXT_MAX).refine((t) => t.trim() !== '', 'not blank').optional(),
    background: z.number().int().min(0).max(0xffffff).optional(),
    font: z.number().int().min(0).max(9).optional(),
    media: z.string().refine(isAttachmentId, 'an attachmentId').optional(),
    caption: z.string().max(STATUS_TEXT_MAX).optional(),
    audience: z.union([
      z.object({ contacts: z.literal(true) }).strict(),
      z.object({ only: users }).strict(),
      z.object({ except: z.array(userId).max(MAX_USERS_PER_REQUEST) }).strict(),
    ]).optional(),
  }).strict().superRefine((b, ctx) => {
    if ((b.text === undefined) === (b.media === undefined)) ctx.addIssue({ code: 'custom', path: ['text'], message: 'either text or media' });
    else if (b.media !== undefined && (b.background !== undefined || b.font !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['background'], message: 'background and font are for text posts' });
    } else if (b.text !== undefined && b.caption !== undefined) ctx.addIssue({ code: 'custom', path: ['caption'], message: 'a caption is for media posts' });
  }),
  /** POST /v1/status/:statusId/views (viewStatus): no fields. */
  viewStatus: z.object({}).strict(),
  /** POST /v1/account/deletion-code: no fields (the code goes by SMS to the account's phone). */
  deletionCode: z.object({}).strict(),
  /** POST /v1/account/delete: the code from that SMS. */
  deleteAccount: z.object({ code: z.string().regex(/^[0-9]{6}$/, '6 digits') }).strict(),
  /** GET /v1/account/export: no query parameters. */
  exportAccount: z.object({}).strict(),
  /** PUT /v1/keys/identity: the calling device's MLS credential and signature public key (opaque to the server). */
  publishIdentity: z.object({
    credential: base64url(KEY_LIMITS.credentialBytes),
    signatureKey: base64url(KEY_LIMITS.signatureKeyBytes),
  }).strict(),
  /**
   * POST /v1/keys/packages: one-time MLS key packages for the calling device's pool (1 to
   * KEY_LIMITS.packagesPerUpload; none when only `lastResort` is replaced) and optionally its new
   * last-resort package.
   */
  uploadKeyPackages: z.object({
    packages: z.array(keyPackage).max(KEY_LIMITS.packagesPerUpload),
    lastResort: keyPackage.optional(),
  }).strict().refine((b) => b.packages.length > 0 || b.lastResort !== undefined, 'packages: at least one (or a lastResort)'),
  /** GET /v1/keys/packages/count: no query parameters. */
  countKeyPackages: z.object({}).strict(),
  /**
   * POST /v1/keys/claim: one key package of every active device of these users; with `devices`,
   * of those devices only (of the users named: a member adding one new device to a group claims
   * nothing of the others).
   */
  claimKeyPackages: z.object({
    users: z.array(userId).min(1).max(KEY_LIMITS.usersPerClaim),
    devices: z.array(deviceId).min(1).max(KEY_LIMITS.usersPerClaim).optional(),
  }).strict(),
  /** POST /v1/keys/identities: the published identities of these users' active devices (takes nothing). */
  getIdentities: z.object({ users: z.array(userId).min(1).max(KEY_LIMITS.usersPerClaim) }).strict(),
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

/** One number of an address book given to `lookupContacts`, and what became of it. */
export interface LookupEntry {
  /** The number as given. */
  number: string;
  /** Its E.164 form; absent when it is not a possible phone number (then it was not sent). */
  e164?: string;
  /** The Parley user with that number; absent when none. */
  userId?: string;
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

/** `POST /v1/contacts/lookup`: the registered ones among the uploaded hashes. */
export interface ContactMatch {
  hash: string;
  userId: string;
}

/** Who may see something of a user: everyone, his contacts, or nobody. */
export type Visibility = 'everyone' | 'contacts' | 'nobody';

/**
 * A user's privacy settings, enforced by the server. "contacts" means the users in his contacts
 * (those he saved, e.g. from `lookupContacts`).
 */
export interface PrivacySettings {
  /** Who sees his last seen and online. @defaultValue 'everyone' */
  lastSeen: Visibility;
  /** Who sees his profile photo. @defaultValue 'everyone' */
  photo: Visibility;
  /** Who sees his about text. @defaultValue 'everyone' */
  about: Visibility;
  /** Off: he sends no read receipts in 1:1 chats and receives none (groups always have them). @defaultValue true */
  readReceipts: boolean;
  /** Who may add him to groups (others send him an invitation link). @defaultValue 'everyone' */
  groupAdd: Visibility;
}

/** @useDeclaredType */
export type PrivacyInput = z.input<typeof schemas.privacy>;
/** @useDeclaredType */
export type ProfileInput = z.input<typeof schemas.profile>;

/**
 * A user's profile as the caller may see it. Own profile: everything. Another user's: the name
 * always; `about` and `avatar` are null when unset or when his privacy settings (or a block) hide
 * them from the caller.
 */
export interface ProfileInfo {
  userId: string;
  /** Display name ('' until set). */
  name: string;
  about: string | null;
  /** The photo's attachmentId (download it with `getAvatarUrl`, or `downloadMedia`). */
  avatar: string | null;
}

/** A push service Parley can wake a device through. */
export type PushKind = 'webpush' | 'fcm' | 'apns';
/**
 * A device's push registration (`ParleyClient.registerPush`): a browser's PushSubscription with
 * `kind: 'webpush'`, an FCM registration token, or an APNs device token (hex; the environment
 * and topic default to the server's).
 * @useDeclaredType
 */
export type PushRegistrationInput = z.input<typeof schemas.pushRegistration>;
/** A registration as the server keeps it (Web Push keys without padding, APNs token in lower case). */
export type PushRegistrationInfo =
  | { kind: 'webpush'; endpoint: string; keys: { p256dh: string; auth: string } }
  | { kind: 'fcm'; token: string }
  | { kind: 'apns'; token: string; environment?: 'production' | 'development'; topic?: string };
/** `GET /v1/push/config`: what a device needs to register. */
export interface PushConfigInfo {
  /** The VAPID public key (base64url): a browser's `applicationServerKey` for `pushManager.subscribe`. */
  vapidPublicKey: string;
  /** The kinds this server sends; registering another is refused (E_PUSH_UNSUPPORTED). */
  kinds: PushKind[];
}
/** Who may see a status post: the author's contacts (default), only some of them, or all but some. */
export type StatusAudience = { contacts: true } | { only: string[] } | { except: string[] };

/**
 * A status post to publish: text with a background colour (0xRRGGBB) and a font (0-9), or an
 * uploaded image or video (`media`: the attachmentId of `uploadMedia`) with a caption; at most
 * `STATUS_TEXT_MAX` characters of text or caption.
 */
export type PostStatusInput =
  | { text: string; background?: number; font?: number; media?: never; caption?: never; audience?: StatusAudience }
  | { media: string; caption?: string; text?: never; background?: never; font?: never; audience?: StatusAudience };

/** A status post as the API returns it. */
export interface StatusPostInfo {
  statusId: string;
  /** The author's userId. */
  from: string;
  ts: number;
  /** After this (epoch ms) it is gone. */
  expiresAt: number;
  /** A text post's text, or a media post's caption. */
  text?: string;
  background?: number;
  font?: number;
  /** A media post's attachment (download it with `downloadMedia(status.media)`). */
  media?: MediaRef;
}

/** A post in the feed: with whether the caller has viewed it. */
export interface FeedStatusPost extends StatusPostInfo {
  viewed: boolean;
}

/** One of the caller's own live posts, with how many have viewed it. */
export interface OwnStatusPost extends StatusPostInfo {
  views: number;
}

/** One author's live posts in the feed, oldest first. */
export interface StatusAuthor {
  userId: string;
  statuses: FeedStatusPost[];
  /** The caller has viewed every one of them. */
  allViewed: boolean;
}

/** `GET /v1/status`: what the caller may see now, by author (most recent author first), and his own posts. */
export interface StatusFeed {
  authors: StatusAuthor[];
  own: OwnStatusPost[];
}

/** Who viewed a post, and when (first view). */
export interface StatusViewer {
  userId: string;
  viewedAt: number;
}

/** The answer to `POST /v1/account/deletion-code`: the code went by SMS to the account's phone. */
export interface DeletionCodeSent {
  expiresInSec: number;
}

/** The answer to `POST /v1/account/delete`. */
export interface AccountDeleted {
  deleted: true;
  userId: string;
}

/**
 * One record (one NDJSON line) of an account export archive (`GET /v1/account/export`,
 * docs/EXPORT.md): a `header` first, an `end` last (its absence: a cut-off archive), and in
 * between, in this order: `account`, `profile`, `privacy`, `device`s, `contact`s, `block`s, per
 * chat a `chat` then its `message`s, `media`, `status`es.
 */
export type ExportRecord =
  /** The archive's format name and version (docs/EXPORT.md); a reader refuses another format or a newer major version. */
  | { type: 'header'; format: 'parley-account-export'; version: 1; userId: string; exportedAt: number }
  | { type: 'account'; userId: string; phone: string; createdAt: number }
  | { type: 'profile'; name: string; about: string; avatar: string | null; updatedAt: number | null }
  | ({ type: 'privacy' } & PrivacySettings)
  /** A device of the account (revoked ones too); never its token. */
  | { type: 'device'; deviceId: string; name: string; createdAt: number; revokedAt: number | null }
  /** The MLS identity a device of his published (base64url, as in `DeviceIdentityInfo`); public keys only. */
  | { type: 'identity'; deviceId: string; credential: string; signatureKey: string; changedAt: number }
  | { type: 'contact'; userId: string }
  | { type: 'block'; userId: string }
  /**
   * A chat he is or was in, with his membership window: he saw the messages with
   * `sinceSeq < seq <= leftSeq` (or up to the chat's last when he has not left).
   */
  | {
    type: 'chat'; chatId: string; kind: 'direct' | 'group'; name: string | null; description: string | null; createdAt: number;
    deleted: boolean; lastSeq: number; members: string[];
    membership: { role: 'member' | 'admin'; joinedAt: number; sinceSeq: number; leftSeq: number | null; mutedUntil: number; archived: boolean };
  }
  /** A message of that chat within his window: his own (`sent`) and the others' (`received`), and group changes (`event`). */
  | ({ type: 'message'; direction: 'sent' | 'received' } & HistoryMessage)
  /**
   * A media object: his own uploads (`owner` = his userId) and those of messages he received.
   * `url` downloads it until `urlExpiresAt` (null: no longer downloadable, e.g. expired).
   */
  | {
    type: 'media'; attachmentId: string; owner: string | null; kind: MediaRef['kind']; contentType: string; size: number; sha256: string;
    filename: string | null; state: string | null; createdAt: number | null; url: string | null; thumbnailUrl: string | null; urlExpiresAt: number | null;
  }
  /** A status post of his that is still live. */
  | {
    type: 'status'; statusId: string; ts: number; expiresAt: number; text: string | null; background: number | null; font: number | null;
    media: MediaRef | null;
  }
  | { type: 'end'; counts: Record<string, number> };

/** A parsed export archive: its records by type (`ParleyClient.exportAccount`). */
export interface AccountExport {
  header: Extract<ExportRecord, { type: 'header' }>;
  records: ExportRecord[];
}

/**
 * A device's MLS identity as it published it (`publishIdentity`): its credential and signature
 * public key, base64url. The server stores and hands them out as they are.
 * @useDeclaredType
 */
export type PublishIdentityInput = z.input<typeof schemas.publishIdentity>;
/**
 * Key packages to upload (`uploadKeyPackages`): each with its KeyPackageRef (`ref`, base64url) and
 * its encoded bytes (`data`, base64url), and optionally a new last-resort package.
 * @useDeclaredType
 */
export type UploadKeyPackagesInput = z.input<typeof schemas.uploadKeyPackages>;
/** One key package: its KeyPackageRef and its bytes, both base64url. */
export interface KeyPackageInfo {
  ref: string;
  data: string;
}

/** A device's published identity (base64url bytes). */
export interface DeviceIdentityInfo {
  deviceId: string;
  credential: string;
  signatureKey: string;
  /** When these bytes were first published (epoch ms). */
  changedAt: number;
  /** The last publication replaced other bytes: the device's identity changed (its security code too). */
  changed: boolean;
}

/** `PUT /v1/keys/identity`: whether this publication changed the device's identity. */
export interface IdentityPublished {
  changed: boolean;
  changedAt: number;
}

/** How many key packages the calling device holds on the server, and whether it should upload more. */
export interface KeyPackageCount {
  count: number;
  /** Fewer than the server's low-water mark remain: upload `target - count` more. */
  low: boolean;
  /** How many the device should hold (the server's maximum). */
  target: number;
  /** It has a last-resort package (handed out when the pool is empty). */
  lastResort: boolean;
}

/** `POST /v1/keys/packages`: the refs stored (a ref already held, or past the maximum, is not), and the pool now. */
export interface KeyPackagesUploaded extends KeyPackageCount {
  accepted: string[];
}

/**
 * One device of a claimed user (`POST /v1/keys/claim`). `keyPackage` is null when the device has
 * no identity or no package left (not even a last resort).
 */
export interface ClaimedDeviceKeys {
  userId: string;
  deviceId: string;
  identity: DeviceIdentityInfo | null;
  keyPackage: KeyPackageInfo | null;
  /** The package is the device's last-resort one (its pool was empty): it may be handed out again. */
  lastResort: boolean;
  /** The device's pool is now under the server's low-water mark. */
  low: boolean;
}

/**
 * `GET /v1/users/:userId/identities` (and each user of `POST /v1/keys/identities`): the published
 * identity of each of a user's active devices.
 */
export interface UserIdentities {
  userId: string;
  devices: DeviceIdentityInfo[];
}
