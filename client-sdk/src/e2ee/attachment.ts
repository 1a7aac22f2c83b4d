/**
 * End-to-end encrypted media: the client encrypts an attachment before uploading it, and the key
 * travels inside the (MLS-encrypted) message, so the server stores only ciphertext it cannot read.
 *
 * AES-256-GCM with a fresh random 32-byte key and 12-byte IV per attachment (never reused: a key
 * encrypts one plaintext only), through WebCrypto (`globalThis.crypto.subtle`, in Node 20+ and
 * browsers); no primitive is written here. The ciphertext is the GCM output (plaintext, then the
 * 16-byte tag). The key record also holds the SHA-256 of the ciphertext as uploaded, checked
 * before decrypting, and the plaintext's size.
 *
 * Any integrity failure (digest, authentication tag, size) is E_MEDIA_CHECKSUM, the code the SDK
 * already gives a download whose SHA-256 differs from its message's.
 */
import { Decoder, Encoder } from 'cbor-x';
import { ParleyError } from '../errors.js';

export interface AttachmentKey {
  /** 32 random bytes: the AES-256-GCM key. */
  key: Uint8Array;
  /** 12 random bytes: the GCM IV. */
  iv: Uint8Array;
  /** SHA-256 of the ciphertext as uploaded. */
  digest: Uint8Array;
  /** Plaintext bytes. */
  size: number;
}

const KEY_BYTES = 32;
const IV_BYTES = 12;
const DIGEST_BYTES = 32;
const TAG_BYTES = 16;

const subtle = (): SubtleCrypto => {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new ParleyError('E_CONFIG', 'WebCrypto (globalThis.crypto.subtle) is missing: a secure context (https) is needed in browsers');
  return s;
};

const random = (n: number): Uint8Array<ArrayBuffer> => globalThis.crypto.getRandomValues(new Uint8Array(n));

const isBytes = (v: unknown, length: number): v is Uint8Array => v instanceof Uint8Array && v.length === length;
const isSize = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** WebCrypto's typings want an ArrayBuffer-backed view; the bytes are copied by the call anyway. */
const buf = (b: Uint8Array): Uint8Array<ArrayBuffer> => b as Uint8Array<ArrayBuffer>;

function checkKey(k: AttachmentKey): void {
  if (typeof k !== 'object' || k === null || !isBytes(k.key, KEY_BYTES) || !isBytes(k.iv, IV_BYTES)
    || !isBytes(k.digest, DIGEST_BYTES) || !isSize(k.size)) {
    throw new ParleyError('E_VALIDATION', `an attachment key has a ${KEY_BYTES}-byte key, a ${IV_BYTES}-byte iv, a ${DIGEST_BYTES}-byte digest and a size`);
  }
}

/** Encrypts one attachment under a key and IV of its own. */
export async function encryptAttachment(plain: Uint8Array): Promise<{ ciphertext: Uint8Array; key: AttachmentKey }> {
  if (!(plain instanceof Uint8Array)) throw new ParleyError('E_VALIDATION', 'the attachment must be a Uint8Array');
  const size = plain.length;
  const s = subtle();
  const key = random(KEY_BYTES);
  const iv = random(IV_BYTES);
  const aes = await s.importKey('raw', key, { name: 'AES-GCM' }, false, ['encrypt']);
  const ciphertext = new Uint8Array(await s.encrypt({ name: 'AES-GCM', iv, tagLength: TAG_BYTES * 8 }, aes, buf(plain)));
  const digest = new Uint8Array(await s.digest('SHA-256', ciphertext));
  return { ciphertext, key: { key, iv, digest, size } };
}

/**
 * Checks and decrypts a downloaded attachment: its SHA-256 first (nothing is decrypted when it
 * differs), then the GCM tag, then the plaintext's size; any failure is E_MEDIA_CHECKSUM.
 */
export async function decryptAttachment(ciphertext: Uint8Array, key: AttachmentKey): Promise<Uint8Array> {
  if (!(ciphertext instanceof Uint8Array)) throw new ParleyError('E_VALIDATION', 'the ciphertext must be a Uint8Array');
  checkKey(key);
  const s = subtle();
  const digest = new Uint8Array(await s.digest('SHA-256', buf(ciphertext)));
  if (!equal(digest, key.digest)) throw new ParleyError('E_MEDIA_CHECKSUM', 'the encrypted attachment\'s SHA-256 is not the one in its message');
  const aes = await s.importKey('raw', buf(key.key), { name: 'AES-GCM' }, false, ['decrypt']);
  let plain: Uint8Array;
  try {
    plain = new Uint8Array(await s.decrypt({ name: 'AES-GCM', iv: buf(key.iv), tagLength: TAG_BYTES * 8 }, aes, buf(ciphertext)));
  } catch {
    throw new ParleyError('E_MEDIA_CHECKSUM', 'the encrypted attachment does not authenticate under its key');
  }
  if (plain.length !== key.size) throw new ParleyError('E_MEDIA_CHECKSUM', `the attachment has ${plain.length} bytes, its message says ${key.size}`);
  return plain;
}

/** Compares two digests (public values: no need for constant time). */
function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// The codec's settings (client-sdk/src/codec.ts): byte strings as plain CBOR byte strings.
const encoder = new Encoder({ useRecords: false, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

/**
 * The key record as it travels inside an encrypted message: a CBOR array [key, iv, digest, size]
 * (83 to 91 bytes). Like the envelopes, later versions may only append fields; a decoder ignores
 * trailing items it does not know.
 */
export function encodeAttachmentKey(k: AttachmentKey): Uint8Array {
  checkKey(k);
  // A copy with a buffer of its own: cbor-x answers a view into a buffer it shares between calls.
  return new Uint8Array(encoder.encode([k.key, k.iv, k.digest, k.size]) as Uint8Array);
}

/** Reads a key record; E_BAD_ENVELOPE when it is not one (not CBOR, wrong shape or sizes). */
export function decodeAttachmentKey(b: Uint8Array): AttachmentKey {
  const bad = (detail: string): ParleyError => new ParleyError('E_BAD_ENVELOPE', `attachment key: ${detail}`);
  if (!(b instanceof Uint8Array) || b.length === 0) throw bad('empty');
  let raw: unknown;
  try {
    raw = decoder.decode(b);
  } catch {
    throw bad('not CBOR');
  }
  if (!Array.isArray(raw) || raw.length < 4) throw bad('not a key array');
  const [key, iv, digest, size] = raw as unknown[];
  if (!isBytes(key, KEY_BYTES)) throw bad('key');
  if (!isBytes(iv, IV_BYTES)) throw bad('iv');
  if (!isBytes(digest, DIGEST_BYTES)) throw bad('digest');
  if (!isSize(size)) throw bad('size');
  // Copies: plain Uint8Arrays of their own, not views into the input.
  return { key: new Uint8Array(key), iv: new Uint8Array(iv), digest: new Uint8Array(digest), size };
}
