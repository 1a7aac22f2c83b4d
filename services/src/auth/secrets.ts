/**
 * Device tokens and one-time codes. Tokens are `<deviceId>.<32 random bytes, base64url>`; only the
 * sha256 of the secret part is stored (it has 256 bits of entropy, so a plain hash is enough).
 * Codes have 6 digits, too few to hash plainly, so they are stored as an HMAC keyed with the
 * server secret and bound to the phone number.
 */
import { createHash, createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { isId } from '@parley/client-sdk';

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
