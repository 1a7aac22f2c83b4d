/**
 * Status posts on the device's inbox: the `status` envelopes (a post, or its removal) become
 * `statusPost` events, without the ones that expired before they arrived (an offline device gets
 * its queued envelopes on reconnection, possibly days later) and without repeats (QoS 1 may
 * deliver an envelope twice).
 */
import type { MediaRef, StatusEnvelope } from './codec.js';

/** A status post, or its removal, that reached this device: the `statusPost` event. */
export interface StatusPostEvent {
  statusId: string;
  /** The author's userId. */
  from: string;
  ts: number;
  /** After this (epoch ms) the post is gone: hide it then. */
  expiresAt: number;
  /** The author removed it: hide it now (a removal has no content). */
  removed: boolean;
  /** Posted by this user (from another of his devices). */
  own: boolean;
  /** A text post's text, or a media post's caption. */
  text?: string;
  /** A text post's background colour, 0xRRGGBB. */
  background?: number;
  /** A text post's font, 0-9. */
  font?: number;
  /** A media post's image or video: `downloadMedia(post.media)` fetches it. */
  media?: MediaRef;
}

/** Envelopes remembered for de-duplication (until they expire). */
const REMEMBER = 10_000;

export class StatusInbox {
  /** `<statusId>:<p|r>` -> expiresAt. */
  readonly #seen = new Map<string, number>();

  /** The event for an envelope, or null when it expired or was already seen. */
  accept(env: StatusEnvelope, now: number, userId: string | undefined): StatusPostEvent | null {
    if (env.expiresAt <= now) return null;
    const key = `${env.statusId}:${env.removed ? 'r' : 'p'}`;
    if (this.#seen.has(key)) return null;
    if (this.#seen.size >= REMEMBER) {
      for (const [k, exp] of this.#seen) if (exp <= now) this.#seen.delete(k);
      while (this.#seen.size >= REMEMBER) this.#seen.delete(this.#seen.keys().next().value as string);
    }
    this.#seen.set(key, env.expiresAt);
    return {
      statusId: env.statusId, from: env.from, ts: env.ts, expiresAt: env.expiresAt, removed: env.removed === true,
      own: userId !== undefined && env.from === userId,
      ...(env.text !== undefined ? { text: env.text } : {}), ...(env.background !== undefined ? { background: env.background } : {}),
      ...(env.font !== undefined ? { font: env.font } : {}), ...(env.media !== undefined ? { media: env.media } : {}),
    };
  }
}
