/**
 * The BlobStore contract: what every media store adapter does (services/src/media/blob-store.ts).
 * Run on the embedded adapter (files + the platform's signed URLs) and on the `minio` adapter
 * against s3rver in every `npm test`, and against MinIO when S3_ENDPOINT is set.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BlobError, MIN_PART_SIZE, type BlobStore } from '../../services/src/media/blob-store.js';

export interface BlobStoreContext { store: BlobStore }

async function bytesOf(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
let n = 0;
const key = (): string => `test/${process.pid}-${Date.now().toString(36)}-${++n}`;

/** PUTs a part to its presigned URL like a client does; returns the ETag. */
async function putPart(url: string, body: Buffer): Promise<string> {
  const res = await fetch(url, { method: 'PUT', body: new Uint8Array(body), headers: { 'content-type': 'application/octet-stream' } });
  expect(res.status).toBe(200);
  const etag = res.headers.get('etag');
  expect(etag).toBeTruthy();
  return etag!;
}

export function blobStoreContract(name: string, ctx: () => BlobStoreContext): void {
  describe(`BlobStore contract: ${name}`, () => {
    it('put, stat, read (whole and a range), remove', async () => {
      const { store } = ctx();
      const k = key();
      const body = randomBytes(100_000);
      expect(await store.stat(k)).toBeNull();
      await store.put(k, body, 'image/webp');
      expect(await store.stat(k)).toMatchObject({ size: body.length, contentType: 'image/webp' });
      expect(sha(await bytesOf(await store.read(k)))).toBe(sha(body));
      expect(await bytesOf(await store.read(k, { start: 10, end: 19 }))).toEqual(body.subarray(10, 20));
      await store.remove([k, `${k}-never-was`]);
      expect(await store.stat(k)).toBeNull();
      await expect(store.read(k)).rejects.toBeInstanceOf(BlobError);
    });

    it('a multipart upload through presigned part URLs, completed in order, then a presigned download with Range', async () => {
      const { store } = ctx();
      const k = key();
      const p1 = randomBytes(MIN_PART_SIZE);
      const p2 = randomBytes(123_457);
      const uploadId = await store.createUpload(k, 'video/mp4');
      // Parts may arrive in any order (a resumed upload sends what is missing).
      const e2 = await putPart(await store.presignPart(k, uploadId, 2, 60), p2);
      const e1 = await putPart(await store.presignPart(k, uploadId, 1, 60), p1);
      await store.completeUpload(k, uploadId, [{ partNumber: 2, etag: e2 }, { partNumber: 1, etag: e1 }]);
      const whole = Buffer.concat([p1, p2]);
      expect(await store.stat(k)).toMatchObject({ size: whole.length, contentType: 'video/mp4' });
      expect(sha(await bytesOf(await store.read(k)))).toBe(sha(whole));

      const url = await store.presignGet(k, 60, { filename: 'clip.mp4' });
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(sha(Buffer.from(await res.arrayBuffer()))).toBe(sha(whole));
      const ranged = await fetch(url, { headers: { range: `bytes=${MIN_PART_SIZE - 5}-${MIN_PART_SIZE + 4}` } });
      expect(ranged.status).toBe(206);
      expect(Buffer.from(await ranged.arrayBuffer())).toEqual(whole.subarray(MIN_PART_SIZE - 5, MIN_PART_SIZE + 5));
      await store.remove([k]);
    });

    it('a part sent again replaces the earlier one; completing names the parts by their ETags', async () => {
      const { store } = ctx();
      const k = key();
      const uploadId = await store.createUpload(k, 'application/pdf');
      const first = await putPart(await store.presignPart(k, uploadId, 1, 60), Buffer.from('first try'));
      const again = await putPart(await store.presignPart(k, uploadId, 1, 60), Buffer.from('second try'));
      expect(again).not.toBe(first);
      // (A wrong ETag is refused by S3, MinIO and the embedded store, not by s3rver: the platform
      // checks every completed object's size and SHA-256 itself, whatever the endpoint.)
      await store.completeUpload(k, uploadId, [{ partNumber: 1, etag: again }]);
      expect((await bytesOf(await store.read(k))).toString()).toBe('second try');
      await store.remove([k]);
    });

    it('refuses a tampered signature and an unknown upload', async () => {
      const { store } = ctx();
      const k = key();
      await store.put(k, Buffer.from('secret picture'), 'image/jpeg');
      const url = new URL(await store.presignGet(k, 60));
      const tampered = new URL(url);
      // Another object with the same signature.
      tampered.pathname = `${url.pathname}x`;
      const res = await fetch(tampered);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      await expect(store.completeUpload(k, 'AAAAAAAAAAAAAAAAAAAAAA', [{ partNumber: 1, etag: 'x' }])).rejects.toBeInstanceOf(Error);
      await store.remove([k]);
    });
  });
}
