import { createServer, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { MemoryStateStore, ParleyClient, ParleyError, type StateStore } from '@parley/client-sdk';
import { OwnStatusTracker, Sequencer, TypedEmitter, seqStateKey, type TimerFunctions } from '@parley/client-sdk/protocol';

const CHAT = 'cAAAAAAAAAAAA';
const CHAT2 = 'gBBBBBBBBBBBB';

interface M {
  chatId: string;
  seq: number;
}

/** A manual clock: timers fire only when advance() passes them. */
class FakeTimers implements TimerFunctions {
  now = 0;
  #next = 1;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#timers.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }
  get pending(): number {
    return this.#timers.size;
  }
  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = until;
  }
}

function setup(opts: { state?: StateStore; gapTimeoutMs?: number; maxBuffered?: number } = {}) {
  const timers = new FakeTimers();
  const delivered: M[] = [];
  const syncs: Array<[string, number]> = [];
  const errors: unknown[] = [];
  const state = opts.state ?? new MemoryStateStore();
  const seq = new Sequencer<M>({
    deliver: (m) => delivered.push(m),
    requestSync: (chatId, afterSeq) => syncs.push([chatId, afterSeq]),
    onError: (e) => errors.push(e),
    state,
    timers,
    gapTimeoutMs: opts.gapTimeoutMs ?? 2000,
    ...(opts.maxBuffered !== undefined ? { maxBuffered: opts.maxBuffered } : {}),
  });
  const msg = (s: number, chatId = CHAT): void => seq.onMsg({ chatId, seq: s });
  const stored = (s: number, chatId = CHAT): void => seq.onStored({ chatId, seq: s });
  const seqs = (chatId = CHAT): number[] => delivered.filter((m) => m.chatId === chatId).map((m) => m.seq);
  return { seq, timers, delivered, syncs, errors, state, msg, stored, seqs };
}

describe('Sequencer: in order and duplicates', () => {
  it('delivers consecutive messages at once and persists lastSeq', () => {
    const t = setup();
    t.msg(1);
    t.msg(2);
    t.msg(3);
    expect(t.seqs()).toEqual([1, 2, 3]);
    expect(t.seq.lastSeq(CHAT)).toBe(3);
    expect(t.state.get(seqStateKey(CHAT))).toBe('3');
    expect(t.timers.pending).toBe(0);
  });

  it('drops duplicates (seq <= lastSeq) silently', () => {
    const t = setup();
    t.msg(1);
    t.msg(2);
    t.msg(1);
    t.msg(2);
    t.msg(3);
    t.msg(3);
    expect(t.seqs()).toEqual([1, 2, 3]);
    expect(t.syncs).toEqual([]);
  });

  it('with no state for the chat, delivers the first message whatever its seq', () => {
    const t = setup();
    t.msg(41);
    t.msg(42);
    t.msg(40); // below the first one seen: a duplicate from the device's point of view
    expect(t.seqs()).toEqual([41, 42]);
  });

  it('keeps chats independent', () => {
    const t = setup();
    t.msg(1, CHAT);
    t.msg(7, CHAT2);
    t.msg(3, CHAT); // gap in CHAT only
    t.msg(8, CHAT2);
    expect(t.seqs(CHAT)).toEqual([1]);
    expect(t.seqs(CHAT2)).toEqual([7, 8]);
    t.msg(2, CHAT);
    expect(t.seqs(CHAT)).toEqual([1, 2, 3]);
  });
});

describe('Sequencer: gaps', () => {
  it('buffers out-of-order messages and flushes them when the gap fills', () => {
    const t = setup();
    t.msg(1);
    t.msg(4);
    t.msg(3);
    t.msg(4); // duplicate of a buffered one
    expect(t.seqs()).toEqual([1]);
    expect(t.seq.buffered(CHAT)).toBe(2);
    expect(t.timers.pending).toBe(1);
    t.msg(2);
    expect(t.seqs()).toEqual([1, 2, 3, 4]);
    expect(t.seq.buffered(CHAT)).toBe(0);
    expect(t.timers.pending).toBe(0); // gap timer cancelled
    t.timers.advance(10_000);
    expect(t.syncs).toEqual([]);
  });

  it('asks for a sync after gapTimeoutMs, then again with a doubling delay while the gap stays open', () => {
    const t = setup({ gapTimeoutMs: 2000 });
    t.msg(1);
    t.msg(2);
    t.msg(5);
    t.timers.advance(1999);
    expect(t.syncs).toEqual([]);
    t.timers.advance(1);
    expect(t.syncs).toEqual([[CHAT, 2]]);
    t.msg(6); // more arrive behind the same gap: no extra sync for them
    t.timers.advance(3999);
    expect(t.syncs).toEqual([[CHAT, 2]]);
    // The resends (or the synced) were lost: it asks again after 2x, then 4x the timeout.
    t.timers.advance(1);
    expect(t.syncs).toEqual([[CHAT, 2], [CHAT, 2]]);
    t.timers.advance(8000);
    expect(t.syncs).toEqual([[CHAT, 2], [CHAT, 2], [CHAT, 2]]);
    expect(t.seqs()).toEqual([1, 2]);
    // the server resends the missing ones (and duplicates, which are dropped)
    t.msg(2);
    t.msg(3);
    t.msg(4);
    t.msg(5);
    expect(t.seqs()).toEqual([1, 2, 3, 4, 5, 6]);
    // a new gap later gets its own sync, after the first delay again
    t.msg(9);
    t.timers.advance(2000);
    expect(t.syncs.at(-1)).toEqual([CHAT, 6]);
    expect(t.syncs).toHaveLength(4);
  });

  it('during a full sync holds chats it knows nothing of, so older resent messages are not dropped', () => {
    const t = setup();
    t.seq.holdUnknownChats(10_000);
    t.msg(5); // live, newer
    t.msg(3); // resent from the store, older
    t.msg(4);
    expect(t.seqs()).toEqual([]);
    t.seq.onSynced(); // the full sync is done
    expect(t.seqs()).toEqual([3, 4, 5]);
    t.msg(6);
    expect(t.seqs()).toEqual([3, 4, 5, 6]);
  });

  it('releases held chats after maxHoldMs when the full synced never comes', () => {
    const t = setup();
    t.seq.holdUnknownChats(10_000);
    t.msg(8);
    t.msg(7);
    t.timers.advance(9_999);
    expect(t.seqs()).toEqual([]);
    t.timers.advance(1);
    expect(t.seqs()).toEqual([7, 8]);
  });

  it('a partly filled gap keeps its timer and asks from the new lastSeq', () => {
    const t = setup();
    t.msg(1);
    t.msg(4);
    t.timers.advance(1000);
    t.msg(2);
    expect(t.seqs()).toEqual([1, 2]);
    t.timers.advance(1000);
    expect(t.syncs).toEqual([[CHAT, 2]]);
  });

  it('delivers across a hole once the server ends its sync with the hole still open', () => {
    const t = setup();
    t.msg(1);
    t.msg(3);
    t.msg(4);
    t.seq.onSynced(CHAT); // not asked for yet: nothing happens
    expect(t.seqs()).toEqual([1]);
    t.timers.advance(2000);
    expect(t.syncs).toEqual([[CHAT, 1]]);
    t.seq.onSynced(); // a sync of every chat does not close a chat's gap
    t.seq.onSynced(CHAT2);
    expect(t.seqs()).toEqual([1]);
    // Everything the server resent came before its `synced`: the hole is still open, so nothing
    // the server has can fill it (whatever it resent).
    t.seq.onSynced(CHAT, 1);
    expect(t.seqs()).toEqual([1, 3, 4]);
    expect(t.seq.lastSeq(CHAT)).toBe(4);
    t.msg(2); // too late: a duplicate now
    t.msg(5);
    expect(t.seqs()).toEqual([1, 3, 4, 5]);
  });

  it('gives up on a gap when the per-chat buffer is full rather than lose what follows', () => {
    const t = setup({ maxBuffered: 3 });
    t.msg(1);
    t.msg(3);
    t.msg(4);
    t.msg(5);
    expect(t.seqs()).toEqual([1]);
    t.msg(7);
    expect(t.seqs()).toEqual([1, 3, 4, 5]);
    expect(t.seq.buffered(CHAT)).toBe(1); // 7 waits behind the new gap (6)
    t.msg(6);
    expect(t.seqs()).toEqual([1, 3, 4, 5, 6, 7]);
  });
});

describe('Sequencer: own messages (stored)', () => {
  it('advances lastSeq when stored is the next seq, ignores lower ones', () => {
    const t = setup();
    t.msg(1);
    t.stored(2);
    expect(t.seq.lastSeq(CHAT)).toBe(2);
    t.stored(2);
    t.stored(1);
    expect(t.seq.lastSeq(CHAT)).toBe(2);
    t.msg(3);
    expect(t.seqs()).toEqual([1, 3]);
    expect(t.state.get(seqStateKey(CHAT))).toBe('3');
  });

  it('treats a higher own seq as filled when the messages before it arrive', () => {
    const t = setup();
    t.msg(5);
    t.stored(7); // own message; 6 is someone else's, not here yet
    t.msg(8);
    expect(t.seqs()).toEqual([5]);
    t.msg(6);
    expect(t.seqs()).toEqual([5, 6, 8]);
    expect(t.seq.lastSeq(CHAT)).toBe(8);
    expect(t.timers.pending).toBe(0);
  });

  it('an own seq ahead is a gap too: it gets a sync if the missing message never comes', () => {
    const t = setup();
    t.msg(5);
    t.stored(7);
    t.timers.advance(2000);
    expect(t.syncs).toEqual([[CHAT, 5]]);
    t.msg(6);
    expect(t.seq.lastSeq(CHAT)).toBe(7);
  });

  it('own messages filling a gap with buffered messages after them', () => {
    const t = setup();
    t.msg(1);
    t.msg(4);
    t.stored(3);
    t.stored(2);
    expect(t.seqs()).toEqual([1, 4]);
    expect(t.seq.lastSeq(CHAT)).toBe(4);
  });

  it('with no state, stored seq 1 starts the chat; a higher one is only remembered', () => {
    const a = setup();
    a.stored(1);
    expect(a.seq.lastSeq(CHAT)).toBe(1);
    a.msg(3);
    expect(a.seqs()).toEqual([]);
    a.msg(2);
    expect(a.seqs()).toEqual([2, 3]);

    const b = setup();
    b.stored(10);
    expect(b.seq.lastSeq(CHAT)).toBeUndefined();
    expect(b.timers.pending).toBe(0);
    b.msg(9); // arrives after our own 10: still delivered, then 10 is skipped over as own
    expect(b.seqs()).toEqual([9]);
    expect(b.seq.lastSeq(CHAT)).toBe(10);
    b.msg(11);
    expect(b.seqs()).toEqual([9, 11]);
  });

  it('a first message above remembered own seqs drops them', () => {
    const t = setup();
    t.stored(3);
    t.msg(5);
    expect(t.seq.lastSeq(CHAT)).toBe(5);
    t.msg(6);
    expect(t.seqs()).toEqual([5, 6]);
    expect(t.timers.pending).toBe(0);
  });
});

describe('Sequencer: persisted state', () => {
  it('reloads lastSeq from the StateStore: duplicates after a restart are dropped', () => {
    const state = new MemoryStateStore();
    const first = setup({ state });
    first.msg(1);
    first.msg(2);
    first.msg(3);
    const second = setup({ state });
    second.msg(2);
    second.msg(3);
    second.msg(5);
    expect(second.seqs()).toEqual([]);
    second.msg(4);
    expect(second.seqs()).toEqual([4, 5]);
    expect(state.get(seqStateKey(CHAT))).toBe('5');
  });

  it('works with an async StateStore: input is queued while loading, writes are coalesced', async () => {
    const data = new Map<string, string>([[seqStateKey(CHAT), '10']]);
    const writes: string[] = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const state: StateStore = {
      get: async (k) => {
        await gate;
        return data.get(k);
      },
      set: async (k, v) => {
        await new Promise((r) => setTimeout(r, 5));
        writes.push(v);
        data.set(k, v);
      },
    };
    const t = setup({ state });
    t.msg(10);
    t.msg(12);
    t.msg(11);
    t.msg(13);
    expect(t.seqs()).toEqual([]); // still loading
    release();
    await t.seq.whenIdle();
    expect(t.seqs()).toEqual([11, 12, 13]);
    expect(data.get(seqStateKey(CHAT))).toBe('13');
    expect(writes.at(-1)).toBe('13');
    expect(writes.length).toBeLessThanOrEqual(2);
  });

  it('ignores garbage in the StateStore and reports store failures without stopping', async () => {
    const t1 = setup({ state: { get: () => 'not a number', set: () => {} } });
    t1.msg(7);
    expect(t1.seqs()).toEqual([7]);

    const t2 = setup({
      state: {
        get: () => Promise.reject(new Error('read failed')),
        set: () => {
          throw new Error('write failed');
        },
      },
    });
    t2.msg(3);
    t2.msg(4);
    await t2.seq.whenIdle();
    expect(t2.seqs()).toEqual([3, 4]);
    expect(t2.errors.map((e) => (e as Error).message)).toEqual(['read failed', 'write failed', 'write failed']);
  });

  it('a throwing deliver callback is reported and does not break ordering', () => {
    const errors: unknown[] = [];
    const got: number[] = [];
    const s = new Sequencer<M>({
      deliver: (m) => {
        got.push(m.seq);
        if (m.seq === 2) throw new Error('app bug');
      },
      requestSync: () => {},
      onError: (e) => errors.push(e),
      timers: new FakeTimers(),
    });
    s.onMsg({ chatId: CHAT, seq: 1 });
    s.onMsg({ chatId: CHAT, seq: 3 });
    s.onMsg({ chatId: CHAT, seq: 2 });
    expect(got).toEqual([1, 2, 3]);
    expect(errors).toHaveLength(1);
  });

  it('dispose stops timers and ignores later input', () => {
    const t = setup();
    t.msg(1);
    t.msg(3);
    expect(t.timers.pending).toBe(1);
    t.seq.dispose();
    expect(t.timers.pending).toBe(0);
    t.msg(2);
    expect(t.seqs()).toEqual([1]);
  });
});

describe('OwnStatusTracker', () => {
  it('advances each own message once per tick and forgets read ones', () => {
    const t = new OwnStatusTracker();
    expect(t.track(CHAT, 3, 'm3')).toEqual({ clientMsgId: 'm3', msgId: `${CHAT}.3`, chatId: CHAT, seq: 3, status: 'sent' });
    expect(t.track(CHAT, 3, 'm3')).toBeNull();
    t.track(CHAT, 5, 'm5');
    t.track(CHAT, 7); // from another of the user's devices: no clientMsgId
    expect(t.receipt(CHAT, 5, 'delivered').map((u) => [u.seq, u.status])).toEqual([[3, 'delivered'], [5, 'delivered']]);
    expect(t.receipt(CHAT, 5, 'delivered')).toEqual([]);
    expect(t.receipt(CHAT, 4, 'read').map((u) => [u.seq, u.status])).toEqual([[3, 'read']]);
    expect(t.pending(CHAT)).toBe(2);
    const up = t.receipt(CHAT, 9, 'read');
    expect(up.map((u) => [u.seq, u.status])).toEqual([[5, 'read'], [7, 'read']]);
    expect(up[1]).not.toHaveProperty('clientMsgId');
    expect(t.pending(CHAT)).toBe(0);
  });

  it('applies watermarks that arrived before the message was known', () => {
    const t = new OwnStatusTracker();
    t.receipt(CHAT, 10, 'delivered');
    expect(t.track(CHAT, 9)?.status).toBe('delivered');
    expect(t.track(CHAT, 11)?.status).toBe('sent');
    t.receipt(CHAT, 20, 'read');
    expect(t.track(CHAT, 12)?.status).toBe('read');
    expect(t.pending(CHAT)).toBe(0);
    expect(t.receipt(CHAT2, 1, 'read')).toEqual([]);
  });

  it('jumps straight to read with a single update', () => {
    const t = new OwnStatusTracker();
    t.track(CHAT, 1, 'a');
    expect(t.receipt(CHAT, 1, 'read').map((u) => u.status)).toEqual(['read']);
  });

  it('bounds what it remembers per chat', () => {
    const t = new OwnStatusTracker(2);
    t.track(CHAT, 1);
    t.track(CHAT, 2);
    t.track(CHAT, 3);
    expect(t.pending(CHAT)).toBe(2);
    expect(t.receipt(CHAT, 3, 'delivered').map((u) => u.seq)).toEqual([2, 3]);
  });
});

describe('TypedEmitter', () => {
  class E extends TypedEmitter<{ a: number; b: string }> {
    fire<K extends 'a' | 'b'>(k: K, v: { a: number; b: string }[K]): boolean {
      return this.emit(k, v);
    }
  }

  it('on / once / off / unsubscribe', () => {
    const e = new E();
    const got: unknown[] = [];
    const off = e.on('a', (n) => got.push(n));
    e.once('a', (n) => got.push(`once ${n}`));
    expect(e.fire('a', 1)).toBe(true);
    e.fire('a', 2);
    off();
    e.fire('a', 3);
    expect(got).toEqual([1, 'once 1', 2]);
    expect(e.fire('b', 'nobody')).toBe(false);
    expect(e.listenerCount('a')).toBe(0);
  });

  it('a throwing listener does not stop the others', async () => {
    const e = new E();
    const got: number[] = [];
    const thrown: unknown[] = [];
    const orig = globalThis.queueMicrotask;
    globalThis.queueMicrotask = (fn) => {
      try {
        fn();
      } catch (err) {
        thrown.push(err);
      }
    };
    try {
      e.on('a', () => {
        throw new Error('boom');
      });
      e.on('a', (n) => got.push(n));
      e.fire('a', 1);
    } finally {
      globalThis.queueMicrotask = orig;
    }
    expect(got).toEqual([1]);
    expect(thrown).toHaveLength(1);
  });
});

describe('ParleyClient without a broker', () => {
  const opts = { url: 'mqtt://127.0.0.1:1', deviceId: 'dAAAAAAAAAAAA', token: 'secret' };

  it('validates its options', () => {
    expect(() => new ParleyClient({ ...opts, deviceId: 'nope' })).toThrow(ParleyError);
    expect(() => new ParleyClient({ ...opts, token: '' })).toThrow(/token/);
    expect(() => new ParleyClient({ ...opts, gapTimeoutMs: -1 })).toThrow(ParleyError);
    const c = new ParleyClient(opts);
    expect(c.options.keepalive).toBe(30);
    expect(c.options.reconnectPeriodMs).toBe(500);
    expect(c.options.maxReconnectPeriodMs).toBe(15_000);
    expect(c.options.connectTimeoutMs).toBe(10_000);
    expect(c.options.gapTimeoutMs).toBe(2000);
    expect(c.options.state).toBeInstanceOf(MemoryStateStore);
    expect(Object.isFrozen(c.options)).toBe(true);
    expect(c.state).toBe('disconnected');
  });

  it('rejects invalid operations with E_VALIDATION', async () => {
    const c = new ParleyClient(opts);
    await expect(c.send('not-an-id', 'x')).rejects.toMatchObject({ code: 'E_VALIDATION' });
    await expect(c.send('uBBBBBBBBBBBB', 'x', { clientMsgId: 'has space' })).rejects.toMatchObject({ code: 'E_VALIDATION' });
    await expect(c.markRead('cAAAAAAAAAAAA')).rejects.toMatchObject({ code: 'E_VALIDATION' });
    await expect(c.sync(undefined, 3)).rejects.toMatchObject({ code: 'E_VALIDATION' });
    await c.close();
  });

  it('rejects connect() on an unusable URL with E_CONFIG and does not retry', async () => {
    const c = new ParleyClient({ ...opts, url: 'not a url' });
    const errors: string[] = [];
    c.on('error', (e) => errors.push(e.code));
    await expect(c.connect()).rejects.toMatchObject({ code: 'E_CONFIG' });
    expect(c.state).toBe('disconnected');
    expect(errors).toEqual(['E_CONFIG']);
    await c.close();
  });

  it('rejects connect() with E_TIMEOUT when no CONNACK comes, then closes cleanly', async () => {
    const silent = createServer(() => {}); // accepts TCP, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (silent.address() as AddressInfo).port;
      const c = new ParleyClient({ ...opts, url: `mqtt://127.0.0.1:${port}`, connectTimeoutMs: 300 });
      const states: string[] = [];
      c.on('state', (s) => states.push(s));
      const t0 = Date.now();
      await expect(c.connect()).rejects.toMatchObject({ code: 'E_TIMEOUT' });
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(states[0]).toBe('connecting');
      await c.close();
      expect(c.state).toBe('closed');
    } finally {
      silent.close();
    }
  });

  it('queues while never connected; close rejects pending work with E_CLOSED', async () => {
    const c = new ParleyClient(opts);
    const states: string[] = [];
    c.on('state', (s) => states.push(s));
    const sent = c.sendMessage('uBBBBBBBBBBBB', 'hello', { clientMsgId: 'abc' });
    const read = c.markRead(`${CHAT}.a`);
    const stored = c.waitStored('abc');
    await c.close();
    await expect(sent).rejects.toMatchObject({ code: 'E_CLOSED' });
    await expect(read).rejects.toMatchObject({ code: 'E_CLOSED' });
    await expect(stored).rejects.toMatchObject({ code: 'E_CLOSED' });
    await expect(c.connect()).rejects.toMatchObject({ code: 'E_CLOSED' });
    expect(c.state).toBe('closed');
    expect(states).toEqual(['closed']);
  });
});

describe('Sequencer: a hole the server does not resend', () => {
  function withHistory(history: Map<number, M>, ownSeqs: number[] = []) {
    const timers = new FakeTimers();
    const delivered: M[] = [];
    const holes: Array<[number, number]> = [];
    const syncs: number[] = [];
    const asked: Array<[number, number]> = [];
    const seq = new Sequencer<M>({
      deliver: (m) => delivered.push(m),
      requestSync: (_c, after) => syncs.push(after),
      fetchMissing: async (_c, after, before) => {
        asked.push([after, before]);
        return { messages: [...history.values()].filter((m) => m.seq > after && m.seq < before), own: ownSeqs.filter((q) => q > after && q < before) };
      },
      onHole: (_c, from, to) => holes.push([from, to]),
      gapTimeoutMs: 100,
      timers,
    });
    return { seq, timers, delivered, holes, syncs, asked };
  }

  it('reads it from history after an empty sync, and reports only what history lacks', async () => {
    // Seqs 3 and 4 are missing live; history has 3 (not 4: expired), and 5 is this device's own.
    const t = withHistory(new Map([[3, { chatId: CHAT, seq: 3 }]]), [5]);
    t.seq.onMsg({ chatId: CHAT, seq: 1 });
    t.seq.onMsg({ chatId: CHAT, seq: 2 });
    t.seq.onMsg({ chatId: CHAT, seq: 6 });
    t.timers.advance(100);
    expect(t.syncs).toEqual([2]);
    t.seq.onSynced(CHAT, 0);
    await t.seq.whenIdle();
    expect(t.asked).toEqual([[2, 6]]);
    expect(t.delivered.map((m) => m.seq)).toEqual([1, 2, 3, 6]);
    expect(t.holes).toEqual([[4, 4]]);
    t.seq.dispose();
  });

  it('skips nothing when history has the whole hole', async () => {
    const t = withHistory(new Map([[2, { chatId: CHAT, seq: 2 }], [3, { chatId: CHAT, seq: 3 }]]));
    t.seq.onMsg({ chatId: CHAT, seq: 1 });
    t.seq.onMsg({ chatId: CHAT, seq: 4 });
    t.timers.advance(100);
    t.seq.onSynced(CHAT, 0);
    await t.seq.whenIdle();
    expect(t.delivered.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
    expect(t.holes).toEqual([]);
    t.seq.dispose();
  });
});

describe('Sequencer: holes and restarts', () => {
  it('skips only the hole the sync was for: a gap that opens meanwhile gets its own sync', async () => {
    let release!: () => void;
    const timers = new FakeTimers();
    const delivered: number[] = [];
    const holes: Array<[number, number]> = [];
    const syncs: number[] = [];
    const seq = new Sequencer<M>({
      deliver: (m) => delivered.push(m.seq),
      requestSync: (_c, after) => syncs.push(after),
      // History has 2 but answers only when released.
      fetchMissing: (_c, after, before) => new Promise((resolve) => {
        release = () => resolve({ messages: after < 2 && before > 2 ? [{ chatId: CHAT, seq: 2 }] : [], own: [] });
      }),
      onHole: (_c, from, to) => holes.push([from, to]),
      gapTimeoutMs: 100,
      timers,
    });
    seq.onMsg({ chatId: CHAT, seq: 1 });
    seq.onMsg({ chatId: CHAT, seq: 3 });
    timers.advance(100);
    seq.onSynced(CHAT, 1);
    seq.onMsg({ chatId: CHAT, seq: 6 }); // a new gap (4, 5) while history is read
    release();
    await seq.whenIdle();
    expect(delivered).toEqual([1, 2, 3]);
    expect(holes).toEqual([]);
    timers.advance(250);
    expect(syncs).toEqual([1, 3]);
    seq.onMsg({ chatId: CHAT, seq: 4 });
    seq.onMsg({ chatId: CHAT, seq: 5 });
    expect(delivered).toEqual([1, 2, 3, 4, 5, 6]);
    seq.dispose();
  });

  it('restartAt: a device added back to a group goes on from its addition, with no hole', () => {
    const t = setup();
    t.msg(1);
    t.msg(2);
    t.seq.restartAt(CHAT, 9);
    t.msg(9);
    t.msg(10);
    expect(t.seqs()).toEqual([1, 2, 9, 10]);
    expect(t.syncs).toEqual([]);
    t.seq.restartAt(CHAT, 5); // never backwards
    t.msg(11);
    expect(t.seqs()).toEqual([1, 2, 9, 10, 11]);
  });
});
