/**
 * What the broker hands to the services: small records, made durable in batches before the
 * publishes that carried them are acknowledged. Field names are one letter because these records
 * sit in Redis (BullMQ job data) until a worker takes them.
 */
export interface IngestMessage {
  /** sending device (clientId) */
  d: string;
  /** sending user */
  u: string;
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

/** A device asked for what it has not received (all chats, or one chat after a seq). */
export interface IngestSync {
  d: string;
  u: string;
  c?: string;
  a?: number;
  t: number;
}

export interface IngestSink {
  messages(items: IngestMessage[]): Promise<void>;
  acks(items: IngestAck[]): Promise<void>;
  reads(items: IngestRead[]): Promise<void>;
  syncs(items: IngestSync[]): Promise<void>;
}

export type AuthResult = { ok: true; userId: string } | { ok: false; reason: 'bad' | 'limited' | 'unavailable' };

export interface DeviceAuthenticator {
  authenticate(deviceId: string, token: string, ip: string | undefined): Promise<AuthResult>;
}

export interface PresenceSink {
  connected(deviceId: string, userId: string): void;
  disconnected(deviceId: string, userId: string): void;
}
