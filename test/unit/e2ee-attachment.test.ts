/**
 * End-to-end encrypted attachments (client-sdk/src/e2ee/attachment.ts): AES-256-GCM through
 * WebCrypto with a fresh key and IV each, the ciphertext's SHA-256 checked before decrypting, and
 * the key record's compact CBOR form.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Encoder } from 'cbor-x';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  decodeAttachmentKey, decryptAttachment, encodeAttachmentKey, encryptAttachment, type AttachmentKey,
} from '../../client-sdk/src/e2ee/attachment.js';

const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
const sha256 = (b: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(b).digest());
const MiB = 1 << 20;

/** The ciphertext changed, with a digest that matches it: the GCM check is what must refuse it. */
const withDigest = (key: AttachmentKey, ciphertext: Uint8Array): AttachmentKey => ({ ...key, digest: sha256(ciphertext) });

const rejected = { name: 'ParleyError', code: 'E_MEDIA_CHECKSUM' };

/** Whether any 16-byte window of `needle` occurs anywhere in `hay`. */
function sharesWindow(hay: Uint8Array, needle: Uint8Array, w = 16): boolean {
  const windows = new Set<string>();
  const text = Buffer.from(needle).toString('latin1');
  for (let i = 0; i + w <= needle.length; i++) windows.add(text.slice(i, i + w));
  const h = Buffer.from(hay).toString('latin1');
  for (let i = 0; i + w <= hay.length; i++) if (windows.has(h.slice(i, i + w))) return true;
  return false;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('encryptAttachment / decryptAttachment', () => {
  it.each([
    ['empty', 0],
    ['1 byte', 1],
    ['1 MiB', MiB],
    ['5 MiB', 5 * MiB],
  ])('round-trips %s of random data', async (_label, n) => {
    const plain = random(n);
    const { ciphertext, key } = await encryptAttachment(plain);
    expect(ciphertext.length).toBe(n + 16); // the GCM tag
    expect(key.key).toHaveLength(32);
    expect(key.iv).toHaveLength(12);
    expect(key.digest).toEqual(sha256(ciphertext));
    expect(key.size).toBe(n);
    const back = await decryptAttachment(ciphertext, key);
    expect(Object.getPrototypeOf(back)).toBe(Uint8Array.prototype);
    expect(Buffer.from(back).equals(Buffer.from(plain))).toBe(true);
  });

  it('gives a ciphertext unlike the plaintext: no 16-byte window of it, for random, zero and text data', async () => {
    const text = new TextEncoder().encode('the quick brown fox jumps over the lazy dog. '.repeat(2000));
    for (const plain of [random(256 * 1024), new Uint8Array(64 * 1024), text]) {
      const { ciphertext } = await encryptAttachment(plain);
      expect(Buffer.from(ciphertext.subarray(0, plain.length)).equals(Buffer.from(plain))).toBe(false);
      expect(sharesWindow(ciphertext, plain)).toBe(false);
    }
    // The check itself finds a window when there is one.
    const p = random(1000);
    expect(sharesWindow(Uint8Array.from([...random(50), ...p.subarray(500, 516), ...random(50)]), p)).toBe(true);
  });

  it('never reuses a key or an IV: the same plaintext twice gives different ciphertexts', async () => {
    const plain = random(4096);
    const a = await encryptAttachment(plain);
    const b = await encryptAttachment(plain);
    expect(Buffer.from(a.ciphertext).equals(Buffer.from(b.ciphertext))).toBe(false);
    expect(a.key.key).not.toEqual(b.key.key);
    expect(a.key.iv).not.toEqual(b.key.iv);
    expect(a.key.digest).not.toEqual(b.key.digest);
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const { key } = await encryptAttachment(new Uint8Array(0));
      seen.add(Buffer.from(key.key).toString('hex'));
      seen.add(Buffer.from(key.iv).toString('hex'));
    }
    expect(seen.size).toBe(1000);
  });

  it('does not change the caller\'s plaintext, and the result does not alias it', async () => {
    const plain = random(100);
    const copy = plain.slice();
    const { ciphertext, key } = await encryptAttachment(plain);
    expect(plain).toEqual(copy);
    plain.fill(0);
    expect(await decryptAttachment(ciphertext, key)).toEqual(copy);
  });

  it('rejects a flipped bit anywhere in the ciphertext, by digest and (digest recomputed) by the GCM tag', async () => {
    const plain = random(100);
    const { ciphertext, key } = await encryptAttachment(plain);
    for (let bit = 0; bit < ciphertext.length * 8; bit++) {
      const bad = ciphertext.slice();
      bad[bit >> 3]! ^= 1 << (bit & 7);
      await expect(decryptAttachment(bad, key)).rejects.toMatchObject(rejected);
      await expect(decryptAttachment(bad, withDigest(key, bad))).rejects.toMatchObject(rejected);
    }
    expect(await decryptAttachment(ciphertext, key)).toEqual(plain);
  });

  it('rejects a flipped bit in a large ciphertext (first, middle, last byte)', async () => {
    const { ciphertext, key } = await encryptAttachment(random(MiB));
    for (const at of [0, ciphertext.length >> 1, ciphertext.length - 1]) {
      const bad = ciphertext.slice();
      bad[at]! ^= 0x80;
      await expect(decryptAttachment(bad, withDigest(key, bad))).rejects.toMatchObject(rejected);
    }
  });

  it('rejects a wrong key or a wrong IV', async () => {
    const { ciphertext, key } = await encryptAttachment(random(1000));
    await expect(decryptAttachment(ciphertext, { ...key, key: random(32) })).rejects.toMatchObject(rejected);
    await expect(decryptAttachment(ciphertext, { ...key, iv: random(12) })).rejects.toMatchObject(rejected);
    // Another attachment's key (a mix-up between two messages).
    const other = await encryptAttachment(random(1000));
    await expect(decryptAttachment(ciphertext, { ...other.key, digest: key.digest })).rejects.toMatchObject(rejected);
  });

  it('rejects a truncated or extended ciphertext', async () => {
    const { ciphertext, key } = await encryptAttachment(random(1000));
    for (const cut of [ciphertext.subarray(0, ciphertext.length - 1), ciphertext.subarray(0, 1000), ciphertext.subarray(0, 15),
      ciphertext.subarray(0, 0), ciphertext.subarray(1), Uint8Array.from([...ciphertext, 0])]) {
      await expect(decryptAttachment(cut, key)).rejects.toMatchObject(rejected);
      await expect(decryptAttachment(cut, withDigest(key, cut))).rejects.toMatchObject(rejected);
    }
  });

  it('rejects a size that is not the plaintext\'s', async () => {
    const { ciphertext, key } = await encryptAttachment(random(1000));
    await expect(decryptAttachment(ciphertext, { ...key, size: 999 })).rejects.toMatchObject(rejected);
    await expect(decryptAttachment(ciphertext, { ...key, size: 1001 })).rejects.toMatchObject(rejected);
  });

  it('checks the digest before decrypting anything', async () => {
    const { ciphertext, key } = await encryptAttachment(random(1000));
    const decrypt = vi.spyOn(globalThis.crypto.subtle, 'decrypt');
    const importKey = vi.spyOn(globalThis.crypto.subtle, 'importKey');
    const wrongDigest = { ...key, digest: random(32) };
    await expect(decryptAttachment(ciphertext, wrongDigest)).rejects.toMatchObject({ ...rejected, message: expect.stringContaining('SHA-256') });
    expect(decrypt).not.toHaveBeenCalled();
    expect(importKey).not.toHaveBeenCalled();
    await decryptAttachment(ciphertext, key);
    expect(decrypt).toHaveBeenCalledTimes(1);
  });

  it('refuses arguments of the wrong shape with E_VALIDATION', async () => {
    const { ciphertext, key } = await encryptAttachment(random(10));
    await expect(encryptAttachment('text' as unknown as Uint8Array)).rejects.toMatchObject({ code: 'E_VALIDATION' });
    await expect(decryptAttachment([1, 2] as unknown as Uint8Array, key)).rejects.toMatchObject({ code: 'E_VALIDATION' });
    for (const k of [{ ...key, key: random(16) }, { ...key, iv: random(16) }, { ...key, digest: random(31) }, { ...key, size: -1 }, { ...key, size: 1.5 },
      null as unknown as AttachmentKey]) {
      await expect(decryptAttachment(ciphertext, k)).rejects.toMatchObject({ code: 'E_VALIDATION' });
    }
  });
});

describe('encodeAttachmentKey / decodeAttachmentKey', () => {
  const cbor = new Encoder({ useRecords: false, tagUint8Array: false });
  const bad = { name: 'ParleyError', code: 'E_BAD_ENVELOPE' };

  it('round-trips, compactly, into plain Uint8Arrays of their own', async () => {
    for (const n of [0, 1, 70_000, 2 ** 40]) {
      const key: AttachmentKey = { key: random(32), iv: random(12), digest: random(32), size: n };
      const enc = encodeAttachmentKey(key);
      expect(enc.length).toBeLessThanOrEqual(91); // 82 + the size (1 to 9 bytes)
      expect(Object.getPrototypeOf(enc)).toBe(Uint8Array.prototype);
      expect(enc.byteOffset).toBe(0);
      expect(enc.buffer.byteLength).toBe(enc.length); // not a window into cbor-x's shared buffer
      const dec = decodeAttachmentKey(enc);
      expect(dec).toEqual(key);
      for (const f of [dec.key, dec.iv, dec.digest]) {
        expect(Object.getPrototypeOf(f)).toBe(Uint8Array.prototype);
        expect(f.buffer).not.toBe(enc.buffer);
      }
    }
  });

  it('decodes a key that decrypts its attachment', async () => {
    const plain = random(5000);
    const { ciphertext, key } = await encryptAttachment(plain);
    expect(await decryptAttachment(ciphertext, decodeAttachmentKey(encodeAttachmentKey(key)))).toEqual(plain);
  });

  it('ignores trailing fields a later version may append', () => {
    const key = { key: random(32), iv: random(12), digest: random(32), size: 5 };
    expect(decodeAttachmentKey(cbor.encode([key.key, key.iv, key.digest, key.size, 'future', 1]))).toEqual(key);
  });

  it('rejects garbage with E_BAD_ENVELOPE', () => {
    const k = random(32);
    const iv = random(12);
    const d = random(32);
    const cases: Uint8Array[] = [
      new Uint8Array(0),
      Uint8Array.of(0xff),
      Uint8Array.of(0x85), // an array header with nothing after it
      new TextEncoder().encode('{"key":"..."}'),
      cbor.encode(null),
      cbor.encode('a string'),
      cbor.encode({ key: k, iv, digest: d, size: 1 }),
      cbor.encode([]),
      cbor.encode([k, iv, d]),
      cbor.encode([random(31), iv, d, 1]),
      cbor.encode([random(33), iv, d, 1]),
      cbor.encode([k, random(11), d, 1]),
      cbor.encode([k, random(16), d, 1]),
      cbor.encode([k, iv, random(31), 1]),
      cbor.encode([k, iv, d, -1]),
      cbor.encode([k, iv, d, 1.5]),
      cbor.encode([k, iv, d, '1']),
      cbor.encode([k, iv, d, null]),
      cbor.encode([k, iv, d, 2 ** 53]),
      cbor.encode([Array.from(k), iv, d, 1]),
      cbor.encode([Buffer.from(k).toString('hex'), iv, d, 1]),
      Uint8Array.from([...cbor.encode([k, iv, d, 1]), 0x00]), // trailing bytes after the record
      cbor.encode([k, iv, d, 1]).subarray(0, 40), // cut short
    ];
    for (const c of cases) expect(() => decodeAttachmentKey(c), Buffer.from(c).toString('hex')).toThrow(expect.objectContaining(bad));
    expect(() => decodeAttachmentKey('text' as unknown as Uint8Array)).toThrow(expect.objectContaining(bad));
  });

  it('rejects random bytes with E_BAD_ENVELOPE and nothing else', () => {
    for (let i = 0; i < 2000; i++) {
      const b = random(1 + (i % 100));
      let err: unknown;
      try {
        decodeAttachmentKey(b);
      } catch (e) {
        err = e;
      }
      expect(err, Buffer.from(b).toString('hex')).toMatchObject(bad);
    }
  });

  it('refuses to encode a key of the wrong shape (E_VALIDATION)', () => {
    expect(() => encodeAttachmentKey({ key: random(16), iv: random(12), digest: random(32), size: 1 })).toThrow(expect.objectContaining({ code: 'E_VALIDATION' }));
    expect(() => encodeAttachmentKey({ key: random(32), iv: random(12), digest: random(32), size: Number.NaN })).toThrow(expect.objectContaining({ code: 'E_VALIDATION' }));
  });
});
