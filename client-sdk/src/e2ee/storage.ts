/**
 * Where a device keeps its end-to-end encryption secrets (identity keys, key packages' private
 * keys) and its MLS group states: a small byte store behind a pluggable interface. The SDK ships
 * three implementations:
 * - {@link MemoryKeyStorage}: in memory, lost with the process (tests, throwaway sessions);
 * - {@link IndexedDbKeyStorage}: browsers, one IndexedDB database;
 * - `FileKeyStorage` (`@parley/client-sdk/node`): Node, one private file per key.
 *
 * Browser-safe: no Node modules here. An app may bring its own (the OS keychain, an encrypted
 * database); it must follow the same contract: values are copied in and out (a caller may mutate
 * what it passed or got), keys are any well-formed string, and a write is all-or-nothing.
 */
import { ParleyError } from '../errors.js';

export interface KeyStorage {
  /** The value stored under `key`, or `undefined` when there is none. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Stores `value` (a copy of it, taken at the call) under `key`, replacing any previous value. */
  set(key: string, value: Uint8Array): Promise<void>;
  /** Removes `key`; removing a key that is not there is not an error. */
  delete(key: string): Promise<void>;
  /** Keys starting with prefix, any order. */
  keys(prefix: string): Promise<string[]>;
}

/** A lone surrogate: the string is not well-formed UTF-16, so it has no exact UTF-8 form. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Checks a key (a well-formed string) or prefix, and throws E_VALIDATION otherwise. Shared by the
 * implementations so that all of them accept and refuse the same keys.
 * @internal
 */
export function checkKey(key: unknown, what = 'key'): string {
  if (typeof key !== 'string') throw new ParleyError('E_VALIDATION', `the ${what} must be a string`);
  if (LONE_SURROGATE.test(key)) throw new ParleyError('E_VALIDATION', `the ${what} is not well-formed UTF-16 (a lone surrogate)`);
  return key;
}

/**
 * Checks a value and returns a private copy of it (a plain Uint8Array with a buffer of its own,
 * whatever the argument was: a Buffer, a view into a larger buffer).
 * @internal
 */
export function copyValue(value: unknown): Uint8Array<ArrayBuffer> {
  if (!(value instanceof Uint8Array)) throw new ParleyError('E_VALIDATION', 'the value must be a Uint8Array');
  return new Uint8Array(value);
}

/** Keeps everything in a Map: nothing survives the process. Values are copied in and out. */
export class MemoryKeyStorage implements KeyStorage {
  readonly #values = new Map<string, Uint8Array>();

  async get(key: string): Promise<Uint8Array | undefined> {
    const v = this.#values.get(checkKey(key));
    return v && new Uint8Array(v);
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    checkKey(key);
    this.#values.set(key, copyValue(value));
  }

  async delete(key: string): Promise<void> {
    this.#values.delete(checkKey(key));
  }

  async keys(prefix: string): Promise<string[]> {
    checkKey(prefix, 'prefix');
    return [...this.#values.keys()].filter((k) => k.startsWith(prefix));
  }
}

const STORE = 'keys';

const unavailable = (what: string, err: unknown): ParleyError =>
  new ParleyError('E_UNAVAILABLE', `IndexedDB ${what}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);

/**
 * Browsers: one IndexedDB database (`dbName`) with one object store whose records are the values
 * as Uint8Array under their string keys. Writes use strict durability (flushed before the promise
 * settles). Every method rejects with E_CONFIG where there is no IndexedDB (Node, some private
 * modes), and with E_UNAVAILABLE when the database fails.
 */
export class IndexedDbKeyStorage implements KeyStorage {
  readonly dbName: string;
  #db: Promise<IDBDatabase> | undefined;

  constructor(dbName = 'parley-e2ee') {
    this.dbName = dbName;
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    checkKey(key);
    const v = await this.#request('readonly', 'get', (s) => s.get(key));
    if (v === undefined) return undefined;
    if (!(v instanceof Uint8Array)) throw new ParleyError('E_INTERNAL', `IndexedDB: the value of ${JSON.stringify(key)} is not bytes`);
    // Structured cloning already made this object for this call alone.
    return v;
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    checkKey(key);
    // Copied now (the caller may change its array while the database opens); a copy also stores
    // only the view's bytes where `value` is a view into a larger buffer.
    const copy = copyValue(value);
    await this.#request('readwrite', 'put', (s) => s.put(copy, key));
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    await this.#request('readwrite', 'delete', (s) => s.delete(key));
  }

  async keys(prefix: string): Promise<string[]> {
    checkKey(prefix, 'prefix');
    const out: string[] = [];
    // String keys sort by UTF-16 code units, so the keys with the prefix are contiguous from it.
    await this.#request('readonly', 'keys', (s) => {
      const req = s.openKeyCursor(IDBKeyRange.lowerBound(prefix));
      req.onsuccess = () => {
        const cursor = req.result;
        if (cursor && typeof cursor.key === 'string' && cursor.key.startsWith(prefix)) {
          out.push(cursor.key);
          cursor.continue();
        }
      };
      return req;
    });
    return out;
  }

  /** Closes the connection; a later call opens it again. */
  close(): void {
    const db = this.#db;
    this.#db = undefined;
    void db?.then((d) => d.close(), () => undefined);
  }

  #open(): Promise<IDBDatabase> {
    if (this.#db) return this.#db;
    const idb = (globalThis as { indexedDB?: IDBFactory }).indexedDB;
    if (!idb) return Promise.reject(new ParleyError('E_CONFIG', 'IndexedDbKeyStorage needs IndexedDB (globalThis.indexedDB), which is missing here'));
    const opening = new Promise<IDBDatabase>((resolve, reject) => {
      let req: IDBOpenDBRequest;
      try {
        req = idb.open(this.dbName, 1);
      } catch (err) {
        reject(unavailable('open', err));
        return;
      }
      req.onupgradeneeded = () => {
        if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE);
      };
      req.onsuccess = () => {
        const db = req.result;
        // Another tab upgrading or deleting the database: let it, and reopen on the next call.
        db.onversionchange = () => {
          db.close();
          if (this.#db === opening) this.#db = undefined;
        };
        db.onclose = () => {
          if (this.#db === opening) this.#db = undefined;
        };
        resolve(db);
      };
      req.onerror = () => reject(unavailable('open', req.error));
    });
    this.#db = opening;
    opening.catch(() => {
      if (this.#db === opening) this.#db = undefined;
    });
    return opening;
  }

  /** Runs one request in its own transaction and answers its result once the transaction commits. */
  async #request<T>(mode: IDBTransactionMode, what: string, make: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    const db = await this.#open();
    return new Promise<T>((resolve, reject) => {
      let req: IDBRequest<T>;
      try {
        const tx = db.transaction(STORE, mode, { durability: 'strict' });
        req = make(tx.objectStore(STORE));
        tx.oncomplete = () => resolve(req.result);
        tx.onabort = () => reject(unavailable(what, tx.error ?? req.error));
      } catch (err) {
        reject(unavailable(what, err));
      }
    });
  }
}
