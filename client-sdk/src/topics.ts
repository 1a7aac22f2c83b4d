/**
 * Topic names. Every byte of a topic is sent with every PUBLISH on a mobile link, so they are
 * short; they are also the ACL's vocabulary (see docs/PROTOCOL.md).
 */
import { isId, isMsgId } from './ids.js';

export const INBOX = 'inbox/';
export const OUTBOX = 'outbox/';
export const RECEIPTS = 'receipts/';
export const LIVE = 'live/';

export const inboxTopic = (clientId: string): string => INBOX + clientId;
export const outboxTopic = (clientId: string): string => OUTBOX + clientId;
export const receiptTopic = (msgId: string): string => RECEIPTS + msgId;
export const liveTopic = (clientId: string): string => LIVE + clientId;

export type ParsedTopic =
  | { kind: 'inbox'; clientId: string }
  | { kind: 'outbox'; clientId: string }
  | { kind: 'receipt'; msgId: string }
  | { kind: 'live'; clientId: string };

/** Parses a topic Parley knows; anything else (including wildcards and extra levels) is null. */
export function parseTopic(topic: string): ParsedTopic | null {
  const slash = topic.indexOf('/');
  if (slash < 0) return null;
  const head = topic.slice(0, slash + 1);
  const rest = topic.slice(slash + 1);
  switch (head) {
    case INBOX:
      return isId(rest) ? { kind: 'inbox', clientId: rest } : null;
    case OUTBOX:
      return isId(rest) ? { kind: 'outbox', clientId: rest } : null;
    case LIVE:
      return isId(rest) ? { kind: 'live', clientId: rest } : null;
    case RECEIPTS:
      return isMsgId(rest) ? { kind: 'receipt', msgId: rest } : null;
    default:
      return null;
  }
}

/** Topics that only the server consumes: they never need routing between broker nodes. */
export function isServerBound(topic: string): boolean {
  return topic.startsWith(OUTBOX) || topic.startsWith(RECEIPTS);
}
