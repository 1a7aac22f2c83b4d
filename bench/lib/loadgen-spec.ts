/**
 * What the runner asks a load generator process (bench/loadgen.ts) to do, and what it answers.
 * The spec travels as a JSON file; the answers are JSON lines on the child's stdout:
 * `{"event": ...}` while running (the runner samples CPU and memory on them) and one final
 * `{"result": ...}`. Every loop is bounded in count and time, and every address is in 127.0.0.0/8.
 */
import type { HistData } from './hist.js';

export interface Endpoint {
  host: string;
  port: number;
  localAddress?: string;
  clientId: string;
  username?: string;
  password?: string;
}

/**
 * `raw`: opaque payloads (Mosquitto, plain Aedes); the timestamp is the first 8 bytes.
 * `parley`: `send` envelopes on outbox/<A>; the receiver counts `msg` envelopes on inbox/<B> and
 * reads the timestamp from the text body.
 */
export type Flavor = 'raw' | 'parley';

export interface Pair {
  pub: Endpoint;
  sub: Endpoint;
  /** Topic the publisher publishes to (outbox/<A> for Parley). */
  pubTopic: string;
  /** Topic the subscriber subscribes to (inbox/<B> for Parley). */
  subTopic: string;
  /** Parley: the publisher's own inbox (stored notices and ticks arrive there). */
  pubInbox?: string;
  /** Parley: the recipient userId put in the `send` envelope. */
  to?: string;
}

export interface RelaySpec {
  mode: 'relay';
  flavor: Flavor;
  pairs: Pair[];
  /** Publish payload size in bytes (for Parley: the size of the whole `send` envelope). */
  payloadBytes: number;
  /** QoS 1 publishes in flight (awaiting PUBACK) per publisher; the cap in fixed-rate mode too. */
  window: number;
  /** Total messages per second over all pairs; absent = as fast as the window allows. */
  rate?: number;
  warmupMs: number;
  durationMs: number;
  /** After publishing stops, how long to wait for the rest to arrive. */
  drainTimeoutMs: number;
  clean: boolean;
}

export interface RelayResult {
  sent: number;
  acked: number;
  received: number;
  duplicates: number;
  /** Sends skipped because the window was full (fixed-rate mode). */
  skipped: number;
  /** measure-start to the last publish. */
  publishMs: number;
  /** measure-start to the last message received (or the drain deadline). */
  elapsedMs: number;
  /** The load generator's own CPU time over the measured window. */
  cpuMs: number;
  latency: HistData;
  /** Publish to PUBACK (for Parley: the sent tick, once the message is durable in Redis). */
  ackLatency: HistData;
  warmupSent: number;
  warmupReceived: number;
  /** Non-`msg` envelopes seen by Parley publishers (stored, receipt). */
  otherEnvelopes: number;
  /**
   * Parley: arrivals with a higher seq than the last one of their pair but an earlier send time
   * (the store gave a later seq to a message sent earlier: per-chat order broken). Always 0 for
   * raw payloads, whose seq is the publisher's own counter.
   */
  misordered: number;
}

export interface DrainSpec {
  mode: 'drain';
  flavor: Flavor;
  pub: Endpoint;
  sub: Endpoint;
  pubTopic: string;
  subTopic: string;
  pubInbox?: string;
  to?: string;
  count: number;
  payloadBytes: number;
  window: number;
  timeoutMs: number;
}

export interface DrainResult {
  count: number;
  /** Time to publish all messages and get every PUBACK. */
  publishMs: number;
  /** Parley: time until the sender had a `stored` for every message (all stored for B). */
  queuedMs: number;
  sessionPresent: boolean;
  connackMs: number;
  firstMs: number;
  drainMs: number;
  received: number;
  duplicates: number;
}

export interface ConnClient {
  clientId: string;
  username?: string;
  password?: string;
  topic: string;
}

export interface ConnsSpec {
  mode: 'conns';
  host: string;
  port: number;
  localAddresses: string[];
  clients: ConnClient[];
  /** Handshakes (CONNECT..SUBACK) in flight at once. */
  concurrency: number;
  keepalive: number;
  clean: boolean;
  /** Give up connecting after this long. */
  timeoutMs: number;
  /** Close everything after this long even if the runner never says so. */
  holdMaxMs: number;
}

export interface ConnsResult {
  attempted: number;
  established: number;
  failed: number;
  connectMs: number;
  /** Connections that were still open when the runner asked to close. */
  stillOpen: number;
  firstError?: string;
}

/** One member of a group load: an MQTT connection (and for Parley a device of the group). */
export interface GroupMember {
  clientId: string;
  username?: string;
  password?: string;
}

/**
 * A phase of a group load. `paced`: one message every `intervalMs`, `count` of them, open loop.
 * `window`: as fast as the window allows for `durationMs`: at most `window` messages published
 * and not yet delivered to every receiver (which also caps the unacknowledged QoS 1 publishes).
 * `paced-until-stop`: one message every `intervalMs` until the runner writes `stop` (or `maxMs`).
 * Every phase ends by waiting (at most the spec's `drainTimeoutMs`) for its messages to arrive.
 */
export type GroupPhase =
  | { name: string; kind: 'paced'; intervalMs: number; count: number }
  | { name: string; kind: 'window'; window: number; durationMs: number }
  | { name: string; kind: 'paced-until-stop'; intervalMs: number; maxMs: number };

/**
 * One publisher and many receivers in one load generator process (so one clock times the
 * publish and every delivery). `members[0]` publishes. Raw: every member subscribes to `topic`
 * (with `selfDelivery` the publisher's own copy counts as a delivery). Parley: every member
 * subscribes to its own `inbox/`, the publisher sends `send` envelopes to `chatId`, and the other
 * members are the receivers.
 */
export interface GroupSpec {
  mode: 'group';
  flavor: Flavor;
  host: string;
  port: number;
  localAddresses: string[];
  members: GroupMember[];
  topic?: string;
  chatId?: string;
  selfDelivery: boolean;
  payloadBytes: number;
  clean: boolean;
  /** Handshakes (CONNECT..SUBACK) in flight at once. */
  connectConcurrency: number;
  phases: GroupPhase[];
  /** Most messages over all phases (bounds the per-receiver bookkeeping). */
  maxMessages: number;
  drainTimeoutMs: number;
}

export interface GroupPhaseResult {
  name: string;
  kind: GroupPhase['kind'];
  /** Messages published in this phase. */
  sent: number;
  acked: number;
  receivers: number;
  /** sent × receivers. */
  expected: number;
  /** Deliveries of this phase's messages (each message at each receiver once). */
  delivered: number;
  /** A message a receiver already had. */
  duplicates: number;
  /** A message that reached a receiver after a later message of the same publisher. */
  outOfOrder: number;
  /** Messages that reached every receiver. */
  complete: number;
  /** Phase start to the last publish. */
  publishMs: number;
  /** First publish to the last delivery of this phase's messages (or the drain deadline). */
  elapsedMs: number;
  /** Per complete message: publish to its last delivery. */
  toLast: HistData;
  /** Per message: publish to its first delivery. */
  toFirst: HistData;
  /** Every delivery: publish to arrival. */
  each: HistData;
  /** Sends skipped because the publisher's connection was closed or the message cap was reached. */
  capped: boolean;
  /** The load generator's CPU over the phase. */
  loadgenCpuMs: number;
  /** Parley: `stored` and `tally` (or `receipt`) envelopes the publisher got during the phase. */
  stored: number;
  receipts: number;
}

export interface GroupResult {
  connected: number;
  connectMs: number;
  phases: GroupPhaseResult[];
}

export type Spec = RelaySpec | DrainSpec | ConnsSpec | GroupSpec;

export type LoadgenEvent =
  | { event: 'measure-start'; t: number }
  | { event: 'measure-end'; t: number }
  | { event: 'phase'; name: string; state: 'start' | 'end'; t: number }
  | { event: 'established'; established: number; failed: number; connectMs: number }
  | { event: 'progress'; text: string };

/** Throws unless every host and source address is a loopback address (127.0.0.0/8). */
export function assertLoopback(addr: string): void {
  if (!/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(addr)) throw new Error(`refusing non-loopback address ${addr}`);
}
