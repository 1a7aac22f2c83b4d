/** Byte/text conversions for the wire and for hashes, browser-safe (no Buffer). */

export const bytesToHex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
export const hexToBytes = (hex: string): Uint8Array => Uint8Array.from(hex.match(/../g) ?? [], (x) => parseInt(x, 16));
/** Base64 of any length (in chunks: one spread of a large array would overflow the call stack). */
export const bytesToBase64 = (b: Uint8Array): string => {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
};
export const base64ToBytes = (s: string): Uint8Array => Uint8Array.from(atob(s), (ch) => ch.charCodeAt(0));
/** Base64url without padding (RFC 4648 §5), as the key directory carries bytes. */
export const bytesToBase64Url = (b: Uint8Array): string => bytesToBase64(b).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
export const base64UrlToBytes = (s: string): Uint8Array => {
  const std = s.replaceAll('-', '+').replaceAll('_', '/');
  return base64ToBytes(std + '='.repeat((4 - (std.length % 4)) % 4));
};
