/**
 * Group commit. Making every accepted publish durable with its own queue write caps the broker
 * near one Redis round trip per message; instead the publishes that arrive within `maxDelayMs`
 * (or until `maxItems`) are written together and all of their PUBACKs are released at once.
 */
export interface BatcherOptions {
  /** Flush when this many items wait. @defaultValue 500 */
  maxItems: number;
  /** Flush this long after the first item of a batch arrived; 0 = next turn of the event loop. @defaultValue 1 */
  maxDelayMs: number;
}

const DEFAULTS: BatcherOptions = Object.freeze({ maxItems: 500, maxDelayMs: 1 });

interface Pending<T> {
  items: T[];
  waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }>;
}

export class Batcher<T> {
  private readonly opts: BatcherOptions;
  private current: Pending<T> | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inFlight = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly write: (items: T[]) => Promise<void>,
    opts: Partial<BatcherOptions> = {},
  ) {
    this.opts = { ...DEFAULTS, ...opts };
  }

  /** Resolves once the batch holding `item` is durable; rejects if writing it failed. */
  add(item: T): Promise<void> {
    if (this.closed) return Promise.reject(new Error('batcher closed'));
    const batch = (this.current ??= { items: [], waiters: [] });
    batch.items.push(item);
    const done = new Promise<void>((resolve, reject) => batch.waiters.push({ resolve, reject }));
    if (batch.items.length >= this.opts.maxItems) this.flush();
    else if (!this.timer) {
      this.timer = this.opts.maxDelayMs > 0
        ? setTimeout(() => this.flush(), this.opts.maxDelayMs)
        : (setImmediate(() => this.flush()) as unknown as ReturnType<typeof setTimeout>);
    }
    return done;
  }

  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      clearImmediate(this.timer as unknown as ReturnType<typeof setImmediate>);
      this.timer = null;
    }
    const batch = this.current;
    this.current = null;
    if (!batch || batch.items.length === 0) return;
    const p = this.write(batch.items).then(
      () => batch.waiters.forEach((w) => w.resolve()),
      (err: unknown) => batch.waiters.forEach((w) => w.reject(err)),
    );
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /** Flushes what waits and waits for every write under way. */
  async close(): Promise<void> {
    this.flush();
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
  }
}
