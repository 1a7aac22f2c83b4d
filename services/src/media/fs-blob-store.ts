/**
 * The embedded BlobStore: objects as files under the data directory, served by Parley's own HTTP
 * API behind HMAC-signed, expiring URLs, so `npm start` has media with no extra server. It speaks
 * the same upload protocol as S3 (multipart: PUT each part to its presigned URL, the answer's
 * ETag names it, then complete), so the SDK has one code path for both adapters.
 *
 * Layout: `<root>/objects/<key>` and `<key>.meta.json` ({ contentType, etag }), and
 * `<root>/uploads/<uploadId>/` with `upload.json` ({ key, contentType }) and `part-<n>` files.
 * Objects are written to a temporary name and renamed, so a reader never sees half an object.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ParleyError } from '@parley/client-sdk/protocol';
import { BlobError, MAX_PARTS, contentDisposition, isBlobKey, type BlobInfo, type BlobStore, type UploadedPart } from './blob-store.js';

export interface FsBlobStoreOptions {
  /** Directory of the objects. */
  root: string;
  /** The API's public base URL the signed URLs point at, e.g. `http://127.0.0.1:8080`; settable later (ephemeral ports). */
  publicUrl: string;
  /** Signs the URLs (the server secret). */
  secret: string;
  /** Largest part accepted (bytes). @defaultValue 64 MiB */
  maxPartBytes?: number;
  now?: () => number;
}

export interface FsBlobStore extends BlobStore {
  /** Sets the public base URL (once the API listens). */
  setPublicUrl(url: string): void;
  /** Registers `PUT /v1/blobs/*` (a part) and `GET|HEAD /v1/blobs/*` (an object, Range supported). */
  routes(app: FastifyInstance): void;
}

type Op = 'part' | 'get';

interface UploadMeta { key: string; contentType: string }
interface ObjectMeta { contentType: string; etag: string }

const PREFIX = '/v1/blobs/';

export function createFsBlobStore(opts: FsBlobStoreOptions): FsBlobStore {
  const now = opts.now ?? Date.now;
  const maxPart = opts.maxPartBytes ?? 64 * 1024 * 1024;
  let publicUrl = opts.publicUrl.replace(/\/+$/, '');
  const objects = join(opts.root, 'objects');
  const uploads = join(opts.root, 'uploads');

  const objectPath = (key: string): string => {
    if (!isBlobKey(key)) throw new BlobError('NOT_FOUND', 'bad key');
    return join(objects, key);
  };
  const uploadDir = (uploadId: string): string => {
    if (!/^[A-Za-z0-9_-]{22}$/.test(uploadId)) throw new BlobError('NOT_FOUND', 'bad upload id');
    return join(uploads, uploadId);
  };

  /** The parameters each operation's URL carries (and signs); any other one is refused. */
  const PARAMS: Record<Op, readonly string[]> = { part: ['op', 'key', 'upload', 'part', 'exp'], get: ['op', 'key', 'exp', 'filename', 'inline'] };
  // An unambiguous encoding of exactly the signed fields: no value can pass for another.
  const sign = (fields: Record<string, string>, op: Op): string =>
    createHmac('sha256', opts.secret).update(JSON.stringify(['parley-blob', ...PARAMS[op].map((k) => fields[k] ?? '')])).digest('base64url');

  const url = (op: Op, key: string, expiresSec: number, extra: { upload?: string; part?: number; filename?: string; inline?: boolean }): string => {
    const fields: Record<string, string> = { op, key, exp: String(Math.floor(now() / 1000) + Math.max(1, Math.floor(expiresSec))) };
    if (extra.upload) fields.upload = extra.upload;
    if (extra.part !== undefined) fields.part = String(extra.part);
    if (extra.filename) fields.filename = extra.filename;
    if (extra.inline) fields.inline = '1';
    const q = new URLSearchParams(Object.entries(fields).filter(([k]) => k !== 'key'));
    q.set('sig', sign(fields, op));
    return `${publicUrl}${PREFIX}${key}?${q.toString()}`;
  };

  /** Checks a signed request; throws ParleyError with a catalogue code. */
  const verify = (op: Op, key: string, q: Record<string, string | undefined>): void => {
    const allowed = new Set([...PARAMS[op], 'sig']);
    if (q.op !== op || Object.keys(q).some((k) => !allowed.has(k)) || !/^[0-9]{1,12}$/.test(q.exp ?? '')) throw new ParleyError('E_URL_SIGNATURE');
    const fields: Record<string, string> = { key };
    for (const [k, v] of Object.entries(q)) if (k !== 'sig' && typeof v === 'string') fields[k] = v;
    const got = Buffer.from(q.sig ?? '', 'utf8');
    const want = Buffer.from(sign(fields, op), 'utf8');
    if (got.length !== want.length || !timingSafeEqual(got, want)) throw new ParleyError('E_URL_SIGNATURE');
    if (Number(q.exp) * 1000 < now()) throw new ParleyError('E_URL_EXPIRED');
  };

  async function readMeta(key: string): Promise<ObjectMeta | null> {
    try {
      return JSON.parse(await readFile(`${objectPath(key)}.meta.json`, 'utf8')) as ObjectMeta;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /** `meta` is computed after `write` (an ETag over what was written). */
  async function writeObject(key: string, write: (tmp: string) => Promise<void>, meta: () => ObjectMeta): Promise<void> {
    const path = objectPath(key);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await write(tmp);
      await writeFile(`${path}.meta.json`, JSON.stringify(meta()));
      await rename(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  const store: FsBlobStore = {
    setPublicUrl(u) { publicUrl = u.replace(/\/+$/, ''); },

    async init() {
      await mkdir(objects, { recursive: true });
      await mkdir(uploads, { recursive: true });
    },
    async close() { /* nothing held open */ },

    async createUpload(key, contentType) {
      objectPath(key);
      const uploadId = randomBytes(16).toString('base64url').slice(0, 22);
      await mkdir(uploadDir(uploadId), { recursive: true });
      await writeFile(join(uploadDir(uploadId), 'upload.json'), JSON.stringify({ key, contentType } satisfies UploadMeta));
      return uploadId;
    },
    async presignPart(key, uploadId, partNumber, expiresSec) {
      return url('part', key, expiresSec, { upload: uploadId, part: partNumber });
    },
    async completeUpload(key, uploadId, parts: UploadedPart[]) {
      const dir = uploadDir(uploadId);
      let meta: UploadMeta;
      try {
        meta = JSON.parse(await readFile(join(dir, 'upload.json'), 'utf8')) as UploadMeta;
      } catch {
        throw new BlobError('NOT_FOUND', `no upload ${uploadId}`);
      }
      if (meta.key !== key) throw new BlobError('NOT_FOUND', `no upload ${uploadId} for ${key}`);
      const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber);
      if (sorted.length === 0 || sorted.some((p, i) => i > 0 && p.partNumber === sorted[i - 1]!.partNumber)) {
        throw new BlobError('BAD_PARTS', 'no parts, or a part twice');
      }
      // Every named part must be there with that ETag.
      for (const p of sorted) {
        const etag = await readFile(join(dir, `part-${p.partNumber}.etag`), 'utf8').catch(() => null);
        if (etag === null || etag !== p.etag.replace(/"/g, '')) throw new BlobError('BAD_PARTS', `part ${p.partNumber}`);
      }
      const whole = createHash('md5');
      await writeObject(key, async (tmp) => {
        // One pipeline from a generator over the parts, in order (back-pressure all the way).
        await pipeline(async function* () {
          for (const p of sorted) {
            for await (const chunk of createReadStream(join(dir, `part-${p.partNumber}`))) {
              whole.update(chunk as Buffer);
              yield chunk as Buffer;
            }
          }
        }, createWriteStream(tmp));
      }, () => ({ contentType: meta.contentType, etag: `${whole.digest('hex')}-${sorted.length}` }));
      await rm(dir, { recursive: true, force: true });
    },
    async abortUpload(_key, uploadId) {
      await rm(uploadDir(uploadId), { recursive: true, force: true });
    },

    async put(key, body, contentType) {
      await writeObject(key, (tmp) => writeFile(tmp, body), () => ({ contentType, etag: createHash('md5').update(body).digest('hex') }));
    },
    async stat(key): Promise<BlobInfo | null> {
      const meta = await readMeta(key);
      if (!meta) return null;
      try {
        const s = await stat(objectPath(key));
        return { size: s.size, contentType: meta.contentType, etag: meta.etag };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    async read(key, range): Promise<Readable> {
      const info = await store.stat(key);
      if (!info) throw new BlobError('NOT_FOUND', key);
      return createReadStream(objectPath(key), range ? { start: range.start, end: range.end } : {});
    },
    async presignGet(key, expiresSec, o) {
      return url('get', key, expiresSec, { ...(o?.filename ? { filename: o.filename } : {}), ...(o?.inline ? { inline: true } : {}) });
    },
    async remove(keys) {
      for (const key of keys) {
        if (!isBlobKey(key)) continue;
        await rm(objectPath(key), { force: true });
        await rm(`${objectPath(key)}.meta.json`, { force: true });
      }
    },

    routes(app) {
      void app.register(async (scope) => {
        // Part bodies are raw bytes of any type: no parser, the handler streams them to disk.
        scope.removeAllContentTypeParsers();
        scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

        scope.put<{ Params: { '*': string }; Querystring: Record<string, string> }>(`${PREFIX}*`, async (req, reply) => {
          const key = req.params['*'];
          if (!isBlobKey(key)) throw new ParleyError('E_NOT_FOUND', 'no such object');
          verify('part', key, req.query);
          const part = Number(req.query.part);
          if (!Number.isSafeInteger(part) || part < 1 || part > MAX_PARTS) throw new ParleyError('E_VALIDATION', 'part');
          const dir = uploadDir(req.query.upload ?? '');
          const meta = await readFile(join(dir, 'upload.json'), 'utf8').then((t) => JSON.parse(t) as UploadMeta, () => null);
          if (!meta || meta.key !== key) throw new ParleyError('E_NOT_FOUND', 'no such upload');
          const md5 = createHash('md5');
          let bytes = 0;
          const tmp = join(dir, `part-${part}.${randomBytes(6).toString('hex')}.tmp`);
          try {
            await pipeline(req.body as Readable, new Transform({
              transform(chunk: Buffer, _e, cb) {
                bytes += chunk.length;
                if (bytes > maxPart) return cb(new ParleyError('E_PAYLOAD_TOO_LARGE', `a part is at most ${maxPart} bytes`));
                md5.update(chunk);
                cb(null, chunk);
              },
            }), createWriteStream(tmp));
            const etag = md5.digest('hex');
            await rename(tmp, join(dir, `part-${part}`));
            await writeFile(join(dir, `part-${part}.etag`), etag);
            return reply.header('etag', `"${etag}"`).status(200).send();
          } catch (err) {
            // The rest of the body is not read: the connection cannot carry another request.
            reply.header('connection', 'close');
            throw err;
          } finally {
            await rm(tmp, { force: true });
          }
        });

        // GET (Fastify answers HEAD from it, without the body).
        const get = async (req: FastifyRequest<{ Params: { '*': string }; Querystring: Record<string, string> }>, reply: FastifyReply): Promise<unknown> => {
          const key = req.params['*'];
          if (!isBlobKey(key)) throw new ParleyError('E_NOT_FOUND', 'no such object');
          verify('get', key, req.query);
          const info = await store.stat(key);
          if (!info) throw new ParleyError('E_NOT_FOUND', 'no such object');
          // Served from the API's origin: never rendered as a page (a declared text/html document
          // must not run there). Only what the URL says is a safe picture, video or sound is inline.
          reply.header('content-type', info.contentType).header('accept-ranges', 'bytes').header('etag', `"${info.etag}"`)
            .header('x-content-type-options', 'nosniff').header('content-security-policy', "sandbox; default-src 'none'")
            .header('content-disposition', contentDisposition(req.query.inline === '1' ? 'inline' : 'attachment', req.query.filename));
          const r = parseRange(req.headers.range, info.size);
          if (r === 'invalid') {
            return reply.status(416).header('content-range', `bytes */${info.size}`).send();
          }
          if (r) {
            reply.status(206).header('content-range', `bytes ${r.start}-${r.end}/${info.size}`).header('content-length', r.end - r.start + 1);
            return reply.send(await store.read(key, r));
          }
          reply.header('content-length', info.size);
          return reply.send(await store.read(key));
        };
        scope.get<{ Params: { '*': string }; Querystring: Record<string, string> }>(`${PREFIX}*`, get);
      });
    },
  };
  return store;
}

/** One `bytes=a-b` / `bytes=a-` / `bytes=-n` range; null for none (or several: the whole object). */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | 'invalid' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return null;
  let start: number;
  let end: number;
  if (m[1] === '' && m[2] === '') return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'invalid';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  // A range past the end cannot be served (416); a reversed one is ignored (RFC 9110: the whole object).
  if (start >= size) return 'invalid';
  if (start > end) return null;
  return { start, end };
}
