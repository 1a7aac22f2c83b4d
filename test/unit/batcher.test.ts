import { describe, expect, it } from 'vitest';
import { Batcher, BatcherClosedError } from '../../broker/src/index.js';

/** A write function whose calls the test completes by hand, and waits for. */
function controlledWrite() {
  const calls: Array<{ items: number[]; resolve: () => void; reject: (e: Error) => void }> = [];
  let notify: (() => void) | null = null;
  const write = (items: number[]): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      calls.push({ items: [...items], resolve, reject });
      notify?.();
    });
  const nthCall = async (n: number, timeoutMs = 2000) => {
    const deadline = Date.now() + timeoutMs;
    while (calls.length < n) {
      if (Date.now() > deadline) throw new Error(`write call ${n} did not happen (have ${calls.length})`);
      await new Promise<void>((r) => {
        notify = r;
        setTimeout(r, 20);
      });
    }
    return calls[n - 1]!;
  };
  return { write, calls, nthCall };
}

describe('Batcher (group commit)', () => {
  it('writes items that arrive together as one batch and resolves each add', async () => {
    const w = controlledWrite();
    const b = new Batcher<number>(w.write, { maxDelayMs: 5 });
    const adds = [1, 2, 3].map((i) => b.add(i));
    const c1 = await w.nthCall(1);
    expect(c1.items).toEqual([1, 2, 3]);
    c1.resolve();
    await expect(Promise.all(adds)).resolves.toBeDefined();
    await b.close();
  });

  it('keeps one write in flight: what arrives meanwhile goes in the next write, in order', async () => {
    const w = controlledWrite();
    const b = new Batcher<number>(w.write, { maxDelayMs: 0 });
    const first = b.add(1);
    const c1 = await w.nthCall(1);
    const later = [2, 3, 4, 5].map((i) => b.add(i));
    // Nothing else may be written while the first write is under way.
    await new Promise<void>((r) => setImmediate(r));
    expect(w.calls).toHaveLength(1);
    c1.resolve();
    await first;
    const c2 = await w.nthCall(2);
    expect(c2.items).toEqual([2, 3, 4, 5]);
    c2.resolve();
    await Promise.all(later);
    await b.close();
    expect(w.calls).toHaveLength(2);
  });

  it('never puts more than maxItems in one write', async () => {
    const w = controlledWrite();
    const b = new Batcher<number>(w.write, { maxItems: 3, maxDelayMs: 50 });
    const adds = [1, 2, 3, 4, 5, 6, 7].map((i) => b.add(i));
    const c1 = await w.nthCall(1);
    expect(c1.items).toEqual([1, 2, 3]);
    c1.resolve();
    const c2 = await w.nthCall(2);
    expect(c2.items).toEqual([4, 5, 6]);
    c2.resolve();
    const c3 = await w.nthCall(3);
    expect(c3.items).toEqual([7]);
    c3.resolve();
    await Promise.all(adds);
    await b.close();
  });

  it('rejects only the adds of a failed write; later batches still go', async () => {
    const w = controlledWrite();
    const b = new Batcher<number>(w.write, { maxDelayMs: 0 });
    const a1 = b.add(1);
    const c1 = await w.nthCall(1);
    const a2 = b.add(2);
    c1.reject(new Error('redis down'));
    await expect(a1).rejects.toThrow('redis down');
    const c2 = await w.nthCall(2);
    expect(c2.items).toEqual([2]);
    c2.resolve();
    await expect(a2).resolves.toBeUndefined();
    await b.close();
  });

  it('allows maxInFlight writes at once', async () => {
    const w = controlledWrite();
    const b = new Batcher<number>(w.write, { maxItems: 1, maxDelayMs: 0, maxInFlight: 2 });
    const adds = [1, 2, 3].map((i) => b.add(i));
    await w.nthCall(2);
    await new Promise<void>((r) => setImmediate(r));
    expect(w.calls.map((c) => c.items)).toEqual([[1], [2]]);
    w.calls[0]!.resolve();
    const c3 = await w.nthCall(3);
    expect(c3.items).toEqual([3]);
    w.calls[1]!.resolve();
    c3.resolve();
    await Promise.all(adds);
    await b.close();
  });

  it('close writes what waits, then refuses new items with BatcherClosedError', async () => {
    const w = controlledWrite();
    const b = new Batcher<number>(w.write, { maxDelayMs: 10_000 });
    const a = b.add(1);
    const closing = b.close();
    const c1 = await w.nthCall(1);
    expect(c1.items).toEqual([1]);
    c1.resolve();
    await closing;
    await a;
    await expect(b.add(2)).rejects.toBeInstanceOf(BatcherClosedError);
  });

  it('refuses nonsensical options', () => {
    expect(() => new Batcher<number>(async () => {}, { maxItems: 0 })).toThrow(RangeError);
    expect(() => new Batcher<number>(async () => {}, { maxInFlight: 0 })).toThrow(RangeError);
  });
});
