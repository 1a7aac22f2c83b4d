/**
 * Attachments: createAttachment (declared kind, type, size and SHA-256, checked against per-kind
 * limits; answered with presigned part URLs), fresh part URLs for a resumed upload, completion
 * (the object's size and SHA-256 checked against the declaration, its real type sniffed from the
 * bytes with `file-type`), and download URLs for those who may see it: its owner, the members
 * of a chat whose messages reference it (within their membership window), the audience of a
 * status post that shows it (while the post lives: services/src/status/status.ts), and, for a
 * user's profile photo, those his privacy settings let see it (`avatarAccess`).
 *
 * An image that is not client-encrypted then goes to the `thumbnail` job (state `processing`);
 * everything else is `ready` at once.
 */
import { createHash } from 'node:crypto';
import { fileTypeFromBuffer } from 'file-type';
import { ParleyError, isStatusId, newId, type MediaRef } from '@parley/client-sdk/protocol';
import type { AttachmentInfo, CreateAttachmentInput, DownloadUrl, NewAttachment, PartUrl } from '@parley/client-sdk/api-types';
import type { Attachment, ChatStore, MediaKind, MediaStore } from '../store/types.js';
import { BlobError, MAX_PARTS, MIN_PART_SIZE, type BlobStore, type UploadedPart } from './blob-store.js';
import { visibleStatus, type StatusReader } from '../status/visibility.js';

export interface AttachmentLimits {
  maxBytes: Record<MediaKind, number>;
  retentionMs: number;
  /** How long upload part URLs stay valid. @defaultValue 3600 */
  uploadUrlTtlSec: number;
  /** How long download URLs stay valid. @defaultValue 300 */
  downloadUrlTtlSec: number;
}

export interface AttachmentDeps {
  /** The status reads: a status post's audience may download its media while the post lives. */
  store: MediaStore & Pick<ChatStore, 'getMembership'> & StatusReader;
  blobs: BlobStore;
  now(): number;
  /** Queues the thumbnail job of an image (durably); `again`: a new job even if an earlier one failed. */
  enqueueThumbnail(attachmentId: string, again?: boolean): Promise<void>;
  /**
   * Another way to see an attachment: it is its owner's profile photo and his privacy lets the
   * viewer see it (services/src/social/privacy.ts `avatarAccess`). Absent: no avatar access.
   */
  avatarAccess?: (viewerUserId: string, a: Attachment) => Promise<boolean>;
}

/**
 * The expiry of an attachment while it is someone's profile photo: never (pinAvatar). Once
 * replaced it gets the ordinary retention again, counted from then (unpinAvatar).
 */
export const AVATAR_KEEP_UNTIL = Number.MAX_SAFE_INTEGER;

/** Types accepted per kind (documents: any). Sniffed bytes must agree with the declaration. */
const ALLOWED: Record<Exclude<MediaKind, 'document'>, readonly string[]> = {
  // No HEIC: this sharp build cannot decode it (it would always fail in the thumbnailer).
  image: ['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/avif'],
  video: ['video/mp4', 'video/quicktime', 'video/webm', 'video/3gpp', 'video/x-matroska'],
  audio: ['audio/mpeg', 'audio/mp4', 'audio/aac', 'audio/ogg', 'audio/opus', 'audio/webm', 'audio/wav', 'audio/x-wav', 'audio/amr', 'audio/flac'],
  voice: ['audio/ogg', 'audio/opus', 'audio/mp4', 'audio/aac', 'audio/webm', 'audio/amr', 'audio/mpeg'],
};

/** file-type's names that mean the same as a declared type. */
const SAME: Record<string, string> = {
  'audio/x-wav': 'audio/wav', 'audio/vnd.wave': 'audio/wav', 'audio/x-m4a': 'audio/mp4', 'image/heif': 'image/heic', 'audio/opus': 'audio/ogg',
};
const norm = (t: string): string => SAME[t.toLowerCase()] ?? t.toLowerCase();

/** How long an upload may take before it counts as abandoned. */
const UPLOAD_WINDOW_MS = 86_400_000;

/** How long an image may stay `processing` before its thumbnail job is queued again. */
const STUCK_MS = 60_000;

/** The part size of an upload: S3's minimum, or more when the file would need over MAX_PARTS parts. */
export function partSizeFor(size: number): number {
  const mib = 1024 * 1024;
  return Math.max(MIN_PART_SIZE, Math.ceil(size / MAX_PARTS / mib) * mib);
}

export function attachmentInfo(a: Attachment): AttachmentInfo {
  return {
    attachmentId: a.attachmentId, kind: a.kind, contentType: a.contentType, size: a.size, sha256: a.sha256, state: a.state,
    error: a.error, encrypted: a.encrypted, preview: a.preview, width: a.width, height: a.height, hasThumbnail: a.thumbKey !== null,
    ...a.meta, expiresAt: a.expiresAt,
  };
}

/** How a media message describes its attachment: from the server's row, never from the sender's word. */
export function mediaRefOf(a: Attachment): MediaRef {
  return {
    attachmentId: a.attachmentId, kind: a.kind, contentType: a.contentType, size: a.size, sha256: a.sha256,
    ...(a.preview ? { preview: a.preview } : {}), ...(a.width ? { width: a.width } : {}), ...(a.height ? { height: a.height } : {}),
    ...(a.meta.durationMs !== undefined ? { durationMs: a.meta.durationMs } : {}), ...(a.meta.waveform ? { waveform: a.meta.waveform } : {}),
    ...(a.meta.filename ? { filename: a.meta.filename } : {}), ...(a.meta.poster ? { poster: a.meta.poster } : {}),
    ...(a.encrypted ? { encrypted: true } : {}),
  };
}

export class Attachments {
  readonly #deps: AttachmentDeps;
  readonly #limits: AttachmentLimits;

  constructor(deps: AttachmentDeps, limits: AttachmentLimits) {
    this.#deps = deps;
    this.#limits = limits;
  }

  /** createAttachment: checks the declaration, starts the multipart upload, signs every part's URL. */
  async create(caller: { userId: string; deviceId: string }, input: CreateAttachmentInput): Promise<NewAttachment> {
    const { store, blobs, now } = this.#deps;
    const kind = input.kind;
    const max = this.#limits.maxBytes[kind];
    if (input.size > max) throw new ParleyError('E_MEDIA_TOO_LARGE', `${kind}: at most ${max} bytes`);
    if (kind !== 'document' && !input.encrypted && !ALLOWED[kind].includes(norm(input.contentType))) {
      throw new ParleyError('E_MEDIA_TYPE', `${input.contentType} is not a ${kind} type`);
    }
    if (input.poster) {
      const poster = await store.getAttachment(input.poster);
      if (!poster || poster.ownerUserId !== caller.userId || poster.kind !== 'image') throw new ParleyError('E_VALIDATION', 'poster: an image attachment of yours');
    }
    const attachmentId = newId('media');
    const key = `media/${attachmentId}`;
    const t = now();
    const uploadId = await blobs.createUpload(key, input.encrypted ? 'application/octet-stream' : input.contentType);
    const a: Attachment = {
      attachmentId, ownerUserId: caller.userId, ownerDeviceId: caller.deviceId, kind, contentType: input.contentType,
      size: input.size, sha256: input.sha256, key, uploadId, state: 'uploading', error: null, encrypted: input.encrypted ?? false,
      thumbKey: null, preview: null, width: null, height: null,
      meta: {
        ...(input.filename !== undefined ? { filename: input.filename } : {}),
        ...(input.durationMs !== undefined ? { durationMs: input.durationMs } : {}),
        ...(input.waveform !== undefined ? { waveform: input.waveform } : {}),
        ...(input.poster !== undefined ? { poster: input.poster } : {}),
      },
      // An upload not completed within a day is abandoned: cleanup removes it and its parts.
      createdAt: t, expiresAt: t + UPLOAD_WINDOW_MS,
    };
    await store.createAttachment(a);
    const partSize = partSizeFor(input.size);
    const partCount = Math.max(1, Math.ceil(input.size / partSize));
    const parts = await this.#sign(a, Array.from({ length: partCount }, (_v, i) => i + 1));
    return { attachment: attachmentInfo(a), uploadId, partSize, partCount, parts, urlsExpireAt: t + this.#limits.uploadUrlTtlSec * 1000 };
  }

  /** Fresh URLs for some parts of an upload still under way (its owner only). */
  async partUrls(callerUserId: string, attachmentId: string, partNumbers: number[]): Promise<{ parts: PartUrl[]; urlsExpireAt: number }> {
    const a = await this.#own(callerUserId, attachmentId);
    if (a.state !== 'uploading') throw new ParleyError('E_MEDIA_STATE', a.state);
    const partCount = Math.max(1, Math.ceil(a.size / partSizeFor(a.size)));
    if (partNumbers.some((n) => n > partCount)) throw new ParleyError('E_VALIDATION', `parts: 1 to ${partCount}`);
    return { parts: await this.#sign(a, [...new Set(partNumbers)]), urlsExpireAt: this.#deps.now() + this.#limits.uploadUrlTtlSec * 1000 };
  }

  /**
   * Joins the parts, then checks the object: its size and SHA-256 against the declaration, and
   * (unless client-encrypted) its type sniffed from the bytes. A failed check drops the object and
   * marks the attachment failed with the code, which is also thrown.
   */
  async complete(callerUserId: string, attachmentId: string, parts: UploadedPart[]): Promise<AttachmentInfo> {
    const { store, blobs } = this.#deps;
    const a = await this.#own(callerUserId, attachmentId);
    if (a.state !== 'uploading' || !a.uploadId) throw new ParleyError('E_MEDIA_STATE', a.state);
    try {
      await blobs.completeUpload(a.key, a.uploadId, parts);
    } catch (err) {
      // NOT_FOUND: completed meanwhile (a retry of a slow completion); BAD_PARTS: a named part is missing.
      if (err instanceof BlobError) throw new ParleyError(err.code === 'NOT_FOUND' ? 'E_MEDIA_STATE' : 'E_MEDIA_CHECKSUM', `the parts: ${err.message}`);
      throw err;
    }
    const fail = async (code: 'E_MEDIA_CHECKSUM' | 'E_MEDIA_TYPE', detail: string): Promise<never> => {
      await blobs.remove([a.key]);
      await store.updateAttachment(a.attachmentId, 'uploading', { state: 'failed', error: code, uploadId: null });
      throw new ParleyError(code, detail);
    };
    const info = await blobs.stat(a.key);
    if (!info || info.size !== a.size) return fail('E_MEDIA_CHECKSUM', `size ${info?.size ?? 0}, declared ${a.size}`);
    const hash = createHash('sha256');
    for await (const chunk of await blobs.read(a.key)) hash.update(chunk as Buffer);
    if (hash.digest('hex') !== a.sha256) return fail('E_MEDIA_CHECKSUM', 'SHA-256 differs from the declared one');

    let contentType = a.contentType;
    if (!a.encrypted) {
      const head: Buffer[] = [];
      for await (const chunk of await blobs.read(a.key, { start: 0, end: Math.min(a.size, 4100) - 1 })) head.push(chunk as Buffer);
      const sniffed = await fileTypeFromBuffer(Buffer.concat(head));
      if (a.kind !== 'document') {
        // A type that lies about itself: the bytes must be what was declared.
        if (!sniffed || norm(sniffed.mime) !== norm(a.contentType)) {
          return fail('E_MEDIA_TYPE', `declared ${a.contentType}, the bytes are ${sniffed?.mime ?? 'of no known type'}`);
        }
        contentType = sniffed.mime;
      } else if (sniffed) {
        contentType = sniffed.mime;
      }
    }
    const thumbnail = a.kind === 'image' && !a.encrypted;
    const next = await store.updateAttachment(a.attachmentId, 'uploading', {
      state: thumbnail ? 'processing' : 'ready', uploadId: null, contentType, expiresAt: this.#deps.now() + this.#limits.retentionMs,
    });
    if (!next) throw new ParleyError('E_MEDIA_STATE', 'completed twice');
    if (thumbnail) await this.#deps.enqueueThumbnail(a.attachmentId);
    return attachmentInfo(next);
  }

  /**
   * The attachment, for its owner or a member who can see a message that references it. An image
   * still `processing` a minute after upload has its thumbnail job queued again (the job id makes
   * that a no-op while the first is waiting or running): a job lost with Redis does not leave it
   * stuck.
   */
  async get(callerUserId: string, attachmentId: string): Promise<AttachmentInfo> {
    const a = await this.#visible(callerUserId, attachmentId);
    if (a.state === 'processing' && this.#deps.now() - a.createdAt > STUCK_MS) await this.#deps.enqueueThumbnail(a.attachmentId, true);
    return attachmentInfo(a);
  }

  /** A short-lived URL of the original (or its thumbnail). */
  async downloadUrl(callerUserId: string, attachmentId: string, thumbnail: boolean): Promise<DownloadUrl> {
    const a = await this.#visible(callerUserId, attachmentId);
    if (a.state === 'failed' || a.state === 'uploading') throw new ParleyError('E_MEDIA_STATE', a.state);
    const key = thumbnail ? a.thumbKey : a.key;
    if (!key) throw new ParleyError('E_NOT_FOUND', 'no thumbnail');
    const ttl = this.#limits.downloadUrlTtlSec;
    const filename = thumbnail ? undefined : a.meta.filename;
    // Shown in place only when the server checked it is a picture, video or sound (or its thumbnail).
    const inline = thumbnail || (!a.encrypted && a.kind !== 'document');
    return { url: await this.#deps.blobs.presignGet(key, ttl, { ...(filename ? { filename } : {}), inline }), expiresAt: this.#deps.now() + ttl * 1000 };
  }

  /**
   * Makes one of the caller's attachments his profile photo: an image, ready (checked and
   * thumbnailed), not client-encrypted (others could not show it). It is kept past the media
   * retention (expiresAt = AVATAR_KEEP_UNTIL) until it is replaced (unpinAvatar): one conditional
   * update on state `ready`.
   */
  async pinAvatar(callerUserId: string, attachmentId: string): Promise<void> {
    const a = await this.#own(callerUserId, attachmentId);
    if (a.kind !== 'image' || a.encrypted) throw new ParleyError('E_VALIDATION', 'avatar: an image attachment, not encrypted');
    if (a.state !== 'ready') throw new ParleyError('E_MEDIA_STATE', `avatar: the attachment is ${a.state}`);
    if (!(await this.#deps.store.updateAttachment(attachmentId, 'ready', { expiresAt: AVATAR_KEEP_UNTIL }))) {
      throw new ParleyError('E_MEDIA_STATE', 'avatar: the attachment is no longer ready');
    }
  }

  /**
   * A former profile photo expires like other media: the retention counted from now, which is
   * never before a message that references it (its keep-until is its send time plus the retention).
   */
  async unpinAvatar(attachmentId: string): Promise<void> {
    await this.#deps.store.updateAttachment(attachmentId, 'ready', { expiresAt: this.#deps.now() + this.#limits.retentionMs });
  }

  async #sign(a: Attachment, partNumbers: number[]): Promise<PartUrl[]> {
    const ttl = this.#limits.uploadUrlTtlSec;
    return Promise.all(partNumbers.map(async (partNumber) => ({ partNumber, url: await this.#deps.blobs.presignPart(a.key, a.uploadId!, partNumber, ttl) })));
  }

  async #own(callerUserId: string, attachmentId: string): Promise<Attachment> {
    const a = await this.#deps.store.getAttachment(attachmentId);
    if (!a || a.ownerUserId !== callerUserId) throw new ParleyError('E_NOT_FOUND', 'no such attachment');
    return a;
  }

  async #visible(callerUserId: string, attachmentId: string): Promise<Attachment> {
    const { store } = this.#deps;
    const a = await store.getAttachment(attachmentId);
    if (!a) throw new ParleyError('E_NOT_FOUND', 'no such attachment');
    if (a.ownerUserId === callerUserId) return a;
    for (const link of await store.attachmentLinks(attachmentId)) {
      // A status post's media (linked as (statusId, 0)): for whoever may see the post now.
      if (isStatusId(link.chatId)) {
        if (await visibleStatus(store, link.chatId, callerUserId, this.#deps.now())) return a;
        continue;
      }
      const m = await store.getMembership(link.chatId, callerUserId);
      if (m && link.seq > m.sinceSeq && (m.leftSeq === null || link.seq <= m.leftSeq)) return a;
    }
    // A user's profile photo: for those his privacy settings let see it.
    if (this.#deps.avatarAccess && (await this.#deps.avatarAccess(callerUserId, a))) return a;
    // The same answer as for an unknown id: nobody learns what exists.
    throw new ParleyError('E_NOT_FOUND', 'no such attachment');
  }
}
