/**
 * Group commit. Making every accepted publish durable with its own queue write caps the broker
 * near one Redis round trip per message, and gives the workers one job per message; instead the
 * publishes that arrive together are written as one batch and all of their PUBACKs are released
 * at once.
 *
 * A batch is written `maxDelayMs` after its first item arrived (or at once when it holds
 * `maxItems`), but at most `maxInFlight` writes run at a time: what arrives while they run waits
 * and goes out in one write as soon as one finishes. So batches grow with the load (and with the
 * latency of the write), instead of staying at one or two items per millisecond at a steady rate,
 * and the items leave in the order they arrived.
 */
export interface BatcherOptions {
  /** Most items in one write. @defaultValue 500 */
  maxItems: number;
  /** Wait this long after the first item of a batch before writing it; 0 = next turn of the event loop. @defaultValue 1 */
  maxDelayMs: number;
  /** Writes under way at once. @defaultValue 1 */
  maxInFlight: number;
}

const DEFAULTS: BatcherOptions = Object.freeze({ maxItems: 500, maxDelayMs: 1, maxInFlight: 1 });

/** Rejected by `add` once the batcher is closed (the process is shutting down). */
export class BatcherClosedError extends Error {
  constructor() {
    super('batcher closed');
    this.name = 'BatcherClosedError';
  }
}

interface Pending<T> {
  items: T[];
  waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }>;
}

export class Batcher<T> {
  private readonly opts: BatcherOptions;
  /** Batches waiting to be written, oldest first; the last one still takes items until full. */
  private readonly queue: Array<Pending<T>> = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** The first batch in `queue` is due (its delay ran out) and waits only for a free write slot. */
  private due = false;
  private readonly inFlight = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly write: (items: T[]) => Promise<void>,
    opts: Partial<BatcherOptions> = {},
  ) {
    this.opts = { ...DEFAULTS, ...opts };
    if (this.opts.maxItems < 1 || this.opts.maxInFlight < 1) throw new RangeError('maxItems and maxInFlight must be at least 1');
  }

  /** Resolves once the batch holding `item` is durable; rejects if writing it failed. */
  add(item: T): Promise<void> {
    if (this.closed) return Promise.reject(new BatcherClosedError());
    let batch = this.queue[this.queue.length - 1];
    if (!batch || batch.items.length >= this.opts.maxItems) {
      batch = { items: [], waiters: [] };
      this.queue.push(batch);
    }
    batch.items.push(item);
    const done = new Promise<void>((resolve, reject) => batch.waiters.push({ resolve, reject }));
    if (this.queue[0]!.items.length >= this.opts.maxItems) this.due = true;
    if (this.due) this.pump();
    else this.arm();
    return done;
  }

  /** Writes what waits now, as far as free write slots allow. */
  flush(): void {
    this.disarm();
    if (this.queue.length) this.due = true;
    this.pump();
  }

  /** Flushes what waits and waits until every item is written (or failed). */
  async close(): Promise<void> {
    this.closed = true;
    this.flush();
    while (this.inFlight.size || this.queue.length) {
      await Promise.allSettled([...this.inFlight]);
      this.flush();
    }
  }

  private arm(): void {
    if (this.timer || this.inFlight.size >= this.opts.maxInFlight) return;
    const fire = (): void => {
      this.timer = null;
      this.due = true;
      this.pump();
    };
    this.timer = this.opts.maxDelayMs > 0
      ? setTimeout(fire, this.opts.maxDelayMs)
      : (setImmediate(fire) as unknown as ReturnType<typeof setTimeout>);
  }

  private disarm(): void {
    if (!this.timer) return;
    clearTimeout(this.timer);
    clearImmediate(this.timer as unknown as ReturnType<typeof setImmediate>);
    this.timer = null;
  }

  private pump(): void {
    while (this.due && this.queue.length && this.inFlight.size < this.opts.maxInFlight) {
      this.disarm();
      const batch = this.queue.shift()!;
      // Whatever is already queued behind it has waited at least as long: it goes next.
      this.due = this.queue.length > 0;
      const p = this.write(batch.items).then(
        () => batch.waiters.forEach((w) => w.resolve()),
        (err: unknown) => batch.waiters.forEach((w) => w.reject(err)),
      );
      this.inFlight.add(p);
      void p.finally(() => {
        this.inFlight.delete(p);
        // Items that arrived during the write have waited for it: send them now, no extra delay.
        if (this.queue.length) this.due = true;
        this.pump();
      });
    }
    if (!this.due && this.queue.length) this.arm();
  }
}
