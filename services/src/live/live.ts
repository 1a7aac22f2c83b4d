/**
 * The live service (the broker's LiveSink): presence, last seen, watches and typing, and the key
 * directory's "replenish" notices (`keys`, to one device about its own pool). Ephemeral:
 * nothing here is stored in the database or queued; envelopes go to the watching devices' `live/`
 * topics (QoS 0) over the delivery bus, to the one node each device is connected to.
 *
 * Privacy is the server's: a user's online state and last seen reach a watcher only if the
 * user's `lastSeen` setting allows that watcher (everyone, his contacts, nobody), and never across
 * a block in either direction; typing never reaches a user blocked either way. A watcher who may
 * not see a user gets `online: false` without a last seen once, when he starts watching, and no
 * changes after that.
 */
import type { Logger } from 'pino';
import { encode, type Envelope, type TypingState } from '@parley/client-sdk/protocol';
import type { LiveConnection, LiveSink } from '../../../broker/src/index.js';
import { userPairKey, type ChatStore, type ProfileStore, type RelationStore } from '../store/types.js';
import type { PresenceChange, RedisPresence, UserPresence } from './presence.js';
import type { Watcher, Watchers } from './watchers.js';
import { allowedBy } from '../social/privacy.js';

export interface LiveDeps {
  presence: RedisPresence;
  watchers: Watchers;
  store: Pick<ChatStore, 'getChat' | 'getMembers'> & Pick<ProfileStore, 'getPrivacy' | 'getPrivacies'>
    & Pick<RelationStore, 'listContacts' | 'listBlocked' | 'blockedBy' | 'blockedPairs' | 'contactOf'>;
  /** Sends encoded envelopes to devices wherever they are connected (the delivery bus). */
  send(items: Array<{ deviceId: string; payload: Uint8Array }>): Promise<unknown>;
  now(): number;
  log: Logger;
}

/** A device's key package pool after a claim: `count` left, under the low-water mark when `low`. */
export interface KeysNotice {
  deviceId: string;
  count: number;
  low: boolean;
}

export interface LiveService extends LiveSink {
  /** Removes every presence and watch key of the user (account deletion). */
  forget(userId: string, deviceIds: string[]): Promise<void>;
  /**
   * Sends each device a `keys` envelope on its `live/` topic, wherever it is connected; a device
   * connected nowhere gets nothing (it asks for its count when it connects).
   */
  notifyKeys(notices: KeysNotice[]): Promise<void>;
}

/** How long a chat's members are remembered for typing and watches. */
const CHAT_CACHE_MS = 5000;
const CHAT_CACHE_MAX = 10_000;

export function createLiveService(deps: LiveDeps): LiveService {
  const { presence, watchers, store, log } = deps;

  /**
   * chatId -> its current members, for a few seconds: who may watch it or type in it, and who of
   * its watchers still may see typing there (a member removed from a group stops getting its
   * typing within CHAT_CACHE_MS, not when his watch lapses).
   */
  const chats = new Map<string, { until: number; kind: 'direct' | 'group'; members: Set<string> }>();
  const chatMembers = async (chatId: string): Promise<{ kind: 'direct' | 'group'; members: Set<string> }> => {
    const now = deps.now();
    const hit = chats.get(chatId);
    if (hit && hit.until > now) return hit;
    const chat = await store.getChat(chatId);
    const members = chat && chat.deletedAt === null ? new Set((await store.getMembers(chatId)).map((m) => m.userId)) : new Set<string>();
    if (chats.size >= CHAT_CACHE_MAX) chats.clear();
    const entry = { until: now + CHAT_CACHE_MS, kind: chat?.kind ?? 'group', members };
    chats.set(chatId, entry);
    return entry;
  };
  /** null: not a member; '': a group member; else the other member of a direct chat. */
  const membership = async (chatId: string, userId: string): Promise<string | null> => {
    const c = await chatMembers(chatId);
    if (!c.members.has(userId)) return null;
    return c.kind === 'direct' ? ([...c.members].find((m) => m !== userId) ?? '') : '';
  };

  /** Which of `others` blocked `userId` or were blocked by him: one query. */
  const blockedEitherWay = async (userId: string, others: string[]): Promise<Set<string>> => {
    if (others.length === 0) return new Set();
    const pairs = await store.blockedPairs(others.map((o) => [userId, o]));
    return new Set(others.filter((o) => pairs.has(userPairKey(userId, o))));
  };

  /**
   * The viewers (userIds) allowed to see `userId`'s presence: the privacy rule of
   * social/privacy.ts seen from the owner's side (one owner, many viewers), and no block either way.
   */
  const allowedViewers = async (userId: string, viewers: string[]): Promise<Set<string>> => {
    if (viewers.length === 0) return new Set();
    const privacy = await store.getPrivacy(userId);
    if (privacy.lastSeen === 'nobody') return new Set();
    const [blocked, contacts] = await Promise.all([
      blockedEitherWay(userId, viewers),
      privacy.lastSeen === 'contacts' ? store.listContacts(userId).then((l) => new Set(l)) : Promise.resolve(null),
    ]);
    return new Set(viewers.filter((v) => !blocked.has(v) && (contacts === null || contacts.has(v))));
  };

  const send = async (items: Array<{ deviceId: string; env: Envelope }>): Promise<void> => {
    if (items.length === 0) return;
    const encoded = new Map<Envelope, Uint8Array>();
    await deps.send(items.map((i) => {
      let payload = encoded.get(i.env);
      if (!payload) encoded.set(i.env, (payload = encode(i.env)));
      return { deviceId: i.deviceId, payload };
    }));
  };

  /** Tells the user's permitted watchers his new state. */
  const announce = async (change: PresenceChange, online: boolean): Promise<void> => {
    const { userId } = change;
    const all = (await watchers.ofUser(userId, deps.now())).filter((w) => w.userId !== userId);
    const allowed = await allowedViewers(userId, [...new Set(all.map((w) => w.userId))]);
    const env: Envelope = { kind: 'presence', userId, online, ...(!online && change.lastSeen !== undefined ? { lastSeen: change.lastSeen } : {}), v: change.version };
    await send(all.filter((w) => allowed.has(w.userId)).map((w) => ({ deviceId: w.deviceId, env })));
  };

  const guard = (what: string, fn: () => Promise<void>): Promise<void> =>
    fn().catch((err: unknown) => log.warn({ err, what }, 'live service: could not handle an event'));

  /** What `viewer` may see of these users' presence now. */
  const presenceFor = async (viewerId: string, userIds: string[]): Promise<Map<string, UserPresence>> => {
    const [states, allowed, blockedByViewer] = await Promise.all([
      presence.get(userIds, deps.now()), allowedBy(store, userIds, viewerId, 'lastSeen'), store.listBlocked(viewerId),
    ]);
    const out = new Map<string, UserPresence>();
    for (const u of userIds) {
      const visible = allowed.has(u) && !blockedByViewer.includes(u);
      // Hidden: offline, no last seen, and no version (nothing to order: no changes follow).
      out.set(u, visible ? (states.get(u) ?? { online: false, lastSeen: null, version: 0 }) : { online: false, lastSeen: null, version: 0 });
    }
    return out;
  };

  return {
    connected: (c: LiveConnection) => guard('connected', async () => {
      const change = await presence.connect(c, deps.now());
      if (change) await announce(change, true);
    }),
    disconnected: (c: LiveConnection) => guard('disconnected', async () => {
      const change = await presence.disconnect(c, deps.now());
      if (change) await announce(change, false);
    }),
    refresh: (_nodeId, connections) => guard('refresh', async () => {
      const now = deps.now();
      const back = await presence.refresh(connections, now);
      const gone = await presence.reap(now);
      await Promise.all([...back.map((b) => announce(b, true)), ...gone.map((g) => announce(g, false))]);
      if (gone.length) log.info({ users: gone.length }, 'presence: users of a stopped node are offline');
    }),
    watch: (from, chatIds) => guard('watch', async () => {
      const peersOf = await Promise.all(chatIds.map((chatId) => membership(chatId, from.userId)));
      // Not a member (any more): nothing to watch there.
      const watched = chatIds.filter((_, i) => peersOf[i] !== null);
      const peers = [...new Set(peersOf.filter((p): p is string => !!p))];
      await watchers.set(from, watched, peers, deps.now());
      const states = await presenceFor(from.userId, peers);
      await send([...states].map(([userId, p]) => ({
        deviceId: from.deviceId,
        env: {
          kind: 'presence', userId, online: p.online, ...(!p.online && p.lastSeen !== null ? { lastSeen: p.lastSeen } : {}),
          ...(p.version > 0 ? { v: p.version } : {}),
        },
      })));
    }),
    typing: (from, chatId, state: TypingState) => guard('typing', async () => {
      const chat = await chatMembers(chatId);
      if (!chat.members.has(from.userId)) return;
      const targets: Watcher[] = (await watchers.ofChat(chatId, deps.now())).filter((w) => w.userId !== from.userId && chat.members.has(w.userId));
      if (targets.length === 0) return;
      const blocked = await blockedEitherWay(from.userId, [...new Set(targets.map((t) => t.userId))]);
      const env: Envelope = { kind: 'typing', chatId, state, from: from.userId };
      await send(targets.filter((t) => !blocked.has(t.userId)).map((t) => ({ deviceId: t.deviceId, env })));
    }),
    async forget(userId, deviceIds) {
      await Promise.all([presence.forget(userId), watchers.forget(userId, deviceIds)]);
    },
    async notifyKeys(notices) {
      await send(notices.map((n) => ({ deviceId: n.deviceId, env: { kind: 'keys', count: n.count, low: n.low } })));
    },
  };
}
