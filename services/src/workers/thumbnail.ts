/**
 * `thumbnail`: reads an uploaded image with sharp and writes a WebP thumbnail (EXIF orientation
 * applied, no metadata: no GPS reaches other users) and a ThumbHash preview (tens of bytes, carried
 * inside messages so recipients see the picture's shape and colours before downloading). Guarded
 * against hostile files: a pixel limit (decompression bombs), a time limit, sharp's own error
 * checks; a file that fails them marks the attachment `failed` (E_MEDIA_CORRUPT) and the job ends
 * normally, so the worker goes on with the next one.
 */
import sharp, { type Sharp } from 'sharp';
import { rgbaToThumbHash } from 'thumbhash';
import type { WorkerContext } from './context.js';

/** Longest side of a thumbnail, px. */
export const THUMB_SIZE = 320;
/** Longest side accepted (JPEG's own limit); the pixel count is limited apart. */
const MAX_SIDE = 65_535;
/** Longest side of the image a ThumbHash is computed from (its own limit is 100). */
const HASH_SIZE = 100;

export interface ThumbnailResult {
  attachmentId: string;
  state: 'ready' | 'failed' | 'skipped';
  by: string;
}

export async function processThumbnail(ctx: WorkerContext, attachmentId: string): Promise<ThumbnailResult> {
  const media = ctx.media;
  const a = await ctx.store.getAttachment(attachmentId);
  if (!media || !a || a.state !== 'processing') return { attachmentId, state: 'skipped', by: ctx.workerId };
  // Storage errors are thrown (the job is retried); only what sharp refuses fails the attachment.
  const chunks: Buffer[] = [];
  for await (const c of await media.blobs.read(a.key)) chunks.push(c as Buffer);
  const input = Buffer.concat(chunks);
  const open = (): Sharp => sharp(input, { limitInputPixels: media.maxPixels, failOn: 'error', sequentialRead: true })
    .timeout({ seconds: media.timeoutSec });
  let made: { thumb: Buffer; preview: string; width: number; height: number };
  try {
    const meta = await open().metadata();
    const [w, h] = [meta.width ?? 0, meta.height ?? 0];
    // A picture no screen shows (a 2,000,000 × 1 strip): refused like a bomb.
    if (w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE) throw new Error(`${w}x${h} is not a picture`);
    const base = open().rotate(); // EXIF orientation, then no metadata is kept
    const thumb = await base.clone()
      .resize(THUMB_SIZE, THUMB_SIZE, { fit: 'inside', withoutEnlargement: true })
      .webp({ quality: 70 })
      .toBuffer();
    const small = await base.clone()
      .resize(HASH_SIZE, HASH_SIZE, { fit: 'inside' })
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    const preview = Buffer.from(rgbaToThumbHash(small.info.width, small.info.height, small.data)).toString('base64');
    // Orientations 5-8 turn the picture a quarter: width and height as shown are swapped.
    const turned = (meta.orientation ?? 1) >= 5;
    made = { thumb, preview, width: turned ? h : w, height: turned ? w : h };
  } catch (err) {
    ctx.log.warn({ attachmentId, err: err instanceof Error ? err.message : String(err) }, 'image refused by the thumbnailer');
    await ctx.store.updateAttachment(a.attachmentId, 'processing', { state: 'failed', error: 'E_MEDIA_CORRUPT' });
    return { attachmentId, state: 'failed', by: ctx.workerId };
  }
  const thumbKey = `${a.key}.thumb.webp`;
  await media.blobs.put(thumbKey, made.thumb, 'image/webp');
  const done = await ctx.store.updateAttachment(a.attachmentId, 'processing', {
    state: 'ready', thumbKey, preview: made.preview, width: made.width, height: made.height,
  });
  ctx.log.debug({ attachmentId, bytes: made.thumb.length }, 'thumbnail made');
  return { attachmentId, state: done ? 'ready' : 'skipped', by: ctx.workerId };
}
