/**
 * The ACL of docs/PROTOCOL.md, as pure functions. Deny unless allowed: a device may subscribe only
 * to its own `inbox/` (QoS 1) and `live/` (QoS 0), and publish only to its own `outbox/` and to
 * `receipts/<msgId>`. Wildcards never match anything here because parseTopic rejects them.
 */
import { parseTopic } from '@parley/client-sdk/protocol';

export type SubscribeDecision = { allow: true; qos: 0 | 1 } | { allow: false };

export function decideSubscribe(clientId: string, topic: string): SubscribeDecision {
  const t = parseTopic(topic);
  if (!t) return { allow: false };
  if (t.kind === 'inbox' && t.clientId === clientId) return { allow: true, qos: 1 };
  if (t.kind === 'live' && t.clientId === clientId) return { allow: true, qos: 0 };
  return { allow: false };
}

export type PublishDecision =
  | { allow: true; kind: 'outbox' }
  | { allow: true; kind: 'receipt'; msgId: string }
  | { allow: false; reason: 'E_ACL_DENIED' | 'E_BAD_TOPIC' };

export function decidePublish(clientId: string, topic: string): PublishDecision {
  const t = parseTopic(topic);
  if (!t) return { allow: false, reason: 'E_BAD_TOPIC' };
  if (t.kind === 'outbox' && t.clientId === clientId) return { allow: true, kind: 'outbox' };
  if (t.kind === 'receipt') return { allow: true, kind: 'receipt', msgId: t.msgId };
  return { allow: false, reason: 'E_ACL_DENIED' };
}
