/**
 * Removes the GPS position from a JPEG's EXIF before it is uploaded, so no other user downloads
 * where a photo was taken. Only the GPS directory goes: orientation and the rest stay, and the
 * picture's bytes are untouched (no re-encoding). Browser-safe, no dependency.
 *
 * EXIF lives in an APP1 segment (`Exif\0\0` then a TIFF structure): IFD0 holds a GPSInfo entry
 * (tag 0x8825) pointing at the GPS directory. The entry is taken out of IFD0 (the entries after it
 * move up, IFD0's count drops by one) and the GPS directory and its values are zeroed.
 */

const GPS_TAG = 0x8825;
/** Bytes per value of each TIFF type. */
const TYPE_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8 };

/** A copy of the JPEG without its GPS data, or the same bytes when it has none (or is not a JPEG). */
export function stripJpegGps(input: Uint8Array): Uint8Array {
  if (input.length < 4 || input[0] !== 0xff || input[1] !== 0xd8) return input;
  let out: Uint8Array | null = null;
  let at = 2;
  while (at + 4 <= input.length && input[at] === 0xff) {
    const marker = input[at + 1]!;
    if (marker === 0xda || marker === 0xd9) break; // start of scan / end: no more metadata
    const len = (input[at + 2]! << 8) | input[at + 3]!;
    if (len < 2 || at + 2 + len > input.length) break;
    const body = at + 4;
    if (marker === 0xe1 && len >= 14 && String.fromCharCode(...input.subarray(body, body + 4)) === 'Exif'
      && stripTiffGps(out ?? input, body + 6, at + 2 + len, false)) {
      // A copy (a Node Buffer's slice() would share the caller's bytes), only when there is GPS.
      out ??= new Uint8Array(input);
      stripTiffGps(out, body + 6, at + 2 + len, true);
    }
    at += 2 + len;
  }
  return out ?? input;
}

/** Whether the TIFF structure has a GPS entry in IFD0; with `apply`, removes it (see above). */
function stripTiffGps(b: Uint8Array, tiff: number, end: number, apply: boolean): boolean {
  const little = b[tiff] === 0x49;
  const u16 = (o: number): number => (little ? b[o]! | (b[o + 1]! << 8) : (b[o]! << 8) | b[o + 1]!);
  const u32 = (o: number): number => (little
    ? (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16)) + b[o + 3]! * 0x1000000
    : b[o]! * 0x1000000 + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!));
  const w16 = (o: number, v: number): void => {
    if (little) { b[o] = v & 0xff; b[o + 1] = v >> 8; } else { b[o] = v >> 8; b[o + 1] = v & 0xff; }
  };
  const inside = (o: number, n: number): boolean => o >= tiff && o + n <= end;
  if (!inside(tiff, 8) || u16(tiff + 2) !== 42) return false;
  const ifd0 = tiff + u32(tiff + 4);
  if (!inside(ifd0, 2)) return false;
  const count = u16(ifd0);
  const entries = ifd0 + 2;
  if (!inside(entries, count * 12 + 4)) return false;
  for (let i = 0; i < count; i++) {
    const e = entries + i * 12;
    if (u16(e) !== GPS_TAG) continue;
    if (!apply) return true;
    const gps = tiff + u32(e + 8);
    // Zero the GPS directory: each entry's out-of-line value, then the entries and their count.
    if (inside(gps, 2)) {
      const n = u16(gps);
      if (inside(gps + 2, n * 12)) {
        for (let j = 0; j < n; j++) {
          const ge = gps + 2 + j * 12;
          const size = (TYPE_SIZE[u16(ge + 2)] ?? 1) * u32(ge + 4);
          if (size > 4 && inside(tiff + u32(ge + 8), size)) b.fill(0, tiff + u32(ge + 8), tiff + u32(ge + 8) + size);
        }
        b.fill(0, gps, gps + 2 + n * 12);
      }
    }
    // Take the entry out of IFD0: the later entries and the next-IFD offset move up by one entry.
    b.copyWithin(e, e + 12, entries + count * 12 + 4);
    b.fill(0, entries + (count - 1) * 12 + 4, entries + count * 12 + 4);
    w16(ifd0, count - 1);
    return true;
  }
  return false;
}
