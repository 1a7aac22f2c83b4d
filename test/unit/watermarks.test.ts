import { describe, expect, it } from 'vitest';
import { memberDelivered } from '../../services/src/store/watermarks.js';

describe('memberDelivered', () => {
  it('is the furthest seq the devices cover together from the current watermark', () => {
    expect(memberDelivered(0, [{ sinceSeq: 0, deliveredSeq: 5 }, { sinceSeq: 0, deliveredSeq: 3 }])).toBe(5);
    // One device's span starts where the other's ends.
    expect(memberDelivered(0, [{ sinceSeq: 4, deliveredSeq: 9 }, { sinceSeq: 0, deliveredSeq: 4 }])).toBe(9);
  });

  it('does not let a device that joined later mark older messages delivered', () => {
    // Linked at seq 10, received 11..12; the old device only has up to 6: 7..10 reached nobody.
    expect(memberDelivered(6, [{ sinceSeq: 0, deliveredSeq: 6 }, { sinceSeq: 10, deliveredSeq: 12 }])).toBe(6);
    // A new device that received nothing covers nothing.
    expect(memberDelivered(2, [{ sinceSeq: 8, deliveredSeq: 8 }])).toBe(2);
  });

  it('steps over the user\'s own messages, which no device of that user needs', () => {
    // Own messages 1..3 sent from a device since revoked; the new device joined at 3 and got 4.
    expect(memberDelivered(0, [{ sinceSeq: 3, deliveredSeq: 4 }], [1, 2, 3])).toBe(4);
    // An own message in the middle of others': 2 is own, the device got 1, then 3 from seq 2 on.
    expect(memberDelivered(1, [{ sinceSeq: 2, deliveredSeq: 3 }], [2])).toBe(3);
    // Own messages alone move it only as far as they are contiguous.
    expect(memberDelivered(0, [], [1, 2, 4])).toBe(2);
  });

  it('never moves backwards', () => {
    expect(memberDelivered(7, [{ sinceSeq: 0, deliveredSeq: 3 }])).toBe(7);
    expect(memberDelivered(7, [])).toBe(7);
  });
});
