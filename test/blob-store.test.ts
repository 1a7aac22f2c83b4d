/**
 * The BlobStore contract on both adapters: the embedded one (files, served through signed URLs by
 * a Fastify instance as the API serves them) and the `minio` one against s3rver (in every run) and
 * against MinIO when S3_ENDPOINT (with S3_ACCESS_KEY, S3_SECRET_KEY) is set. Then what only the
 * embedded adapter does itself: expiry and signature checks with its catalogue codes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParleyError } from '@parley/client-sdk';
import { createFsBlobStore, type FsBlobStore } from '../services/src/media/fs-blob-store.js';
import { createS3BlobStore } from '../services/src/media/s3-blob-store.js';
import type { BlobStore } from '../services/src/media/blob-store.js';
import { freePort } from '../services/src/redis/spawn.js';
import { blobStoreContract } from './contract/blob-store.contract.js';

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'parley-blobs-'));
  dirs.push(d);
  return d;
};

/** A Fastify instance serving an embedded store's URLs, with the API's error bodies. */
async function serve(store: FsBlobStore): Promise<FastifyInstance> {
  const app = Fastify();
  app.setErrorHandler((err, _req, reply) => {
    const pe = err instanceof ParleyError ? err : new ParleyError('E_INTERNAL');
    return reply.status(pe.status).send(pe.toJSON());
  });
  store.routes(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  store.setPublicUrl(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`);
  return app;
}

let clock = Date.now();
let fs: FsBlobStore;
let fsApp: FastifyInstance;
let s3rver: S3rver;
let s3: BlobStore;
let minio: BlobStore | undefined;
let s3public: BlobStore;

beforeAll(async () => {
  fs = createFsBlobStore({ root: tmp(), publicUrl: 'http://unset', secret: 'blob-test-secret-0123456789', now: () => clock });
  await fs.init();
  fsApp = await serve(fs);

  const port = await freePort();
  s3rver = new S3rver({ port, address: '127.0.0.1', directory: tmp(), silent: true });
  await s3rver.run();
  s3 = createS3BlobStore({ endpoint: `http://127.0.0.1:${port}`, accessKey: 'S3RVER', secretKey: 'S3RVER', bucket: 'parley-test' });
  await s3.init();
  // URLs signed for the name clients use (here: localhost), while the server talks to 127.0.0.1.
  s3public = createS3BlobStore({ endpoint: `http://127.0.0.1:${port}`, publicEndpoint: `http://localhost:${port}`, accessKey: 'S3RVER', secretKey: 'S3RVER', bucket: 'parley-test' });

  if (process.env.S3_ENDPOINT) {
    minio = createS3BlobStore({
      endpoint: process.env.S3_ENDPOINT, accessKey: process.env.S3_ACCESS_KEY ?? 'minioadmin', secretKey: process.env.S3_SECRET_KEY ?? 'minioadmin',
      bucket: `parley-test-${process.pid}`,
    });
    await minio.init();
  }
}, 30_000);

afterAll(async () => {
  await fsApp?.close();
  await s3rver?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

blobStoreContract('embedded (files and signed URLs)', () => ({ store: fs }));
blobStoreContract('minio client against s3rver', () => ({ store: s3 }));
blobStoreContract('minio client against s3rver, URLs signed for a public endpoint name', () => ({ store: s3public }));
describe.skipIf(!process.env.S3_ENDPOINT)('with S3_ENDPOINT', () => {
  blobStoreContract('minio client against S3_ENDPOINT', () => ({ store: minio! }));
});

describe('embedded store: its own signed URLs', () => {
  const codeOf = async (res: Response): Promise<string> => ((await res.json()) as { error: { code: string } }).error.code;

  it('refuses an expired URL (E_URL_EXPIRED) and a tampered one (E_URL_SIGNATURE)', async () => {
    await fs.put('test/expiring', Buffer.from('soon gone'), 'text/plain');
    const url = await fs.presignGet('test/expiring', 60);
    expect((await fetch(url)).status).toBe(200);
    const forged = url.replace(/sig=([^&]{4})/, 'sig=AAAA');
    const r1 = await fetch(forged);
    expect(r1.status).toBe(403);
    expect(await codeOf(r1)).toBe('E_URL_SIGNATURE');
    const longer = url.replace(/exp=(\d+)/, (_m, e: string) => `exp=${Number(e) + 3600}`);
    expect(await codeOf(await fetch(longer))).toBe('E_URL_SIGNATURE');
    clock += 61_000;
    const r2 = await fetch(url);
    expect(r2.status).toBe(410);
    expect(await codeOf(r2)).toBe('E_URL_EXPIRED');
  });

  it('signs exactly its fields: a moved value, an added parameter or a changed disposition is refused', async () => {
    await fs.put('test/signed', Buffer.from('signed bytes'), 'text/html');
    const url = new URL(await fs.presignGet('test/signed', 60, { filename: 'a.html' }));
    const served = await fetch(url);
    expect(served.status).toBe(200);
    // Never rendered from the API's origin.
    expect(served.headers.get('content-disposition')).toBe('attachment; filename="a.html"; filename*=UTF-8\'\'a.html');
    expect(served.headers.get('x-content-type-options')).toBe('nosniff');
    expect(served.headers.get('content-security-policy')).toContain('sandbox');
    for (const forge of [
      (u: URL) => u.searchParams.set('inline', '1'),
      (u: URL) => u.searchParams.set('part', '1'),
      (u: URL) => { u.searchParams.set('filename', `${u.searchParams.get('exp')}`); u.searchParams.set('exp', '99999999999'); },
    ]) {
      const f = new URL(url);
      forge(f);
      expect(await codeOf(await fetch(f))).toBe('E_URL_SIGNATURE');
    }
    const unicode = await fetch(await fs.presignGet('test/signed', 60, { filename: 'résumé 写真.pdf' }));
    expect(unicode.status).toBe(200);
    expect(unicode.headers.get('content-disposition')).toContain("filename*=UTF-8''r%C3%A9sum%C3%A9%20%E5%86%99%E7%9C%9F.pdf");
  });

  it('answers 416 to a range past the end, and refuses a download URL used for an upload', async () => {
    await fs.put('test/small', Buffer.from('0123456789'), 'text/plain');
    const url = await fs.presignGet('test/small', 60);
    const r = await fetch(url, { headers: { range: 'bytes=50-60' } });
    expect(r.status).toBe(416);
    expect(r.headers.get('content-range')).toBe('bytes */10');
    expect((await fetch(url, { headers: { range: 'bytes=-3' } }).then((x) => x.text()))).toBe('789');
    const put = await fetch(url, { method: 'PUT', body: 'overwrite' });
    expect(await codeOf(put)).toBe('E_URL_SIGNATURE');
  });

  it('refuses to complete with a part it does not have under that ETag (BAD_PARTS), or an unknown upload (NOT_FOUND)', async () => {
    const id = await fs.createUpload('test/parts', 'application/pdf');
    const res = await fetch(await fs.presignPart('test/parts', id, 1, 60), { method: 'PUT', body: 'a part' });
    expect(res.status).toBe(200);
    await expect(fs.completeUpload('test/parts', id, [{ partNumber: 1, etag: '"0123456789abcdef0123456789abcdef"' }])).rejects.toMatchObject({ code: 'BAD_PARTS' });
    await expect(fs.completeUpload('test/parts', id, [{ partNumber: 2, etag: res.headers.get('etag')! }])).rejects.toMatchObject({ code: 'BAD_PARTS' });
    await expect(fs.completeUpload('test/parts', 'AAAAAAAAAAAAAAAAAAAAAA', [{ partNumber: 1, etag: 'x' }])).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('refuses a part over the limit (E_PAYLOAD_TOO_LARGE) and keeps nothing of it', async () => {
    const small = createFsBlobStore({ root: tmp(), publicUrl: 'http://unset', secret: 's', maxPartBytes: 1000 });
    await small.init();
    const app = await serve(small);
    try {
      const id = await small.createUpload('test/big', 'application/octet-stream');
      const res = await fetch(await small.presignPart('test/big', id, 1, 60), { method: 'PUT', body: new Uint8Array(5000) });
      expect(res.status).toBe(413);
      expect(await codeOf(res)).toBe('E_PAYLOAD_TOO_LARGE');
      await expect(small.completeUpload('test/big', id, [{ partNumber: 1, etag: 'x' }])).rejects.toMatchObject({ code: 'BAD_PARTS' });
    } finally {
      await app.close();
    }
  });
});
