/**
 * Watermark arithmetic shared by the store adapters (pure functions, unit-tested).
 */

/** What one device of a user received in a chat: every message meant for it in (sinceSeq, deliveredSeq]. */
export interface DeviceSpan {
  sinceSeq: number;
  deliveredSeq: number;
}

/**
 * A member's delivered watermark: the highest seq S such that every message of others up to S
 * reached at least one of the user's devices, given the current watermark, what each device
 * received, and the seqs of the user's own messages above the current watermark (they need no
 * delivery to that user). A device that joined the chat at seq L and received nothing yet covers
 * nothing (its span is empty), so linking a new device never marks older messages delivered.
 */
export function memberDelivered(current: number, spans: readonly DeviceSpan[], ownSeqs: Iterable<number> = []): number {
  const own = new Set(ownSeqs);
  let covered = current;
  for (;;) {
    const before = covered;
    while (own.has(covered + 1)) covered++;
    for (const d of spans) if (d.sinceSeq <= covered && d.deliveredSeq > covered) covered = d.deliveredSeq;
    if (covered === before) return covered;
  }
}
