/**
 * `typing` from a device: ephemeral, handed to the live service (services/src/live/) without
 * waiting, never queued or stored. Throttled here too (the SDK already sends at most one per
 * TYPING_REPEAT_MS while the state holds), so a misbehaving client cannot turn keystrokes into
 * fan-out: a repeat of the same state in the same chat passes at most twice per repeat interval,
 * a change of state (and `stop`) passes, and all of a connection's typing at most 5 a second
 * (bursts of 10), whatever the chats: each costs the live service a watcher read.
 */
import type { Client } from 'aedes';
import { TYPING_REPEAT_MS, type TypingEnvelope, type TypingState } from '@parley/client-sdk/protocol';
import { ConnectionRate } from './rate.js';
import type { HandlerDeps, HandlerResult, Inbound } from './types.js';

/** Chats remembered per connection; beyond that the oldest is forgotten. */
const MAX_CHATS = 64;

export class TypingGate {
  readonly #last = new WeakMap<Client, Map<string, { state: TypingState; at: number }>>();
  readonly #rate = new ConnectionRate(5, 10);

  pass(client: Client, chatId: string, state: TypingState, at: number): boolean {
    let chats = this.#last.get(client);
    if (!chats) this.#last.set(client, (chats = new Map()));
    const prev = chats.get(chatId);
    if (prev && prev.state === state && (state === 'stop' || at - prev.at < TYPING_REPEAT_MS / 2)) return false;
    if (!this.#rate.take(client, at)) return false;
    chats.delete(chatId);
    chats.set(chatId, { state, at });
    if (chats.size > MAX_CHATS) chats.delete(chats.keys().next().value as string);
    return true;
  }
}

export function handleTyping(deps: HandlerDeps, m: Inbound, env: TypingEnvelope): HandlerResult {
  if (deps.live && deps.typingGate.pass(m.client, env.chatId, env.state, m.at)) {
    void deps.live.typing({ deviceId: m.client.id, userId: m.userId }, env.chatId, env.state);
  }
  return null;
}
