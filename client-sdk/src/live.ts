/**
 * The SDK's ephemeral side: watches (the chats on screen), typing sent and received, presence.
 * Nothing here is queued: a watch or typing state sent while disconnected is dropped (the watch is
 * sent again on every connection), and received states live only in memory.
 */
import {
  MAX_WATCHED_CHATS, TYPING_REPEAT_MS, TYPING_TTL_MS, WATCH_TTL_MS, encode,
  type PresenceEnvelope, type TypingEnvelope, type TypingState,
} from './codec.js';
import { ParleyError } from './errors.js';
import { isChatId } from './ids.js';

/** A watched user's presence. `lastSeen` (epoch ms) only when offline and his privacy lets you see it. */
export interface PresenceInfo {
  userId: string;
  online: boolean;
  lastSeen?: number;
}

/** Someone typing (or recording a voice message) in a watched chat; `stop` also when it lapsed. */
export interface TypingInfo {
  chatId: string;
  userId: string;
  state: TypingState;
}

export interface LiveHooks {
  /** Publishes on the device's outbox at QoS 0; false when not connected (dropped). */
  send(payload: Uint8Array): boolean;
  presence(p: PresenceInfo): void;
  typing(t: TypingInfo): void;
}

export class LiveChannel {
  readonly #hooks: LiveHooks;
  #watched: string[] = [];
  #watchTimer: ReturnType<typeof setInterval> | undefined;
  /** chatId -> what this device last sent there, and when. */
  readonly #sent = new Map<string, { state: TypingState; at: number }>();
  /** userId -> the version of the last presence taken (announcements about one user can race). */
  readonly #presenceV = new Map<string, number>();
  /** `${chatId} ${userId}` -> the timer that ends a received typing state. */
  readonly #typing = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(hooks: LiveHooks) {
    this.#hooks = hooks;
  }

  /** Replaces the watched chats; repeats the watch while it is not empty. */
  watch(chatIds: readonly string[]): void {
    const list = [...new Set(chatIds)];
    if (list.length > MAX_WATCHED_CHATS) throw new ParleyError('E_VALIDATION', `at most ${MAX_WATCHED_CHATS} chats`);
    for (const c of list) if (!isChatId(c)) throw new ParleyError('E_VALIDATION', `chatId ${String(c)}`);
    this.#watched = list;
    if (this.#watchTimer !== undefined) clearInterval(this.#watchTimer);
    this.#watchTimer = undefined;
    this.#sendWatch(true);
    if (list.length) {
      // Before the server's watch lapses (WATCH_TTL_MS), with room for a slow link.
      this.#watchTimer = setInterval(() => this.#sendWatch(false), Math.floor(WATCH_TTL_MS * 0.75));
      (this.#watchTimer as { unref?: () => void }).unref?.();
    }
  }

  /** A (re)connection: the server forgot nothing durable, but the watch may have lapsed. */
  connected(): void {
    if (this.#watched.length) this.#sendWatch(false);
    this.#sent.clear();
  }

  /**
   * Sends this device's typing state for a chat: a repeat of the same state within
   * TYPING_REPEAT_MS is not sent (call it on every keystroke), `stop` once.
   */
  setTyping(chatId: string, state: TypingState, now: number): void {
    if (!isChatId(chatId)) throw new ParleyError('E_VALIDATION', 'chatId');
    const last = this.#sent.get(chatId);
    if (last && last.state === state && (state === 'stop' || now - last.at < TYPING_REPEAT_MS)) return;
    if (!last && state === 'stop') return;
    if (this.#hooks.send(encode({ kind: 'typing', chatId, state }))) {
      if (state === 'stop') this.#sent.delete(chatId);
      else this.#sent.set(chatId, { state, at: now });
    }
  }

  onTyping(env: TypingEnvelope): void {
    if (!env.from) return;
    const key = `${env.chatId} ${env.from}`;
    const timer = this.#typing.get(key);
    if (timer !== undefined) clearTimeout(timer);
    this.#typing.delete(key);
    const info: TypingInfo = { chatId: env.chatId, userId: env.from, state: env.state };
    if (env.state !== 'stop') {
      // The sender repeats while typing; silence for TYPING_TTL_MS means a lost `stop`.
      const t = setTimeout(() => {
        this.#typing.delete(key);
        this.#hooks.typing({ ...info, state: 'stop' });
      }, TYPING_TTL_MS);
      (t as { unref?: () => void }).unref?.();
      this.#typing.set(key, t);
    }
    this.#hooks.typing(info);
  }

  onPresence(env: PresenceEnvelope): void {
    if (env.v !== undefined) {
      const last = this.#presenceV.get(env.userId);
      if (last !== undefined && env.v < last) return; // an older state that arrived late
      this.#presenceV.set(env.userId, env.v);
    }
    this.#hooks.presence({ userId: env.userId, online: env.online, ...(env.lastSeen !== undefined ? { lastSeen: env.lastSeen } : {}) });
  }

  close(): void {
    if (this.#watchTimer !== undefined) clearInterval(this.#watchTimer);
    this.#watchTimer = undefined;
    for (const t of this.#typing.values()) clearTimeout(t);
    this.#typing.clear();
  }

  #sendWatch(evenIfEmpty: boolean): void {
    if (!this.#watched.length && !evenIfEmpty) return;
    this.#hooks.send(encode({ kind: 'watch', chatIds: this.#watched }));
  }
}
