/** A publish on `receipts/<msgId>` (empty, or a `read` envelope): read up to that message. */
import type { HandlerDeps, HandlerResult, Inbound } from './types.js';

export function handleRead(deps: HandlerDeps, m: Inbound, msgId: string): HandlerResult {
  return deps.reads.add({ d: m.client.id, u: m.userId, m: msgId, t: m.at });
}
