/**
 * `watch` from a device: the chats on its screen, handed to the live service without waiting. The
 * SDK sends one when the screen changes and repeats it every WATCH_TTL_MS * 3/4; each costs the
 * live service store reads for up to 64 chats, so a connection gets one a second (bursts of 5,
 * for quick screen changes); more are dropped.
 */
import type { Client } from 'aedes';
import type { WatchEnvelope } from '@parley/client-sdk/protocol';
import { ConnectionRate } from './rate.js';
import type { HandlerDeps, HandlerResult, Inbound } from './types.js';

export class WatchGate {
  readonly #rate = new ConnectionRate(1, 5);

  pass(client: Client, at: number): boolean {
    return this.#rate.take(client, at);
  }
}

export function handleWatch(deps: HandlerDeps, m: Inbound, env: WatchEnvelope): HandlerResult {
  if (deps.live && deps.watchGate.pass(m.client, m.at)) {
    void deps.live.watch({ deviceId: m.client.id, userId: m.userId }, env.chatIds);
  }
  return null;
}
