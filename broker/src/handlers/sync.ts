/** `sync` on `outbox/`: answered from the store by this node's delivery agent; nothing to make durable. */
import type { SyncEnvelope } from '@parley/client-sdk/protocol';
import type { HandlerDeps, HandlerResult, Inbound } from './types.js';

export function handleSync(deps: HandlerDeps, m: Inbound, env: SyncEnvelope): HandlerResult {
  deps.agent.sync(m.client, env.chatId, env.after);
  return null;
}
