/**
 * Status posts: postStatus (text with a background colour and a font, or an image or video of the
 * author's through the media path, with a caption), the feed, viewStatus, the viewers list (the
 * author only) and removeStatus. Each post lives `ttlMs` (24 hours by default).
 *
 * Who sees a post: its audience, resolved when it is posted, from the author's contacts (all of
 * them, `only` some of them, or all `except` some), kept to those who have the author in their
 * own contacts too (as WhatsApp: a status reaches people who saved each other) and to nobody who
 * blocked the author or whom the author blocked. A block made later hides the post at once (every
 * read checks blocks again); a contact added or removed later does not change a post's audience.
 *
 * Delivery is "like messages but expiring": a post and a removal are fanned out by the
 * `statusFanout` job (services/src/workers/status-fanout.ts) as `status` envelopes to every device
 * of the audience and the author's other devices, queued for offline devices in their broker
 * sessions; the feed (`GET /v1/status`) is what a device that was never online reads.
 */
import { ParleyError, newId, type StatusEnvelope } from '@parley/client-sdk/protocol';
import type {
  FeedStatusPost, OwnStatusPost, StatusAudience, StatusAuthor, StatusFeed, StatusPostInfo, StatusViewer,
} from '@parley/client-sdk/api-types';
import type { MediaRef } from '@parley/client-sdk/protocol';
import type { MediaStore, RelationStore, StatusPost, StatusStore } from '../store/types.js';
import type { RateLimiter } from '../auth/rate-limit.js';
import { mediaRefOf } from '../media/attachments.js';
import { visibleStatus } from './visibility.js';

/** What the statusFanout job delivers: a post or its removal, to one page of its audience. */
export interface StatusFanoutJob {
  statusId: string;
  /** The removal (true) or the post itself. */
  removed: boolean;
  /** The page of the audience starts after this userId ('' = the first page, which also goes to the author's devices). */
  afterUser: string;
  /** The device that posted or removed it: it needs no envelope. */
  exceptDevice: string;
}

export interface StatusLimits {
  /** How long a post lives. @defaultValue 86_400_000 */
  ttlMs: number;
  /** Live posts per user. @defaultValue 30 */
  maxLive: number;
  /** Posts per user per hour. @defaultValue 30 */
  postsPerHour: number;
}

export interface StatusDeps {
  store: StatusStore & Pick<RelationStore, 'listContacts' | 'contactOf' | 'blockedBy' | 'blockedPairs' | 'listBlocked'>
    & Pick<MediaStore, 'getAttachment' | 'linkAttachment'>;
  limiter: RateLimiter;
  now(): number;
  /** Queues a fan-out (durably: resolves once it is in Redis). */
  enqueueFanout(job: StatusFanoutJob): Promise<void>;
}

/** Most posts one feed answer holds (contacts × live posts each stay far below it). */
const FEED_MAX = 5000;

export function statusJson(p: StatusPost): StatusPostInfo {
  return {
    statusId: p.statusId, from: p.authorUserId, ts: p.ts, expiresAt: p.expiresAt,
    ...(p.text !== null ? { text: p.text } : {}), ...(p.background !== null ? { background: p.background } : {}),
    ...(p.font !== null ? { font: p.font } : {}), ...(p.media ? { media: p.media } : {}),
  };
}

/** The `status` envelope of a post, or of its removal. */
export function statusEnvelope(p: StatusPost, removed: boolean): StatusEnvelope {
  const head = { kind: 'status' as const, statusId: p.statusId, from: p.authorUserId, ts: p.ts, expiresAt: p.expiresAt };
  if (removed) return { ...head, removed: true };
  return {
    ...head, ...(p.text !== null ? { text: p.text } : {}), ...(p.background !== null ? { background: p.background } : {}),
    ...(p.font !== null ? { font: p.font } : {}), ...(p.media ? { media: p.media } : {}),
  };
}

/** A post as the server takes it (the request body, validated by `schemas.postStatus`). */
export interface NewStatusInput {
  text?: string | undefined;
  background?: number | undefined;
  font?: number | undefined;
  media?: string | undefined;
  caption?: string | undefined;
  audience?: StatusAudience | undefined;
}

export class StatusService {
  readonly #deps: StatusDeps;
  readonly #limits: StatusLimits;

  constructor(deps: StatusDeps, limits: StatusLimits) {
    this.#deps = deps;
    this.#limits = limits;
  }

  /** postStatus: stores the post with its audience and queues its delivery. */
  async post(caller: { userId: string; deviceId: string }, input: NewStatusInput): Promise<OwnStatusPost> {
    const { store, limiter, now } = this.#deps;
    const { maxLive, postsPerHour, ttlMs } = this.#limits;
    if (!(await limiter.hit(`status:post:${caller.userId}`, postsPerHour, 3600))) throw new ParleyError('E_RATE_LIMITED', `at most ${postsPerHour} status posts an hour`);
    const t = now();
    if ((await store.ownStatuses(caller.userId, t)).length >= maxLive) throw new ParleyError('E_STATUS_LIMIT', `at most ${maxLive} live posts`);
    let media: MediaRef | null = null;
    if (input.media !== undefined) {
      const a = await store.getAttachment(input.media);
      if (!a || a.ownerUserId !== caller.userId) throw new ParleyError('E_NOT_FOUND', 'no such attachment');
      if (a.state !== 'ready') throw new ParleyError('E_MEDIA_STATE', a.state);
      if (a.kind !== 'image' && a.kind !== 'video') throw new ParleyError('E_VALIDATION', 'media: an image or a video');
      // The audience could not decrypt it: the key would travel in a message body, and a post has none.
      if (a.encrypted) throw new ParleyError('E_VALIDATION', 'media: a client-encrypted attachment cannot be a status');
      media = mediaRefOf(a);
    }
    const audience = await this.#audience(caller.userId, input.audience ?? { contacts: true });
    const post: StatusPost = {
      statusId: newId('status'), authorUserId: caller.userId, authorDeviceId: caller.deviceId, ts: t, expiresAt: t + ttlMs,
      text: input.text ?? input.caption ?? null, background: input.background ?? null, font: input.font ?? null, media, removedAt: null,
    };
    // The media first: kept (at least) as long as the post before anyone can see the post.
    if (media) await store.linkAttachment(media.attachmentId, post.statusId, 0, post.expiresAt);
    await store.createStatus(post, audience);
    await this.#deps.enqueueFanout({ statusId: post.statusId, removed: false, afterUser: '', exceptDevice: caller.deviceId });
    return { ...statusJson(post), views: 0 };
  }

  /** The feed: what the user may see now, by author (the most recent author first), and his own live posts. */
  async feed(userId: string): Promise<StatusFeed> {
    const { store, now } = this.#deps;
    const t = now();
    const posts = (await store.statusFeed(userId, t, FEED_MAX)).filter((p) => p.authorUserId !== userId);
    const authorIds = [...new Set(posts.map((p) => p.authorUserId))];
    const hidden = new Set<string>();
    if (authorIds.length) {
      for (const a of await store.blockedBy(authorIds, userId)) hidden.add(a);
      for (const b of await store.listBlocked(userId)) hidden.add(b);
    }
    const visible = posts.filter((p) => !hidden.has(p.authorUserId));
    const viewed = await store.viewedStatuses(userId, visible.map((p) => p.statusId));
    const byAuthor = new Map<string, FeedStatusPost[]>();
    for (const p of visible) {
      const list = byAuthor.get(p.authorUserId) ?? [];
      list.push({ ...statusJson(p), viewed: viewed.has(p.statusId) });
      byAuthor.set(p.authorUserId, list);
    }
    const authors: StatusAuthor[] = [...byAuthor].map(([author, statuses]) => ({
      userId: author, statuses, allViewed: statuses.every((s) => s.viewed),
    }));
    authors.sort((x, y) => (y.statuses.at(-1)?.ts ?? 0) - (x.statuses.at(-1)?.ts ?? 0));
    const own = await Promise.all((await store.ownStatuses(userId, t)).map(async (p): Promise<OwnStatusPost> => ({
      ...statusJson(p), views: (await store.statusViewers(p.statusId)).length,
    })));
    return { authors, own };
  }

  /** viewStatus: records the user's view (once; the author's own views are not recorded). */
  async view(userId: string, statusId: string): Promise<{ statusId: string }> {
    const { store, now } = this.#deps;
    const t = now();
    const p = await visibleStatus(store, statusId, userId, t);
    if (!p) throw new ParleyError('E_NOT_FOUND', 'no such status');
    if (p.authorUserId !== userId) await store.addStatusView(statusId, userId, t);
    return { statusId };
  }

  /** Who viewed one of the user's live posts, in the order they first did. */
  async viewers(userId: string, statusId: string): Promise<StatusViewer[]> {
    const { store, now } = this.#deps;
    const p = await visibleStatus(store, statusId, userId, now());
    if (!p) throw new ParleyError('E_NOT_FOUND', 'no such status');
    if (p.authorUserId !== userId) throw new ParleyError('E_FORBIDDEN', 'only its author sees who viewed a status');
    return (await store.statusViewers(statusId)).map((v) => ({ userId: v.viewerUserId, viewedAt: v.at }));
  }

  /** removeStatus (the author): gone from every feed at once, and a removal goes to the devices it went to. */
  async remove(caller: { userId: string; deviceId: string }, statusId: string): Promise<{ removed: string }> {
    const { store, now } = this.#deps;
    const t = now();
    const p = await visibleStatus(store, statusId, caller.userId, t);
    if (!p) throw new ParleyError('E_NOT_FOUND', 'no such status');
    if (p.authorUserId !== caller.userId) throw new ParleyError('E_FORBIDDEN', 'only its author removes a status');
    if (!(await store.removeStatus(statusId, t))) throw new ParleyError('E_NOT_FOUND', 'no such status');
    await this.#deps.enqueueFanout({ statusId, removed: true, afterUser: '', exceptDevice: caller.deviceId });
    return { removed: statusId };
  }

  /** The audience of a new post: see the module comment. */
  async #audience(author: string, choice: StatusAudience): Promise<string[]> {
    const { store } = this.#deps;
    const contacts = new Set(await store.listContacts(author));
    let base: string[];
    if ('only' in choice) {
      const outside = choice.only.filter((u) => !contacts.has(u));
      if (outside.length) throw new ParleyError('E_VALIDATION', `audience.only: not in your contacts: ${outside.slice(0, 3).join(', ')}`);
      base = [...new Set(choice.only)];
    } else if ('except' in choice) {
      const except = new Set(choice.except);
      base = [...contacts].filter((u) => !except.has(u));
    } else {
      base = [...contacts];
    }
    base = base.filter((u) => u !== author);
    if (!base.length) return [];
    const [mutual, blockedAuthor, authorBlocked] = await Promise.all([
      store.contactOf(base, author), store.blockedBy(base, author), store.listBlocked(author),
    ]);
    const blocked = new Set(authorBlocked);
    return base.filter((u) => mutual.has(u) && !blockedAuthor.has(u) && !blocked.has(u));
  }
}
