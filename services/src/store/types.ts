/**
 * The Store port: everything Parley keeps durably. Two adapters implement it — SQLite
 * (better-sqlite3, the embedded default) and MongoDB (production) — and one contract suite
 * (test/contract/store.contract.ts) runs on both. Times are epoch milliseconds.
 */
import type { Body } from '@parley/client-sdk';

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
  role: 'member' | 'admin';
  joinedAt: number;
  /** Every message of others up to here reached at least one of this user's devices. */
  deliveredSeq: number;
  /** This user has read everything up to here. */
  readSeq: number;
}

export interface StoredMessage {
  chatId: string;
  seq: number;
  senderUserId: string;
  senderDeviceId: string;
  clientMsgId: string;
  body: Body;
  /** Server time when stored. */
  ts: number;
}

export interface NewMessage {
  chatId: string;
  senderUserId: string;
  senderDeviceId: string;
  clientMsgId: string;
  body: Body;
  ts: number;
  /** Devices that must receive it (every device of every member but the sending one). */
  recipients: Array<{ deviceId: string; userId: string }>;
}

export interface AppendResult {
  message: StoredMessage;
  /** false when (senderDeviceId, clientMsgId) was already stored: nothing was written. */
  created: boolean;
  /** Recipient devices whose delivery row is still `pending` (not yet handed to the broker). */
  pending: Array<{ deviceId: string; userId: string }>;
}

export interface DeliveryKey {
  chatId: string;
  seq: number;
  deviceId: string;
}

export interface DeliveryAck extends DeliveryKey {
  at: number;
}

/** A user's delivered or read watermark in a chat moved forward to `seq`. */
export interface WatermarkChange {
  chatId: string;
  userId: string;
  seq: number;
  at: number;
}

export interface RecipientStatus {
  userId: string;
  deviceId: string;
  deliveredAt: number | null;
  readAt: number | null;
}

export interface MessageStatus {
  message: StoredMessage;
  recipients: RecipientStatus[];
}

export interface UndeliveredQuery {
  /** Only this chat (otherwise every chat, ordered by chatId then seq). */
  chatId?: string;
  /** Only seq > afterSeq (with chatId). */
  afterSeq?: number;
  /** Without chatId: only rows after this (chatId, seq) position, to page through every chat. */
  after?: { chatId: string; seq: number };
  limit: number;
}

export interface ExpireResult {
  messages: number;
  deliveries: number;
  registrations: number;
}

/** Thrown by adapters for conditions the caller must handle; `code` is stable. */
export class StoreError extends Error {
  constructor(readonly code: 'DEVICE_LIMIT' | 'DUPLICATE' | 'NOT_FOUND', message: string) {
    super(message);
    this.name = 'StoreError';
  }
}

export interface Store {
  /** Creates tables / collections and indexes. Idempotent. */
  init(): Promise<void>;
  close(): Promise<void>;

  /** Returns the user with this phone, creating it with `newUserId` when there is none. */
  getOrCreateUserByPhone(phone: string, newUserId: string, now: number): Promise<{ user: User; created: boolean }>;
  getUser(userId: string): Promise<User | null>;
  getUserByPhone(phone: string): Promise<User | null>;
  /** Users for those phones that exist (contacts discovery); unknown phones are left out. */
  getUsersByPhones(phones: string[]): Promise<User[]>;

  /** Adds a device; throws StoreError('DEVICE_LIMIT') when the user already has `maxActive` active ones. Atomic. */
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

  /** The direct chat of two users (the same for (a, b) and (b, a); a may equal b), created with `newChatId` if missing. */
  getOrCreateDirectChat(userA: string, userB: string, newChatId: string, now: number): Promise<Chat>;
  getChat(chatId: string): Promise<Chat | null>;
  getMembers(chatId: string): Promise<Member[]>;
  getMember(chatId: string, userId: string): Promise<Member | null>;

  /**
   * Stores a batch in one transaction, in order. Idempotent by (senderDeviceId, clientMsgId): a
   * message already stored is returned with created=false and is not stored again. Each new
   * message gets its chat's next seq atomically and a `pending` delivery row per recipient.
   */
  appendMessages(batch: NewMessage[]): Promise<AppendResult[]>;
  /** pending -> queued: the broker's persistence has the message for that device. */
  markQueued(keys: DeliveryKey[]): Promise<void>;
  /**
   * Sets deliveredAt on those delivery rows (first time only; unknown keys are ignored), then
   * advances each affected (chat, recipient user) delivered watermark to the highest seq S such
   * that every message of that chat up to S that has delivery rows for that user has at least one
   * of them delivered. Returns the watermarks that moved.
   */
  markDelivered(acks: DeliveryAck[]): Promise<WatermarkChange[]>;
  /**
   * Marks read (and delivered where not yet) every delivery row of `userId`'s devices in the chat
   * with seq <= upToSeq, and raises the member's readSeq. Returns the change, or null when
   * readSeq was already >= upToSeq or the user is not a member.
   */
  markRead(chatId: string, userId: string, upToSeq: number, at: number): Promise<WatermarkChange | null>;
  /** Whether the message was addressed to that device (a delivery row exists). */
  hasDelivery(key: DeliveryKey): Promise<boolean>;
  /** Messages with an undelivered row for that device, ordered by chatId then seq. */
  undelivered(deviceId: string, query: UndeliveredQuery): Promise<StoredMessage[]>;
  /** A chat's messages with seq > afterSeq, ascending, at most `limit`. */
  history(chatId: string, afterSeq: number, limit: number): Promise<StoredMessage[]>;
  getMessage(chatId: string, seq: number): Promise<StoredMessage | null>;
  messageStatus(chatId: string, seq: number): Promise<MessageStatus | null>;
  /** Deletes messages with ts < before with their delivery rows, and expired pending registrations. */
  expire(before: number, now: number): Promise<ExpireResult>;
}
