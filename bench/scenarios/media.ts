/**
 * Scenario 10: media. Upload and download throughput through Parley's own path (createAttachment,
 * presigned part PUTs to the embedded store, completion with the server's SHA-256 and type checks;
 * a presigned GET), each beside a bare Node HTTP server that writes / reads the same bytes to / from
 * disk with the same part size and concurrency (the floor on this machine); and thumbnail jobs per
 * second with the workers' memory, beside sharp making the same thumbnails in one process.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import sharp from 'sharp';
import { int, mib, num, ratio } from '../lib/format.js';
import { rssBytes } from '../lib/proc.js';
import { registerMany } from '../lib/register.js';
import type { ParleyTarget } from '../lib/servers.js';
import type { BenchContext, Cell, Scenario } from '../lib/types.js';

const PART_CONCURRENCY = 4;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Transfer { bytes: number; ms: number }
const mbps = (t: Transfer | undefined): number => (t && t.ms > 0 ? t.bytes / 1024 / 1024 / (t.ms / 1000) : NaN);

async function parallel<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/** A bare HTTP server: PUT /<name> writes the body to disk, GET /<name> streams it back. */
async function bareServer(dir: string): Promise<{ url: string; server: Server }> {
  mkdirSync(dir, { recursive: true });
  const server = createServer((req, res) => {
    const file = join(dir, (req.url ?? '/x').slice(1).replace(/[^A-Za-z0-9._-]/g, '_'));
    if (req.method === 'PUT') {
      const md5 = createHash('md5');
      req.on('data', (c: Buffer) => md5.update(c));
      pipeline(req, createWriteStream(file)).then(() => res.writeHead(200, { etag: md5.digest('hex') }).end(), () => res.writeHead(500).end());
    } else {
      res.writeHead(200);
      createReadStream(file).pipe(res);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

async function json<T>(url: string, token: string, body?: unknown): Promise<T> {
  const res = await fetch(url, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

interface Created { attachment: { attachmentId: string }; partSize: number; parts: Array<{ partNumber: number; url: string }> }

async function parleyUpload(t: ParleyTarget, token: string, bytes: Buffer, kind: string, contentType: string): Promise<{ id: string; upload: Transfer; completeMs: number }> {
  const t0 = performance.now();
  const c = await json<Created>(`${t.httpUrl}/v1/attachments`, token, { kind, contentType, size: bytes.length, sha256: sha(bytes) });
  const etags: Array<{ partNumber: number; etag: string }> = [];
  await parallel(c.parts, PART_CONCURRENCY, async (p) => {
    const body = bytes.subarray((p.partNumber - 1) * c.partSize, p.partNumber * c.partSize);
    const r = await fetch(p.url, { method: 'PUT', body: new Uint8Array(body) });
    if (!r.ok) throw new Error(`part ${p.partNumber}: HTTP ${r.status}`);
    etags.push({ partNumber: p.partNumber, etag: r.headers.get('etag') ?? '' });
  });
  const t1 = performance.now();
  await json(`${t.httpUrl}/v1/attachments/${c.attachment.attachmentId}/complete`, token, { parts: etags });
  const t2 = performance.now();
  return { id: c.attachment.attachmentId, upload: { bytes: bytes.length, ms: t2 - t0 }, completeMs: t2 - t1 };
}

async function fetchAll(url: string, init: RequestInit = {}): Promise<number> {
  const res = await fetch(url, init);
  if (!res.ok || !res.body) throw new Error(`${url}: HTTP ${res.status}`);
  const reader = res.body.getReader();
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return n;
    n += value.length;
  }
}

export const media: Scenario = {
  name: 'media',
  title: '10. Media: uploads, downloads, thumbnails',
  about:
    'Parley with its embedded media store (files under the data directory, served by the API behind ' +
    'signed URLs). **Upload**: `POST /v1/attachments`, then the parts (5 MiB) PUT to their presigned ' +
    `URLs, ${PART_CONCURRENCY} at a time, then \`complete\`, which joins the parts and reads the whole ` +
    'object back to check its SHA-256 and sniff its type; the clock runs from the first request to ' +
    'the answer of `complete`. **Download**: a presigned GET of the whole object. The reference is a ' +
    'bare Node HTTP server on the same machine that writes each PUT to a file and streams a file back, ' +
    'with the same part size and concurrency: the floor of loopback HTTP plus the disk here. ' +
    '**Thumbnails**: 12-megapixel JPEGs uploaded one after another; the clock runs from the first ' +
    'upload to the last attachment `ready` (the `thumbnail` job: sharp decodes, turns, resizes to a ' +
    '320 px WebP and computes a ThumbHash), with the server processes\' RSS sampled every 100 ms; ' +
    'the reference is sharp making the same thumbnails in the benchmark process, one at a time.',
  async run(ctx: BenchContext) {
    const size = ctx.pick(64, 12) * 1024 * 1024;
    const images = ctx.pick(24, 4);
    const file = randomBytes(size);
    const bare = await bareServer(join(ctx.tmp, 'bare'));
    try {
      // Reference: the same parts to a bare server, then the whole file back.
      const partSize = 5 * 1024 * 1024;
      const parts = Array.from({ length: Math.ceil(size / partSize) }, (_v, i) => i + 1);
      let t0 = performance.now();
      await parallel(parts, PART_CONCURRENCY, async (n) => {
        const r = await fetch(`${bare.url}/part-${n}`, { method: 'PUT', body: new Uint8Array(file.subarray((n - 1) * partSize, n * partSize)) });
        if (!r.ok) throw new Error('bare PUT failed');
      });
      const bareUp: Transfer = { bytes: size, ms: performance.now() - t0 };
      // The whole file in one piece for the download reference (not timed).
      await fetch(`${bare.url}/whole`, { method: 'PUT', body: new Uint8Array(file) });
      t0 = performance.now();
      const got = await fetchAll(`${bare.url}/whole`);
      const bareDown: Transfer = { bytes: got, ms: performance.now() - t0 };

      const jpeg = await sharp({ create: { width: 4000, height: 3000, channels: 3, background: { r: 120, g: 90, b: 60 } } })
        .composite([{ input: Buffer.from('<svg width="4000" height="3000"><circle cx="1500" cy="1500" r="900" fill="#2a6"/><rect x="2500" y="500" width="900" height="1800" fill="#c33"/></svg>') }])
        .jpeg({ quality: 85 }).toBuffer();
      t0 = performance.now();
      for (let i = 0; i < images; i++) {
        await sharp(jpeg).rotate().resize(320, 320, { fit: 'inside' }).webp({ quality: 70 }).toBuffer();
      }
      const sharpAlone = { jobs: images, ms: performance.now() - t0 };

      const parley = await ctx.withTarget('parley', async (t) => {
        const reg = await registerMany(t.httpUrl, ctx.sms, 1, { concurrency: 1, deadlineMs: 30_000 });
        const dev = reg.devices[0];
        if (!dev) throw new Error(`registration failed: ${reg.firstError ?? ''}`);
        ctx.log(`  upload ${mib(size)} through Parley`);
        const up = await parleyUpload(t, dev.token, file, 'document', 'application/octet-stream');
        const { url } = await json<{ url: string }>(`${t.httpUrl}/v1/attachments/${up.id}/download`, dev.token);
        let d0 = performance.now();
        const n = await fetchAll(url);
        const down: Transfer = { bytes: n, ms: performance.now() - d0 };
        // A ranged download of 1 MiB from the middle.
        d0 = performance.now();
        const rangedBytes = await fetchAll(url, { headers: { range: `bytes=${Math.floor(size / 2)}-${Math.floor(size / 2) + 1024 * 1024 - 1}` } });
        const rangedMs = performance.now() - d0;

        ctx.log(`  ${images} thumbnails through Parley`);
        let peak = 0;
        const sample = setInterval(() => {
          const rss = t.procs.reduce((s, p) => s + rssBytes(p.pid), 0);
          if (rss > peak) peak = rss;
        }, 100);
        const baseRss = t.procs.reduce((s, p) => s + rssBytes(p.pid), 0);
        const th0 = performance.now();
        const ids: string[] = [];
        try {
          for (let i = 0; i < images; i++) ids.push((await parleyUpload(t, dev.token, jpeg, 'image', 'image/jpeg')).id);
          const pending = new Set(ids);
          const deadline = Date.now() + 300_000;
          while (pending.size && Date.now() < deadline) {
            for (const id of [...pending]) {
              const a = await json<{ state: string }>(`${t.httpUrl}/v1/attachments/${id}`, dev.token);
              if (a.state === 'ready' || a.state === 'failed') pending.delete(id);
            }
            if (pending.size) await new Promise((r) => setTimeout(r, 50));
          }
          if (pending.size) throw new Error(`${pending.size} thumbnails not done`);
        } finally {
          clearInterval(sample);
        }
        const thumbs = { jobs: images, ms: performance.now() - th0 };
        return { up, down, rangedBytes, rangedMs, thumbs, peak, baseRss };
      }, { fresh: true });

      const rows: Cell[][] = [
        ['upload (create, parts, complete with SHA-256 check)', `${num(mbps(parley.up.upload))} MB/s`, `${num(mbps(bareUp))} MB/s`, ratio(mbps(parley.up.upload), mbps(bareUp))],
        ['download (presigned GET)', `${num(mbps(parley.down))} MB/s`, `${num(mbps(bareDown))} MB/s`, ratio(mbps(parley.down), mbps(bareDown))],
        ['thumbnails of 12 MP JPEGs', `${num(parley.thumbs.jobs / (parley.thumbs.ms / 1000), 2)} /s`, `${num(sharpAlone.jobs / (sharpAlone.ms / 1000), 2)} /s (sharp alone)`,
          ratio(parley.thumbs.jobs / parley.thumbs.ms, sharpAlone.jobs / sharpAlone.ms)],
      ];
      return {
        summary: [
          `Parley media: upload ${num(mbps(parley.up.upload))} MB/s (bare HTTP ${num(mbps(bareUp))}), download ${num(mbps(parley.down))} MB/s (bare ${num(mbps(bareDown))}), ` +
          `thumbnails ${num(parley.thumbs.jobs / (parley.thumbs.ms / 1000), 2)}/s (sharp alone ${num(sharpAlone.jobs / (sharpAlone.ms / 1000), 2)}/s), server RSS peak ${mib(parley.peak)}`,
        ],
        tables: [{
          title: `${mib(size)} file, ${images} images of 4000×3000`,
          columns: ['what', 'Parley', 'reference', 'Parley / reference'],
          rows,
        }, {
          title: 'Details',
          columns: ['figure', 'value'],
          rows: [
            ['of the upload time, `complete` (join the parts, read back for SHA-256, sniff the type)', `${int(parley.up.completeMs)} ms of ${int(parley.up.upload.ms)} ms`],
            ['ranged GET of 1 MiB from the middle', `${int(parley.rangedBytes)} bytes in ${num(parley.rangedMs)} ms`],
            ['server processes RSS before the thumbnails / peak during them', `${mib(parley.baseRss)} / ${mib(parley.peak)}`],
          ],
        }],
        charts: [{
          file: 'media', title: 'Media throughput (MB/s; higher is better)', unit: 'MB/s',
          categories: ['upload', 'download'],
          series: [
            { name: 'Parley', values: [mbps(parley.up.upload), mbps(parley.down)] },
            { name: 'bare HTTP + disk', values: [mbps(bareUp), mbps(bareDown)] },
          ],
        }],
        notes: [
          'Uploads use S3 multipart semantics (presigned part URLs) rather than the tus protocol: the same ' +
          'client code then talks to the embedded store and to any S3 endpoint (MinIO, AWS) directly, and with ' +
          'an S3 endpoint no media byte passes through Parley at all; a part is the unit of resumption (5 MiB, ' +
          'S3\'s minimum). tus through `@tus/server` would put every byte through the API process. The cost ' +
          'measured here is the server reading the object back once to check its SHA-256.',
        ],
        data: { size, images, bareUp, bareDown, sharpAlone, parley },
      };
    } finally {
      await new Promise<void>((r) => bare.server.close(() => r()));
    }
  },
};
