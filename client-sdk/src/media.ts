/**
 * Media transfers for ParleyClient: resumable uploads (createAttachment, each part PUT to its
 * presigned URL, complete) and verified downloads. Browser-safe: WebCrypto for SHA-256, fetch for
 * the transfers, no Node modules.
 *
 * Resuming: the ETag of every stored part is saved in the client's StateStore under
 * `upload:<sha256>:<kind>`, so sending the same bytes again (after a pause, a lost connection or a
 * restart of the app) asks fresh URLs for the missing parts only and sends nothing twice.
 */
import type { AttachmentInfo, CreateAttachmentInput } from './api-types.js';
import type { MediaKind, MediaRef } from './codec.js';
import { ParleyError, isErrorCode } from './errors.js';
import type { ParleyApi } from './http.js';
import type { StateStore } from './sequencer.js';
import { stripJpegGps } from './exif.js';
import { bytesToHex } from './bytes.js';

/** What `sendMedia` needs to know of a file besides its bytes. */
export interface MediaMeta {
  kind: MediaKind;
  /** e.g. `image/jpeg`; the server checks it against the bytes. */
  contentType: string;
  filename?: string;
  durationMs?: number;
  /** Voice notes: amplitudes 0..255, at most 128. */
  waveform?: number[];
  /** Video: an image attachment already uploaded (`uploadMedia`) as its poster. */
  poster?: string;
  /** The bytes are already encrypted by the app (the server neither sniffs nor thumbnails them). */
  encrypted?: boolean;
  /**
   * Send a JPEG's GPS position as it is. By default it is removed before the upload (the rest of
   * the EXIF, orientation included, stays; the picture is not re-encoded). @defaultValue false
   */
  keepLocation?: boolean;
}

export interface TransferOptions {
  /** Called as bytes go (sent or received so far, of the total). */
  onProgress?: (done: number, total: number) => void;
  /** Aborts (pauses) the transfer; an upload resumes where it stopped when started again. */
  signal?: AbortSignal;
  /** How long to wait for the server's thumbnail (ms). @defaultValue 60000 */
  readyTimeoutMs?: number;
}

/** The data a transfer takes: bytes (a Node Buffer too), a Blob / File, or a stream of bytes (web or Node). */
export type MediaData = Uint8Array | Blob | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

interface SavedUpload { attachmentId: string; partSize: number; etags: Record<string, string> }

/** The whole file in memory: its SHA-256 is declared before the upload starts. */
async function toBytes(d: MediaData): Promise<Uint8Array> {
  if (d instanceof Uint8Array) return d;
  if (typeof Blob !== 'undefined' && d instanceof Blob) return new Uint8Array(await d.arrayBuffer());
  const chunks: Uint8Array[] = [];
  if (typeof (d as ReadableStream<Uint8Array>).getReader === 'function') {
    const reader = (d as ReadableStream<Uint8Array>).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
  } else {
    for await (const c of d as AsyncIterable<Uint8Array>) chunks.push(c);
  }
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}
/** A transfer's data as bytes (the whole file in memory). */
export const mediaBytes = toBytes;

/** Where a photo was taken is nobody else's business: a JPEG's GPS position stays on the phone (before any encryption). */
export function prepareMediaBytes(raw: Uint8Array, meta: MediaMeta): Uint8Array {
  return meta.kind === 'image' && !meta.encrypted && !meta.keepLocation && /jpe?g$/i.test(meta.contentType) ? stripJpegGps(raw) : raw;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> => new Promise((resolve, reject) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); reject(new ParleyError('E_CLOSED', 'aborted')); }, { once: true });
});

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return bytesToHex(new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>)));
}

/**
 * Uploads (or resumes uploading) a file as an attachment and waits until the server has checked
 * it (and made its thumbnail): the attachment is then ready to be sent in a message.
 */
export async function uploadMedia(
  api: ParleyApi, token: string, state: StateStore, data: MediaData, meta: MediaMeta, opts: TransferOptions = {},
): Promise<AttachmentInfo> {
  const bytes = prepareMediaBytes(await toBytes(data), meta);
  const sum = await sha256Hex(bytes);
  const stateKey = `upload:${sum}:${meta.kind}`;
  const savedRaw = await state.get(stateKey);
  let saved: SavedUpload | null = savedRaw ? (JSON.parse(savedRaw) as SavedUpload) : null;
  let urls: Array<{ partNumber: number; url: string }>;
  if (saved) {
    const info = await api.getAttachment(saved.attachmentId, token).catch(() => null);
    if (info?.state === 'failed') {
      await state.set(stateKey, '');
      throw new ParleyError(isErrorCode(info.error) ? info.error : 'E_MEDIA_STATE', info.attachmentId, info.attachmentId);
    }
    if (info && info.state !== 'uploading') {
      // Already uploaded (the app stopped before it heard so).
      await state.set(stateKey, '');
      return info.state === 'processing' ? waitReady(api, token, info.attachmentId, opts) : info;
    }
    if (!info) saved = null;
  }
  let partSize: number;
  let partCount: number;
  if (!saved) {
    const input: CreateAttachmentInput = {
      kind: meta.kind, contentType: meta.contentType, size: bytes.length, sha256: sum,
      ...(meta.filename !== undefined ? { filename: meta.filename } : {}),
      ...(meta.durationMs !== undefined ? { durationMs: meta.durationMs } : {}),
      ...(meta.waveform !== undefined ? { waveform: meta.waveform } : {}),
      ...(meta.poster !== undefined ? { poster: meta.poster } : {}),
      ...(meta.encrypted ? { encrypted: true } : {}),
    };
    const created = await api.createAttachment(input, token);
    saved = { attachmentId: created.attachment.attachmentId, partSize: created.partSize, etags: {} };
    partSize = created.partSize;
    partCount = created.partCount;
    urls = created.parts;
    await state.set(stateKey, JSON.stringify(saved));
  } else {
    partSize = saved.partSize;
    partCount = Math.max(1, Math.ceil(bytes.length / partSize));
    const missing = Array.from({ length: partCount }, (_v, i) => i + 1).filter((n) => !saved!.etags[n]);
    urls = missing.length ? (await api.attachmentParts(saved.attachmentId, missing, token)).parts : [];
  }
  const current = saved;
  let done = Object.keys(current.etags).reduce((n, p) => n + Math.min(partSize, bytes.length - (Number(p) - 1) * partSize), 0);
  opts.onProgress?.(done, bytes.length);
  for (const { partNumber, url } of urls) {
    if (opts.signal?.aborted) throw new ParleyError('E_CLOSED', 'upload paused');
    const body = bytes.subarray((partNumber - 1) * partSize, partNumber * partSize);
    let res: Response;
    try {
      res = await fetch(url, { method: 'PUT', body: body as Uint8Array<ArrayBuffer>, ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (err) {
      if (opts.signal?.aborted) throw new ParleyError('E_CLOSED', 'upload paused');
      throw new ParleyError('E_UNAVAILABLE', err instanceof Error ? err.message : String(err));
    }
    if (!res.ok) throw new ParleyError(res.status === 410 ? 'E_URL_EXPIRED' : 'E_UNAVAILABLE', `part ${partNumber}: HTTP ${res.status}`);
    current.etags[partNumber] = res.headers.get('etag') ?? '';
    await state.set(stateKey, JSON.stringify(current));
    done += body.length;
    opts.onProgress?.(done, bytes.length);
  }
  const parts = Object.entries(current.etags).map(([n, etag]) => ({ partNumber: Number(n), etag }));
  if (parts.length !== partCount) throw new ParleyError('E_MEDIA_STATE', 'parts missing');
  // The server reads the whole object back to check it: allow ~20 MB/s, at least a minute.
  const info = await api.completeAttachment(current.attachmentId, parts, token, Math.max(60_000, bytes.length / 20_000));
  await state.set(stateKey, '');
  return info.state === 'processing' ? waitReady(api, token, info.attachmentId, opts) : info;
}

/** Polls until the server has processed the attachment (thumbnail). */
async function waitReady(api: ParleyApi, token: string, attachmentId: string, opts: TransferOptions): Promise<AttachmentInfo> {
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  for (let delay = 50; ; delay = Math.min(1000, delay * 2)) {
    const info = await api.getAttachment(attachmentId, token);
    if (info.state === 'ready') return info;
    if (info.state === 'failed') throw new ParleyError(isErrorCode(info.error) ? info.error : 'E_MEDIA_CORRUPT', attachmentId, attachmentId);
    if (Date.now() > deadline) throw new ParleyError('E_TIMEOUT', `attachment ${attachmentId} not processed`);
    await sleep(delay, opts.signal);
  }
}

/**
 * Downloads an attachment (or its thumbnail) the caller may see; the original is checked against
 * the message's SHA-256 (E_MEDIA_CHECKSUM when it differs).
 */
export async function downloadMedia(
  api: ParleyApi, token: string, media: MediaRef | string, opts: TransferOptions & { thumbnail?: boolean } = {},
): Promise<Uint8Array> {
  const id = typeof media === 'string' ? media : media.attachmentId;
  const { url } = await api.attachmentDownloadUrl(id, opts.thumbnail ?? false, token);
  let res: Response;
  try {
    res = await fetch(url, opts.signal ? { signal: opts.signal } : {});
  } catch (err) {
    throw new ParleyError(opts.signal?.aborted ? 'E_CLOSED' : 'E_UNAVAILABLE', err instanceof Error ? err.message : String(err));
  }
  if (!res.ok || !res.body) {
    // The embedded store answers with a catalogue code (E_URL_EXPIRED, E_URL_SIGNATURE, ...).
    const code = await res.json().then((j: { error?: { code?: unknown } }) => j.error?.code, () => undefined);
    throw new ParleyError(isErrorCode(code) ? code : 'E_UNAVAILABLE', `download: HTTP ${res.status}`);
  }
  const total = Number(res.headers.get('content-length') ?? 0);
  const chunks: Uint8Array[] = [];
  let got = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    opts.onProgress?.(got, total || got);
  }
  const out = new Uint8Array(got);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  if (!opts.thumbnail && typeof media !== 'string' && (await sha256Hex(out)) !== media.sha256) {
    throw new ParleyError('E_MEDIA_CHECKSUM', 'the downloaded bytes differ from the message');
  }
  return out;
}
