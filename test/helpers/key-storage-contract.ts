/**
 * What every KeyStorage must do, as plain async cases with their own assertions (no vitest, no Node
 * modules), so the same cases run under vitest in Node (test/unit/e2ee-storage.test.ts) and inside
 * a browser page against IndexedDB (test/browser/key-storage.test.ts, which bundles this file).
 *
 * Usage: `for (const c of keyStorageContract(open, opts)) it(c.name, c.run)`. `open` answers a
 * fresh, empty storage on each call; each case opens its own.
 */
import type { KeyStorage } from '../../client-sdk/src/e2ee/storage.js';

export interface KeyStorageCase {
  name: string;
  run(): Promise<void>;
}

export interface KeyStorageContractOptions {
  /**
   * A second instance over the same place as `s` (its directory, its database). Given, the
   * contract also checks that what one instance wrote, another one reads.
   */
  reopen?: (s: KeyStorage) => KeyStorage | Promise<KeyStorage>;
}

class ContractError extends Error {}

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new ContractError(message);
}

const show = (b: Uint8Array | undefined): string =>
  b === undefined ? 'undefined' : `${b.length} bytes [${Array.from(b.subarray(0, 16)).join(',')}${b.length > 16 ? ',…' : ''}]`;

function assertBytes(actual: Uint8Array | undefined, expected: Uint8Array, what: string): void {
  assert(actual instanceof Uint8Array, `${what}: expected ${show(expected)}, got ${show(actual)}`);
  assert(Object.getPrototypeOf(actual) === Uint8Array.prototype, `${what}: expected a plain Uint8Array, got a ${actual.constructor.name}`);
  let same = actual.length === expected.length;
  for (let i = 0; same && i < actual.length; i++) same = actual[i] === expected[i];
  assert(same, `${what}: expected ${show(expected)}, got ${show(actual)}`);
}

function assertKeys(actual: string[], expected: string[], what: string): void {
  assert(Array.isArray(actual) && actual.every((k) => typeof k === 'string'), `${what}: keys() must answer an array of strings`);
  const a = JSON.stringify([...actual].sort());
  const e = JSON.stringify([...expected].sort());
  assert(a === e, `${what}: expected keys ${e}, got ${a}`);
}

async function assertRejects(p: Promise<unknown>, code: string, what: string): Promise<void> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert(err !== undefined, `${what}: expected a rejection with ${code}, but it resolved`);
  const got = (err as { code?: unknown }).code;
  assert(got === code && (err as Error).name === 'ParleyError', `${what}: expected ParleyError ${code}, got ${String((err as Error).name)} ${String(got)}: ${String((err as Error).message)}`);
}

const bytes = (...v: number[]): Uint8Array => Uint8Array.from(v);

/** 0..255, then 255..0: every byte value, in both orders. */
const allBytes = (): Uint8Array => {
  const b = new Uint8Array(512);
  for (let i = 0; i < 256; i++) {
    b[i] = i;
    b[511 - i] = i;
  }
  return b;
};

/** Deterministic filler (a simple LCG): large values without depending on a crypto API. */
const filler = (n: number, seed: number): Uint8Array => {
  const b = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
};

/** Keys that a naive file or path mapping would get wrong, all distinct. */
export const AWKWARD_KEYS: readonly string[] = [
  '', 'a/b', '/', '//', 'a:b', 'c:\\windows', '.', '..', '../escape', '../../etc/passwd', 'dir/../up',
  ' spaced key ', 'tab\there', 'new\nline', 'nul\u0000byte', 'ключ/🔑', '鍵', 'e\u0301', '\u00e9', 'Key', 'key', 'KEY',
  'k', 'k00', '.tmp-x', 'x'.repeat(100), '%2F', 'a?b*c<d>e|f"g',
];

export function keyStorageContract(open: () => KeyStorage | Promise<KeyStorage>, opts: KeyStorageContractOptions = {}): KeyStorageCase[] {
  const cases: KeyStorageCase[] = [
    {
      name: 'a key that was never set reads as undefined and is not listed',
      async run() {
        const s = await open();
        assert((await s.get('missing')) === undefined, 'get of a missing key must answer undefined');
        assertKeys(await s.keys(''), [], 'a new storage');
      },
    },
    {
      name: 'set then get answers the same bytes, as a plain Uint8Array',
      async run() {
        const s = await open();
        await s.set('identity', bytes(1, 2, 3));
        assertBytes(await s.get('identity'), bytes(1, 2, 3), 'get');
        assertKeys(await s.keys(''), ['identity'], 'keys');
      },
    },
    {
      name: 'binary values round-trip exactly: all 256 byte values, and an empty value',
      async run() {
        const s = await open();
        await s.set('all', allBytes());
        await s.set('empty', new Uint8Array(0));
        await s.set('zeros', new Uint8Array(64));
        assertBytes(await s.get('all'), allBytes(), 'all byte values');
        assertBytes(await s.get('empty'), new Uint8Array(0), 'an empty value (not undefined)');
        assertBytes(await s.get('zeros'), new Uint8Array(64), 'zeros');
        assertKeys(await s.keys(''), ['all', 'empty', 'zeros'], 'keys');
      },
    },
    {
      name: 'a large value (1 MiB) round-trips',
      async run() {
        const s = await open();
        const big = filler(1 << 20, 7);
        await s.set('group/state', big);
        assertBytes(await s.get('group/state'), big, '1 MiB value');
      },
    },
    {
      name: 'values are copied in: changing the array passed to set (even before set settles) does not change what is stored',
      async run() {
        const s = await open();
        const v = bytes(1, 2, 3);
        const p = s.set('k', v);
        v[0] = 99;
        await p;
        v[1] = 98;
        assertBytes(await s.get('k'), bytes(1, 2, 3), 'after changing the argument');
      },
    },
    {
      name: 'values are copied out: changing what get answered does not change what is stored',
      async run() {
        const s = await open();
        await s.set('k', bytes(1, 2, 3));
        const got = await s.get('k');
        assert(got, 'get');
        got[0] = 99;
        got.fill(7);
        assertBytes(await s.get('k'), bytes(1, 2, 3), 'after changing a previous answer');
        const a = await s.get('k');
        const b = await s.get('k');
        assert(a !== b && a?.buffer !== b?.buffer, 'two gets must answer arrays of their own');
      },
    },
    {
      name: 'a view into a larger buffer stores only its own bytes',
      async run() {
        const s = await open();
        const backing = filler(64, 3);
        const view = backing.subarray(10, 14);
        await s.set('view', view);
        const got = await s.get('view');
        assertBytes(got, backing.slice(10, 14), 'the view');
        assert(got?.byteOffset === 0 && got.buffer.byteLength === 4, 'the answer must not carry the rest of the buffer');
      },
    },
    {
      name: 'overwriting replaces the value (longer, then shorter, then empty)',
      async run() {
        const s = await open();
        await s.set('k', bytes(1));
        await s.set('k', filler(1000, 1));
        assertBytes(await s.get('k'), filler(1000, 1), 'longer');
        await s.set('k', bytes(5, 6));
        assertBytes(await s.get('k'), bytes(5, 6), 'shorter (no leftover of the longer value)');
        await s.set('k', new Uint8Array(0));
        assertBytes(await s.get('k'), new Uint8Array(0), 'empty');
        assertKeys(await s.keys(''), ['k'], 'one key');
      },
    },
    {
      name: 'delete removes the key; deleting a missing key is not an error',
      async run() {
        const s = await open();
        await s.set('a', bytes(1));
        await s.set('b', bytes(2));
        await s.delete('a');
        assert((await s.get('a')) === undefined, 'a deleted key reads as undefined');
        assertBytes(await s.get('b'), bytes(2), 'the other key');
        assertKeys(await s.keys(''), ['b'], 'keys after delete');
        await s.delete('a');
        await s.delete('never-set');
        await s.set('a', bytes(3));
        assertBytes(await s.get('a'), bytes(3), 'set again after delete');
      },
    },
    {
      name: 'keys(prefix) lists exactly the keys starting with prefix',
      async run() {
        const s = await open();
        const all = ['group/a', 'group/b', 'group', 'groups/x', 'grou', 'kp/1', 'kp/2', 'identity', 'group/a/sub'];
        for (const k of all) await s.set(k, bytes(1));
        assertKeys(await s.keys(''), all, 'the empty prefix');
        assertKeys(await s.keys('group/'), ['group/a', 'group/b', 'group/a/sub'], 'group/');
        assertKeys(await s.keys('group'), ['group/a', 'group/b', 'group', 'groups/x', 'group/a/sub'], 'group (a key equal to the prefix is listed)');
        assertKeys(await s.keys('kp/'), ['kp/1', 'kp/2'], 'kp/');
        assertKeys(await s.keys('identity'), ['identity'], 'identity');
        assertKeys(await s.keys('identity/'), [], 'longer than any key');
        assertKeys(await s.keys('zzz'), [], 'no match');
        assertKeys(await s.keys('Group/'), [], 'prefixes are case-sensitive');
      },
    },
    {
      name: 'keys with "/", ":", "..", spaces, NUL, unicode and case variants are distinct and round-trip',
      async run() {
        const s = await open();
        for (const [i, k] of AWKWARD_KEYS.entries()) await s.set(k, bytes(i, 255 - i));
        assertKeys(await s.keys(''), [...AWKWARD_KEYS], 'all awkward keys');
        for (const [i, k] of AWKWARD_KEYS.entries()) assertBytes(await s.get(k), bytes(i, 255 - i), `key ${JSON.stringify(k)}`);
        assertKeys(await s.keys('ключ/'), ['ключ/🔑'], 'a unicode prefix');
        assertKeys(await s.keys('../'), ['../escape', '../../etc/passwd'], 'the ../ prefix');
        assertKeys(await s.keys('e'), ['e\u0301'], 'no unicode normalisation (é composed is another key)');
        await s.delete('../escape');
        assert((await s.get('../escape')) === undefined, 'delete of ../escape');
        assertBytes(await s.get('../../etc/passwd'), bytes(9, 246), 'its neighbour stays');
      },
    },
    {
      name: 'concurrent writes: to different keys all land; to one key leave one of the values whole',
      async run() {
        const s = await open();
        await Promise.all(Array.from({ length: 20 }, (_, i) => s.set(`kp/${i}`, bytes(i))));
        assertKeys(await s.keys('kp/'), Array.from({ length: 20 }, (_, i) => `kp/${i}`), 'twenty concurrent sets');
        for (let i = 0; i < 20; i++) assertBytes(await s.get(`kp/${i}`), bytes(i), `kp/${i}`);
        const values = Array.from({ length: 8 }, (_, i) => filler(4096, i + 100));
        await Promise.all(values.map((v) => s.set('same', v)));
        const got = await s.get('same');
        assert(values.some((v) => got?.length === v.length && got.every((x, j) => x === v[j])), 'one of the written values, whole');
      },
    },
    {
      name: 'refuses keys that are not well-formed strings and values that are not Uint8Array (E_VALIDATION)',
      async run() {
        const s = await open();
        const lone = 'half \ud83d surrogate';
        await assertRejects(s.set(lone, bytes(1)), 'E_VALIDATION', 'set with a lone surrogate');
        await assertRejects(s.get(lone), 'E_VALIDATION', 'get with a lone surrogate');
        await assertRejects(s.delete(lone), 'E_VALIDATION', 'delete with a lone surrogate');
        await assertRejects(s.keys(lone), 'E_VALIDATION', 'keys with a lone surrogate');
        await assertRejects(s.set(42 as unknown as string, bytes(1)), 'E_VALIDATION', 'a number key');
        await assertRejects(s.set('k', 'text' as unknown as Uint8Array), 'E_VALIDATION', 'a string value');
        await assertRejects(s.set('k', [1, 2] as unknown as Uint8Array), 'E_VALIDATION', 'an array value');
        await assertRejects(s.set('k', new ArrayBuffer(2) as unknown as Uint8Array), 'E_VALIDATION', 'an ArrayBuffer value');
        assertKeys(await s.keys(''), [], 'nothing was stored');
      },
    },
  ];
  const { reopen } = opts;
  if (reopen) {
    cases.push({
      name: 'another instance over the same place reads what this one wrote',
      async run() {
        const s = await open();
        await s.set('identity', allBytes());
        await s.set('group/1', bytes(1));
        await s.set('gone', bytes(2));
        await s.delete('gone');
        const again = await reopen(s);
        assertBytes(await again.get('identity'), allBytes(), 'identity through the second instance');
        assertKeys(await again.keys(''), ['identity', 'group/1'], 'keys through the second instance');
        await again.set('group/2', bytes(3));
        assertBytes(await s.get('group/2'), bytes(3), 'and the first instance reads the second one\'s writes');
      },
    });
  }
  return cases;
}
