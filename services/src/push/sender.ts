/**
 * The `PushSender` port: one adapter per push service (Web Push, FCM HTTP v1, APNs), picked in the
 * composition root from the configuration. A sender never throws for what the service answers:
 * it maps the answer to an outcome the `push` job acts on (services/src/workers/push.ts).
 *
 * What is sent is a content-free wake-up: no sender, no text, at most `{ v: 1, chatId }`, and the
 * chat as the collapse key, so the push service keeps only the latest wake-up per chat. The device
 * wakes, connects and catches up from the store over MQTT like any reconnect.
 */
import type { PushKind, PushRegistration } from '../store/types.js';

/** The wake-up for one chat. */
export interface WakeUp {
  chatId: string;
  /** Replaces an earlier undelivered wake-up with the same key (Web Push Topic, FCM collapse_key, apns-collapse-id). */
  collapseKey: string;
  /** How long the push service keeps it for an unreachable device, seconds. */
  ttlSec: number;
}

/**
 * - ok: the push service accepted it;
 * - gone: the registration is dead (unsubscribed, uninstalled, token invalid): remove it;
 * - retry: a transient failure (429, 5xx, network): try again, not before `retryAfterMs` if given;
 * - failed: a permanent failure for this wake-up (a malformed request, a configuration problem).
 */
export type PushOutcome =
  | { result: 'ok' }
  | { result: 'gone'; reason: string }
  | { result: 'retry'; reason: string; retryAfterMs?: number }
  | { result: 'failed'; reason: string };

export interface PushSender<K extends PushKind = PushKind> {
  readonly kind: K;
  send(registration: Extract<PushRegistration, { kind: K }>, wake: WakeUp): Promise<PushOutcome>;
  close(): Promise<void>;
}

/** The configured senders, by kind (a kind without one is refused at registration). */
export type PushSenders = { [K in PushKind]?: PushSender<K> };

/** The payload every kind carries (as JSON, or as FCM/APNs data fields). */
export const wakePayload = (wake: WakeUp): { v: 1; chatId: string } => ({ v: 1, chatId: wake.chatId });

/** Longest wait a Retry-After may ask for before the wake-up is given up as stale. */
export const MAX_RETRY_AFTER_MS = 15 * 60_000;

/** A Retry-After header (seconds, or an HTTP date) in ms from `now`; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The outcome of a status that is neither ok nor "gone" for the service: 429 and 5xx retry, the rest fail. */
export function failureOutcome(status: number, reason: string, retryAfter?: string | null): PushOutcome {
  if (status === 429 || status >= 500) {
    const after = retryAfterMs(retryAfter);
    return { result: 'retry', reason, ...(after !== undefined ? { retryAfterMs: after } : {}) };
  }
  return { result: 'failed', reason };
}

/** A network error or timeout: transient. */
export const networkOutcome = (err: unknown): PushOutcome => ({
  result: 'retry', reason: `network: ${err instanceof Error ? err.message : String(err)}`,
});

/** Sends through the sender of the registration's kind; null when that kind is not configured. */
export function sendWith(senders: PushSenders, reg: PushRegistration, wake: WakeUp): Promise<PushOutcome> | null {
  switch (reg.kind) {
    case 'webpush': return senders.webpush ? senders.webpush.send(reg, wake) : null;
    case 'fcm': return senders.fcm ? senders.fcm.send(reg, wake) : null;
    case 'apns': return senders.apns ? senders.apns.send(reg, wake) : null;
  }
}

/** Closes every sender (their connections). */
export async function closeSenders(senders: PushSenders): Promise<void> {
  await Promise.all(Object.values(senders).map((s) => s.close()));
}
