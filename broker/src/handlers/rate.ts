/** Per-connection token buckets for the ephemeral kinds (cheap to send, not free to serve). */
import type { Client } from 'aedes';

export class ConnectionRate {
  readonly #buckets = new WeakMap<Client, { tokens: number; at: number }>();

  /** `perSec` tokens a second, up to `burst` saved. */
  constructor(readonly perSec: number, readonly burst: number) {}

  take(client: Client, at: number): boolean {
    let b = this.#buckets.get(client);
    if (!b) this.#buckets.set(client, (b = { tokens: this.burst, at }));
    b.tokens = Math.min(this.burst, b.tokens + ((at - b.at) / 1000) * this.perSec);
    b.at = at;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
