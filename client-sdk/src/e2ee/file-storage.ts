/**
 * Node only (imported through `@parley/client-sdk/node`): a {@link KeyStorage} in a directory,
 * one file per key.
 *
 * - File names: `k` followed by the lowercase hex of the key's UTF-8 bytes. Any key is safe ('/',
 *   '..', NUL, unicode), and keys differing only in case stay distinct on case-insensitive file
 *   systems. A file name has at most 255 bytes, so a key has at most {@link MAX_FILE_KEY_BYTES}
 *   UTF-8 bytes (E_VALIDATION beyond).
 * - Private: the directory is created with mode 0o700 and the files with 0o600, whatever the
 *   umask. An existing directory's mode is left as it is.
 * - Atomic: a value is written to a temporary file in the same directory (`.tmp-<random>`),
 *   fsynced, then renamed over the key's file, and the directory is fsynced. A crash leaves the old
 *   value or the new one, never a mix; a leftover temporary file is never read as a key, and one
 *   older than an hour is removed the next time the directory is opened.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, chmod, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ParleyError } from '../errors.js';
import { bytesToHex, hexToBytes } from '../bytes.js';
import { checkKey, copyValue, type KeyStorage } from './storage.js';

/** The longest key (in UTF-8 bytes) a FileKeyStorage accepts: its file name stays under 255 bytes. */
export const MAX_FILE_KEY_BYTES = 120;

const NAME = /^k((?:[0-9a-f]{2})*)$/;
const TMP_PREFIX = '.tmp-';
const STALE_TMP_MS = 60 * 60 * 1000;

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

const errno = (err: unknown): string | undefined => (err as { code?: unknown } | null)?.code as string | undefined;
const failed = (what: string, err: unknown): ParleyError =>
  new ParleyError('E_UNAVAILABLE', `key storage ${what}: ${err instanceof Error ? err.message : String(err)}`);

export class FileKeyStorage implements KeyStorage {
  /** The directory, absolute. */
  readonly dir: string;
  #ready: Promise<void> | undefined;

  constructor(dir: string) {
    if (typeof dir !== 'string' || dir === '') throw new ParleyError('E_CONFIG', 'FileKeyStorage needs a directory');
    this.dir = resolve(dir);
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    const file = this.#file(key);
    try {
      // A copy: a plain Uint8Array (not a Buffer) with a buffer of its own.
      return new Uint8Array(await readFile(file));
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw failed('read', err);
    }
  }

  async set(key: string, value: Uint8Array): Promise<void> {
    const file = this.#file(key);
    const bytes = copyValue(value); // now, before any await: the caller may change its array after
    await this.#ensureDir();
    const tmp = join(this.dir, `${TMP_PREFIX}${randomUUID()}`);
    let fh: Awaited<ReturnType<typeof open>> | undefined;
    try {
      fh = await open(tmp, 'wx', 0o600);
      await fh.writeFile(bytes);
      await fh.sync();
      await fh.close();
      fh = undefined;
      await rename(tmp, file);
    } catch (err) {
      await fh?.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw failed('write', err);
    }
    await this.#syncDir();
  }

  async delete(key: string): Promise<void> {
    const file = this.#file(key);
    try {
      await unlink(file);
    } catch (err) {
      if (errno(err) === 'ENOENT') return;
      throw failed('delete', err);
    }
    await this.#syncDir();
  }

  async keys(prefix: string): Promise<string[]> {
    checkKey(prefix, 'prefix');
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (errno(err) === 'ENOENT') return [];
      throw failed('list', err);
    }
    const out: string[] = [];
    for (const name of names) {
      const hex = NAME.exec(name)?.[1];
      if (hex === undefined) continue; // temporary files, anything else put there
      let key: string;
      try {
        key = strictUtf8.decode(hexToBytes(hex));
      } catch {
        continue;
      }
      if (key.startsWith(prefix)) out.push(key);
    }
    return out;
  }

  #file(key: string): string {
    const bytes = utf8.encode(checkKey(key));
    if (bytes.length > MAX_FILE_KEY_BYTES) {
      throw new ParleyError('E_VALIDATION', `the key is ${bytes.length} bytes in UTF-8; FileKeyStorage takes at most ${MAX_FILE_KEY_BYTES}`);
    }
    return join(this.dir, `k${bytesToHex(bytes)}`);
  }

  #ensureDir(): Promise<void> {
    this.#ready ??= (async () => {
      try {
        const created = await mkdir(this.dir, { recursive: true, mode: 0o700 });
        // mkdir's mode passes through the umask: make it exact.
        if (created !== undefined) await chmod(this.dir, 0o700);
      } catch (err) {
        this.#ready = undefined;
        throw new ParleyError('E_CONFIG', `FileKeyStorage cannot use ${this.dir}: ${err instanceof Error ? err.message : String(err)}`);
      }
      await this.#sweepStaleTemps();
    })();
    return this.#ready;
  }

  /** Removes temporary files that a crashed write left (old enough that no write is using them). */
  async #sweepStaleTemps(): Promise<void> {
    try {
      const now = Date.now();
      for (const name of await readdir(this.dir)) {
        if (!name.startsWith(TMP_PREFIX)) continue;
        const path = join(this.dir, name);
        const s = await stat(path).catch(() => undefined);
        if (s && now - s.mtimeMs > STALE_TMP_MS) await unlink(path).catch(() => undefined);
      }
    } catch {
      // Tidying only: never fails a write.
    }
  }

  /** Makes a rename or unlink durable. Not every platform can fsync a directory (Windows): best effort. */
  async #syncDir(): Promise<void> {
    let d: Awaited<ReturnType<typeof open>> | undefined;
    try {
      d = await open(this.dir, 'r');
      await d.sync();
    } catch {
      // best effort
    } finally {
      await d?.close().catch(() => undefined);
    }
  }
}
