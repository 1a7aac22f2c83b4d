/**
 * `cleanup`: removes messages past the retention period (30 days by default), stale
 * registrations, link codes and invitations, expired status posts (with their audience and
 * views), and media past theirs: each expired attachment's object and thumbnail (an unfinished
 * upload is aborted), then its row and its links.
 */
import type { WorkerContext } from './context.js';

/** Attachments removed per store query. */
const MEDIA_PAGE = 100;

/** Status posts removed per store query. */
const STATUS_PAGE = 500;

export async function processCleanup(ctx: WorkerContext): Promise<void> {
  const now = ctx.now();
  const r = await ctx.store.expire(now - ctx.retentionMs, now);
  const statuses = await expireStatuses(ctx, now);
  const media = await expireMedia(ctx, now);
  ctx.log.info({ expired: { ...r, statuses, media } }, 'cleanup done');
}

/**
 * Removes every status post that expired before `now`, with its audience and views; returns how
 * many. Their media need nothing more: each was kept (linkAttachment) until its post expired and
 * now expires by itself (expireMedia), unless a message or a later post still keeps it.
 */
export async function expireStatuses(ctx: WorkerContext, now: number): Promise<number> {
  let n = 0;
  for (;;) {
    const { statusIds } = await ctx.store.expireStatuses(now, STATUS_PAGE);
    n += statusIds.length;
    if (statusIds.length < STATUS_PAGE) return n;
  }
}

/** Removes every attachment whose expiry is before `now`; returns how many. */
export async function expireMedia(ctx: WorkerContext, now: number): Promise<number> {
  const blobs = ctx.media?.blobs;
  if (!blobs) return 0;
  let n = 0;
  for (;;) {
    const batch = await ctx.store.expiredAttachments(now, MEDIA_PAGE);
    for (const a of batch) {
      if (a.uploadId) await blobs.abortUpload(a.key, a.uploadId);
      // Objects first: a crash in between leaves a row that the next run finishes, never an orphan object.
      await blobs.remove([a.key, ...(a.thumbKey ? [a.thumbKey] : [])]);
      await ctx.store.deleteAttachment(a.attachmentId);
      n++;
    }
    if (batch.length < MEDIA_PAGE) return n;
  }
}
