/**
 * BlobStore on any S3-compatible endpoint through the `minio` client (MinIO in docker-compose,
 * s3rver in the tests, AWS S3). Presigned URLs are S3 SigV4 query signatures; the client uploads
 * parts and downloads straight from the endpoint, never through Parley.
 */
import { Client } from 'minio';
import type { Readable } from 'node:stream';
import { BlobError, contentDisposition, type BlobInfo, type BlobStore, type UploadedPart } from './blob-store.js';

export interface S3BlobStoreOptions {
  /** e.g. `http://127.0.0.1:9000` (path-style addressing). */
  endpoint: string;
  /**
   * The endpoint as clients reach it, when it differs (e.g. `http://minio:9000` inside compose,
   * `https://media.example.com` outside): presigned URLs are signed for this host.
   * @defaultValue endpoint
   */
  publicEndpoint?: string;
  accessKey: string;
  secretKey: string;
  bucket: string;
  /** @defaultValue 'us-east-1' */
  region?: string;
  /**
   * Where the endpoint supports bucket lifecycle rules: objects expire after this many days
   * (Parley's cleanup job removes them anyway) and unfinished uploads after one day.
   */
  lifecycleDays?: number;
}

const isNotFound = (err: unknown): boolean => {
  const code = (err as { code?: string }).code;
  return code === 'NoSuchKey' || code === 'NotFound' || code === 'NoSuchUpload';
};

export function createS3BlobStore(opts: S3BlobStoreOptions): BlobStore {
  const region = opts.region ?? 'us-east-1';
  const clientFor = (endpoint: string): Client => {
    const url = new URL(endpoint);
    const useSSL = url.protocol === 'https:';
    return new Client({
      endPoint: url.hostname, port: url.port ? Number(url.port) : useSSL ? 443 : 80, useSSL,
      accessKey: opts.accessKey, secretKey: opts.secretKey,
      // Given, so presigning never asks the endpoint for the bucket's region.
      region, pathStyle: true,
    });
  };
  const client = clientFor(opts.endpoint);
  const signer = opts.publicEndpoint ? clientFor(opts.publicEndpoint) : client;
  const bucket = opts.bucket;

  return {
    async init() {
      if (!(await client.bucketExists(bucket))) {
        try {
          await client.makeBucket(bucket, region);
        } catch (err) {
          // Another process made it meanwhile.
          if ((err as { code?: string }).code !== 'BucketAlreadyOwnedByYou') throw err;
        }
      }
      if (opts.lifecycleDays) {
        try {
          await client.setBucketLifecycle(bucket, {
            Rule: [{
              ID: 'parley-media-expiry', Status: 'Enabled', Filter: { Prefix: '' },
              Expiration: { Days: Math.ceil(opts.lifecycleDays) }, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
            }],
          });
        } catch {
          // Not supported by this endpoint (s3rver): the cleanup job alone expires media there.
        }
      }
    },
    async close() { /* the minio client holds no connection of its own */ },

    async createUpload(key, contentType) {
      return client.initiateNewMultipartUpload(bucket, key, { 'Content-Type': contentType });
    },
    async presignPart(key, uploadId, partNumber, expiresSec) {
      return signer.presignedUrl('PUT', bucket, key, expiresSec, { uploadId, partNumber: String(partNumber) });
    },
    async completeUpload(key, uploadId, parts: UploadedPart[]) {
      const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber);
      try {
        await client.completeMultipartUpload(bucket, key, uploadId, sorted.map((p) => ({ part: p.partNumber, etag: p.etag })));
      } catch (err) {
        if (isNotFound(err)) throw new BlobError('NOT_FOUND', `no upload ${uploadId}`);
        const code = (err as { code?: string }).code;
        if (code === 'InvalidPart' || code === 'InvalidPartOrder' || code === 'EntityTooSmall') throw new BlobError('BAD_PARTS', code);
        throw err;
      }
    },
    async abortUpload(key, uploadId) {
      try {
        await client.abortMultipartUpload(bucket, key, uploadId);
      } catch {
        // Best effort: some endpoints (s3rver) cannot abort; a bucket lifecycle rule for
        // incomplete uploads cleans up there.
      }
    },

    async put(key, body, contentType) {
      await client.putObject(bucket, key, body, body.length, { 'Content-Type': contentType });
    },
    async stat(key): Promise<BlobInfo | null> {
      try {
        const s = await client.statObject(bucket, key);
        const meta = s.metaData as Record<string, string | undefined>;
        return { size: s.size, contentType: meta['content-type'] ?? 'application/octet-stream', etag: s.etag };
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
    },
    async read(key, range): Promise<Readable> {
      try {
        if (range) return await client.getPartialObject(bucket, key, range.start, range.end - range.start + 1);
        return await client.getObject(bucket, key);
      } catch (err) {
        if (isNotFound(err)) throw new BlobError('NOT_FOUND', key);
        throw err;
      }
    },
    async presignGet(key, expiresSec, o) {
      const params: Record<string, string> = {
        'response-content-disposition': contentDisposition(o?.inline ? 'inline' : 'attachment', o?.filename),
      };
      return signer.presignedGetObject(bucket, key, expiresSec, params);
    },
    async remove(keys) {
      if (keys.length === 0) return;
      await client.removeObjects(bucket, keys);
    },
  };
}
