/**
 * The store ports: what Parley keeps durably, one port per aggregate. The services depend on the
 * narrowest port they need (the broker's delivery agent only on `ProgressStore`, the API mostly
 * on `AccountStore`); the composition root passes one adapter that implements them all. Two
 * adapters exist — SQLite (better-sqlite3, the embedded default) and MongoDB (production) — and
 * each port has its contract suite in test/contract/, run on both. Times are epoch milliseconds.
 *
 * Delivery model (v2, docs/ARCHITECTURE.md): a message is stored once per chat; what a device has
 * received is one watermark per (device, chat), not a row per message per device. Offline
 * catch-up, `sync`, read checks and status queries are answered from those watermarks.
 */
import type { Body, ChatEvent } from '@parley/client-sdk/protocol';
import type { StoredChatMessage } from '../../../broker/src/index.js';

export interface User {
  userId: string;
  /** E.164, e.g. +447700900123. Unique. */
  phone: string;
  createdAt: number;
}

export interface Device {
  /** The MQTT clientId. */
  deviceId: string;
  userId: string;
  /** sha256 (hex) of the device token's secret part. The token itself is never stored. */
  tokenHash: string;
  name: string;
  createdAt: number;
  revokedAt: number | null;
}

export interface PendingRegistration {
  phone: string;
  /** HMAC of the one-time code; the code itself is never stored. */
  codeHash: string;
  expiresAt: number;
  attempts: number;
  createdAt: number;
}

export type ChatKind = 'direct' | 'group';
export type MemberRole = 'member' | 'admin';

export interface Chat {
  chatId: string;
  kind: ChatKind;
  createdAt: number;
  /** The highest seq assigned in this chat (0 when empty). */
  lastSeq: number;
  /** Group settings (null in a direct chat). */
  name: string | null;
  description: string | null;
  /** A reference to the avatar image (a media id or URL); the image itself is not stored here. */
  avatar: string | null;
  /** Members who join see the group's earlier messages (history over HTTP) too. */
  shareHistory: boolean;
  deletedAt: number | null;
  /** Bumped by every group change: a change planned on an older version is refused (CONFLICT). */
  version: number;
}

export interface Member {
  chatId: string;
  userId: string;
  role: MemberRole;
  joinedAt: number;
  /** The member sees the messages after this seq (0 in a direct chat, or when history is shared). */
  sinceSeq: number;
  /** The seq of the message that removed the member (left, removed, group deleted); null while a member. */
  leftSeq: number | null;
  /** Every message of others up to here reached at least one of this user's devices. */
  deliveredSeq: number;
  /** This user has read everything up to here. */
  readSeq: number;
  /** The user's own chat-list settings: notifications muted until (epoch ms; 0 = not muted), archived. */
  mutedUntil: number;
  archived: boolean;
}

/** One row of a user's chat list. */
export interface ChatListEntry {
  chat: Chat;
  member: Member;
  /** The last message the user can see (null when none). */
  last: StoredMessage | null;
  /** Messages of others the user can see after its read watermark. */
  unread: number;
}

/** A new group: its settings, first members, and the `created` message that opens its stream. */
export interface NewGroup {
  chatId: string;
  name: string;
  description: string | null;
  avatar: string | null;
  shareHistory: boolean;
  members: Array<{ userId: string; role: MemberRole }>;
  /** The `created` event, stored as seq 1 with the creator as sender. */
  created: SystemMessage;
}

/** A group change's message: from a user (the actor), with an event and no body. */
export interface SystemMessage {
  senderUserId: string;
  /** Unique per chat: the idempotency key of the change. */
  clientMsgId: string;
  event: ChatEvent;
  ts: number;
}

/**
 * A planned group change (services/src/groups/): applied with its system message in one atomic
 * step, only if the chat's `version` is still the one it was planned on.
 */
export interface GroupChange {
  chatId: string;
  version: number;
  message: SystemMessage;
  /** New members (or former ones back), from this message on. */
  add?: Array<{ userId: string; role: MemberRole }>;
  /** Members who stop receiving after this message (they get this message). */
  remove?: string[];
  roles?: Array<{ userId: string; role: MemberRole }>;
  settings?: { name?: string; description?: string | null; avatar?: string | null };
  /** Deletes the group: every member is removed by this message. */
  delete?: boolean;
}

/** A short-lived secret that lets a new device join a user's account, or a user join a group. */
export interface Grant {
  /** HMAC of the code; the code itself is never stored. */
  codeHash: string;
  kind: 'link' | 'invite';
  /** The user whose device is linked, or the admin who made the invitation. */
  userId: string;
  /** The device that made it: a link code dies with that device (revoked, or the phone verified again). */
  deviceId: string | null;
  /** The group of an invitation. */
  chatId: string | null;
  createdAt: number;
  expiresAt: number;
}

/** A stored message: the broker's delivery agent reads the same shape (one definition, in broker/src/ingest.ts). */
export type StoredMessage = StoredChatMessage;

export interface NewMessage {
  chatId: string;
  senderUserId: string;
  senderDeviceId: string;
  clientMsgId: string;
  body: Body;
  ts: number;
  /** A media message's attachment, as the server describes it (from the attachment row). */
  media?: MediaRef;
}

/**
 * Refused: the sender is not (or no longer) a member of the chat, or the group was deleted.
 * Checked in the same transaction that assigns the seq, so a message can never follow its
 * sender's removal.
 */
export type AppendRefusal = 'NOT_MEMBER' | 'CHAT_DELETED';

export type AppendResult =
  | {
    message: StoredMessage;
    /** false when (senderDeviceId, clientMsgId) was already stored: nothing was written. */
    created: boolean;
    refused?: undefined;
  }
  | { message: null; created: false; refused: AppendRefusal };

/** A device received (PUBACKed) every message of the chat up to `seq` that was meant for it. */
export interface DeliveryAck {
  chatId: string;
  seq: number;
  deviceId: string;
  at: number;
}

/** A user's delivered or read watermark in a chat moved forward to `seq`. */
export interface WatermarkChange {
  chatId: string;
  userId: string;
  seq: number;
  at: number;
}

/** Where a device stands in one chat. */
export interface DeviceProgress {
  deviceId: string;
  chatId: string;
  userId: string;
  /** The device gets the messages after this seq (the chat's last seq when the device or member joined). */
  sinceSeq: number;
  /** The device acknowledged every message meant for it up to here. */
  deliveredSeq: number;
  /** The device gets nothing after this seq (its user left or was removed); null while a member. */
  untilSeq: number | null;
}

/** A device of a chat's fan-out, with the seqs it receives: (sinceSeq, untilSeq]. */
export interface ChatDevice {
  deviceId: string;
  userId: string;
  sinceSeq: number;
  untilSeq: number | null;
}

/** Whether that device of the fan-out receives that message (not the sender's own device). */
export const receives = (d: ChatDevice, m: { seq: number; senderDeviceId: string }): boolean =>
  d.deviceId !== m.senderDeviceId && m.seq > d.sinceSeq && (d.untilSeq === null || m.seq <= d.untilSeq);

export interface RecipientStatus {
  userId: string;
  deviceId: string;
  /** When the message first reached one of this user's devices; null while this device lacks it. */
  deliveredAt: number | null;
  /** When this user read it (read is per user); null while unread. */
  readAt: number | null;
}

export interface MessageStatus {
  message: StoredMessage;
  recipients: RecipientStatus[];
}

/** A position in a device's catch-up: after this (chatId, seq). */
export interface ChatCursor {
  chatId: string;
  seq: number;
}

export interface ExpireResult {
  messages: number;
  /** Watermark history rows (delivered/read times) older than the retention. */
  marks: number;
  /** Pending registrations, link codes and invitations past their expiry. */
  registrations: number;
}

/** Thrown by adapters for conditions the caller must handle; `code` is stable. */
export class StoreError extends Error {
  constructor(readonly code: 'DEVICE_LIMIT' | 'DUPLICATE' | 'NOT_FOUND' | 'CONFLICT', message: string) {
    super(message);
    this.name = 'StoreError';
  }
}

export interface StoreLifecycle {
  /** Creates tables / collections and indexes, and migrates older data. Idempotent. */
  init(): Promise<void>;
  close(): Promise<void>;
  /** Deletes messages with ts < before and watermark history older than that, and expired pending registrations, link codes and invitations. */
  expire(before: number, now: number): Promise<ExpireResult>;
}

/** Users, their devices, and pending phone registrations. */
export interface AccountStore {
  /** Returns the user with this phone, creating it with `newUserId` when there is none. */
  getOrCreateUserByPhone(phone: string, newUserId: string, now: number): Promise<{ user: User; created: boolean }>;
  getUser(userId: string): Promise<User | null>;
  getUserByPhone(phone: string): Promise<User | null>;
  /**
   * Contacts discovery: the users whose phone hashes (SHA-256 of the E.164 string, hex: the SDK's
   * `hashPhone`) are among `hashes`; unknown hashes are left out. Every user has his phone's hash,
   * set when he is created (and filled in for older users by the schema migration).
   */
  getUsersByPhoneHashes(hashes: string[]): Promise<Array<{ userId: string; phoneHash: string }>>;

  /**
   * Adds a device; throws StoreError('DEVICE_LIMIT') when the user already has `maxActive` active
   * ones. Atomic. The device joins each chat the user is a member of with the last
   * `historyDepth` messages the user may see still to deliver (0: only what is sent from now on),
   * so a linked device gets its chats and their recent history without asking.
   */
  addDevice(device: Omit<Device, 'revokedAt'>, limits: { maxActive: number; historyDepth: number }): Promise<void>;
  /** Returns the device even when revoked (check `revokedAt`). */
  getDevice(deviceId: string): Promise<Device | null>;
  /** Active (not revoked) devices of a user, oldest first. */
  listDevices(userId: string): Promise<Device[]>;
  /** Every device of the user, revoked ones too, oldest first (account deletion and export). */
  listAllDevices(userId: string): Promise<Device[]>;
  /** Active devices of several users at once. */
  listDevicesOfUsers(userIds: string[]): Promise<Device[]>;
  /** Marks the device revoked; false when it did not exist or was already revoked. */
  revokeDevice(deviceId: string, at: number): Promise<boolean>;

  /** Creates or replaces the pending registration of that phone (attempts reset to 0). */
  putPendingRegistration(p: PendingRegistration): Promise<void>;
  getPendingRegistration(phone: string): Promise<PendingRegistration | null>;
  /** Adds one failed attempt; returns the new count (0 when there is no pending registration). */
  bumpRegistrationAttempts(phone: string): Promise<number>;
  deletePendingRegistration(phone: string): Promise<void>;

  /** Stores a device link code or a group invitation. */
  putGrant(grant: Grant): Promise<void>;
  /** The grant with that code hash, if it exists and has not expired at `now`. */
  getGrant(codeHash: string, now: number): Promise<Grant | null>;
  /** Removes a grant (used, or revoked); false when there was none. Atomic: one caller wins. */
  deleteGrant(codeHash: string): Promise<boolean>;
  /** Unexpired invitations of a group, oldest first. */
  listGrants(chatId: string, now: number): Promise<Grant[]>;

  /**
   * Account deletion (services/src/account/delete-account.ts runs it after the user's devices are
   * revoked, his groups left and his media removed): forgets the user — one transaction in SQLite.
   * Removed: the user, every device of his (revoked ones too), the pending registration of his
   * phone, the link codes and invitations he made, his memberships (current and former), his
   * devices' watermarks, his delivered/read marks, and his messages that are not everyone's yet:
   * a message of his stays only when it has a recipient and every recipient has it (delivered to
   * one of their devices): those are the recipients' copies. A chat nobody else was ever in goes
   * with all of it; a direct chat with someone else keeps the other's history (its key, which
   * names both users, is cleared). His system messages stay (they are the groups' history).
   * Attachments are not touched (their objects go first: MediaStore). Idempotent.
   */
  deleteUser(userId: string): Promise<UserDeletion>;
}

/** What deleteUser removed. */
export interface UserDeletion {
  /** The user existed (false: nothing of him was found, e.g. a repeated call). */
  user: boolean;
  devices: number;
  /** His messages removed from chats that others are in (not yet delivered to every recipient). */
  messages: number;
  /** Chats removed with everything in them (nobody else was ever in them). */
  chats: number;
}

/** Chats and their membership. */
export interface ChatStore {
  /** The direct chat of two users (the same for (a, b) and (b, a); a may equal b), created with `newChatId` if missing. */
  getOrCreateDirectChat(userA: string, userB: string, newChatId: string, now: number): Promise<Chat>;
  /**
   * Creates a group chat with its members and its `created` message at seq 1 (throws
   * StoreError('DUPLICATE') if the id is taken). Every active device of every member starts at 0.
   */
  createGroupChat(group: NewGroup): Promise<{ chat: Chat; message: StoredMessage }>;
  /**
   * Applies a group change and stores its message with the chat's next seq, atomically; throws
   * StoreError('CONFLICT') when the chat's version is no longer `change.version`, 'NOT_FOUND'
   * when there is no such chat. Added members' devices receive from this message on; removed ones
   * receive this message and nothing after.
   */
  commitGroupChange(change: GroupChange): Promise<StoredMessage>;
  getChat(chatId: string): Promise<Chat | null>;
  /** Current members (not those who left), oldest first. */
  getMembers(chatId: string): Promise<Member[]>;
  /** A current member, or null. */
  getMember(chatId: string, userId: string): Promise<Member | null>;
  /** The user's membership even when it ended (`leftSeq` set): what the user may still read. */
  getMembership(chatId: string, userId: string): Promise<Member | null>;
  /** The user's chats (current and former memberships), most recently active first, at most `limit`. */
  listChats(userId: string, limit: number): Promise<ChatListEntry[]>;
  /** Sets the user's mute / archive flags of a chat; false when the user was never in it. */
  setChatFlags(chatId: string, userId: string, flags: { mutedUntil?: number; archived?: boolean }): Promise<boolean>;
  /**
   * Devices of the chat's fan-out by deviceId, a page at a time (the fan-out walks a 1,024-member
   * group in bounded chunks with this): active devices of current members, and of former members
   * whose last seq is at least `fromSeq`. `receives(device, message)` says who gets what.
   */
  chatDevices(chatId: string, afterDeviceId: string, limit: number, fromSeq?: number): Promise<ChatDevice[]>;
}

/** The messages of every chat, each stored once. */
export interface MessageStore {
  /**
   * Stores a batch in one transaction, in order. Idempotent by (senderDeviceId, clientMsgId): a
   * message already stored is returned with created=false and is not stored again. Each new
   * message gets its chat's next seq atomically.
   */
  appendMessages(batch: NewMessage[]): Promise<AppendResult[]>;
  /** A chat's messages with seq > afterSeq, ascending, at most `limit`. */
  history(chatId: string, afterSeq: number, limit: number): Promise<StoredMessage[]>;
  /** A chat's messages with afterSeq < seq < beforeSeq, the last `limit` of them, ascending (paging back). */
  historyBefore(chatId: string, beforeSeq: number, limit: number, afterSeq?: number): Promise<StoredMessage[]>;
  getMessage(chatId: string, seq: number): Promise<StoredMessage | null>;
}

/** Per-device delivery progress (watermarks) and per-user delivered/read ticks. */
export interface ProgressStore {
  /** Where the device stands in the chat; null when it is not a recipient there. */
  progress(deviceId: string, chatId: string): Promise<DeviceProgress | null>;
  /**
   * What the device has not acknowledged, over all its chats in (chatId, seq) order: messages
   * after its delivered watermark, not sent by the device itself. `after` pages.
   */
  pending(deviceId: string, after: ChatCursor | null, limit: number): Promise<StoredMessage[]>;
  /**
   * How many messages `pending(deviceId, null, limit)` would list, without reading them: the same
   * messages counted, up to `limit` (min(count, limit)).
   */
  pendingCount(deviceId: string, limit: number): Promise<number>;
  /** The messages of one chat in (afterSeq, beforeSeq) for that device (not sent by it, not before it joined). */
  pendingInChat(deviceId: string, chatId: string, afterSeq: number, beforeSeq: number, limit: number): Promise<StoredMessage[]>;
  /**
   * Raises each device's delivered watermark in the chat to the acked seq (devices receive a chat
   * in order, so an ack covers what precedes it), then each affected member's delivered watermark
   * (the highest of that user's devices). Returns the member watermarks that moved.
   */
  markDelivered(acks: DeliveryAck[]): Promise<WatermarkChange[]>;
  /**
   * Raises the member's read watermark (and the delivered one, read implies delivered). Returns
   * the change, or null when readSeq was already >= upToSeq or the user is not a member.
   */
  markRead(chatId: string, userId: string, upToSeq: number, at: number): Promise<WatermarkChange | null>;
  /**
   * How far the other members have got: of the chat's members but `exceptUserId` (`of`), how many
   * have every message up to `seq` delivered, and read. A group's sender learns this instead of one
   * receipt per member.
   */
  tally(chatId: string, seq: number, exceptUserId: string): Promise<{ of: number; delivered: number; read: number }>;
  /** Whether that message was meant for that device: stored, not sent by it, after it joined the chat. */
  isRecipient(deviceId: string, chatId: string, seq: number): Promise<boolean>;
  /** The message and, per recipient device, the delivered and read times. */
  messageStatus(chatId: string, seq: number): Promise<MessageStatus | null>;
}

export type { MediaKind } from '@parley/client-sdk/protocol';
import type { MediaKind, MediaRef } from '@parley/client-sdk/protocol';
/**
 * uploading: created, parts going to the BlobStore; processing: the object is complete and
 * verified (size, SHA-256, sniffed type), the thumbnail job runs; ready: a message may reference
 * it; failed: refused (`error` holds the catalogue code), never referenced.
 */
export type AttachmentState = 'uploading' | 'processing' | 'ready' | 'failed';

/** A media object a user uploaded, and what the server made of it. */
export interface Attachment {
  /** `m` + 12 characters. */
  attachmentId: string;
  ownerUserId: string;
  ownerDeviceId: string;
  kind: MediaKind;
  /** Declared by the client, then replaced by the type sniffed from the bytes. */
  contentType: string;
  size: number;
  /** SHA-256 of the bytes, hex, declared by the client and checked by the server. */
  sha256: string;
  /** The object in the BlobStore. */
  key: string;
  /** The multipart upload while `uploading`. */
  uploadId: string | null;
  state: AttachmentState;
  error: string | null;
  /** Client-encrypted bytes: the server neither sniffs nor thumbnails them. */
  encrypted: boolean;
  thumbKey: string | null;
  /** A tiny inline preview (ThumbHash, base64): tens of bytes, carried inside the message. */
  preview: string | null;
  width: number | null;
  height: number | null;
  /** Sender-supplied details: durationMs, waveform, filename, poster (an attachmentId). */
  meta: AttachmentMeta;
  createdAt: number;
  expiresAt: number;
}

export interface AttachmentMeta {
  filename?: string;
  durationMs?: number;
  /** Voice notes: amplitudes 0..255, at most 128 of them. */
  waveform?: number[];
  /** Video: a poster image uploaded as its own attachment. */
  poster?: string;
}

/** Uploaded media, and which messages reference it (who may download it follows from those). */
export interface MediaStore {
  createAttachment(a: Attachment): Promise<void>;
  getAttachment(attachmentId: string): Promise<Attachment | null>;
  /**
   * Changes an attachment if it is still in state `from` (a state machine step: one caller wins);
   * returns the updated attachment, or null when it was not in that state.
   */
  updateAttachment(attachmentId: string, from: AttachmentState, patch: Partial<Omit<Attachment, 'attachmentId' | 'ownerUserId' | 'ownerDeviceId' | 'key' | 'createdAt'>>): Promise<Attachment | null>;
  /**
   * Records that message (chatId, seq) references the attachment, and keeps the attachment at
   * least until `keepUntil` (the message's own expiry: media never vanish before their message).
   * A status post references its media the same way: (statusId, 0), kept until the post expires.
   */
  linkAttachment(attachmentId: string, chatId: string, seq: number, keepUntil: number): Promise<void>;
  /** The messages (and status posts: a statusId with seq 0) referencing an attachment. */
  attachmentLinks(attachmentId: string): Promise<Array<{ chatId: string; seq: number }>>;
  /** Attachments with expiresAt < before (and their links), at most `limit`, oldest first. */
  expiredAttachments(before: number, limit: number): Promise<Attachment[]>;
  /** Deletes the attachment's row and links (its objects are the caller's to remove first). */
  deleteAttachment(attachmentId: string): Promise<void>;
  /** The user's attachments (any state) in attachmentId order, at most `limit` after `afterId` ('' = from the first): export and deletion. */
  attachmentsOf(ownerUserId: string, afterId: string, limit: number): Promise<Attachment[]>;
}

/** Who may see something of a user: everyone, the users in his contacts, or nobody. */
export type Visibility = 'everyone' | 'contacts' | 'nobody';

/** A user's privacy settings, enforced by the server. */
export interface Privacy {
  /** Who sees last seen and online. */
  lastSeen: Visibility;
  /** Who sees the profile photo. */
  photo: Visibility;
  /** Who sees the about text. */
  about: Visibility;
  /** Off: the user sends no read receipts and receives none (delivered ticks stay). */
  readReceipts: boolean;
  /** Who may add the user to groups (others must send an invitation link). */
  groupAdd: Visibility;
}

export const DEFAULT_PRIVACY: Readonly<Privacy> = Object.freeze({
  lastSeen: 'everyone', photo: 'everyone', about: 'everyone', readReceipts: true, groupAdd: 'everyone',
});

/** What a user shows others. */
export interface Profile {
  userId: string;
  /** Display name ('' until set). */
  name: string;
  about: string;
  /** An attachmentId (uploaded through the media path), or null. */
  avatar: string | null;
  updatedAt: number;
}

/** Profile and privacy: one row per user, created on first change. */
export interface ProfileStore {
  /** The user's profile; null when he has never set one. */
  getProfile(userId: string): Promise<Profile | null>;
  putProfile(userId: string, patch: { name?: string; about?: string; avatar?: string | null }, now: number): Promise<Profile>;
  /** The user's privacy settings (DEFAULT_PRIVACY for what was never set). */
  getPrivacy(userId: string): Promise<Privacy>;
  /** Settings of several users at once (defaults for those never set). */
  getPrivacies(userIds: string[]): Promise<Map<string, Privacy>>;
  putPrivacy(userId: string, patch: Partial<Privacy>): Promise<Privacy>;
  /** Forgets the user's profile and privacy settings (account deletion). Idempotent. */
  deleteProfile(userId: string): Promise<void>;
}

/** The key of a pair of users, the same whichever comes first: the ids sorted, joined by '|' (a 1:1 message's ordering key). */
export const userPairKey = (a: string, b: string): string => (a < b ? `${a}|${b}` : `${b}|${a}`);

/** A user's contacts (the registered users he saved, never his uploaded address book) and blocks. */
export interface RelationStore {
  addContacts(userId: string, contactIds: string[], now: number): Promise<void>;
  removeContacts(userId: string, contactIds: string[]): Promise<void>;
  listContacts(userId: string): Promise<string[]>;
  /** Which of `ownerIds` have `otherId` in their contacts. */
  contactOf(ownerIds: string[], otherId: string): Promise<Set<string>>;
  block(userId: string, blockedId: string, now: number): Promise<void>;
  /** false when it was not blocked. */
  unblock(userId: string, blockedId: string): Promise<boolean>;
  listBlocked(userId: string): Promise<string[]>;
  /** Which of `blockerIds` have blocked `userId`. */
  blockedBy(blockerIds: string[], userId: string): Promise<Set<string>>;
  /**
   * Of these (a, b) pairs, those where a blocked b or b blocked a, as `directKey`s (the two ids
   * sorted, joined by '|'): the persist worker's one query per batch of 1:1 messages.
   */
  blockedPairs(pairs: Array<[string, string]>): Promise<Set<string>>;
  /**
   * Forgets the user's relations (account deletion): his contacts and blocks, and his entries in
   * others' contacts and blocks. Idempotent.
   */
  forgetRelations(userId: string): Promise<void>;
}

/** Push services a device can be woken through. */
export type PushKind = 'webpush' | 'fcm' | 'apns';

/** How to reach a device through its push service (what the device registered). */
export type PushRegistration =
  /** A browser's PushSubscription (RFC 8030): the push service URL and the RFC 8291 keys. */
  | { kind: 'webpush'; endpoint: string; keys: { p256dh: string; auth: string } }
  /** A Firebase Cloud Messaging registration token. */
  | { kind: 'fcm'; token: string }
  /** An APNs device token (hex); the environment and topic default to the server's configuration. */
  | { kind: 'apns'; token: string; environment?: 'production' | 'development'; topic?: string };

/** A device's registration as stored. */
export interface DevicePush {
  deviceId: string;
  userId: string;
  registration: PushRegistration;
  /** When it was (last) registered. */
  at: number;
}

/** What identifies a registration at its push service (endpoint or token): unique per kind. */
export const pushAddress = (r: PushRegistration): string => (r.kind === 'webpush' ? r.endpoint : r.token);

/** Push registrations: at most one per device, and one device per address. */
export interface PushStore {
  /**
   * Sets the device's registration, replacing the one it had. An address (endpoint or token) is
   * one device's: another device holding the same address loses it (a browser or app that
   * signed in again as a new device keeps its push subscription).
   */
  putPushRegistration(p: DevicePush): Promise<void>;
  /** The registrations of those devices (devices without one are left out). */
  getPushRegistrations(deviceIds: string[]): Promise<DevicePush[]>;
  /**
   * Removes the device's registration; with `address`, only if it is still that one (a push
   * service answered "gone" for an address the device may have replaced meanwhile). false when
   * nothing was removed.
   */
  deletePushRegistration(deviceId: string, address?: string): Promise<boolean>;
  /** Removes every registration of the user's devices (account deletion); returns how many. */
  deletePushRegistrationsOf(userId: string): Promise<number>;
}

// StatusStore (status posts): its module defines it.
/**
 * A status post: text (with a background colour and a font) or media (with an optional caption in
 * `text`), visible to its audience (resolved when posted) until `expiresAt`.
 */
export interface StatusPost {
  /** `s` + 12 characters. */
  statusId: string;
  authorUserId: string;
  /** The device that posted it (the fan-out skips it). */
  authorDeviceId: string;
  ts: number;
  expiresAt: number;
  /** The text of a text post, or a media post's caption (null: none). */
  text: string | null;
  /** A text post's background, 0xRRGGBB (null: the client's default). */
  background: number | null;
  /** A text post's font, 0-9 (null: the client's default). */
  font: number | null;
  /** A media post's attachment, as messages carry it (from the attachment row). */
  media: MediaRef | null;
  /** Set by removeStatus: the content is gone, the audience stays (for the removal fan-out) until expiry. */
  removedAt: number | null;
}

/** One viewer of a status post (his first view). */
export interface StatusView {
  viewerUserId: string;
  at: number;
}

/** What an expiry or a deletion removed: the posts, and the attachments they referenced. */
export interface StatusRemoval {
  statusIds: string[];
  attachmentIds: string[];
}

/**
 * Status posts, their audience (the userIds that may see each, resolved when posted) and their
 * views. Expired posts stay until `expireStatuses` removes them; readers pass `now` and never see
 * them (nor removed ones).
 */
export interface StatusStore {
  /** Stores a post and its audience; throws StoreError('DUPLICATE') when the id is taken. */
  createStatus(post: Omit<StatusPost, 'removedAt'>, audience: string[]): Promise<void>;
  /** The post even when expired or removed (check `expiresAt`, `removedAt`); null when unknown. */
  getStatus(statusId: string): Promise<StatusPost | null>;
  /** Whether the user is in the post's audience. */
  inStatusAudience(statusId: string, userId: string): Promise<boolean>;
  /** The post's audience by userId, a page at a time (after `afterUserId`; '' = from the start). */
  statusAudience(statusId: string, afterUserId: string, limit: number): Promise<string[]>;
  /**
   * The feed: unexpired (expiresAt > now), not removed posts whose audience has `viewerUserId`,
   * by author (userId order), each author's oldest first; at most `limit`.
   */
  statusFeed(viewerUserId: string, now: number, limit: number): Promise<StatusPost[]>;
  /** The user's own unexpired, not removed posts, oldest first. */
  ownStatuses(userId: string, now: number): Promise<StatusPost[]>;
  /** Records a view; idempotent (the first view's time stays). true when it is new. */
  addStatusView(statusId: string, viewerUserId: string, at: number): Promise<boolean>;
  /** A post's viewers, in the order they first viewed it. */
  statusViewers(statusId: string): Promise<StatusView[]>;
  /** Which of these posts the user has viewed. */
  viewedStatuses(viewerUserId: string, statusIds: string[]): Promise<Set<string>>;
  /**
   * Removes a post's content and views and marks it removed at `at` (its audience stays until it
   * expires, so the removal can reach it). false when unknown or already removed.
   */
  removeStatus(statusId: string, at: number): Promise<boolean>;
  /** Deletes at most `limit` posts with expiresAt < `before` (oldest first) with their audience and views. */
  expireStatuses(before: number, limit: number): Promise<StatusRemoval>;
  /**
   * Account deletion: deletes every post of the user (with their audience and views) and his
   * entries in the audience and views of others' posts. Returns the attachmentIds his posts referenced.
   */
  deleteStatusesOf(userId: string): Promise<string[]>;
}

// KeyStore (the MLS key directory, docs/E2EE-CHOICE.md): the server is MLS's Delivery Service.
/**
 * A device's published MLS identity: its credential and signature public key, as the client
 * encoded them. Opaque to the server (it never parses them, and never sees a private key).
 */
export interface DeviceIdentity {
  deviceId: string;
  userId: string;
  credential: Uint8Array;
  signatureKey: Uint8Array;
  /** When the current bytes were first published (a repeat of the same bytes keeps it). */
  changedAt: number;
  /**
   * The last publication replaced different bytes: the device's identity changed (what makes a
   * "security code changed" notice). False after the first publication and after a repeat.
   */
  changed: boolean;
}

/** An MLS KeyPackage: opaque bytes and the client's KeyPackageRef for them (base64url, at most 64 characters). */
export interface KeyPackage {
  ref: string;
  data: Uint8Array;
}

/** A key package taken by `claimKeyPackages`, with how many of its device's remain. */
export interface ClaimedKeyPackage extends KeyPackage {
  deviceId: string;
  /** The device's pool was empty: this is its last-resort package, handed out and kept. */
  lastResort: boolean;
  /** Key packages the device still holds (the last resort not counted). */
  remaining: number;
}

/**
 * Per device: its identity, a pool of one-time key packages (at most `max`, deduplicated by ref)
 * and one optional last-resort package. Claiming takes a package out of the pool atomically, so
 * two claimers never get the same one; with the pool empty the last resort is handed out and kept
 * (MLS, RFC 9420 §16.8). Rows are keyed by device, with the user beside them for deletion.
 */
export interface KeyStore {
  /** Sets (or replaces) the device's identity; returns it as now stored. */
  putIdentity(identity: Omit<DeviceIdentity, 'changedAt' | 'changed'>, at: number): Promise<DeviceIdentity>;
  /** The identities of those devices (devices without one are left out), in no particular order. */
  getIdentities(deviceIds: string[]): Promise<DeviceIdentity[]>;
  /**
   * Adds key packages to the device's pool: a ref the device already holds (or repeated in the
   * batch) is ignored, and so is what would take the pool over `max`. `lastResort` replaces the
   * device's last-resort package. Returns the refs added (in batch order) and the pool's size.
   */
  addKeyPackages(
    owner: { deviceId: string; userId: string }, packages: KeyPackage[], lastResort: KeyPackage | null, at: number, max: number,
  ): Promise<{ added: string[]; count: number }>;
  /** The device's pool size, and whether it has a last-resort package. */
  countKeyPackages(deviceId: string): Promise<{ count: number; lastResort: boolean }>;
  /**
   * Takes one key package of each device (the oldest), atomically per device: of concurrent
   * claimers, each gets a different one. A device with an empty pool gives its last-resort package
   * (kept); a device with neither is left out.
   */
  claimKeyPackages(deviceIds: string[]): Promise<ClaimedKeyPackage[]>;
  /** Removes the device's identity and key packages (device revocation); returns how many rows went. */
  deleteDeviceKeys(deviceId: string): Promise<number>;
  /** Removes the identities and key packages of every device of the user (account deletion); returns how many rows went. */
  deleteKeysOf(userId: string): Promise<number>;
}

/** Everything, as one adapter implements it. Consumers take the narrow port they need. */
export type Store = StoreLifecycle & AccountStore & ChatStore & MessageStore & ProgressStore & MediaStore
  & ProfileStore & RelationStore & PushStore & StatusStore & KeyStore;
