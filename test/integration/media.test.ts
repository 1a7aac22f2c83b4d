/**
 * Media through the HTTP API on the embedded store: createAttachment, multipart upload through the
 * signed part URLs, server-side checks (size, SHA-256, type sniffed from the bytes), the thumbnail
 * job (WebP without metadata, ThumbHash preview, EXIF orientation), downloads for the owner only
 * (until messages reference it), resuming an upload cut in the middle, and every refusal with its
 * catalogue code while the worker goes on.
 */
import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { complete, getJson, hasGps, jpegWithExif, png, pngBomb, putPart, sha256, upload, webp } from '../helpers/media.js';

let p: TestPlatform;
let alice: Registered;
let bob: Registered;

beforeAll(async () => {
  p = await startTestPlatform({ PARLEY_MEDIA_MAX_IMAGE_MB: '2', PARLEY_MEDIA_MAX_PIXELS: '30000000' });
  alice = await p.register();
  bob = await p.register();
}, 60_000);

afterAll(async () => { await p?.close(); });

const info = async (id: string, token = alice.token) => getJson(`${p.httpUrl}/v1/attachments/${id}`, token);
const ready = async (id: string): Promise<Record<string, unknown>> => {
  let last: Record<string, unknown> = {};
  await until(async () => {
    last = (await info(id)).json;
    return last.state === 'ready' || last.state === 'failed';
  }, 20_000, `attachment ${id} processed`);
  return last;
};
const download = async (id: string, token: string, thumbnail = false): Promise<{ status: number; body: Buffer; code?: string }> => {
  const r = await getJson(`${p.httpUrl}/v1/attachments/${id}/download${thumbnail ? '?thumbnail=1' : ''}`, token);
  if (r.status !== 200) return { status: r.status, body: Buffer.alloc(0), code: (r.json.error as { code: string }).code };
  const res = await fetch(r.json.url as string);
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
};

describe('images', () => {
  it('a JPEG with EXIF: verified, thumbnailed (turned upright, no metadata), previewed; the original comes back byte for byte', async () => {
    const jpeg = await jpegWithExif(800, 600);
    expect(await hasGps(jpeg)).toBe(true);
    const up = await upload(p.httpUrl, alice.token, jpeg, { kind: 'image', contentType: 'image/jpeg', filename: 'cat.jpg' });
    expect(up.status).toBe(200);
    expect(up.json).toMatchObject({ state: 'processing', contentType: 'image/jpeg' });
    const a = await ready(up.attachmentId!);
    // Orientation 6: shown 600 wide and 800 high.
    expect(a).toMatchObject({ state: 'ready', width: 600, height: 800, hasThumbnail: true, filename: 'cat.jpg' });
    expect(Buffer.from(a.preview as string, 'base64').length).toBeLessThan(40);
    const original = await download(up.attachmentId!, alice.token);
    expect(sha256(original.body)).toBe(sha256(jpeg));
    const thumb = await download(up.attachmentId!, alice.token, true);
    const meta = await sharp(thumb.body).metadata();
    expect(meta).toMatchObject({ format: 'webp', width: 240, height: 320 });
    expect(meta.exif).toBeUndefined();
    expect(await hasGps(thumb.body)).toBe(false);
    expect(meta.orientation).toBeUndefined();
  });

  it('PNG, WebP and a 6000×4000 image all get thumbnails', async () => {
    const big = await sharp({ create: { width: 6000, height: 4000, channels: 3, background: { r: 1, g: 2, b: 3 } } }).jpeg({ quality: 50 }).toBuffer();
    for (const [bytes, type, w, h] of [[await png(), 'image/png', 64, 48], [await webp(), 'image/webp', 300, 200], [big, 'image/jpeg', 6000, 4000]] as const) {
      const up = await upload(p.httpUrl, alice.token, bytes, { kind: 'image', contentType: type });
      expect(up.status).toBe(200);
      expect(await ready(up.attachmentId!)).toMatchObject({ state: 'ready', width: w, height: h, hasThumbnail: true });
    }
  }, 60_000);
});

describe('resumable uploads', () => {
  it('an upload cut after some parts resumes with fresh URLs for the rest only, and nothing is sent twice', async () => {
    const doc = randomBytes(12 * 1024 * 1024 + 777);
    const first = await upload(p.httpUrl, alice.token, doc, { kind: 'document', contentType: 'application/pdf', filename: 'big.bin' }, { only: [1, 3], complete: false });
    expect(first.status).toBe(201);
    const id = first.attachmentId!;
    // The app restarts: it asks for URLs of the parts it has no ETag for.
    const again = await fetch(`${p.httpUrl}/v1/attachments/${id}/parts`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${alice.token}` }, body: JSON.stringify({ parts: [2] }),
    });
    const fresh = (await again.json()) as { parts: Array<{ partNumber: number; url: string }> };
    expect(fresh.parts.map((x) => x.partNumber)).toEqual([2]);
    const resent = await putPart(fresh.parts[0]!.url, doc, 2, first.partSize!, first.etags);
    expect(first.sentBytes + resent).toBe(doc.length);
    const done = await complete(p.httpUrl, alice.token, id, first.etags);
    expect(done.status).toBe(200);
    expect(done.json).toMatchObject({ state: 'ready', size: doc.length });
    expect(sha256((await download(id, alice.token)).body)).toBe(sha256(doc));
  }, 60_000);
});

describe('refusals, each with its code; the worker goes on', () => {
  it('over the limit, wrong checksum, a lying type, a corrupt image, a decompression bomb; then a good image still gets done', async () => {
    const tooBig = await fetch(`${p.httpUrl}/v1/attachments`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${alice.token}` },
      body: JSON.stringify({ kind: 'image', contentType: 'image/jpeg', size: 3 * 1024 * 1024, sha256: 'a'.repeat(64) }),
    });
    expect(tooBig.status).toBe(413);
    expect(((await tooBig.json()) as { error: { code: string } }).error.code).toBe('E_MEDIA_TOO_LARGE');

    const jpeg = await jpegWithExif(64, 64);
    const wrongSum = await upload(p.httpUrl, alice.token, jpeg, { kind: 'image', contentType: 'image/jpeg', sha256: 'b'.repeat(64) });
    expect(wrongSum.status).toBe(422);
    expect(wrongSum.json).toMatchObject({ error: { code: 'E_MEDIA_CHECKSUM' } });
    expect((await info(wrongSum.attachmentId!)).json).toMatchObject({ state: 'failed', error: 'E_MEDIA_CHECKSUM' });

    const liar = await upload(p.httpUrl, alice.token, jpeg, { kind: 'image', contentType: 'image/png' });
    expect(liar.status).toBe(415);
    expect(liar.json).toMatchObject({ error: { code: 'E_MEDIA_TYPE' } });
    const exe = await upload(p.httpUrl, alice.token, Buffer.from('MZ this is not a picture at all'.repeat(10)), { kind: 'image', contentType: 'image/jpeg' });
    expect(exe.json).toMatchObject({ error: { code: 'E_MEDIA_TYPE' } });

    // A JPEG header followed by garbage: it sniffs as JPEG, but sharp cannot decode it.
    const corrupt = Buffer.concat([jpeg.subarray(0, 200), randomBytes(5000)]);
    const bad = await upload(p.httpUrl, alice.token, corrupt, { kind: 'image', contentType: 'image/jpeg' });
    expect(bad.status).toBe(200);
    expect(await ready(bad.attachmentId!)).toMatchObject({ state: 'failed', error: 'E_MEDIA_CORRUPT' });
    const bomb = await upload(p.httpUrl, alice.token, await pngBomb(), { kind: 'image', contentType: 'image/png' });
    expect(bomb.status).toBe(200);
    expect(await ready(bomb.attachmentId!)).toMatchObject({ state: 'failed', error: 'E_MEDIA_CORRUPT' });
    const good = await upload(p.httpUrl, alice.token, await png(), { kind: 'image', contentType: 'image/png' });
    expect(await ready(good.attachmentId!)).toMatchObject({ state: 'ready' });
    // Failed ones cannot be downloaded.
    expect((await download(bad.attachmentId!, alice.token)).code).toBe('E_MEDIA_STATE');
  }, 60_000);

  it('a picture too wide to be one is refused like a bomb; a part over its size is refused (E_PAYLOAD_TOO_LARGE)', async () => {
    const strip = await sharp({ create: { width: 2_000_000, height: 1, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png().toBuffer();
    const up = await upload(p.httpUrl, alice.token, strip, { kind: 'image', contentType: 'image/png' });
    expect(await ready(up.attachmentId!)).toMatchObject({ state: 'failed', error: 'E_MEDIA_CORRUPT' });
    const small = await png();
    const created = await upload(p.httpUrl, alice.token, small, { kind: 'image', contentType: 'image/png' }, { only: [], complete: false });
    const parts = (created.json as { parts: Array<{ url: string }> }).parts;
    const res = await fetch(parts[0]!.url, { method: 'PUT', body: new Uint8Array(6 * 1024 * 1024) });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('E_PAYLOAD_TOO_LARGE');
  }, 30_000);

  it('a document is always served as a download, never rendered; names of any script work', async () => {
    const html = Buffer.from('<html><script>alert(document.cookie)</script></html>');
    const up = await upload(p.httpUrl, alice.token, html, { kind: 'document', contentType: 'text/html', filename: 'página.html' });
    expect(up.status).toBe(200);
    const r = await getJson(`${p.httpUrl}/v1/attachments/${up.attachmentId}/download`, alice.token);
    const res = await fetch(r.json.url as string);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="p_gina.html"; filename\*=UTF-8''p%C3%A1gina.html$/);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const bad = await fetch(`${p.httpUrl}/v1/attachments`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${alice.token}` },
      body: JSON.stringify({ kind: 'document', contentType: 'text/plain', size: 5, sha256: 'a'.repeat(64), filename: 'x\n99999\ny' }),
    });
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('E_VALIDATION');
  });

  it('someone else cannot see or download it, and a tampered URL is refused', async () => {
    const up = await upload(p.httpUrl, alice.token, await png(), { kind: 'image', contentType: 'image/png' });
    await ready(up.attachmentId!);
    expect((await info(up.attachmentId!, bob.token)).status).toBe(404);
    expect((await download(up.attachmentId!, bob.token)).code).toBe('E_NOT_FOUND');
    const r = await getJson(`${p.httpUrl}/v1/attachments/${up.attachmentId}/download`, alice.token);
    const forged = (r.json.url as string).replace(/sig=([^&]{3})/, 'sig=xyz');
    const res = await fetch(forged);
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('E_URL_SIGNATURE');
  });
});
