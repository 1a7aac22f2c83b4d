/**
 * Safety numbers and QR payloads (client-sdk/src/e2ee/safety.ts): both sides see the same 60
 * digits; any key change or added device changes them; the order of a user's devices does not;
 * a QR code verifies only on the other side, with the same keys; scanned garbage gives false. A
 * pinned vector and an independent node:crypto implementation of the documented algorithm guard
 * against accidental changes of the format.
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  formatSafetyNumber,
  safetyNumber,
  safetyQrPayload,
  verifySafetyQr,
  type IdentitySet,
} from '../../client-sdk/src/e2ee/safety.js';

const key = (): Uint8Array => new Uint8Array(randomBytes(32));
/** A deterministic key for the pinned vector. */
const fixedKey = (seed: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (seed * 31 + i * 7) & 0xff);

/** The algorithm as docs and the module comment state it, written again over node:crypto. */
function referenceFingerprint(set: IdentitySet): Buffer {
  const keys = Buffer.concat([...set.signatureKeys].map((k) => Buffer.from(k)).sort(Buffer.compare));
  let h = Buffer.concat([Buffer.from([0, 1]), keys, Buffer.from(set.userId, 'utf8')]);
  for (let i = 0; i < 5200; i++) h = createHash('sha512').update(h).update(keys).digest();
  return h;
}
function referenceDigits(h: Buffer): string {
  let s = '';
  for (let off = 0; off < 30; off += 5) s += String(h.readUIntBE(off, 5) % 100000).padStart(5, '0');
  return s;
}

const alice = (): IdentitySet => ({ userId: 'uAliceAAAAAAA', signatureKeys: [key(), key()] });
const bob = (): IdentitySet => ({ userId: 'uBobBBBBBBBBB', signatureKeys: [key()] });

describe('safetyNumber', () => {
  it('matches the pinned vector (an accidental change of the algorithm fails here)', async () => {
    const a = { userId: 'uAliceAAAAAAA', signatureKeys: [fixedKey(2), fixedKey(1)] };
    const b = { userId: 'uBobBBBBBBBBB', signatureKeys: [fixedKey(3)] };
    const n = await safetyNumber(a, b);
    expect(n).toBe('217545671434150720371103816212980554823380420230606595725611');
    expect(formatSafetyNumber(n)).toBe('21754 56714 34150 72037 11038 16212 98055 48233 80420 23060 65957 25611');
    expect(Buffer.from(await safetyQrPayload(a, b)).toString('hex')).toBe(
      '01'
      + '4b45c58cda40fdafb10a991bb1cfa6d5e39a440510f8be807e69a31aea540692'
      + '9a5b264427d540443e29c792d1462449aa0bf57409308d342584ab7f3cab49b5',
    );
  });

  it('is the same 60 digits on both sides and agrees with an independent implementation', async () => {
    const a = alice();
    const b = bob();
    const [ab, ba] = await Promise.all([safetyNumber(a, b), safetyNumber(b, a)]);
    expect(ab).toMatch(/^[0-9]{60}$/);
    expect(ba).toBe(ab);
    // Alice's id sorts first, so her half comes first on both screens.
    expect(ab).toBe(referenceDigits(referenceFingerprint(a)) + referenceDigits(referenceFingerprint(b)));
  });

  it('changes when one key changes, a device is added or removed; only that user\'s half changes', async () => {
    const a = alice();
    const b = bob();
    const base = await safetyNumber(a, b);
    const changed = await safetyNumber({ ...a, signatureKeys: [a.signatureKeys[0]!, key()] }, b);
    const added = await safetyNumber(a, { ...b, signatureKeys: [...b.signatureKeys, key()] });
    const removed = await safetyNumber({ ...a, signatureKeys: [a.signatureKeys[1]!] }, b);
    for (const n of [changed, added, removed]) expect(n).not.toBe(base);
    expect(changed.slice(30)).toBe(base.slice(30));
    expect(changed.slice(0, 30)).not.toBe(base.slice(0, 30));
    expect(added.slice(0, 30)).toBe(base.slice(0, 30));
    expect(added.slice(30)).not.toBe(base.slice(30));
    // The same keys under another user id give another half.
    const other = await safetyNumber({ ...a, userId: 'uAliceAAAAAAB' }, b);
    expect(other.slice(0, 30)).not.toBe(base.slice(0, 30));
  });

  it('does not depend on the order of the devices, and leaves the caller\'s arrays alone', async () => {
    const keys = [key(), key(), key(), key()];
    const a: IdentitySet = { userId: 'uAliceAAAAAAA', signatureKeys: keys };
    const b = bob();
    const copy = keys.map((k) => Uint8Array.from(k));
    const n1 = await safetyNumber(a, b);
    const n2 = await safetyNumber({ ...a, signatureKeys: [keys[2]!, keys[0]!, keys[3]!, keys[1]!] }, b);
    expect(n2).toBe(n1);
    expect(keys).toEqual(copy);
    // A Buffer (a Uint8Array subclass) holding the same bytes gives the same number.
    expect(await safetyNumber({ ...a, signatureKeys: keys.map((k) => Buffer.from(k)) }, b)).toBe(n1);
  });

  it('refuses invalid sets with E_VALIDATION', async () => {
    const b = bob();
    const k = key();
    const bad: unknown[] = [
      null,
      { userId: 'alice', signatureKeys: [key()] },
      { userId: 'dDeviceAAAAAA', signatureKeys: [key()] },
      { userId: 'uAliceAAAAAAA', signatureKeys: [] },
      { userId: 'uAliceAAAAAAA', signatureKeys: 'nope' },
      { userId: 'uAliceAAAAAAA', signatureKeys: [new Uint8Array(33)] },
      { userId: 'uAliceAAAAAAA', signatureKeys: [Array.from(key())] },
      { userId: 'uAliceAAAAAAA', signatureKeys: [k, Uint8Array.from(k)] },
      { userId: 'uAliceAAAAAAA', signatureKeys: Array.from({ length: 65 }, key) },
      { userId: b.userId, signatureKeys: [key()] }, // the same user twice
    ];
    for (const a of bad) {
      await expect(safetyNumber(a as IdentitySet, b)).rejects.toMatchObject({ code: 'E_VALIDATION' });
      await expect(safetyQrPayload(a as IdentitySet, b)).rejects.toMatchObject({ code: 'E_VALIDATION' });
    }
  });
});

describe('formatSafetyNumber', () => {
  it('groups 60 digits by 5 and refuses anything else', () => {
    const n = '0'.repeat(30) + '1234567890'.repeat(3);
    expect(formatSafetyNumber(n)).toBe('00000 00000 00000 00000 00000 00000 12345 67890 12345 67890 12345 67890');
    for (const bad of ['', '1'.repeat(59), '1'.repeat(61), `${'1'.repeat(59)}a`, ` ${'1'.repeat(59)}`, 42]) {
      expect(() => formatSafetyNumber(bad as string)).toThrow(expect.objectContaining({ code: 'E_VALIDATION' }));
    }
  });
});

describe('safetyQrPayload / verifySafetyQr', () => {
  it('A\'s code verifies at B, with the same keys and the roles swapped', async () => {
    const a = alice();
    const b = bob();
    const fromA = await safetyQrPayload(a, b);
    expect(fromA.length).toBe(65);
    expect(fromA[0]).toBe(1);
    expect(Buffer.from(fromA.subarray(1, 33)).equals(referenceFingerprint(a).subarray(0, 32))).toBe(true);
    expect(Buffer.from(fromA.subarray(33)).equals(referenceFingerprint(b).subarray(0, 32))).toBe(true);
    expect(await verifySafetyQr(fromA, b, a)).toBe(true);
    // Device order on the scanning side does not matter either.
    expect(await verifySafetyQr(fromA, b, { ...a, signatureKeys: [...a.signatureKeys].reverse() })).toBe(true);
    // And symmetrically: B's code verifies at A.
    expect(await verifySafetyQr(await safetyQrPayload(b, a), a, b)).toBe(true);
  });

  it('does not verify with another key on either side, an added device, or the wrong roles', async () => {
    const a = alice();
    const b = bob();
    const fromA = await safetyQrPayload(a, b);
    // B was handed another key for A (a MITM by the key directory).
    expect(await verifySafetyQr(fromA, b, { ...a, signatureKeys: [a.signatureKeys[0]!, key()] })).toBe(false);
    // A was handed another key for B.
    expect(await verifySafetyQr(await safetyQrPayload(a, { ...b, signatureKeys: [key()] }), b, a)).toBe(false);
    // A device B does not know about.
    expect(await verifySafetyQr(await safetyQrPayload({ ...a, signatureKeys: [...a.signatureKeys, key()] }, b), b, a)).toBe(false);
    // A scanning its own code (e.g. a photo of its own screen) is not a verification.
    expect(await verifySafetyQr(fromA, a, b)).toBe(false);
    // A third user's code does not verify B's conversation with A.
    const c: IdentitySet = { userId: 'uCarolCCCCCCC', signatureKeys: [key()] };
    expect(await verifySafetyQr(await safetyQrPayload(c, b), b, a)).toBe(false);
  });

  it('gives false, never throws, for scanned garbage', async () => {
    const a = alice();
    const b = bob();
    const good = await safetyQrPayload(a, b);
    const otherVersion = Uint8Array.from(good);
    otherVersion[0] = 2;
    const flipped = Uint8Array.from(good);
    flipped[64]! ^= 1;
    const garbage: unknown[] = [
      new Uint8Array(0),
      good.subarray(0, 64),
      Uint8Array.from([...good, 0]),
      otherVersion,
      flipped,
      new Uint8Array(randomBytes(65)),
      new Uint8Array(65),
      Array.from(good),
      good.buffer,
      'not bytes',
      null,
      undefined,
      12,
    ];
    for (const g of garbage) await expect(verifySafetyQr(g as Uint8Array, b, a)).resolves.toBe(false);
    expect(await verifySafetyQr(good, b, a)).toBe(true);
  });

  it('throws E_VALIDATION for an invalid local or remote set (a caller error, not scanned input)', async () => {
    const b = bob();
    const good = await safetyQrPayload(alice(), b);
    await expect(verifySafetyQr(good, b, { userId: 'x', signatureKeys: [] })).rejects.toMatchObject({ code: 'E_VALIDATION' });
    await expect(verifySafetyQr(good, b, b)).rejects.toMatchObject({ code: 'E_VALIDATION' });
  });
});
