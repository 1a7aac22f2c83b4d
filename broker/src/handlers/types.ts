/**
 * One handler per envelope kind a device may send (MQTT.js keeps a handler per packet type the
 * same way). The broker's `authorizePublish` checks the ACL, the size and the envelope, then hands
 * it to the handler of its kind. A handler returns a promise when the publish must become durable
 * first (the PUBACK waits for it), or null when it was dealt with at once (PUBACK now). Ephemeral
 * kinds (`typing`, `watch`) go to the live service without ever reaching BullMQ.
 */
import type { Client } from 'aedes';
import type { Batcher } from '../batcher.js';
import type { DeliveryAgent } from '../delivery-agent.js';
import type { IngestMessage, IngestRead, LiveSink } from '../ingest.js';
import type { TypingGate } from './typing.js';
import type { WatchGate } from './watch.js';

/** A publish from an authenticated device. */
export interface Inbound {
  client: Client;
  userId: string;
  /** The payload exactly as received. */
  payload: Buffer;
  /** Broker receive time (ms). */
  at: number;
}

export interface HandlerDeps {
  messages: Batcher<IngestMessage>;
  reads: Batcher<IngestRead>;
  agent: DeliveryAgent;
  /** Presence, watches and typing; absent, those envelopes are accepted and dropped. */
  live: LiveSink | undefined;
  typingGate: TypingGate;
  watchGate: WatchGate;
}

export type HandlerResult = Promise<void> | null;
