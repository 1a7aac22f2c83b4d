/**
 * Safety numbers and their QR payload: how two users check that the device identity keys the
 * server handed each of them are the keys the other side really has (docs/SECURITY.md,
 * "Verification"). Modelled on Signal's numeric fingerprint. This version covers a user's whole
 * set of device identity keys, as WhatsApp does for multi-device, so linking, replacing or revoking
 * any device changes the number.
 *
 * Per user, the fingerprint is:
 *
 *     keys   = the user's Ed25519 device signature public keys (32 bytes each), sorted bytewise,
 *              concatenated
 *     h      = version (uint16, big-endian) || keys || UTF-8(userId)
 *     repeat ITERATIONS (5200) times:  h = SHA-512(h || keys)
 *
 * The displayed half is the first 30 bytes of `h`, as six 5-byte big-endian numbers, each taken mod
 * 100000 and zero-padded to 5 digits (30 digits). The safety number is both halves concatenated,
 * the user whose id sorts first (by UTF-8 bytes) first, so both sides show the same 60 digits.
 *
 * The QR payload carries exact bytes instead of digits:
 * `version (1 byte) || first 32 bytes of local h || first 32 bytes of remote h` (65 bytes). The scanner
 * expects the roles swapped (the code's "local" is the scanner's "remote"). A code that shows the
 * scanner its own side first, such as a photo of the scanner's own screen, does not verify.
 *
 * Primitives: WebCrypto SHA-512 only (`globalThis.crypto.subtle`), browser-safe. The iterations
 * make it costly for an attacker to search for a key that gives a chosen number. They take about
 * 0.1–0.3 s per user, so callers should compute a number when the user opens the verification
 * screen, not on every render.
 */
import { ParleyError } from '../errors.js';
import { isUserId } from '../ids.js';

/** One user's identity for verification: every device signature key of that user, in any order. */
export interface IdentitySet {
  userId: string;
  signatureKeys: Uint8Array[];
}

/** The fingerprint format version. It is hashed into every fingerprint and is the QR's first byte. */
const VERSION = 1;
const ITERATIONS = 5200;
/** Ed25519 public keys (the ciphersuite MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519). */
const KEY_LENGTH = 32;
/** The server allows at most 64 devices per user (PARLEY_MAX_DEVICES). */
const MAX_KEYS = 64;
const DISPLAY_BYTES = 30;
const QR_FINGERPRINT_BYTES = 32;
const QR_LENGTH = 1 + 2 * QR_FINGERPRINT_BYTES;

const utf8 = new TextEncoder();

function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array || Object.prototype.toString.call(value) === '[object Uint8Array]';
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

interface CheckedIdentity {
  userId: string;
  id: Uint8Array;
  /** The sorted keys, concatenated (copied: later changes by the caller do not matter). */
  keys: Uint8Array<ArrayBuffer>;
}

/** Validates an identity set and takes a sorted copy of its keys. */
function check(set: unknown, which: string): CheckedIdentity {
  if (typeof set !== 'object' || set === null) throw new ParleyError('E_VALIDATION', `${which}: an identity set is required`);
  const { userId, signatureKeys } = set as Partial<IdentitySet>;
  if (!isUserId(userId)) throw new ParleyError('E_VALIDATION', `${which}.userId: not a user id`);
  if (!Array.isArray(signatureKeys) || signatureKeys.length === 0 || signatureKeys.length > MAX_KEYS) {
    throw new ParleyError('E_VALIDATION', `${which}.signatureKeys: 1 to ${MAX_KEYS} device keys are required`);
  }
  const sorted = signatureKeys.map((k: unknown, i) => {
    if (!isBytes(k) || k.length !== KEY_LENGTH) {
      throw new ParleyError('E_VALIDATION', `${which}.signatureKeys[${i}]: an Ed25519 public key is ${KEY_LENGTH} bytes`);
    }
    return Uint8Array.from(k);
  }).sort(compareBytes);
  const keys = new Uint8Array(sorted.length * KEY_LENGTH);
  sorted.forEach((k, i) => {
    if (i > 0 && compareBytes(k, sorted[i - 1] as Uint8Array) === 0) {
      throw new ParleyError('E_VALIDATION', `${which}.signatureKeys: the same key is listed twice`);
    }
    keys.set(k, i * KEY_LENGTH);
  });
  return { userId, id: utf8.encode(userId), keys };
}

function checkPair(a: unknown, b: unknown, aName: string, bName: string): [CheckedIdentity, CheckedIdentity] {
  const x = check(a, aName);
  const y = check(b, bName);
  if (x.userId === y.userId) throw new ParleyError('E_VALIDATION', `${aName} and ${bName} are the same user`);
  return [x, y];
}

/** The 64-byte iterated SHA-512 of one identity set (see the module comment). */
async function fingerprint(identity: CheckedIdentity): Promise<Uint8Array> {
  const { keys, id } = identity;
  const first = new Uint8Array(2 + keys.length + id.length + keys.length);
  first[0] = VERSION >> 8;
  first[1] = VERSION & 0xff;
  first.set(keys, 2);
  first.set(id, 2 + keys.length);
  first.set(keys, 2 + keys.length + id.length);
  let hash = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-512', first));
  // Every later round hashes (previous hash || keys). digest() copies its input, so one buffer serves.
  const round = new Uint8Array(64 + keys.length);
  round.set(keys, 64);
  for (let i = 1; i < ITERATIONS; i++) {
    round.set(hash, 0);
    hash = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-512', round));
  }
  return hash;
}

/** 30 digits: six 5-byte big-endian chunks, each mod 100000, zero-padded. */
function displayHalf(hash: Uint8Array): string {
  let out = '';
  for (let off = 0; off < DISPLAY_BYTES; off += 5) {
    let chunk = 0;
    // 40 bits fit exactly in a double (53-bit mantissa); no bitwise operators, which would truncate to 32.
    for (let j = 0; j < 5; j++) chunk = chunk * 256 + (hash[off + j] as number);
    out += String(chunk % 100000).padStart(5, '0');
  }
  return out;
}

/**
 * The 60-digit safety number of two users, the same on both sides, whichever is `a`. It changes
 * when either user adds, replaces or removes a device key. The order of each key list does not
 * matter. Throws E_VALIDATION for an invalid set, duplicate keys, or the same user twice.
 */
export async function safetyNumber(a: IdentitySet, b: IdentitySet): Promise<string> {
  const [x, y] = checkPair(a, b, 'a', 'b');
  const [fx, fy] = await Promise.all([fingerprint(x), fingerprint(y)]);
  const [first, second] = compareBytes(x.id, y.id) < 0 ? [fx, fy] : [fy, fx];
  return displayHalf(first) + displayHalf(second);
}

/** `12345 67890 …`: the 60 digits in 12 groups of 5, separated by single spaces. */
export function formatSafetyNumber(n: string): string {
  if (typeof n !== 'string' || !/^[0-9]{60}$/.test(n)) throw new ParleyError('E_VALIDATION', 'a safety number is 60 digits');
  return n.replace(/([0-9]{5})(?=[0-9])/g, '$1 ');
}

function qrBytes(own: Uint8Array, other: Uint8Array): Uint8Array {
  const out = new Uint8Array(QR_LENGTH);
  out[0] = VERSION;
  out.set(own.subarray(0, QR_FINGERPRINT_BYTES), 1);
  out.set(other.subarray(0, QR_FINGERPRINT_BYTES), 1 + QR_FINGERPRINT_BYTES);
  return out;
}

/**
 * The bytes to show as a QR code on `local`'s screen: the version, then the first 32 bytes of
 * local's fingerprint, then remote's (65 bytes). `remote` scans it with {@link verifySafetyQr}.
 */
export async function safetyQrPayload(local: IdentitySet, remote: IdentitySet): Promise<Uint8Array> {
  const [l, r] = checkPair(local, remote, 'local', 'remote');
  const [fl, fr] = await Promise.all([fingerprint(l), fingerprint(r)]);
  return qrBytes(fl, fr);
}

/**
 * Checks a QR payload scanned from `remote`'s screen (made there by `safetyQrPayload(remote, local)`).
 * Returns true only if the payload has this version and both fingerprints match the keys this side
 * holds, in the right roles. The comparison is constant-time. Scanned bytes of any shape (wrong
 * length, another version, not bytes at all) give false, never an exception. Invalid `local` or
 * `remote` sets are the caller's error and throw E_VALIDATION, as in {@link safetyNumber}.
 */
export async function verifySafetyQr(payload: Uint8Array, local: IdentitySet, remote: IdentitySet): Promise<boolean> {
  const [l, r] = checkPair(local, remote, 'local', 'remote');
  if (!isBytes(payload) || payload.length !== QR_LENGTH || payload[0] !== VERSION) return false;
  const [fl, fr] = await Promise.all([fingerprint(l), fingerprint(r)]);
  const expected = qrBytes(fr, fl); // the remote side put its own fingerprint first
  let diff = 0;
  for (let i = 0; i < QR_LENGTH; i++) diff |= (payload[i] as number) ^ (expected[i] as number);
  return diff === 0;
}
