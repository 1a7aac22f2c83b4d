import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame } from '../../services/src/delivery/bus.js';

describe('delivery bus frame', () => {
  it('carries each device id and envelope bytes as they are, in order', () => {
    const items = [
      { deviceId: 'dAAAAAAAAAAAA', payload: new Uint8Array([1, 2, 3]) },
      { deviceId: 'dBBBBBBBBBBBB', payload: new Uint8Array(0) },
      { deviceId: 'dAAAAAAAAAAAA', payload: new Uint8Array(70_000).fill(7) },
    ];
    const back = decodeFrame(encodeFrame(items));
    expect(back.map((i) => i.deviceId)).toEqual(items.map((i) => i.deviceId));
    expect(back.map((i) => Array.from(i.payload.subarray(0, 4)))).toEqual([[1, 2, 3], [], [7, 7, 7, 7]]);
    expect(back[2]!.payload.length).toBe(70_000);
  });

  it('ignores a truncated tail instead of reading past the buffer', () => {
    const full = encodeFrame([{ deviceId: 'dAAAAAAAAAAAA', payload: new Uint8Array([9]) }, { deviceId: 'dBBBBBBBBBBBB', payload: new Uint8Array([8, 8]) }]);
    for (let cut = 0; cut < full.length; cut++) {
      const got = decodeFrame(full.subarray(0, cut));
      expect(got.length).toBeLessThanOrEqual(1);
      if (got.length === 1) expect(Array.from(got[0]!.payload)).toEqual([9]);
    }
  });
});
