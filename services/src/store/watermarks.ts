/**
 * Watermark arithmetic shared by the store adapters (pure functions, unit-tested).
 */

/** What one device of a user received in a chat: every message meant for it in (sinceSeq, deliveredSeq]. */
export interface DeviceSpan {
  sinceSeq: number;
  deliveredSeq: number;
}

/**
 * A member's delivered watermark: the highest seq S such that every message up to S reached at
 * least one of the user's devices, given the current watermark and what each device received. A
 * device that joined the chat at seq L and received nothing yet covers nothing (its span is
 * empty), so linking a new device never marks older messages delivered.
 */
export function memberDelivered(current: number, spans: readonly DeviceSpan[]): number {
  let covered = current;
  const sorted = [...spans].sort((a, b) => a.sinceSeq - b.sinceSeq);
  let moved = true;
  while (moved) {
    moved = false;
    for (const d of sorted) {
      if (d.sinceSeq <= covered && d.deliveredSeq > covered) {
        covered = d.deliveredSeq;
        moved = true;
      }
    }
  }
  return covered;
}
