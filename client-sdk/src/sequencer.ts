/**
 * Per-chat ordering and de-duplication of incoming messages, and the tick (status) bookkeeping of
 * the device's own messages. Pure logic: no MQTT, no I/O other than the injected StateStore and
 * timer functions, so it is unit-testable and runs in browsers.
 *
 * Every message of a chat has a seq (1, 2, 3, ...) assigned by the server, including the messages
 * this device sent (it learns their seq from `stored` envelopes; they are never delivered back to
 * it as `msg`). The Sequencer keeps, per chat, `lastSeq` = the highest seq up to which everything
 * has been delivered to the application (or is known to be one of this device's own messages):
 *
 * - `msg` with seq <= lastSeq: a duplicate (redelivery, sync overlap) — dropped silently.
 * - lastSeq unknown (fresh state for that chat) or seq === lastSeq + 1: delivered at once, lastSeq
 *   advances, then buffered successors (and own seqs) that are now contiguous are flushed.
 * - seq > lastSeq + 1: buffered (at most `maxBuffered` per chat) and a gap timer starts. If the gap
 *   is still open after `gapTimeoutMs`, `requestSync(chatId, lastSeq)` is called once; the server
 *   resends what this device has not acknowledged, duplicates are dropped.
 * - the server ends a chat sync with `synced {chatId, count}` after everything it resent, on the
 *   same connection, so by then every resent message has arrived. If the hole below the lowest
 *   buffered seq is still open, the server could not fill it (an expired message, one from before
 *   this device's window): with `fetchMissing` (the SDK's history over HTTP) it is read from
 *   history; what is still missing is reported through `onHole` and skipped, and the messages
 *   after it are delivered. Only that hole is skipped: a later gap gets its own sync. A lost
 *   resend or a lost `synced` (the connection dropped) leaves the gap timer running: it asks again,
 *   the delay doubling up to 16 x gapTimeoutMs, so the chat never stalls and never skips silently.
 *   The same skip happens if the buffer bound is reached.
 * - `restartAt(chatId, seq)`: the device (re)joined the chat at `seq` (it was added back to a
 *   group): what came before is not for it, so there is no hole to fill.
 * - `stored` (own message): seq === lastSeq + 1 advances and flushes; lower is ignored; higher is
 *   remembered as an own seq, so that when the messages before it arrive the gap logic treats it as
 *   filled. With an unknown lastSeq it is only remembered (seq 1 advances: nothing can precede it).
 *
 * lastSeq is loaded lazily from the StateStore (key `seq:<chatId>`) the first time a chat is seen,
 * and written back after each delivery (writes are coalesced per chat when the store is async).
 */
import type { MsgEnvelope } from './codec.js';
import { msgIdOf } from './ids.js';

/**
 * Where the SDK keeps small per-device state (today: the last delivered seq of each chat, under
 * `seq:<chatId>`). Sync or async: e.g. localStorage, IndexedDB, a file, SQLite.
 */
export interface StateStore {
  get(key: string): string | undefined | Promise<string | undefined>;
  set(key: string, value: string): void | Promise<void>;
}

/** The default StateStore: a Map, lost when the process ends (every chat then starts fresh). */
export class MemoryStateStore implements StateStore {
  readonly #map = new Map<string, string>();
  get(key: string): string | undefined {
    return this.#map.get(key);
  }
  set(key: string, value: string): void {
    this.#map.set(key, value);
  }
}

/** The StateStore key of a chat's last delivered seq. */
export const seqStateKey = (chatId: string): string => `seq:${chatId}`;

/** Timer functions, injectable for tests. */
export interface TimerFunctions {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const DEFAULT_TIMERS: TimerFunctions = Object.freeze({
  setTimeout: (fn: () => void, ms: number): unknown => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle: unknown): void => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
});

/** What the Sequencer needs of a message: its chat and position. */
export interface Sequenced {
  chatId: string;
  seq: number;
}

export interface SequencerOptions<M extends Sequenced> {
  /** Called once per message, in seq order per chat, never twice for one seq. */
  deliver: (msg: M) => void;
  /** Called when a gap stayed open for `gapTimeoutMs`: resend what follows `afterSeq`. */
  requestSync: (chatId: string, afterSeq: number) => void;
  /**
   * Reads a hole (afterSeq, beforeSeq) that a sync did not fill from history: the messages found,
   * and the seqs that are this device's own. Optional.
   */
  fetchMissing?: (chatId: string, afterSeq: number, beforeSeq: number) => Promise<{ messages: M[]; own: number[] }>;
  /** Seqs fromSeq..toSeq of a chat are skipped: nothing (sync, history) could fill them. */
  onHole?: (chatId: string, fromSeq: number, toSeq: number) => void;
  /** Errors of the StateStore or of the callbacks; the Sequencer carries on regardless. */
  onError?: (err: unknown) => void;
  /** @defaultValue a {@link MemoryStateStore} */
  state?: StateStore;
  /** @defaultValue 2000 */
  gapTimeoutMs?: number;
  /** Most out-of-order messages (and own seqs) held per chat. @defaultValue 10000 */
  maxBuffered?: number;
  /** @defaultValue globalThis.setTimeout / clearTimeout */
  timers?: TimerFunctions;
}

interface ChatState<M> {
  loaded: boolean;
  lastSeq: number | undefined;
  /** Work that arrived while lastSeq was loading, in arrival order. */
  waiting: Array<(c: ChatState<M>) => void>;
  /** Messages above lastSeq + 1, by seq. */
  buffer: Map<number, M>;
  /** Own seqs above lastSeq + 1 (from `stored`). */
  own: Set<number>;
  gapTimer: unknown;
  /** A sync was asked for the current gap. */
  syncRequested: boolean;
  /** History is being read for the current gap. */
  fetching: boolean;
  /** Syncs asked for the current gap (the retry delay doubles with each). */
  syncAttempts: number;
  /** The value last written to the StateStore. */
  persisted: number | undefined;
  writing: boolean;
}

const isPromiseLike = <T>(v: unknown): v is PromiseLike<T> =>
  typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';

function parseSeq(raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

export class Sequencer<M extends Sequenced = MsgEnvelope> {
  readonly #deliver: (msg: M) => void;
  readonly #requestSync: (chatId: string, afterSeq: number) => void;
  readonly #fetchMissing: SequencerOptions<M>['fetchMissing'];
  readonly #onHole: (chatId: string, fromSeq: number, toSeq: number) => void;
  readonly #onError: (err: unknown) => void;
  readonly #state: StateStore;
  readonly #gapTimeoutMs: number;
  readonly #maxBuffered: number;
  readonly #timers: TimerFunctions;
  #holding = false;
  #holdTimer: unknown = undefined;
  readonly #chats = new Map<string, ChatState<M>>();
  readonly #pending = new Set<Promise<unknown>>();
  #disposed = false;

  constructor(options: SequencerOptions<M>) {
    this.#deliver = options.deliver;
    this.#requestSync = options.requestSync;
    this.#fetchMissing = options.fetchMissing;
    this.#onHole = options.onHole ?? (() => {});
    this.#onError = options.onError ?? (() => {});
    this.#state = options.state ?? new MemoryStateStore();
    this.#gapTimeoutMs = options.gapTimeoutMs ?? 2000;
    this.#maxBuffered = Math.max(1, options.maxBuffered ?? 10_000);
    this.#timers = options.timers ?? DEFAULT_TIMERS;
  }

  /**
   * A full sync is under way (the broker had no session for this device): older messages will
   * arrive from the store *after* newer live ones. Until the full `synced` (or `maxHoldMs`), a
   * chat with no known lastSeq holds what arrives instead of taking the first seq as its start —
   * otherwise the older ones would then be dropped as duplicates.
   */
  holdUnknownChats(maxHoldMs: number): void {
    this.#holding = true;
    if (this.#holdTimer !== undefined) this.#timers.clearTimeout(this.#holdTimer);
    this.#holdTimer = this.#timers.setTimeout(() => this.#releaseHeld(), maxHoldMs);
  }

  #releaseHeld(): void {
    if (!this.#holding) return;
    this.#holding = false;
    if (this.#holdTimer !== undefined) this.#timers.clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
    for (const [chatId, c] of this.#chats) {
      if (!c.loaded || c.lastSeq !== undefined || c.buffer.size === 0) continue;
      this.#run(chatId, (chat) => {
        if (chat.lastSeq !== undefined || chat.buffer.size === 0) return;
        chat.lastSeq = Math.min(...chat.buffer.keys()) - 1;
        this.#prune(chat);
        this.#flush(chat);
        this.#settle(chatId, chat);
      });
    }
  }

  /** Feeds a message (a `msg` envelope) received on the inbox. */
  onMsg(msg: M): void {
    this.#run(msg.chatId, (c) => {
      if (c.lastSeq !== undefined && msg.seq <= c.lastSeq) return; // duplicate
      if (c.lastSeq === undefined && this.#holding) {
        c.buffer.set(msg.seq, msg);
        return;
      }
      if (c.lastSeq === undefined) {
        this.#emit(c, msg);
        this.#prune(c);
        this.#flush(c);
      } else if (msg.seq === c.lastSeq + 1) {
        this.#emit(c, msg);
        this.#flush(c);
      } else if (!c.buffer.has(msg.seq)) {
        if (c.buffer.size + c.own.size >= this.#maxBuffered) {
          // The gap has not been filled in 10k messages: give up on it rather than lose the rest.
          this.#skipGap(msg.chatId, c);
          if (c.lastSeq !== undefined && msg.seq <= c.lastSeq) return this.#settle(msg.chatId, c);
          if (msg.seq === (c.lastSeq ?? 0) + 1) {
            this.#emit(c, msg);
            this.#flush(c);
          } else c.buffer.set(msg.seq, msg);
        } else c.buffer.set(msg.seq, msg);
      }
      this.#settle(msg.chatId, c);
    });
  }

  /** Feeds the seq of one of this device's own messages (a `stored` envelope). */
  onStored(stored: Sequenced): void {
    const { chatId, seq } = stored;
    this.#run(chatId, (c) => {
      if (c.lastSeq === undefined) {
        if (seq === 1) {
          c.lastSeq = 1;
          this.#prune(c);
          this.#flush(c);
        } else if (c.own.size < this.#maxBuffered) c.own.add(seq);
      } else if (seq <= c.lastSeq) {
        return;
      } else if (seq === c.lastSeq + 1) {
        c.lastSeq = seq;
        this.#flush(c);
      } else if (!c.buffer.has(seq) && c.buffer.size + c.own.size < this.#maxBuffered) {
        c.own.add(seq);
      }
      this.#settle(chatId, c);
    });
  }

  /**
   * Feeds a `synced` envelope. When it closes a chat sync this Sequencer asked for and the hole
   * below the lowest buffered seq is still open, the server could not fill it: it is read from
   * history (`fetchMissing`), and what is still missing is reported (`onHole`) and skipped.
   * `count` (how many the server resent) is informational.
   */
  onSynced(chatId?: string, _count = 0): void {
    if (chatId === undefined) {
      this.#releaseHeld();
      return;
    }
    const c = this.#chats.get(chatId);
    if (!c) return;
    this.#run(chatId, (chat) => {
      if (!chat.syncRequested || !this.#hasGap(chat) || chat.fetching) return;
      const after = chat.lastSeq ?? 0;
      const before = Math.min(...chat.buffer.keys(), ...chat.own);
      if (!this.#fetchMissing) {
        this.#skipTo(chatId, chat, before - 1);
        this.#settle(chatId, chat);
        return;
      }
      chat.fetching = true;
      const done = (found: { messages: M[]; own: number[] }): void => this.#run(chatId, (c) => {
        c.fetching = false;
        for (const m of found.messages) if (m.seq > (c.lastSeq ?? 0) && m.seq < before) c.buffer.set(m.seq, m);
        for (const q of found.own) if (q > (c.lastSeq ?? 0) && q < before) c.own.add(q);
        this.#flush(c);
        // Only the hole this fetch was for; a gap that opened meanwhile gets its own sync.
        this.#skipTo(chatId, c, before - 1);
        this.#settle(chatId, c);
      });
      this.#track(this.#fetchMissing(chatId, after, before).then(done, (err: unknown) => {
        // History unreachable: the gap timer asks again later (nothing is skipped on an error).
        this.#onError(err);
        this.#run(chatId, (c) => { c.fetching = false; this.#settle(chatId, c); });
      }));
    });
  }

  /**
   * The device (re)joined the chat with message `seq` (e.g. added back to a group): nothing before
   * it is meant for it, so the chat goes on from there without a hole.
   */
  restartAt(chatId: string, seq: number): void {
    this.#run(chatId, (c) => {
      if (c.lastSeq !== undefined && c.lastSeq >= seq - 1) return;
      c.lastSeq = seq - 1;
      this.#prune(c);
      this.#flush(c);
      this.#settle(chatId, c);
    });
  }

  /** The last delivered seq of a chat, if known (loaded) — for diagnostics and tests. */
  lastSeq(chatId: string): number | undefined {
    return this.#chats.get(chatId)?.lastSeq;
  }

  /** How many messages of a chat are buffered behind a gap. */
  buffered(chatId: string): number {
    return this.#chats.get(chatId)?.buffer.size ?? 0;
  }

  /** Resolves once no StateStore read or write is in flight. */
  async whenIdle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /** Stops the timers; later input is ignored. */
  dispose(): void {
    this.#disposed = true;
    if (this.#holdTimer !== undefined) this.#timers.clearTimeout(this.#holdTimer);
    for (const c of this.#chats.values()) this.#clearGapTimer(c);
  }

  // --- internals -------------------------------------------------------------------------------

  #run(chatId: string, fn: (c: ChatState<M>) => void): void {
    if (this.#disposed) return;
    let c = this.#chats.get(chatId);
    if (!c) {
      c = {
        loaded: false, lastSeq: undefined, waiting: [], buffer: new Map(), own: new Set(),
        gapTimer: undefined, syncRequested: false, fetching: false, syncAttempts: 0, persisted: undefined, writing: false,
      };
      this.#chats.set(chatId, c);
      c.waiting.push(fn);
      this.#load(chatId, c);
      return;
    }
    if (c.loaded) fn(c);
    else c.waiting.push(fn);
  }

  #load(chatId: string, c: ChatState<M>): void {
    const done = (raw: string | undefined): void => {
      c.lastSeq = parseSeq(raw);
      c.persisted = c.lastSeq;
      c.loaded = true;
      const waiting = c.waiting;
      c.waiting = [];
      for (const fn of waiting) {
        if (this.#disposed) return;
        fn(c);
      }
    };
    let result: string | undefined | Promise<string | undefined>;
    try {
      result = this.#state.get(seqStateKey(chatId));
    } catch (err) {
      this.#onError(err);
      result = undefined;
    }
    if (isPromiseLike<string | undefined>(result)) {
      this.#track(
        Promise.resolve(result).then(done, (err: unknown) => {
          this.#onError(err);
          done(undefined);
        }),
      );
    } else {
      done(result);
    }
  }

  #emit(c: ChatState<M>, msg: M): void {
    c.lastSeq = msg.seq;
    try {
      this.#deliver(msg);
    } catch (err) {
      this.#onError(err);
    }
  }

  /** Delivers what became contiguous after lastSeq. */
  #flush(c: ChatState<M>): void {
    for (;;) {
      const next = (c.lastSeq ?? 0) + 1;
      const msg = c.buffer.get(next);
      if (msg) {
        c.buffer.delete(next);
        this.#emit(c, msg);
      } else if (c.own.delete(next)) {
        c.lastSeq = next;
      } else {
        return;
      }
    }
  }

  /** Drops what lastSeq already covers (after lastSeq jumped rather than stepped). */
  #prune(c: ChatState<M>): void {
    const last = c.lastSeq ?? 0;
    for (const seq of c.buffer.keys()) if (seq <= last) c.buffer.delete(seq);
    for (const seq of c.own) if (seq <= last) c.own.delete(seq);
  }

  /**
   * Goes on to `upTo` across what is missing (each missing run reported through `onHole`),
   * delivering what is buffered on the way, then what became contiguous.
   */
  #skipTo(chatId: string, c: ChatState<M>, upTo: number): void {
    let cur = c.lastSeq ?? 0;
    if (upTo <= cur) return;
    const hole = (from: number, to: number): void => {
      try {
        this.#onHole(chatId, from, to);
      } catch (err) {
        this.#onError(err);
      }
    };
    const known = [...c.buffer.keys(), ...c.own].filter((q) => q > cur && q <= upTo).sort((a, b) => a - b);
    for (const q of known) {
      if (q > cur + 1) hole(cur + 1, q - 1);
      const msg = c.buffer.get(q);
      if (msg) {
        c.buffer.delete(q);
        this.#emit(c, msg);
      } else {
        c.own.delete(q);
        c.lastSeq = q;
      }
      cur = q;
    }
    if (upTo > cur) hole(cur + 1, upTo);
    c.lastSeq = upTo;
    this.#prune(c);
    this.#flush(c);
  }

  /** Delivers everything buffered in seq order, across the holes (each reported through `onHole`). */
  #skipGap(chatId: string, c: ChatState<M>): void {
    const seqs = [...c.buffer.keys(), ...c.own].sort((a, b) => a - b);
    for (const seq of seqs) {
      if (c.lastSeq !== undefined && seq <= c.lastSeq) continue;
      if (c.lastSeq !== undefined && seq > c.lastSeq + 1) {
        try {
          this.#onHole(chatId, c.lastSeq + 1, seq - 1);
        } catch (err) {
          this.#onError(err);
        }
      }
      const msg = c.buffer.get(seq);
      if (msg) this.#emit(c, msg);
      else c.lastSeq = seq;
    }
    c.buffer.clear();
    c.own.clear();
  }

  #hasGap(c: ChatState<M>): boolean {
    return c.lastSeq !== undefined && (c.buffer.size > 0 || c.own.size > 0);
  }

  /** After any change: persist lastSeq, start or stop the gap timer. */
  #settle(chatId: string, c: ChatState<M>): void {
    this.#persist(chatId, c);
    if (!this.#hasGap(c)) {
      this.#clearGapTimer(c);
      c.syncRequested = false;
      c.syncAttempts = 0;
      return;
    }
    if (c.gapTimer !== undefined) return;
    const delay = this.#gapTimeoutMs * 2 ** Math.min(c.syncAttempts, 4);
    c.gapTimer = this.#timers.setTimeout(() => {
      c.gapTimer = undefined;
      if (this.#disposed || !this.#hasGap(c)) return;
      c.syncRequested = true;
      c.syncAttempts++;
      try {
        this.#requestSync(chatId, c.lastSeq ?? 0);
      } catch (err) {
        this.#onError(err);
      }
      // Ask again if this sync's resends (or its `synced`) get lost.
      this.#settle(chatId, c);
    }, delay);
  }

  #clearGapTimer(c: ChatState<M>): void {
    if (c.gapTimer !== undefined) {
      this.#timers.clearTimeout(c.gapTimer);
      c.gapTimer = undefined;
    }
  }

  #persist(chatId: string, c: ChatState<M>): void {
    if (c.writing || c.lastSeq === undefined || c.lastSeq === c.persisted) return;
    const value = c.lastSeq;
    let result: void | Promise<void>;
    try {
      result = this.#state.set(seqStateKey(chatId), String(value));
    } catch (err) {
      this.#onError(err);
      c.persisted = value; // retried with the next advance, not in a loop
      return;
    }
    if (!isPromiseLike<void>(result)) {
      c.persisted = value;
      return;
    }
    c.writing = true;
    this.#track(
      Promise.resolve(result)
        .catch((err: unknown) => this.#onError(err))
        .finally(() => {
          c.persisted = value;
          c.writing = false;
          this.#persist(chatId, c); // lastSeq may have moved meanwhile
        }),
    );
  }

  #track(p: Promise<unknown>): void {
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }
}

// --- own messages' ticks ---------------------------------------------------------------------------

export type OwnStatus = 'sent' | 'delivered' | 'read';

/** A tick of one of the user's own messages moved forward. */
export interface StatusUpdate {
  /** Known for messages sent from this device; absent for those sent from the user's other devices. */
  clientMsgId?: string;
  msgId: string;
  chatId: string;
  seq: number;
  status: OwnStatus;
}

const RANK: Record<OwnStatus, number> = { sent: 0, delivered: 1, read: 2 };

interface OwnChat {
  /** Own messages not yet read, by seq. */
  own: Map<number, { clientMsgId: string | undefined; status: OwnStatus }>;
  /** Watermarks of receipts by others. */
  delivered: number;
  read: number;
}

/**
 * Remembers the user's own messages per chat by seq and turns receipt watermarks ("user X has
 * delivered/read everything up to seq") into one status update per message whose tick advances.
 * A message is forgotten once read. Receipts are watermarks, so a receipt that arrives before the
 * message is known still applies to it.
 */
export class OwnStatusTracker {
  readonly #chats = new Map<string, OwnChat>();
  readonly #maxPerChat: number;

  /** @param maxPerChat - most unread own messages remembered per chat (oldest forgotten first). */
  constructor(maxPerChat = 10_000) {
    this.#maxPerChat = Math.max(1, maxPerChat);
  }

  /**
   * Registers an own message; returns its first status update (`sent`, or more if receipts already
   * cover it), or null when it is already known.
   */
  track(chatId: string, seq: number, clientMsgId?: string): StatusUpdate | null {
    const c = this.#chat(chatId);
    if (c.own.has(seq)) return null;
    const status: OwnStatus = seq <= c.read ? 'read' : seq <= c.delivered ? 'delivered' : 'sent';
    if (status !== 'read') {
      if (c.own.size >= this.#maxPerChat) {
        const oldest = c.own.keys().next();
        if (!oldest.done) c.own.delete(oldest.value);
      }
      c.own.set(seq, { clientMsgId, status });
    }
    return update(chatId, seq, clientMsgId, status);
  }

  /** Applies a receipt by another user; returns the updates, in seq order. */
  receipt(chatId: string, seq: number, status: 'delivered' | 'read'): StatusUpdate[] {
    const c = this.#chat(chatId);
    c.delivered = Math.max(c.delivered, seq);
    if (status === 'read') c.read = Math.max(c.read, seq);
    const out: StatusUpdate[] = [];
    for (const [s, m] of c.own) {
      if (s > seq || RANK[status] <= RANK[m.status]) continue;
      m.status = status;
      if (status === 'read') c.own.delete(s);
      out.push(update(chatId, s, m.clientMsgId, status));
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** Own messages of a chat not yet read (for diagnostics and tests). */
  pending(chatId: string): number {
    return this.#chats.get(chatId)?.own.size ?? 0;
  }

  #chat(chatId: string): OwnChat {
    let c = this.#chats.get(chatId);
    if (!c) {
      c = { own: new Map(), delivered: 0, read: 0 };
      this.#chats.set(chatId, c);
    }
    return c;
  }
}

function update(chatId: string, seq: number, clientMsgId: string | undefined, status: OwnStatus): StatusUpdate {
  return {
    ...(clientMsgId !== undefined ? { clientMsgId } : {}),
    msgId: msgIdOf(chatId, seq),
    chatId,
    seq,
    status,
  };
}
