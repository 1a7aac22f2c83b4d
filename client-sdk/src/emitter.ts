/**
 * A minimal typed event emitter that runs anywhere (Node, browsers, workers): no `node:events`.
 *
 * `Events` maps each event name to the type of its single payload. Differences from
 * `node:events`, on purpose:
 * - an `error` event with no listener is simply dropped (it never throws);
 * - a listener that throws does not stop the other listeners nor the emitter's caller: the
 *   exception is re-thrown on a fresh microtask, where the platform reports it (uncaught exception
 *   in Node, console error in browsers), so the SDK's internal state stays consistent.
 */
export type Listener<T> = (payload: T) => void;

/** The event names of an event map. */
export type EventName<Events> = keyof Events & string;

interface Entry<T> {
  fn: Listener<T>;
  once: boolean;
}

export class TypedEmitter<Events extends object> {
  readonly #listeners = new Map<EventName<Events>, Array<Entry<never>>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends EventName<Events>>(event: K, listener: Listener<Events[K]>): () => void {
    return this.#add(event, listener, false);
  }

  /** Adds a listener called at most once; returns a function that removes it. */
  once<K extends EventName<Events>>(event: K, listener: Listener<Events[K]>): () => void {
    return this.#add(event, listener, true);
  }

  /** Removes one registration of `listener` (the earliest). */
  off<K extends EventName<Events>>(event: K, listener: Listener<Events[K]>): void {
    const list = this.#listeners.get(event) as Array<Entry<Events[K]>> | undefined;
    if (!list) return;
    const i = list.findIndex((e) => e.fn === listener);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#listeners.delete(event);
  }

  /** Removes every listener of `event`, or of every event when none is given. */
  removeAllListeners(event?: EventName<Events>): void {
    if (event === undefined) this.#listeners.clear();
    else this.#listeners.delete(event);
  }

  listenerCount(event: EventName<Events>): number {
    return this.#listeners.get(event)?.length ?? 0;
  }

  /** Calls the listeners of `event` in registration order; returns whether there were any. */
  protected emit<K extends EventName<Events>>(event: K, payload: Events[K]): boolean {
    const list = this.#listeners.get(event) as Array<Entry<Events[K]>> | undefined;
    if (!list || list.length === 0) return false;
    // A copy: listeners may add or remove listeners while we iterate.
    for (const entry of [...list]) {
      if (entry.once) {
        const i = list.indexOf(entry);
        if (i >= 0) list.splice(i, 1);
        if (list.length === 0) this.#listeners.delete(event);
      }
      try {
        entry.fn(payload);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
    return true;
  }

  #add<K extends EventName<Events>>(event: K, fn: Listener<Events[K]>, once: boolean): () => void {
    let list = this.#listeners.get(event) as Array<Entry<Events[K]>> | undefined;
    if (!list) {
      list = [];
      this.#listeners.set(event, list as Array<Entry<never>>);
    }
    list.push({ fn, once });
    return () => this.off(event, fn);
  }
}
