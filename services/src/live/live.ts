/**
 * The live service (the broker's LiveSink): presence, last seen, watches and typing. Ephemeral:
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
import type { ChatStore, ProfileStore, RelationStore } from '../store/types.js';
import type { RedisPresence, UserPresence } from './presence.js';
import type { Watcher, Watchers } from './watchers.js';
import { allowedBy } from '../social/privacy.js';

export interface LiveDeps {
  presence: RedisPresence;
  watchers: Watchers;
  store: Pick<ChatStore, 'getChat' | 'getMember' | 'getMembers'> & Pick<ProfileStore, 'getPrivacy' | 'getPrivacies'>
    & Pick<RelationStore, 'listContacts' | 'listBlocked' | 'blockedBy' | 'contactOf'>;
  /** Sends encoded envelopes to devices wherever they are connected (the delivery bus). */
  send(items: Array<{ deviceId: string; payload: Uint8Array }>): Promise<unknown>;
  now(): number;
  log: Logger;
}

export interface LiveService extends LiveSink {
  /** Removes every presence and watch key of the user (account deletion). */
  forget(userId: string, deviceIds: string[]): Promise<void>;
}

/** How long a membership (or a direct chat's other member) is remembered for typing and watches. */
const MEMBER_CACHE_MS = 10_000;
const MEMBER_CACHE_MAX = 50_000;

export function createLiveService(deps: LiveDeps): LiveService {
  const { presence, watchers, store, log } = deps;

  /** `${chatId} ${userId}` -> { until, peer } (peer: the other member of a direct chat, '' for a group; null: not a member). */
  const members = new Map<string, { until: number; peer: string | null }>();
  const membership = async (chatId: string, userId: string): Promise<string | null> => {
    const key = `${chatId} ${userId}`;
    const now = deps.now();
    const hit = members.get(key);
    if (hit && hit.until > now) return hit.peer;
    let peer: string | null = null;
    const [chat, me] = await Promise.all([store.getChat(chatId), store.getMember(chatId, userId)]);
    if (chat && me && chat.deletedAt === null) {
      peer = chat.kind === 'direct' ? ((await store.getMembers(chatId)).find((m) => m.userId !== userId)?.userId ?? '') : '';
    }
    if (members.size >= MEMBER_CACHE_MAX) members.clear();
    members.set(key, { until: now + MEMBER_CACHE_MS, peer });
    return peer;
  };

  /** Which of `viewers` are blocked by `userId` or have blocked him. */
  const blockedEitherWay = async (userId: string, viewers: string[]): Promise<Set<string>> => {
    const [mine, theirs] = await Promise.all([store.listBlocked(userId), store.blockedBy(viewers, userId)]);
    return new Set([...mine, ...theirs]);
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
  const announce = async (userId: string, online: boolean, lastSeen: number | null): Promise<void> => {
    const all = (await watchers.ofUser(userId, deps.now())).filter((w) => w.userId !== userId);
    const allowed = await allowedViewers(userId, [...new Set(all.map((w) => w.userId))]);
    const env: Envelope = { kind: 'presence', userId, online, ...(!online && lastSeen !== null ? { lastSeen } : {}) };
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
      out.set(u, visible ? (states.get(u) ?? { online: false, lastSeen: null }) : { online: false, lastSeen: null });
    }
    return out;
  };

  return {
    connected: (c: LiveConnection) => guard('connected', async () => {
      if (await presence.connect(c, deps.now())) await announce(c.userId, true, null);
    }),
    disconnected: (c: LiveConnection) => guard('disconnected', async () => {
      const now = deps.now();
      if (await presence.disconnect(c, now)) await announce(c.userId, false, now);
    }),
    refresh: (_nodeId, connections) => guard('refresh', async () => {
      const now = deps.now();
      const back = await presence.refresh(connections, now);
      const gone = await presence.reap(now);
      await Promise.all([
        ...back.map((u) => announce(u, true, null)),
        ...gone.map((g) => announce(g.userId, false, g.lastSeen)),
      ]);
      if (gone.length) log.info({ users: gone.length }, 'presence: users of a stopped node are offline');
    }),
    watch: (from, chatIds) => guard('watch', async () => {
      const chats: string[] = [];
      const peers = new Set<string>();
      for (const chatId of chatIds) {
        const peer = await membership(chatId, from.userId);
        if (peer === null) continue; // not a member (any more): nothing to watch there
        chats.push(chatId);
        if (peer) peers.add(peer);
      }
      await watchers.set(from, chats, [...peers], deps.now());
      const states = await presenceFor(from.userId, [...peers]);
      await send([...states].map(([userId, p]) => ({
        deviceId: from.deviceId,
        env: { kind: 'presence', userId, online: p.online, ...(!p.online && p.lastSeen !== null ? { lastSeen: p.lastSeen } : {}) },
      })));
    }),
    typing: (from, chatId, state: TypingState) => guard('typing', async () => {
      if ((await membership(chatId, from.userId)) === null) return;
      const targets: Watcher[] = (await watchers.ofChat(chatId, deps.now())).filter((w) => w.userId !== from.userId);
      if (targets.length === 0) return;
      const blocked = await blockedEitherWay(from.userId, [...new Set(targets.map((t) => t.userId))]);
      const env: Envelope = { kind: 'typing', chatId, state, from: from.userId };
      await send(targets.filter((t) => !blocked.has(t.userId)).map((t) => ({ deviceId: t.deviceId, env })));
    }),
    async forget(userId, deviceIds) {
      await Promise.all([presence.forget(userId), watchers.forget(userId, deviceIds)]);
    },
  };
}
