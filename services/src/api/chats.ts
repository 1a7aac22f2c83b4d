/**
 * Chat routes: createChat (direct or group), the chat list, a chat's details, group changes
 * (participants, admins, settings, leave, deleteGroup), invitations, the user's mute/archive
 * flags, history paging (readNewMessages) and getMessageStatus. Group rules live in
 * services/src/groups/groups.ts; these routes only authenticate, validate and shape answers.
 */
import type { FastifyRequest } from 'fastify';
import { ParleyError, isChatId, msgIdOf, newId, parseMsgId, type Body } from '@parley/client-sdk/protocol';
import {
  schemas, type ChatChange, type ChatInfo, type ChatListItem, type HistoryMessage, type HistoryPage, type InviteInfo,
  type MessageStatusResponse, type NewInvite,
} from '@parley/client-sdk/api-types';
import type { Chat, Member, StoredMessage } from '../store/types.js';
import { hashGrant, newGrantCode } from '../auth/secrets.js';
import { parse, type RouteContext } from './context.js';

function bodyJson(b: Body): { text: string } | { data: string } {
  return typeof b === 'string' ? { text: b } : { data: Buffer.from(b).toString('base64') };
}

export function messageJson(m: StoredMessage): HistoryMessage {
  return {
    msgId: msgIdOf(m.chatId, m.seq), chatId: m.chatId, seq: m.seq, from: m.senderUserId,
    fromDevice: m.senderDeviceId, ts: m.ts, ...(m.event ? { event: m.event } : bodyJson(m.body)), ...(m.media ? { media: m.media } : {}),
  };
}

function chatJson(chat: Chat, members: Member[], me: Member): ChatInfo {
  return {
    chatId: chat.chatId, kind: chat.kind, name: chat.name, description: chat.description, avatar: chat.avatar,
    shareHistory: chat.shareHistory, createdAt: chat.createdAt, lastSeq: chat.lastSeq, deleted: chat.deletedAt !== null,
    members: members.map((m) => ({ userId: m.userId, role: m.role, joinedAt: m.joinedAt })),
    me: { role: me.role, left: me.leftSeq !== null, mutedUntil: me.mutedUntil, archived: me.archived },
  };
}

type ChatParams = { Params: { chatId: string } };

/** An invitation's public id: a prefix of its code's HMAC (the code itself is shown once, never stored). */
const inviteIdOf = (codeHash: string): string => codeHash.slice(0, 32);

function chatIdOf(req: FastifyRequest<ChatParams>): string {
  if (!isChatId(req.params.chatId)) throw new ParleyError('E_VALIDATION', 'chatId');
  return req.params.chatId;
}

export function registerChatRoutes(ctx: RouteContext): void {
  const { app, deps, now, authDevice } = ctx;
  const { store, groups } = deps;

  const info = async (chatId: string, userId: string): Promise<ChatInfo> => {
    const v = await groups.view(chatId, userId);
    return chatJson(v.chat, v.members, v.me);
  };
  const changed = async (chatId: string, userId: string, messages: StoredMessage[]): Promise<ChatChange> => ({
    chat: await info(chatId, userId), msgIds: messages.map((m) => msgIdOf(m.chatId, m.seq)),
  });

  // createChat: a direct chat with one user (created once, the same for both), or a group.
  app.post('/v1/chats', async (req, reply) => {
    const caller = await authDevice(req);
    const body = parse(schemas.createChat, req.body);
    if ('userId' in body) {
      if (!(await store.getUser(body.userId))) throw new ParleyError('E_USER_NOT_FOUND', body.userId);
      // No 1:1 chat is opened between two users while one blocks the other (an existing one stays
      // in their chat lists).
      if (body.userId !== caller.userId && (await store.blockedPairs([[caller.userId, body.userId]])).size) throw new ParleyError('E_BLOCKED', body.userId);
      const chat = await store.getOrCreateDirectChat(caller.userId, body.userId, newId('chat'), now());
      return reply.status(201).send(await info(chat.chatId, caller.userId));
    }
    const { chat } = await groups.create(caller.userId, body);
    return reply.status(201).send(await info(chat.chatId, caller.userId));
  });

  // The chat list: last message, unread count and flags, most recent first.
  app.get('/v1/chats', async (req) => {
    const caller = await authDevice(req);
    const q = parse(schemas.chatList, req.query);
    const chats: ChatListItem[] = (await store.listChats(caller.userId, q.limit)).map((e) => ({
      chatId: e.chat.chatId, kind: e.chat.kind, name: e.chat.name, lastMessage: e.last ? messageJson(e.last) : null,
      unread: e.unread, mutedUntil: e.member.mutedUntil, archived: e.member.archived, left: e.member.leftSeq !== null,
      deleted: e.chat.deletedAt !== null,
    }));
    return { chats };
  });

  app.get<ChatParams>('/v1/chats/:chatId', async (req) => {
    const caller = await authDevice(req);
    return info(chatIdOf(req), caller.userId);
  });

  // Rename, describe, set the avatar reference (admins).
  app.patch<ChatParams>('/v1/chats/:chatId', async (req) => {
    const caller = await authDevice(req);
    const chatId = chatIdOf(req);
    const body = parse(schemas.updateChat, req.body);
    return changed(chatId, caller.userId, [await groups.update(chatId, caller.userId, body)]);
  });

  // deleteGroup (admins).
  app.delete<ChatParams>('/v1/chats/:chatId', async (req) => {
    const caller = await authDevice(req);
    const chatId = chatIdOf(req);
    return changed(chatId, caller.userId, [await groups.delete(chatId, caller.userId)]);
  });

  // modifyChatParticipants / addUserToGroup / removeUserFromGroup (admins).
  app.post<ChatParams>('/v1/chats/:chatId/participants', async (req) => {
    const caller = await authDevice(req);
    const chatId = chatIdOf(req);
    const body = parse(schemas.participants, req.body);
    return changed(chatId, caller.userId, await groups.modifyParticipants(chatId, caller.userId, body));
  });

  // promoteUserToAdmin (admins).
  app.post<ChatParams>('/v1/chats/:chatId/admins', async (req) => {
    const caller = await authDevice(req);
    const chatId = chatIdOf(req);
    const body = parse(schemas.admins, req.body);
    return changed(chatId, caller.userId, [await groups.promote(chatId, caller.userId, body.users)]);
  });

  // Demote admins (admins; one admin stays).
  app.post<ChatParams>('/v1/chats/:chatId/admins/remove', async (req) => {
    const caller = await authDevice(req);
    const chatId = chatIdOf(req);
    const body = parse(schemas.admins, req.body);
    return changed(chatId, caller.userId, [await groups.demote(chatId, caller.userId, body.users)]);
  });

  app.post<ChatParams>('/v1/chats/:chatId/leave', async (req) => {
    const caller = await authDevice(req);
    const chatId = chatIdOf(req);
    return changed(chatId, caller.userId, [await groups.leave(chatId, caller.userId)]);
  });

  // The caller's own flags of a chat (mute until, archive).
  app.put<ChatParams>('/v1/chats/:chatId/settings', async (req) => {
    const caller = await authDevice(req);
    const chatId = chatIdOf(req);
    const body = parse(schemas.chatSettings, req.body);
    if (!(await store.setChatFlags(chatId, caller.userId, body))) throw new ParleyError('E_CHAT_NOT_FOUND', chatId);
    return info(chatId, caller.userId);
  });

  // Invitation links (admins): a code that lets anyone holding it join until it expires or is revoked.
  app.post<ChatParams>('/v1/chats/:chatId/invites', async (req, reply) => {
    const caller = await authDevice(req);
    const chatId = chatIdOf(req);
    const body = parse(schemas.invite, req.body ?? {});
    await groups.requireAdmin(chatId, caller.userId);
    const code = newGrantCode('invite');
    const t = now();
    const codeHash = hashGrant(deps.secret, 'invite', code);
    const expiresAt = t + (body.ttlSec ?? 7 * 86_400) * 1000;
    await store.putGrant({ codeHash, kind: 'invite', userId: caller.userId, deviceId: caller.deviceId, chatId, createdAt: t, expiresAt });
    const answer: NewInvite = { code, inviteId: inviteIdOf(codeHash), expiresAt };
    return reply.status(201).send(answer);
  });

  app.get<ChatParams>('/v1/chats/:chatId/invites', async (req) => {
    const caller = await authDevice(req);
    const chatId = chatIdOf(req);
    await groups.requireAdmin(chatId, caller.userId);
    const invites: InviteInfo[] = (await store.listGrants(chatId, now())).map((g) => ({ inviteId: inviteIdOf(g.codeHash), expiresAt: g.expiresAt }));
    return { invites };
  });

  app.delete<{ Params: { chatId: string; inviteId: string } }>('/v1/chats/:chatId/invites/:inviteId', async (req) => {
    const caller = await authDevice(req);
    const chatId = chatIdOf(req);
    await groups.requireAdmin(chatId, caller.userId);
    const grant = (await store.listGrants(chatId, now())).find((g) => inviteIdOf(g.codeHash) === req.params.inviteId);
    if (!grant || !(await store.deleteGrant(grant.codeHash))) throw new ParleyError('E_LINK_CODE', 'no such invitation');
    return { revoked: req.params.inviteId };
  });

  // joinGroup: by an invitation code. Guessing is rate-limited per address.
  app.post<{ Params: { code: string } }>('/v1/invites/:code', async (req) => {
    const caller = await authDevice(req);
    const ipKey = `invite:ip:${req.ip}`;
    if (await deps.limiter.over(ipKey, 30)) throw new ParleyError('E_RATE_LIMITED', 'too many invitation attempts');
    const grant = req.params.code.length <= 64 ? await store.getGrant(hashGrant(deps.secret, 'invite', req.params.code), now()) : null;
    if (!grant || grant.kind !== 'invite' || !grant.chatId) {
      await deps.limiter.hit(ipKey, 30, 600);
      throw new ParleyError('E_LINK_CODE');
    }
    return changed(grant.chatId, caller.userId, [await groups.join(grant.chatId, caller.userId, grant.userId)]);
  });

  // getMessageStatus: per recipient device and per user; "delivered to all" / "read by all".
  app.get<{ Params: { msgId: string } }>('/v1/messages/:msgId/status', async (req) => {
    const caller = await authDevice(req);
    const id = parseMsgId(req.params.msgId);
    if (!id) throw new ParleyError('E_VALIDATION', 'msgId');
    const me = await store.getMembership(id.chatId, caller.userId);
    if (!me || id.seq <= me.sinceSeq || (me.leftSeq !== null && id.seq > me.leftSeq)) throw new ParleyError('E_NOT_FOUND', 'no such message');
    const st = await store.messageStatus(id.chatId, id.seq);
    if (!st) throw new ParleyError('E_NOT_FOUND', 'no such message');
    let rec = st.recipients;
    // Read receipts off (either of the two, in a 1:1 chat): the other's read times are not shown.
    if ((await store.getChat(id.chatId))?.kind === 'direct') {
      const privacy = await store.getPrivacies([...new Set([caller.userId, ...rec.map((r) => r.userId)])]);
      const off = (u: string): boolean => privacy.get(u)?.readReceipts === false;
      rec = rec.map((r) => (r.userId !== caller.userId && (off(caller.userId) || off(r.userId)) ? { ...r, readAt: null } : r));
    }
    const byUser = new Map<string, { userId: string; deliveredAt: number | null; readAt: number | null }>();
    for (const r of rec) {
      const u = byUser.get(r.userId) ?? { userId: r.userId, deliveredAt: null, readAt: null };
      if (r.deliveredAt !== null && (u.deliveredAt === null || r.deliveredAt < u.deliveredAt)) u.deliveredAt = r.deliveredAt;
      if (r.readAt !== null) u.readAt = r.readAt;
      byUser.set(r.userId, u);
    }
    // The sender's other devices are listed, but the sender is not a recipient user.
    const users = [...byUser.values()].filter((u) => u.userId !== st.message.senderUserId);
    const deliveredAt = rec.length && rec.every((r) => r.deliveredAt !== null) ? Math.max(...rec.map((r) => r.deliveredAt ?? 0)) : null;
    const answer: MessageStatusResponse = {
      msgId: req.params.msgId,
      status: users.some((u) => u.readAt !== null) ? 'read' : users.some((u) => u.deliveredAt !== null) ? 'delivered' : 'sent',
      sentAt: st.message.ts,
      deliveredAt,
      deliveredToAll: users.length > 0 && users.every((u) => u.deliveredAt !== null),
      readByAll: users.length > 0 && users.every((u) => u.readAt !== null),
      users,
      recipients: rec,
    };
    return answer;
  });

  // readNewMessages: a chat's messages after a seq (or msgId), or the page before a seq — only
  // what the caller may see (from joining, or all when the group shares history; up to leaving).
  app.get<ChatParams>('/v1/chats/:chatId/messages', async (req) => {
    const caller = await authDevice(req);
    const chatId = chatIdOf(req);
    const q = parse(schemas.history, req.query);
    const me = await store.getMembership(chatId, caller.userId);
    if (!me) throw new ParleyError('E_NOT_MEMBER');
    const chat = await store.getChat(chatId);
    const end = me.leftSeq ?? chat?.lastSeq ?? 0;
    let page: StoredMessage[];
    let more: boolean;
    if (q.before !== undefined) {
      if (q.after !== undefined || q.afterMsgId !== undefined) throw new ParleyError('E_VALIDATION', 'before with after');
      const before = Math.min(q.before, end + 1);
      page = await store.historyBefore(chatId, before, q.limit + 1, me.sinceSeq);
      more = page.length > q.limit;
      if (more) page = page.slice(1);
    } else {
      let after = q.after ?? 0;
      if (q.afterMsgId !== undefined) {
        const id = parseMsgId(q.afterMsgId)!;
        if (id.chatId !== chatId) throw new ParleyError('E_VALIDATION', 'afterMsgId is of another chat');
        after = id.seq;
      }
      page = (await store.history(chatId, Math.max(after, me.sinceSeq), q.limit + 1)).filter((m) => m.seq <= end);
      more = page.length > q.limit;
      if (more) page = page.slice(0, q.limit);
    }
    const answer: HistoryPage = { messages: page.map(messageJson), more };
    return answer;
  });

}
