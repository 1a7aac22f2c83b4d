/**
 * `persist`: stores a batch of new messages (idempotently, each chat's seqs in acceptance order:
 * one job at a time per persist queue, and a chat always maps to the same queue), answers each
 * sending device with `stored`, and starts the fan-out: a chat with at most `fanoutChunk` devices
 * is delivered here and now, a larger one through `fanout` jobs (fanout.ts), so a big group never
 * holds the ordered queue up. A retried batch fans out again what it stored before: the delivery
 * agents drop the repeats by seq.
 */
import {
  MAX_STORED_MORE, decode, isChatId, isUserId, msgIdOf, newId, type ErrorCode, type Envelope, type MediaRef, type SendEnvelope, type StoredEnvelope,
} from '@parley/client-sdk/protocol';
import type { IngestMessage } from '../../../broker/src/index.js';
import { toMsgEnvelope } from '../../../broker/src/index.js';
import { receives, userPairKey, type AppendRefusal, type Chat, type ChatDevice, type NewMessage, type StoredMessage } from '../store/types.js';
import { mediaRefOf } from '../media/attachments.js';
import type { WorkerContext } from './context.js';
import { fanoutJobs } from './fanout.js';
import { queueWakeUps } from './push.js';
import { groupBy } from '../group-by.js';

interface Resolved {
  item: IngestMessage;
  env: SendEnvelope;
  chat: Chat;
  media?: MediaRef;
}

type Out = Array<{ deviceId: string; env: Envelope }>;

/**
 * The users a 1:1 message goes between, whether it is addressed by the peer's user id or by the
 * direct chat's id (both must be refused between a blocked pair).
 */
type Pair = [string, string];

/**
 * Of these pairs, those where one user blocked the other (as `userPairKey`s): one store query for
 * the whole batch, and none at all when it has no 1:1 message.
 */
async function blockedPairsOf(ctx: WorkerContext, list: Pair[]): Promise<Set<string>> {
  const pairs = new Map<string, Pair>();
  for (const [a, b] of list) if (a !== b) pairs.set(userPairKey(a, b), [a, b]);
  return pairs.size ? ctx.store.blockedPairs([...pairs.values()]) : new Set();
}

async function resolveChats(ctx: WorkerContext, items: IngestMessage[], out: Out): Promise<Resolved[]> {
  const { store } = ctx;
  const refuse = (item: IngestMessage, code: ErrorCode, detail: string, ref?: string): void => {
    out.push({ deviceId: item.d, env: { kind: 'error', code, detail, ref } });
  };
  // Caches for this batch: a burst in one chat resolves its chat once.
  const directChats = new Map<string, Chat | null>();
  const chats = new Map<string, Chat | null>();
  const membership = new Map<string, boolean>();
  // A direct chat's current members: one query per distinct direct chat addressed by its id, which
  // answers both the membership check and who the other member is (the block check's pair).
  const directMembers = new Map<string, string[]>();
  const chatOf = async (chatId: string): Promise<Chat | null> => {
    if (!chats.has(chatId)) chats.set(chatId, await store.getChat(chatId));
    return chats.get(chatId) ?? null;
  };
  const membersOf = async (chatId: string): Promise<string[]> => {
    let members = directMembers.get(chatId);
    if (!members) directMembers.set(chatId, members = (await store.getMembers(chatId)).map((m) => m.userId));
    return members;
  };
  const isMember = async (chat: Chat, userId: string): Promise<boolean> => {
    if (chat.kind === 'direct') return (await membersOf(chat.chatId)).includes(userId);
    const mk = `${chat.chatId}|${userId}`;
    if (!membership.has(mk)) membership.set(mk, (await store.getMember(chat.chatId, userId)) !== null);
    return membership.get(mk) ?? false;
  };
  /** The other member of a live direct chat the sender is in (none in a group, or a chat with oneself). */
  const peerOf = async (chat: Chat | null, userId: string): Promise<string | undefined> => {
    if (chat?.kind !== 'direct' || chat.deletedAt != null) return undefined;
    const members = await membersOf(chat.chatId);
    return members.includes(userId) ? members.find((m) => m !== userId) : undefined;
  };

  const envs = items.map((item): Envelope | null => {
    try {
      return decode(Buffer.from(item.p, 'base64'));
    } catch {
      return null;
    }
  });
  // Every 1:1 pair of the batch, addressed by the peer's user id or by the direct chat's id, so
  // that one query answers the block check for all of them.
  const pairs: Pair[] = [];
  for (const [i, env] of envs.entries()) {
    if (env?.kind !== 'send') continue;
    const { u } = items[i]!;
    if (isUserId(env.to)) pairs.push([u, env.to]);
    else if (isChatId(env.to)) {
      const peer = await peerOf(await chatOf(env.to), u);
      if (peer !== undefined) pairs.push([u, peer]);
    }
  }
  const blocked = await blockedPairsOf(ctx, pairs);

  const resolved: Resolved[] = [];
  for (const [i, env] of envs.entries()) {
    const item = items[i]!;
    if (!env) {
      refuse(item, 'E_BAD_ENVELOPE', 'undecodable');
      continue;
    }
    if (env.kind !== 'send') continue;
    let chat: Chat | null;
    if (isUserId(env.to)) {
      // Either of the two blocked the other: not stored, not delivered; the sender is told.
      if (env.to !== item.u && blocked.has(userPairKey(item.u, env.to))) {
        refuse(item, 'E_BLOCKED', env.to, env.clientMsgId);
        continue;
      }
      const key = `${item.u}|${env.to}`;
      if (!directChats.has(key)) {
        // The sender too: a message still queued when his account was deleted must not open a
        // new direct chat in his name (services/src/account/delete-account.ts).
        const peer = (await store.getUser(item.u)) !== null && (env.to === item.u || (await store.getUser(env.to)) !== null);
        directChats.set(key, peer ? await store.getOrCreateDirectChat(item.u, env.to, newId('chat'), ctx.now()) : null);
      }
      chat = directChats.get(key) ?? null;
    } else if (isChatId(env.to)) {
      chat = await chatOf(env.to);
      if (chat?.deletedAt != null) {
        refuse(item, 'E_CHAT_DELETED', env.to, env.clientMsgId);
        continue;
      }
      if (chat && !(await isMember(chat, item.u))) {
        refuse(item, 'E_NOT_MEMBER', env.to, env.clientMsgId);
        continue;
      }
      // A direct chat addressed by its id is refused between a blocked pair as by the user id.
      const peer = await peerOf(chat, item.u);
      if (peer !== undefined && blocked.has(userPairKey(item.u, peer))) {
        refuse(item, 'E_BLOCKED', env.to, env.clientMsgId);
        continue;
      }
    } else {
      chat = null;
    }
    if (!chat) {
      refuse(item, 'E_RECIPIENT_UNKNOWN', env.to, env.clientMsgId);
      continue;
    }
    if (env.media) {
      // The sender's own attachment, uploaded and checked (and thumbnailed where it applies).
      const a = await store.getAttachment(env.media);
      if (!a || a.ownerUserId !== item.u) {
        refuse(item, 'E_NOT_FOUND', `no such attachment ${env.media}`, env.clientMsgId);
        continue;
      }
      if (a.state !== 'ready') {
        refuse(item, 'E_MEDIA_STATE', `attachment ${a.attachmentId} is ${a.state}`, env.clientMsgId);
        continue;
      }
      resolved.push({ item, env, chat, media: mediaRefOf(a) });
      continue;
    }
    resolved.push({ item, env, chat });
  }
  return resolved;
}

const REFUSAL_CODE: Record<AppendRefusal, ErrorCode> = { NOT_MEMBER: 'E_NOT_MEMBER', CHAT_DELETED: 'E_CHAT_DELETED' };

/** One `stored` per sending device and chat answers all of its messages in this batch (same ts). */
function storedNotices(messages: StoredMessage[], out: Out): void {
  const stored = new Map<string, StoredEnvelope>();
  for (const m of messages) {
    const key = `${m.senderDeviceId}|${m.chatId}|${m.ts}`;
    const st = stored.get(key);
    if (st && (st.more?.length ?? 0) < MAX_STORED_MORE) (st.more ??= []).push({ clientMsgId: m.clientMsgId, seq: m.seq });
    else {
      if (st) out.push({ deviceId: m.senderDeviceId, env: st }); // full: out it goes, a new one starts
      stored.set(key, { kind: 'stored', clientMsgId: m.clientMsgId, chatId: m.chatId, seq: m.seq, ts: m.ts });
    }
  }
  for (const [key, env] of stored) out.push({ deviceId: key.slice(0, key.indexOf('|')), env });
}

/** What a persist job did: the job's return value. */
export interface PersistResult {
  /** Messages stored or found stored (a resend). */
  messages: number;
  /** The worker process that stored them. */
  by: string;
}

export async function processPersist(ctx: WorkerContext, items: IngestMessage[]): Promise<PersistResult> {
  const { store, publisher } = ctx;
  const out: Out = [];
  const resolved = await resolveChats(ctx, items, out);

  // One timestamp for the whole batch: it was stored in one transaction, and one `stored` per
  // device and chat can then answer all of that device's messages in it.
  const ts = ctx.now();
  const batch: NewMessage[] = resolved.map(({ item, env, chat, media }) => ({
    chatId: chat.chatId, senderUserId: item.u, senderDeviceId: item.d, clientMsgId: env.clientMsgId, body: env.body, ts,
    ...(media ? { media } : {}),
  }));
  const messages: StoredMessage[] = [];
  const links: Array<{ attachmentId: string; chatId: string; seq: number }> = [];
  if (batch.length) {
    const results = await store.appendMessages(batch);
    // The store checks membership again where it assigns the seq: a sender removed since the check
    // above (by a group change committed in between) is refused there.
    results.forEach((r, i) => {
      if (r.message) {
        messages.push(r.message);
        // Resends too: a crash between the append and the link is mended by the retry.
        if (r.message.media) links.push({ attachmentId: r.message.media.attachmentId, chatId: r.message.chatId, seq: r.message.seq });
        // A video's poster (the sender's own image, checked at createAttachment) goes with it.
        if (r.message.media?.poster) links.push({ attachmentId: r.message.media.poster, chatId: r.message.chatId, seq: r.message.seq });
      }
      else {
        const m = batch[i]!;
        out.push({ deviceId: m.senderDeviceId, env: { kind: 'error', code: REFUSAL_CODE[r.refused], detail: m.chatId, ref: m.clientMsgId } });
      }
    });
  }

  // Members may download a message's attachment from the moment they can receive the message.
  for (const l of links) await store.linkAttachment(l.attachmentId, l.chatId, l.seq, ts + ctx.retentionMs);

  const byChat = groupBy(messages, (m) => m.chatId);
  // The chats delivered here, for the push wake-ups of their devices that are connected nowhere.
  const inline: Array<{ chatId: string; devices: ChatDevice[]; messages: StoredMessage[] }> = [];
  // Recipients first, then the senders' `stored`: by the time a sender sees its seq, the message
  // is on its way to every recipient device of a small chat.
  for (const [chatId, list] of byChat) {
    const devices = await store.chatDevices(chatId, '', ctx.fanoutChunk + 1, Math.min(...list.map((m) => m.seq)));
    if (devices.length > ctx.fanoutChunk) {
      await ctx.enqueueFanout(fanoutJobs(chatId, list.map((m) => m.seq)));
      continue;
    }
    inline.push({ chatId, devices, messages: list });
    ctx.observer?.fanout('inline', devices.length);
    for (const m of list) {
      const env = toMsgEnvelope(m);
      for (const d of devices) if (receives(d, m)) out.push({ deviceId: d.deviceId, env });
    }
  }
  storedNotices(messages, out);
  if (ctx.log.isLevelEnabled('debug')) {
    // Follow one message: the broker logged its clientMsgId; from here on it is its msgId
    // (chatId.seq), which the delivered lines of every recipient device carry.
    for (const m of messages) ctx.log.debug({ clientId: m.senderDeviceId, clientMsgId: m.clientMsgId, msgId: msgIdOf(m.chatId, m.seq) }, 'message stored');
    for (const c of inline) {
      ctx.log.debug({ msgIds: c.messages.map((m) => msgIdOf(m.chatId, m.seq)), devices: c.devices.length }, 'messages handed to delivery');
    }
  }
  const away = await publisher.publishAll(out);
  ctx.observer?.ingested(resolved.map((r) => r.item.t));
  await queueWakeUps(ctx, away, inline);
  return { messages: messages.length, by: ctx.workerId };
}
