/**
 * `persist`: stores a batch of new messages (idempotently), then hands each to the inbox of every
 * recipient device and tells the sending device its seq. Runs with global concurrency 1, so the
 * seqs of a chat follow the order the brokers accepted the messages in.
 */
import {
  MAX_STORED_MORE, decode, isChatId, isUserId, newId, type ErrorCode, type Envelope, type SendEnvelope, type StoredEnvelope,
} from '@parley/client-sdk';
import type { IngestMessage } from '../../../broker/src/index.js';
import type { Chat, DeliveryKey, NewMessage } from '../store/types.js';
import type { WorkerContext } from './context.js';

interface Resolved {
  item: IngestMessage;
  env: SendEnvelope;
  chat: Chat;
}

export async function processPersist(ctx: WorkerContext, items: IngestMessage[]): Promise<void> {
  const { store, publisher } = ctx;
  const out: Array<{ deviceId: string; env: Envelope }> = [];
  const refuse = (item: IngestMessage, code: ErrorCode, detail: string, ref?: string): void => {
    out.push({ deviceId: item.d, env: { kind: 'error', code, detail, ref } });
  };

  // Caches for this batch: a burst in one chat resolves its chat and devices once.
  const directChats = new Map<string, Chat | null>();
  const chats = new Map<string, Chat | null>();
  const memberIds = new Map<string, string[]>();
  const resolved: Resolved[] = [];

  for (const item of items) {
    let env: Envelope;
    try {
      env = decode(Buffer.from(item.p, 'base64'));
    } catch {
      refuse(item, 'E_BAD_ENVELOPE', 'undecodable');
      continue;
    }
    if (env.kind !== 'send') continue;
    let chat: Chat | null;
    if (isUserId(env.to)) {
      const key = `${item.u}|${env.to}`;
      if (!directChats.has(key)) {
        const peer = env.to === item.u ? true : await store.getUser(env.to);
        directChats.set(key, peer ? await store.getOrCreateDirectChat(item.u, env.to, newId('chat'), ctx.now()) : null);
      }
      chat = directChats.get(key) ?? null;
      if (!chat) {
        refuse(item, 'E_RECIPIENT_UNKNOWN', env.to, env.clientMsgId);
        continue;
      }
    } else if (isChatId(env.to)) {
      if (!chats.has(env.to)) chats.set(env.to, await store.getChat(env.to));
      chat = chats.get(env.to) ?? null;
      if (!chat) {
        refuse(item, 'E_RECIPIENT_UNKNOWN', env.to, env.clientMsgId);
        continue;
      }
      if (!(await store.getMember(chat.chatId, item.u))) {
        refuse(item, 'E_NOT_MEMBER', env.to, env.clientMsgId);
        continue;
      }
    } else {
      refuse(item, 'E_RECIPIENT_UNKNOWN', env.to, env.clientMsgId);
      continue;
    }
    if (!memberIds.has(chat.chatId)) {
      memberIds.set(chat.chatId, (await store.getMembers(chat.chatId)).map((m) => m.userId));
    }
    resolved.push({ item, env, chat });
  }

  const devicesOf = new Map<string, Array<{ deviceId: string; userId: string }>>();
  for (const [chatId, users] of memberIds) {
    const devices = await store.listDevicesOfUsers(users);
    devicesOf.set(chatId, devices.map((d) => ({ deviceId: d.deviceId, userId: d.userId })));
  }

  // One timestamp for the whole batch: it was stored in one transaction, and one `stored` per
  // device and chat can then answer all of that device's messages in it.
  const ts = ctx.now();
  const batch: NewMessage[] = resolved.map(({ item, env, chat }) => ({
    chatId: chat.chatId,
    senderUserId: item.u,
    senderDeviceId: item.d,
    clientMsgId: env.clientMsgId,
    body: env.body,
    ts,
    recipients: (devicesOf.get(chat.chatId) ?? []).filter((d) => d.deviceId !== item.d),
  }));
  const results = batch.length ? await store.appendMessages(batch) : [];

  const queued: DeliveryKey[] = [];
  // One `stored` per sending device and chat answers all of its messages in this batch (same ts).
  const stored = new Map<string, StoredEnvelope>();
  for (const r of results) {
    const m = r.message;
    for (const rcpt of r.pending) {
      out.push({
        deviceId: rcpt.deviceId,
        env: { kind: 'msg', chatId: m.chatId, seq: m.seq, from: m.senderUserId, fromDevice: m.senderDeviceId, ts: m.ts, body: m.body },
      });
      queued.push({ chatId: m.chatId, seq: m.seq, deviceId: rcpt.deviceId });
    }
    const key = `${m.senderDeviceId}|${m.chatId}|${m.ts}`;
    const st = stored.get(key);
    if (st && (st.more?.length ?? 0) < MAX_STORED_MORE) (st.more ??= []).push({ clientMsgId: m.clientMsgId, seq: m.seq });
    else {
      if (st) out.push({ deviceId: m.senderDeviceId, env: st }); // full: out it goes, a new one starts
      stored.set(key, { kind: 'stored', clientMsgId: m.clientMsgId, chatId: m.chatId, seq: m.seq, ts: m.ts });
    }
  }
  // Recipients first, then the senders' `stored`: by the time a sender sees its seq, the message
  // is already waiting in every recipient's queue.
  for (const [key, env] of stored) out.push({ deviceId: key.slice(0, key.indexOf('|')), env });
  await publisher.publishAll(out);
  if (queued.length) await store.markQueued(queued);
}
