/** The table from envelope kind to handler, for what a device may publish on its `outbox/`. */
import type { Envelope } from '@parley/client-sdk/protocol';
import { handleSend } from './send.js';
import { handleSync } from './sync.js';
import { handleTyping } from './typing.js';
import { handleWatch } from './watch.js';
import type { HandlerDeps, HandlerResult, Inbound } from './types.js';

export { handleRead } from './read.js';
export { TypingGate } from './typing.js';
export { WatchGate } from './watch.js';
export type { HandlerDeps, HandlerResult, Inbound } from './types.js';

type OutboxHandler = (deps: HandlerDeps, m: Inbound, env: Envelope) => HandlerResult;

/** Kinds a device may send; any other kind is refused with E_BAD_ENVELOPE. */
export const OUTBOX_HANDLERS: Readonly<Partial<Record<Envelope['kind'], OutboxHandler>>> = Object.freeze({
  send: (deps, m, env) => handleSend(deps, m, env as Extract<Envelope, { kind: 'send' }>),
  sync: (deps, m, env) => handleSync(deps, m, env as Extract<Envelope, { kind: 'sync' }>),
  typing: (deps, m, env) => handleTyping(deps, m, env as Extract<Envelope, { kind: 'typing' }>),
  watch: (deps, m, env) => handleWatch(deps, m, env as Extract<Envelope, { kind: 'watch' }>),
});
