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
import type { Body } from '@parley/client-sdk';
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
}

export interface Member {
  chatId: string;
  userId: string;
  role: MemberRole;
  joinedAt: number;
  /** Every message of others up to here reached at least one of this user's devices. */
  deliveredSeq: number;
  /** This user has read everything up to here. */
  readSeq: number;
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
}

export interface AppendResult {
  message: StoredMessage;
  /** false when (senderDeviceId, clientMsgId) was already stored: nothing was written. */
  created: boolean;
}

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
}

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
  registrations: number;
}

/** Thrown by adapters for conditions the caller must handle; `code` is stable. */
export class StoreError extends Error {
  constructor(readonly code: 'DEVICE_LIMIT' | 'DUPLICATE' | 'NOT_FOUND', message: string) {
    super(message);
    this.name = 'StoreError';
  }
}

export interface StoreLifecycle {
  /** Creates tables / collections and indexes, and migrates older data. Idempotent. */
  init(): Promise<void>;
  close(): Promise<void>;
  /** Deletes messages with ts < before and watermark history older than that, and expired pending registrations. */
  expire(before: number, now: number): Promise<ExpireResult>;
}

/** Users, their devices, and pending phone registrations. */
export interface AccountStore {
  /** Returns the user with this phone, creating it with `newUserId` when there is none. */
  getOrCreateUserByPhone(phone: string, newUserId: string, now: number): Promise<{ user: User; created: boolean }>;
  getUser(userId: string): Promise<User | null>;
  getUserByPhone(phone: string): Promise<User | null>;
  /** Users for those phones that exist (contacts discovery); unknown phones are left out. */
  getUsersByPhones(phones: string[]): Promise<User[]>;

  /**
   * Adds a device; throws StoreError('DEVICE_LIMIT') when the user already has `maxActive` active
   * ones. Atomic. The device starts in each of the user's chats at that chat's last seq: it gets
   * what is sent from now on (history is `history()`).
   */
  addDevice(device: Omit<Device, 'revokedAt'>, maxActive: number): Promise<void>;
  /** Returns the device even when revoked (check `revokedAt`). */
  getDevice(deviceId: string): Promise<Device | null>;
  /** Active (not revoked) devices of a user, oldest first. */
  listDevices(userId: string): Promise<Device[]>;
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
}

/** Chats and their membership. */
export interface ChatStore {
  /** The direct chat of two users (the same for (a, b) and (b, a); a may equal b), created with `newChatId` if missing. */
  getOrCreateDirectChat(userA: string, userB: string, newChatId: string, now: number): Promise<Chat>;
  /**
   * Creates a group chat with these members (throws StoreError('DUPLICATE') if the id is taken).
   * Every active device of every member starts at seq 0.
   */
  createGroupChat(chatId: string, members: Array<{ userId: string; role: MemberRole }>, now: number): Promise<Chat>;
  getChat(chatId: string): Promise<Chat | null>;
  getMembers(chatId: string): Promise<Member[]>;
  getMember(chatId: string, userId: string): Promise<Member | null>;
  /**
   * Active devices of the chat's members, by deviceId, a page at a time: the fan-out walks a
   * 1,024-member group in bounded chunks with this.
   */
  chatDevices(chatId: string, afterDeviceId: string, limit: number): Promise<Array<{ deviceId: string; userId: string }>>;
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

/** Everything, as one adapter implements it. Consumers take the narrow port they need. */
export type Store = StoreLifecycle & AccountStore & ChatStore & MessageStore & ProgressStore;
