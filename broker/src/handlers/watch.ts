/**
 * `watch` from a device: the chats on its screen, handed to the live service without waiting. The
 * SDK repeats an unchanged watch every WATCH_TTL_MS * 3/4; an identical one sooner than a second
 * after the last is dropped (each costs the live service a few store reads).
 */
import type { Client } from 'aedes';
import type { WatchEnvelope } from '@parley/client-sdk/protocol';
import type { HandlerDeps, HandlerResult, Inbound } from './types.js';

const MIN_REPEAT_MS = 1000;

export class WatchGate {
  readonly #last = new WeakMap<Client, { key: string; at: number }>();

  pass(client: Client, chatIds: readonly string[], at: number): boolean {
    const key = [...chatIds].sort().join(',');
    const prev = this.#last.get(client);
    if (prev && prev.key === key && at - prev.at < MIN_REPEAT_MS) return false;
    this.#last.set(client, { key, at });
    return true;
  }
}

export function handleWatch(deps: HandlerDeps, m: Inbound, env: WatchEnvelope): HandlerResult {
  if (deps.live && deps.watchGate.pass(m.client, env.chatIds, m.at)) {
    void deps.live.watch({ deviceId: m.client.id, userId: m.userId }, env.chatIds);
  }
  return null;
}
