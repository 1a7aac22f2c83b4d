/** `send` on `outbox/`: a new message, made durable in the next group-commit batch (PUBACK = sent tick). */
import { isUserId, type SendEnvelope } from '@parley/client-sdk/protocol';
import type { HandlerDeps, HandlerResult, Inbound } from './types.js';

/**
 * The ordering key of a message: its chat. A 1:1 message names the peer, not the chat (which may
 * not exist yet), so its key is the sorted pair of users, which is the same for both directions.
 */
export function orderingKey(userId: string, to: string): string {
  if (!isUserId(to)) return to;
  return to < userId ? `${to}|${userId}` : `${userId}|${to}`;
}

export function handleSend(deps: HandlerDeps, m: Inbound, env: SendEnvelope): HandlerResult {
  return deps.messages.add({ d: m.client.id, u: m.userId, k: orderingKey(m.userId, env.to), p: m.payload.toString('base64'), t: m.at });
}
