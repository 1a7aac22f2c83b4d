/**
 * Social constants shared by the SDK and the server, without dependencies (zod stays out of
 * browser bundles): the limits of contacts look-ups and profile texts, and the phone hash.
 *
 * The phone hash of contacts discovery: SHA-256 of the E.164 string (UTF-8), lowercase hex. The
 * SDK hashes an address book with it before the upload, and the server hashes each user's phone
 * with the same function, so the two meet on the hash. WebCrypto (`globalThis.crypto.subtle`):
 * the same code runs in browsers and in Node 20+.
 *
 * A hash of a phone number is no secret (there are only about 10^10 numbers per country code to
 * try): it keeps the raw numbers out of requests and logs; the rate limits are the defence
 * against enumeration (docs/ARCHITECTURE.md).
 */
import { bytesToHex } from './bytes.js';

/** SHA-256 (hex) of an E.164 number such as `+447700900123`. */
export async function hashPhone(e164: string): Promise<string> {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', new TextEncoder().encode(e164));
  return bytesToHex(new Uint8Array(digest));
}

/** A phone hash's shape: 64 lowercase hex characters. */
export const PHONE_HASH = /^[0-9a-f]{64}$/;

/** Contacts discovery's request size: hashes per `POST /v1/contacts/lookup` (the SDK splits larger books). */
export const CONTACT_LIMITS = Object.freeze({ hashesPerRequest: 1000 });

/** Profile text limits, in characters (code points), as WhatsApp's. */
export const PROFILE_LIMITS = Object.freeze({ name: 25, about: 139 });
