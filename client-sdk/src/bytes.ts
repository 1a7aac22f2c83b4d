/** Byte/text conversions for the wire and for hashes, browser-safe (no Buffer). */

export const bytesToHex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
export const hexToBytes = (hex: string): Uint8Array => Uint8Array.from(hex.match(/../g) ?? [], (x) => parseInt(x, 16));
export const bytesToBase64 = (b: Uint8Array): string => btoa(String.fromCharCode(...b));
export const base64ToBytes = (s: string): Uint8Array => Uint8Array.from(atob(s), (ch) => ch.charCodeAt(0));
