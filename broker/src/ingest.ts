/**
 * The broker's ports. What it hands to the services: small records, made durable in batches
 * before the publishes that carried them are acknowledged (field names are one letter because
 * these records sit in Redis, as BullMQ job data, until a worker takes them). What it reads: the
 * stored messages and watermarks it delivers from (`PositionReader`).
 */
import type { Body, ChatEvent, MediaRef, TypingState } from '@parley/client-sdk/protocol';

export interface IngestMessage {
  /** sending device (clientId) */
  d: string;
  /** sending user */
  u: string;
  /**
   * The ordering key: the chat (a chatId, or for a 1:1 message the two userIds, sorted, joined by
   * '|'). Messages with one key are stored in the order the broker accepted them; different keys
   * are stored in parallel.
   */
  k: string;
  /** the `send` envelope exactly as received, base64 */
  p: string;
  /** broker receive time (ms) */
  t: number;
}

/** A device PUBACKed a message on its inbox: the delivered tick. */
export interface IngestAck {
  d: string;
  c: string;
  s: number;
  t: number;
}

/** A device published `receipts/<msgId>`: read up to that message. */
export interface IngestRead {
  d: string;
  u: string;
  m: string;
  t: number;
}

export interface IngestSink {
  messages(items: IngestMessage[]): Promise<void>;
  acks(items: IngestAck[]): Promise<void>;
  reads(items: IngestRead[]): Promise<void>;
}

/** A stored chat message (the services' store ports return this shape too). */
export interface StoredChatMessage {
  chatId: string;
  seq: number;
  senderUserId: string;
  senderDeviceId: string;
  /** The sending device's idempotency key. */
  clientMsgId: string;
  body: Body;
  /** Server time when stored (epoch ms). */
  ts: number;
  /** A group change (then the body is empty and senderDeviceId is ''): see ChatEvent. */
  event?: ChatEvent;
  /** A media message's attachment (the body is its caption). */
  media?: MediaRef;
}

/** What the delivery agent reads from the store (a subset of the services' ProgressStore). */
export interface PositionReader {
  /** Where the device stands in the chat; null when it is not a recipient there. */
  progress(deviceId: string, chatId: string): Promise<{ sinceSeq: number; deliveredSeq: number; untilSeq: number | null } | null>;
  /** A chat's messages with seq > afterSeq, ascending, at most `limit` (the device's own included). */
  history(chatId: string, afterSeq: number, limit: number): Promise<StoredChatMessage[]>;
  /** What the device has not acknowledged, over all its chats, in (chatId, seq) order, after `after`. */
  pending(deviceId: string, after: { chatId: string; seq: number } | null, limit: number): Promise<StoredChatMessage[]>;
  /** The device's messages of one chat in (afterSeq, beforeSeq). */
  pendingInChat(deviceId: string, chatId: string, afterSeq: number, beforeSeq: number, limit: number): Promise<StoredChatMessage[]>;
}

export type AuthResult = { ok: true; userId: string } | { ok: false; reason: 'bad' | 'limited' | 'unavailable' };

export interface DeviceAuthenticator {
  authenticate(deviceId: string, token: string, ip: string | undefined): Promise<AuthResult>;
}

/** One device connection on one broker node (`connection` is unique on the node and carries its connect time: connection-token.ts). */
export interface LiveConnection {
  deviceId: string;
  userId: string;
  nodeId: string;
  connection: string;
}

/**
 * Presence, watches and typing (services/src/live/): ephemeral, never stored or queued. What it
 * sends back (`typing` and `presence` envelopes for devices' `live/` topics) reaches the broker
 * nodes over the delivery bus and goes out through `DeliveryAgent.live`. Every method is called
 * without waiting and handles its own errors.
 */
export interface LiveSink {
  connected(c: LiveConnection): Promise<void>;
  /** The connection closed (cleanly, by keep-alive expiry, or taken over by a newer one). */
  disconnected(c: LiveConnection): Promise<void>;
  /**
   * Every refresh interval, with all the connections on this node: keeps them online, and takes
   * offline those of nodes that stopped refreshing (crashed) once their time is up.
   */
  refresh(nodeId: string, connections: LiveConnection[]): Promise<void>;
  /** The device's chats on screen (replacing its earlier watch). */
  watch(from: { deviceId: string; userId: string }, chatIds: string[]): Promise<void>;
  typing(from: { deviceId: string; userId: string }, chatId: string, state: TypingState): Promise<void>;
}

/**
 * Live delivery between workers and broker nodes (services/src/delivery/bus.ts): each node
 * receives the envelopes for the devices connected to it.
 */
export interface DeliveryBus {
  /**
   * Starts receiving this node's deliveries; `resync` is called when the subscription was lost and
   * is back (deliveries in between are gone: the devices here must catch up from the store).
   */
  listen(nodeId: string, deliver: (deviceId: string, payload: Uint8Array) => void, resync: () => void): Promise<{ close(): Promise<void> }>;
}

/** Where each connected device is, so workers send its live deliveries to that node only. */
export interface DeviceRoutes {
  /**
   * Records that the device's connection `connection` (unique on the node) is on node `nodeId`,
   * replacing any earlier route.
   */
  register(deviceId: string, nodeId: string, connection: string): Promise<void>;
  /** Records the route only where there is none (after Redis may have lost it), never taking one over. */
  restore(deviceId: string, nodeId: string, connection: string): Promise<void>;
  /** Removes the route if it is still that connection's (the device may be connected again since). */
  unregister(deviceId: string, nodeId: string, connection: string): Promise<void>;
}

/**
 * What the broker reports for metrics (services/src/metrics/ implements it with prom-client, so
 * this package stays free of it). Every method is synchronous, cheap and must not throw.
 */
export interface BrokerObserver {
  /** A device's PUBLISH arrived: its envelope kind (`read` on `receipts/`), `invalid` when refused undecoded. */
  published(kind: string): void;
  /** The PUBACK of an accepted publish went out (for a `send`, the sent tick) `ms` after it arrived. */
  acknowledged(kind: string, ms: number): void;
  /** An envelope was handed to a device's connection (live, catch-up, sync or `live/`). */
  delivered(kind: string): void;
  /** A device PUBACKed a chat message the store stamped `storedAt` (epoch ms): the delivered tick. */
  deliveryAcked(storedAt: number): void;
}

/**
 * Where the broker notes the errors it sends devices (services/src/admin/last-error.ts keeps each
 * device's last one for the dashboard). Called without waiting; must not throw.
 */
export interface ClientErrors {
  sent(deviceId: string, code: string): void;
}

/** Reports nothing: the default. */
export const NO_OBSERVER: BrokerObserver = Object.freeze({
  published: () => undefined, acknowledged: () => undefined, delivered: () => undefined, deliveryAcked: () => undefined,
});
