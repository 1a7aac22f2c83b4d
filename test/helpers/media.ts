/** Media test files, made with sharp, and the client side of a multipart upload over HTTP. */
import { createHash } from 'node:crypto';
import sharp from 'sharp';

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A photo-like JPEG with EXIF (orientation 6: shown turned a quarter), a camera tag and a GPS position. */
export async function jpegWithExif(width = 800, height = 600): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 200, g: 80, b: 40 } } })
    .composite([{ input: Buffer.from(`<svg width="${width}" height="${height}"><circle cx="${width / 3}" cy="${height / 2}" r="${height / 4}" fill="#1e90ff"/></svg>`) }])
    .jpeg({ quality: 80 })
    .withExif({ IFD0: { Copyright: 'parley test', Make: 'TestCam' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1', GPSLongitudeRef: 'W', GPSLongitude: '0/1 7/1 0/1' } })
    .withMetadata({ orientation: 6 })
    .toBuffer();
}

/** Whether an image's EXIF has a GPS directory: a GPSInfo entry (tag 0x8825) in IFD0, parsed. */
export async function hasGps(image: Buffer | Uint8Array): Promise<boolean> {
  const exif = (await sharp(image).metadata()).exif;
  if (!exif || exif.toString('latin1', 0, 4) !== 'Exif') return false;
  const tiff = 6;
  const little = exif[tiff] === 0x49;
  const u16 = (o: number): number => (little ? exif.readUInt16LE(o) : exif.readUInt16BE(o));
  const u32 = (o: number): number => (little ? exif.readUInt32LE(o) : exif.readUInt32BE(o));
  const ifd0 = tiff + u32(tiff + 4);
  const count = u16(ifd0);
  for (let i = 0; i < count; i++) if (u16(ifd0 + 2 + i * 12) === 0x8825) return true;
  return false;
}

export async function png(width = 64, height = 48): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 4, background: { r: 0, g: 128, b: 0, alpha: 0.5 } } }).png().toBuffer();
}

export async function webp(width = 300, height = 200): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 10, g: 20, b: 200 } } }).webp().toBuffer();
}

const CRC_TABLE = Array.from({ length: 256 }, (_v, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A decompression bomb: a tiny PNG whose header claims `side` × `side` pixels. */
export async function pngBomb(side = 100_000): Promise<Buffer> {
  const b = Buffer.from(await png(1, 1));
  // IHDR: length (4) 'IHDR' (4) at offset 8; width and height at 16 and 20; CRC over type+data at 29.
  b.writeUInt32BE(side, 16);
  b.writeUInt32BE(side, 20);
  b.writeUInt32BE(crc32(b.subarray(12, 29)), 29);
  return b;
}

export interface Uploaded { attachmentId: string; sentBytes: number }

type Json = Record<string, unknown>;

/** createAttachment, PUT every part (or only `only`), complete: as a client does. */
export async function upload(
  httpUrl: string, token: string, bytes: Buffer, declare: Json, opts: { only?: number[]; complete?: boolean } = {},
): Promise<{ status: number; json: Json; attachmentId?: string; sentBytes: number; etags: Map<number, string>; partSize?: number }> {
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` };
  const res = await fetch(`${httpUrl}/v1/attachments`, {
    method: 'POST', headers, body: JSON.stringify({ size: bytes.length, sha256: sha256(bytes), ...declare }),
  });
  const json = (await res.json()) as Json;
  if (res.status !== 201) return { status: res.status, json, sentBytes: 0, etags: new Map() };
  const created = json as { attachment: { attachmentId: string }; partSize: number; parts: Array<{ partNumber: number; url: string }> };
  const etags = new Map<number, string>();
  let sentBytes = 0;
  for (const p of created.parts) {
    if (opts.only && !opts.only.includes(p.partNumber)) continue;
    sentBytes += await putPart(p.url, bytes, p.partNumber, created.partSize, etags);
  }
  const id = created.attachment.attachmentId;
  if (opts.complete === false) return { status: 201, json, attachmentId: id, sentBytes, etags, partSize: created.partSize };
  const done = await complete(httpUrl, token, id, etags);
  return { ...done, attachmentId: id, sentBytes, etags, partSize: created.partSize };
}

export async function putPart(url: string, bytes: Buffer, partNumber: number, partSize: number, etags: Map<number, string>): Promise<number> {
  const body = bytes.subarray((partNumber - 1) * partSize, partNumber * partSize);
  const r = await fetch(url, { method: 'PUT', body: new Uint8Array(body) });
  if (r.status !== 200) throw new Error(`part ${partNumber}: HTTP ${r.status} ${await r.text()}`);
  etags.set(partNumber, r.headers.get('etag') ?? '');
  return body.length;
}

export async function complete(httpUrl: string, token: string, attachmentId: string, etags: Map<number, string>): Promise<{ status: number; json: Json }> {
  const r = await fetch(`${httpUrl}/v1/attachments/${attachmentId}/complete`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ parts: [...etags].map(([partNumber, etag]) => ({ partNumber, etag })) }),
  });
  return { status: r.status, json: (await r.json()) as Json };
}

export async function getJson(url: string, token: string): Promise<{ status: number; json: Json }> {
  const r = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, json: (await r.json()) as Json };
}

/** A minimal MP4 (an `ftyp` box and a little `mdat`): enough for type sniffing, not for playing. */
export function tinyMp4(): Buffer {
  const ftyp = Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from('ftypisom'), Buffer.from([0, 0, 2, 0]), Buffer.from('isomiso2')]);
  const payload = Buffer.alloc(2048, 7);
  const mdat = Buffer.concat([Buffer.from([0, 0, (payload.length + 8) >> 8, (payload.length + 8) & 0xff]), Buffer.from('mdat'), payload]);
  return Buffer.concat([ftyp, mdat]);
}

/** A small valid-looking PDF. */
export function tinyPdf(): Buffer {
  return Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n' + 'x'.repeat(1000));
}
