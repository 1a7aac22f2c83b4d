/**
 * Device tokens and one-time codes. Tokens are `<deviceId>.<32 random bytes, base64url>`; only the
 * sha256 of the secret part is stored (it has 256 bits of entropy, so a plain hash is enough).
 * Codes have 6 digits, too few to hash plainly, so they are stored as an HMAC keyed with the
 * server secret and bound to the phone number.
 */
import { createHash, createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { isId } from '@parley/client-sdk/protocol';

export function newDeviceToken(deviceId: string): { token: string; tokenHash: string } {
  const secret = randomBytes(32).toString('base64url');
  return { token: `${deviceId}.${secret}`, tokenHash: sha256(secret) };
}

export function parseToken(token: string): { deviceId: string; secret: string } | null {
  const dot = token.indexOf('.');
  if (dot < 0 || token.length > 200) return null;
  const deviceId = token.slice(0, dot);
  const secret = token.slice(dot + 1);
  if (!isId(deviceId) || secret.length < 16) return null;
  return { deviceId, secret };
}

export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export function sameHash(a: string, b: string): boolean {
  const ba = Buffer.from(a, 'hex');
  const bb = Buffer.from(b, 'hex');
  return ba.length === bb.length && ba.length > 0 && timingSafeEqual(ba, bb);
}

export function newCode(): string {
  return randomInt(0, 1_000_000).toString().padStart(6, '0');
}

export function hashCode(secret: string, phone: string, code: string): string {
  return createHmac('sha256', secret).update(`${phone}:${code}`).digest('hex');
}

/** Link codes are typed by hand: no 0/O or 1/I/L. 10 of 32 symbols = 50 bits, single use, short-lived, rate-limited. */
const LINK_ALPHABET = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789';

/** A device link code (`XXXXX-XXXXX`) or, with `invite`, a group invitation code (22 base64url characters, 132 bits). */
export function newGrantCode(kind: 'link' | 'invite'): string {
  if (kind === 'invite') return randomBytes(16).toString('base64url');
  let s = '';
  for (let i = 0; i < 10; i++) s += LINK_ALPHABET[randomInt(0, LINK_ALPHABET.length)];
  return `${s.slice(0, 5)}-${s.slice(5)}`;
}

/** What is stored of a link code or invitation: an HMAC with the server secret (a leaked table grants nothing). */
export function hashGrant(secret: string, kind: 'link' | 'invite', code: string): string {
  const normal = kind === 'link' ? code.toUpperCase().replace(/[^A-Z0-9]/g, '') : code;
  return createHmac('sha256', secret).update(`${kind}:${normal}`).digest('hex');
}
