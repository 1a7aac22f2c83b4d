/**
 * E2EE key storage (client-sdk/src/e2ee/storage.ts, file-storage.ts): the shared contract
 * (test/helpers/key-storage-contract.ts) against MemoryKeyStorage and FileKeyStorage, then what is
 * particular to files (names, modes, atomic writes, leftovers) and IndexedDbKeyStorage without
 * IndexedDB. IndexedDB itself runs in Chromium: test/browser/key-storage.test.ts.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IndexedDbKeyStorage, MemoryKeyStorage, type KeyStorage } from '../../client-sdk/src/e2ee/storage.js';
import { FileKeyStorage, MAX_FILE_KEY_BYTES } from '../../client-sdk/src/e2ee/file-storage.js';
import * as nodeEntry from '@parley/client-sdk/node';
import { keyStorageContract, type KeyStorageContractOptions } from '../helpers/key-storage-contract.js';

const root = mkdtempSync(join(tmpdir(), 'parley-keys-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = (): string => join(root, `store-${++dirs}`);

function contract(label: string, open: () => KeyStorage, opts?: KeyStorageContractOptions): void {
  describe(`${label}: the KeyStorage contract`, () => {
    for (const c of keyStorageContract(open, opts)) it(c.name, () => c.run());
  });
}

contract('MemoryKeyStorage', () => new MemoryKeyStorage());
contract('FileKeyStorage', () => new FileKeyStorage(freshDir()), { reopen: (s) => new FileKeyStorage((s as FileKeyStorage).dir) });

const linux = process.platform === 'linux';
const mode = (p: string): number => statSync(p).mode & 0o777;
const entries = (dir: string): string[] => readdirSync(dir).sort();

describe('FileKeyStorage on disk', () => {
  it('is exported by @parley/client-sdk/node', () => {
    expect(nodeEntry.FileKeyStorage).toBe(FileKeyStorage);
    expect(nodeEntry.MAX_FILE_KEY_BYTES).toBe(MAX_FILE_KEY_BYTES);
  });

  it('names a file k<hex of the UTF-8 key>, one per key, all inside its directory (no path from the key)', async () => {
    const dir = freshDir();
    const s = new FileKeyStorage(dir);
    await s.set('../../escape', Uint8Array.of(1));
    await s.set('a/b:c', Uint8Array.of(2));
    await s.set('🔑', Uint8Array.of(3));
    expect(entries(dir)).toEqual([
      `k${Buffer.from('../../escape').toString('hex')}`,
      `k${Buffer.from('a/b:c').toString('hex')}`,
      `k${Buffer.from('🔑').toString('hex')}`,
    ].sort());
    expect(entries(root).filter((n) => !n.startsWith('store-'))).toEqual([]);
  });

  it.runIf(linux)('creates its directory 0o700 (nested ones too) and its files 0o600, whatever the umask', async () => {
    const old = process.umask(0o000);
    try {
      const dir = join(freshDir(), 'nested', 'keys');
      const s = new FileKeyStorage(dir);
      await s.set('identity', Uint8Array.of(1, 2));
      await s.set('identity', Uint8Array.of(3)); // the overwrite's file too
      expect(mode(dir)).toBe(0o700);
      const files = entries(dir);
      expect(files).toHaveLength(1);
      expect(mode(join(dir, files[0]!))).toBe(0o600);
    } finally {
      process.umask(old);
    }
    const s2 = new FileKeyStorage(freshDir());
    await s2.set('x', Uint8Array.of(1));
    expect(mode(s2.dir)).toBe(0o700);
    expect(mode(join(s2.dir, entries(s2.dir)[0]!))).toBe(0o600);
  });

  it('leaves an existing directory\'s mode alone', async () => {
    const dir = freshDir();
    mkdirSync(dir, { mode: 0o750 });
    const before = mode(dir);
    await new FileKeyStorage(dir).set('k', Uint8Array.of(1));
    expect(mode(dir)).toBe(before);
  });

  it('reads a missing key as undefined and lists nothing when the directory does not exist yet (and does not create it)', async () => {
    const s = new FileKeyStorage(freshDir());
    expect(await s.get('k')).toBeUndefined();
    expect(await s.keys('')).toEqual([]);
    await s.delete('k');
    expect(existsSync(s.dir)).toBe(false);
  });

  it('ignores leftovers of a crashed write: a temporary file is no key and does not change the value', async () => {
    const dir = freshDir();
    const s = new FileKeyStorage(dir);
    await s.set('identity', Uint8Array.of(1, 2, 3));
    // A write that crashed after writing its temporary file but before the rename.
    writeFileSync(join(dir, '.tmp-0a1b2c3d-crashed'), Uint8Array.of(9, 9, 9, 9), { mode: 0o600 });
    // And things that are not the storage's: a stray file, names that look almost like keys.
    writeFileSync(join(dir, 'README'), 'not a key');
    writeFileSync(join(dir, 'k0'), 'odd hex');
    writeFileSync(join(dir, 'kzz'), 'not hex');
    writeFileSync(join(dir, 'kff'), 'not UTF-8');
    writeFileSync(join(dir, `k${Buffer.from('Identity').toString('hex').toUpperCase()}`), 'upper-case hex');
    expect(await s.keys('')).toEqual(['identity']);
    expect(await s.get('identity')).toEqual(Uint8Array.of(1, 2, 3));
    const again = new FileKeyStorage(dir);
    expect(await again.keys('')).toEqual(['identity']);
    await again.set('identity', Uint8Array.of(4));
    expect(await again.get('identity')).toEqual(Uint8Array.of(4));
  });

  it('removes temporary files older than an hour when it first writes, and keeps recent ones (a write in progress)', async () => {
    const dir = freshDir();
    mkdirSync(dir, { mode: 0o700 });
    const stale = join(dir, '.tmp-stale');
    const recent = join(dir, '.tmp-recent');
    writeFileSync(stale, 'old secret');
    writeFileSync(recent, 'in progress');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    utimesSync(stale, twoHoursAgo, twoHoursAgo);
    const s = new FileKeyStorage(dir);
    await s.set('k', Uint8Array.of(1));
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(recent)).toBe(true);
    expect(await s.keys('')).toEqual(['k']);
  });

  it('leaves no temporary file behind after writes', async () => {
    const s = new FileKeyStorage(freshDir());
    await Promise.all(Array.from({ length: 10 }, (_, i) => s.set(`k${i % 3}`, new Uint8Array(1000).fill(i))));
    expect(entries(s.dir).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
    expect(entries(s.dir)).toHaveLength(3);
  });

  it('replaces a value atomically: a reader during an overwrite sees the old value or the new one, whole', async () => {
    const s = new FileKeyStorage(freshDir());
    const a = new Uint8Array(2 << 20).fill(1);
    const b = new Uint8Array(2 << 20).fill(2);
    await s.set('state', a);
    const seen = new Set<string>();
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 6; i++) await s.set('state', i % 2 ? a : b);
      writing = false;
    })();
    while (writing) {
      const got = await s.get('state');
      expect(got?.length).toBe(2 << 20);
      const first = got![0]!;
      expect(got!.every((x) => x === first)).toBe(true);
      seen.add(String(first));
    }
    await writer;
    expect([...seen].every((v) => v === '1' || v === '2')).toBe(true);
  });

  it('stores a copy of a Buffer and answers plain Uint8Arrays, never Buffers', async () => {
    for (const s of [new MemoryKeyStorage(), new FileKeyStorage(freshDir())]) {
      const buf = Buffer.from([1, 2, 3]);
      await s.set('b', buf);
      buf[0] = 9;
      const got = await s.get('b');
      expect(Buffer.isBuffer(got)).toBe(false);
      expect(Object.getPrototypeOf(got)).toBe(Uint8Array.prototype);
      expect(got).toEqual(Uint8Array.of(1, 2, 3));
    }
  });

  it(`takes keys up to ${MAX_FILE_KEY_BYTES} UTF-8 bytes and refuses longer ones with E_VALIDATION`, async () => {
    const s = new FileKeyStorage(freshDir());
    const longest = 'x'.repeat(MAX_FILE_KEY_BYTES);
    await s.set(longest, Uint8Array.of(1));
    expect(await s.get(longest)).toEqual(Uint8Array.of(1));
    await expect(s.set(`${longest}x`, Uint8Array.of(1))).rejects.toMatchObject({ name: 'ParleyError', code: 'E_VALIDATION' });
    // Counted in UTF-8 bytes: 40 four-byte characters are 160 bytes.
    await expect(s.get('🔑'.repeat(40))).rejects.toMatchObject({ code: 'E_VALIDATION' });
    await s.set('🔑'.repeat(30), Uint8Array.of(2));
    expect(await s.keys('🔑')).toEqual(['🔑'.repeat(30)]);
  });

  it('refuses a directory it cannot use (E_CONFIG), and an empty path at once', async () => {
    const file = join(freshDir());
    writeFileSync(file, 'a file, not a directory');
    await expect(new FileKeyStorage(file).set('k', Uint8Array.of(1))).rejects.toMatchObject({ code: 'E_CONFIG' });
    expect(() => new FileKeyStorage('')).toThrow(expect.objectContaining({ code: 'E_CONFIG' }));
  });
});

describe('IndexedDbKeyStorage without IndexedDB (Node)', () => {
  it('constructs, then rejects every call with E_CONFIG', async () => {
    expect((globalThis as { indexedDB?: unknown }).indexedDB).toBeUndefined();
    const s = new IndexedDbKeyStorage();
    expect(s.dbName).toBe('parley-e2ee');
    for (const p of [s.get('k'), s.set('k', Uint8Array.of(1)), s.delete('k'), s.keys('')]) {
      await expect(p).rejects.toMatchObject({ name: 'ParleyError', code: 'E_CONFIG' });
    }
  });
});
