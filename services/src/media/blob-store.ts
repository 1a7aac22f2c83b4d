/**
 * The BlobStore port: where media objects live. Clients never send bytes through the messaging
 * path: they upload straight to the store through short-lived presigned URLs, in parts, so a
 * flaky mobile link resumes where it stopped (S3 multipart semantics: every part but the last is
 * at least `MIN_PART_SIZE`; a part's ETag proves it was stored; completing joins the parts).
 * Downloads are presigned GETs that honour `Range`.
 *
 * Two adapters pass one contract suite (test/contract/blob-store.contract.ts): `S3BlobStore`
 * (the `minio` client, any S3-compatible endpoint: MinIO in docker-compose, s3rver in tests) and
 * `FsBlobStore` (the embedded default: files under the data directory, served by the platform's
 * own HTTP API behind HMAC-signed, expiring URLs).
 */
import type { Readable } from 'node:stream';

/** S3's smallest part (but the last). */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
/** S3's most parts in one upload. */
export const MAX_PARTS = 10_000;

export interface BlobInfo {
  size: number;
  contentType: string;
  /** The store's ETag (not a content hash for multipart objects). */
  etag: string;
}

export interface UploadedPart {
  partNumber: number;
  etag: string;
}

export interface BlobStore {
  /** Creates the bucket / directory if needed. Idempotent. */
  init(): Promise<void>;
  close(): Promise<void>;

  /** Starts a multipart upload of `key`; returns its id. */
  createUpload(key: string, contentType: string): Promise<string>;
  /** A URL the client PUTs part `partNumber` (1-based) to, valid `expiresSec`; the answer's ETag header names the part. */
  presignPart(key: string, uploadId: string, partNumber: number, expiresSec: number): Promise<string>;
  /** Joins the parts, in partNumber order, into the object `key`. Throws BlobError('NOT_FOUND' | 'BAD_PARTS'). */
  completeUpload(key: string, uploadId: string, parts: UploadedPart[]): Promise<void>;
  /** Drops an unfinished upload and what it stored (best effort where the endpoint cannot). */
  abortUpload(key: string, uploadId: string): Promise<void>;

  /** Stores a whole object (thumbnails, server-made files). */
  put(key: string, body: Buffer, contentType: string): Promise<void>;
  /** The object's size and type, or null. */
  stat(key: string): Promise<BlobInfo | null>;
  /** Reads the object (or `range`, inclusive byte offsets); throws BlobError('NOT_FOUND'). */
  read(key: string, range?: { start: number; end: number }): Promise<Readable>;
  /**
   * A URL that GETs the object for `expiresSec` (Range requests work). It is served as a download
   * (Content-Disposition: attachment, with `filename`), or `inline` for a picture, video or sound
   * whose type the server checked.
   */
  presignGet(key: string, expiresSec: number, opts?: { filename?: string; inline?: boolean }): Promise<string>;
  /** Deletes objects; missing ones are ignored. */
  remove(keys: string[]): Promise<void>;
}

export class BlobError extends Error {
  constructor(readonly code: 'NOT_FOUND' | 'BAD_PARTS' | 'SIGNATURE' | 'EXPIRED', message: string) {
    super(message);
    this.name = 'BlobError';
  }
}

/** Object keys: `<prefix>/<id>` of safe characters only, so they map to paths and URLs as they are. */
export const isBlobKey = (key: string): boolean => /^[A-Za-z0-9_-]{1,64}(\/[A-Za-z0-9_.-]{1,128}){1,3}$/.test(key) && !key.includes('..');

/** Content-Disposition with a filename in ASCII and, for any other character, RFC 6266's filename*. */
export function contentDisposition(kind: 'inline' | 'attachment', filename?: string): string {
  if (!filename) return kind;
  const ascii = filename.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}
