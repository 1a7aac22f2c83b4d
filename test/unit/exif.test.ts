/** stripJpegGps: the GPS directory goes, the rest of the EXIF and the picture stay; the input is never changed. */
import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { stripJpegGps } from '@parley/client-sdk/protocol';
import { hasGps, jpegWithExif, png } from '../helpers/media.js';

describe('stripJpegGps', () => {
  it('removes the GPS position and keeps orientation, camera and pixels; the input stays as it was', async () => {
    const jpeg = await jpegWithExif(120, 90);
    const before = Buffer.from(jpeg);
    const out = stripJpegGps(jpeg);
    expect(Buffer.from(jpeg).equals(before)).toBe(true);
    expect(await hasGps(jpeg)).toBe(true);
    expect(await hasGps(out)).toBe(false);
    const meta = await sharp(out).metadata();
    expect(meta).toMatchObject({ orientation: 6, width: 120, height: 90 });
    expect(meta.exif?.includes(Buffer.from('TestCam'))).toBe(true);
    const [a, b] = await Promise.all([sharp(jpeg).raw().toBuffer(), sharp(out).raw().toBuffer()]);
    expect(a.equals(b)).toBe(true);
    expect(stripJpegGps(out)).toBe(out); // nothing left to remove: the same bytes
  });

  it('leaves alone what is not a JPEG with EXIF', async () => {
    const p = await png();
    expect(stripJpegGps(p)).toBe(p);
    const plain = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'blue' } }).jpeg().toBuffer();
    expect(stripJpegGps(plain)).toBe(plain);
    const junk = new Uint8Array([0xff, 0xd8, 0xff, 0xe1, 0x00, 0x10, 0x45, 0x78, 0x69, 0x66, 0, 0, 0x49, 0x49, 0x2a]);
    expect(() => stripJpegGps(junk)).not.toThrow();
  });
});
