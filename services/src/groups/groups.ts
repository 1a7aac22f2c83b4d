/**
 * Group chats: the rules of who may change what, and the changes themselves. Every change is a
 * system message in the group's own seq stream (a ChatEvent), committed with the membership change
 * in one atomic step (ChatStore.commitGroupChange), so every device sees the same history of who
 * was in the group when, and no message can be stored after its sender's removal.
 *
 * A change is planned on the chat's current state and committed only if the chat's `version` has
 * not moved meanwhile; a concurrent change makes it plan again (a few times, then E_CONFLICT).
 * The message is then handed to `deliver` (a fan-out job) like any other message.
 */
import { ParleyError, GROUP_LIMITS, newId, randomIdBody, type ChatEvent } from '@parley/client-sdk/protocol';
import {
  StoreError, type AccountStore, type Chat, type ChatStore, type GroupChange, type Member, type MemberRole, type MessageStore, type StoredMessage,
} from '../store/types.js';
import { allowedBy, type PrivacyPorts } from '../social/privacy.js';
import { requireUsersExist } from '../store/users-exist.js';

export interface GroupLimits {
  /** Most members of a group, admins included. */
  maxGroupMembers: number;
}

export interface GroupDeps {
  /** The privacy ports: who may add whom (services/src/social/privacy.ts). */
  store: ChatStore & Pick<AccountStore, 'getUser'> & Pick<MessageStore, 'getMessage'> & PrivacyPorts;
  /** Starts the delivery of a stored system message to the chat's devices. */
  deliver(message: StoredMessage): Promise<void>;
  now(): number;
}

export interface NewGroupInput {
  name: string;
  members: string[];
  /** Members who are admins too (the creator always is). */
  admins?: string[] | undefined;
  description?: string | undefined;
  avatar?: string | undefined;
  shareHistory?: boolean | undefined;
}

export interface GroupSettingsInput {
  name?: string | undefined;
  /** '' clears it. */
  description?: string | undefined;
  /** '' clears it. */
  avatar?: string | undefined;
}

/** How many times a change is planned again after a concurrent change. */
const MAX_ATTEMPTS = 5;

function checkName(name: string): string {
  const n = name.trim();
  if (n.length === 0 || n.length > GROUP_LIMITS.name) throw new ParleyError('E_VALIDATION', `name: 1 to ${GROUP_LIMITS.name} characters`);
  return n;
}

const unique = (ids: string[]): string[] => [...new Set(ids)];

/** A system message's clientMsgId: `s` and 22 random characters (within the 24 allowed). */
const systemMsgId = (): string => `s${randomIdBody(22)}`;

/** What a change looks like once planned: the event and the membership edits, or nothing to do. */
type Plan = Omit<GroupChange, 'chatId' | 'version' | 'message'> & { event: ChatEvent };

export class Groups {
  readonly #deps: GroupDeps;
  readonly #limits: GroupLimits;

  constructor(deps: GroupDeps, limits: GroupLimits) {
    this.#deps = deps;
    this.#limits = limits;
  }

  /** createChat / initiateGroupChatSession: a group with the creator as admin. */
  async create(actor: string, input: NewGroupInput): Promise<{ chat: Chat; message: StoredMessage }> {
    const { store } = this.#deps;
    const name = checkName(input.name);
    const others = unique(input.members).filter((u) => u !== actor);
    if (others.length + 1 > this.#limits.maxGroupMembers) {
      throw new ParleyError('E_GROUP_FULL', `${others.length + 1} members; at most ${this.#limits.maxGroupMembers}`);
    }
    await requireUsersExist(this.#deps.store, others);
    await this.#checkMayAdd(actor, others);
    const admins = new Set([actor, ...(input.admins ?? [])]);
    for (const a of admins) if (a !== actor && !others.includes(a)) throw new ParleyError('E_NOT_MEMBER', `admin ${a} is not in members`);
    const members = [actor, ...others].map((userId) => ({ userId, role: (admins.has(userId) ? 'admin' : 'member') as MemberRole }));
    const ts = this.#deps.now();
    const created = await store.createGroupChat({
      chatId: newId('group'), name, description: input.description || null, avatar: input.avatar || null,
      shareHistory: input.shareHistory ?? false, members,
      created: {
        senderUserId: actor, clientMsgId: systemMsgId(), ts,
        event: { type: 'created', name, members: members.map((m) => m.userId), admins: [...admins] },
      },
    });
    await this.#deps.deliver(created.message);
    return created;
  }

  /** modifyChatParticipants: removals first, then additions (one system message each). */
  async modifyParticipants(chatId: string, actor: string, change: { add?: string[]; remove?: string[] }): Promise<StoredMessage[]> {
    const add = unique(change.add ?? []);
    const remove = unique(change.remove ?? []);
    if (add.length === 0 && remove.length === 0) throw new ParleyError('E_VALIDATION', 'add or remove: at least one user');
    if (add.some((u) => remove.includes(u))) throw new ParleyError('E_VALIDATION', 'a user is both added and removed');
    // Refused additions refuse the whole change (nothing removed either).
    if (add.length && remove.length) await this.#checkMayAdd(actor, add);
    const out: StoredMessage[] = [];
    if (remove.length) out.push(await this.removeUsers(chatId, actor, remove));
    if (add.length) out.push(await this.addUsers(chatId, actor, add));
    return out;
  }

  /** addUserToGroup (several at once): admins only; new members see what follows. */
  async addUsers(chatId: string, actor: string, users: string[]): Promise<StoredMessage> {
    await requireUsersExist(this.#deps.store, users);
    await this.#checkMayAdd(actor, users);
    return this.#change(chatId, actor, true, (_chat, members) => {
      for (const u of users) if (members.has(u)) throw new ParleyError('E_ALREADY_MEMBER', u);
      if (members.size + users.length > this.#limits.maxGroupMembers) {
        throw new ParleyError('E_GROUP_FULL', `${members.size + users.length} members; at most ${this.#limits.maxGroupMembers}`);
      }
      return { event: { type: 'added', users }, add: users.map((userId) => ({ userId, role: 'member' as const })) };
    });
  }

  /** removeUserFromGroup (several at once): admins only; the removed get this message and nothing after. */
  async removeUsers(chatId: string, actor: string, users: string[]): Promise<StoredMessage> {
    return this.#change(chatId, actor, true, (_chat, members) => {
      for (const u of users) {
        if (!members.has(u)) throw new ParleyError('E_NOT_MEMBER', u);
        if (u === actor) throw new ParleyError('E_VALIDATION', 'an admin leaves with leave, not remove');
      }
      return { event: { type: 'removed', users }, remove: users };
    });
  }

  /** promoteUserToAdmin (several at once). */
  async promote(chatId: string, actor: string, users: string[]): Promise<StoredMessage> {
    return this.#change(chatId, actor, true, (_chat, members) => {
      for (const u of users) if (!members.has(u)) throw new ParleyError('E_NOT_MEMBER', u);
      return { event: { type: 'promoted', users }, roles: users.map((userId) => ({ userId, role: 'admin' as const })) };
    });
  }

  /** Takes admin rights away; a group keeps at least one admin. */
  async demote(chatId: string, actor: string, users: string[]): Promise<StoredMessage> {
    return this.#change(chatId, actor, true, (_chat, members) => {
      for (const u of users) if (!members.has(u)) throw new ParleyError('E_NOT_MEMBER', u);
      const adminsLeft = [...members.values()].filter((m) => m.role === 'admin' && !users.includes(m.userId));
      if (adminsLeft.length === 0) throw new ParleyError('E_VALIDATION', 'a group keeps at least one admin');
      return { event: { type: 'demoted', users }, roles: users.map((userId) => ({ userId, role: 'member' as const })) };
    });
  }

  /** Leaves the group; when the last admin leaves, the oldest remaining member becomes admin. */
  async leave(chatId: string, actor: string): Promise<StoredMessage> {
    return this.#change(chatId, actor, false, (_chat, members) => {
      const me = members.get(actor)!;
      const rest = [...members.values()].filter((m) => m.userId !== actor);
      const promoted: string[] = [];
      if (me.role === 'admin' && rest.length > 0 && !rest.some((m) => m.role === 'admin')) {
        const oldest = [...rest].sort((a, b) => a.joinedAt - b.joinedAt || (a.userId < b.userId ? -1 : 1))[0]!;
        promoted.push(oldest.userId);
      }
      return {
        event: promoted.length ? { type: 'left', promoted } : { type: 'left' },
        remove: [actor], roles: promoted.map((userId) => ({ userId, role: 'admin' as const })),
        // A group left empty is deleted: nobody could ever write to it or add anyone again.
        ...(rest.length === 0 ? { delete: true } : {}),
      };
    });
  }

  /**
   * Account deletion: the user leaves a direct chat, which closes it (a `left` message, then
   * nothing more can be sent in it). The other user keeps its history to read. null when the
   * chat is already closed or the user is not in it.
   */
  async closeDirect(chatId: string, actor: string): Promise<StoredMessage | null> {
    const { store } = this.#deps;
    const clientMsgId = systemMsgId();
    for (let attempt = 1; ; attempt++) {
      const chat = await store.getChat(chatId);
      if (!chat || chat.kind !== 'direct' || chat.deletedAt !== null || !(await store.getMember(chatId, actor))) return null;
      try {
        const message = await store.commitGroupChange({
          chatId, version: chat.version, message: { senderUserId: actor, clientMsgId, event: { type: 'left' }, ts: this.#deps.now() },
          remove: [actor], delete: true,
        });
        await this.#deps.deliver(message);
        return message;
      } catch (err) {
        if (err instanceof StoreError && err.code === 'CONFLICT' && attempt < MAX_ATTEMPTS) continue;
        throw err;
      }
    }
  }

  /** Rename, describe, set the avatar reference: admins only. */
  async update(chatId: string, actor: string, input: GroupSettingsInput): Promise<StoredMessage> {
    const name = input.name !== undefined ? checkName(input.name) : undefined;
    if (name === undefined && input.description === undefined && input.avatar === undefined) {
      throw new ParleyError('E_VALIDATION', 'name, description or avatar: at least one');
    }
    return this.#change(chatId, actor, true, () => ({
      event: { type: 'updated', name, description: input.description, avatar: input.avatar },
      settings: {
        ...(name !== undefined ? { name } : {}),
        ...(input.description !== undefined ? { description: input.description || null } : {}),
        ...(input.avatar !== undefined ? { avatar: input.avatar || null } : {}),
      },
    }));
  }

  /** deleteGroup: admins only; every member gets the `deleted` message and nothing more. */
  async delete(chatId: string, actor: string): Promise<StoredMessage> {
    return this.#change(chatId, actor, true, () => ({ event: { type: 'deleted' }, delete: true }));
  }

  /**
   * A user joins through an invitation made by `inviter`. The invitation holds only while its
   * maker is still an admin of the group, and it does not let back in someone an admin removed
   * (only an admin adding them again does).
   */
  async join(chatId: string, user: string, inviter: string): Promise<StoredMessage> {
    const { store } = this.#deps;
    const past = await store.getMembership(chatId, user);
    if (past?.leftSeq != null && past.leftSeq > 0) {
      const ended = await store.getMessage(chatId, past.leftSeq);
      if (ended?.event?.type === 'removed') throw new ParleyError('E_FORBIDDEN', 'removed by an admin: only an admin can add you back');
    }
    return this.#change(chatId, user, false, (_chat, members) => {
      if (members.get(inviter)?.role !== 'admin') throw new ParleyError('E_LINK_CODE', 'the invitation is no longer valid');
      if (members.has(user)) throw new ParleyError('E_ALREADY_MEMBER', user);
      if (members.size + 1 > this.#limits.maxGroupMembers) throw new ParleyError('E_GROUP_FULL', `at most ${this.#limits.maxGroupMembers}`);
      return { event: { type: 'joined' }, add: [{ userId: user, role: 'member' }] };
    }, { memberOnly: false });
  }

  /** The group and its current members, for a member (or former member) of it. */
  async view(chatId: string, user: string): Promise<{ chat: Chat; members: Member[]; me: Member }> {
    const { store } = this.#deps;
    const chat = await store.getChat(chatId);
    const me = chat ? await store.getMembership(chatId, user) : null;
    if (!chat || !me) throw new ParleyError('E_CHAT_NOT_FOUND', chatId);
    return { chat, members: me.leftSeq === null ? await store.getMembers(chatId) : [], me };
  }

  /** Checks an admin of a live group (for invitations). */
  async requireAdmin(chatId: string, actor: string): Promise<Chat> {
    return (await this.#load(chatId, actor, true, true)).chat;
  }

  async #load(chatId: string, actor: string, adminOnly: boolean, memberOnly: boolean): Promise<{ chat: Chat; members: Map<string, Member> }> {
    const { store } = this.#deps;
    const chat = await store.getChat(chatId);
    if (!chat || chat.kind !== 'group') throw new ParleyError('E_CHAT_NOT_FOUND', chatId);
    // Never a member: the group is none of this user's business (not even that it was deleted).
    if (memberOnly && !(await store.getMembership(chatId, actor))) throw new ParleyError('E_CHAT_NOT_FOUND', chatId);
    if (chat.deletedAt !== null) throw new ParleyError('E_CHAT_DELETED', chatId);
    const members = new Map((await store.getMembers(chatId)).map((m) => [m.userId, m]));
    const me = members.get(actor);
    if (memberOnly && !me) throw new ParleyError('E_NOT_MEMBER', chatId);
    if (adminOnly && me?.role !== 'admin') throw new ParleyError('E_NOT_ADMIN', chatId);
    return { chat, members };
  }

  async #change(
    chatId: string, actor: string, adminOnly: boolean, plan: (chat: Chat, members: Map<string, Member>) => Plan,
    opts: { memberOnly: boolean } = { memberOnly: true },
  ): Promise<StoredMessage> {
    // The change's idempotency key: 132 random bits (two API processes may change one group at once).
    const clientMsgId = systemMsgId();
    for (let attempt = 1; ; attempt++) {
      const { chat, members } = await this.#load(chatId, actor, adminOnly, opts.memberOnly);
      const { event, ...edits } = plan(chat, members);
      const ts = this.#deps.now();
      try {
        const message = await this.#deps.store.commitGroupChange({
          chatId, version: chat.version, message: { senderUserId: actor, clientMsgId, event, ts }, ...edits,
        });
        await this.#deps.deliver(message);
        return message;
      } catch (err) {
        if (err instanceof StoreError && err.code === 'CONFLICT') {
          if (attempt < MAX_ATTEMPTS) continue;
          throw new ParleyError('E_CONFLICT', chatId);
        }
        if (err instanceof StoreError && err.code === 'NOT_FOUND') throw new ParleyError('E_CHAT_NOT_FOUND', chatId);
        throw err;
      }
    }
  }

  /**
   * Users whose "who may add me to groups" setting excludes the actor, or who blocked him, are
   * not added (E_ADD_NOT_ALLOWED naming them, the whole change refused): the admin sends them an
   * invitation link instead, which they may accept or not. One query per port for all of them.
   */
  async #checkMayAdd(actor: string, users: string[]): Promise<void> {
    if (users.length === 0) return;
    const allowed = await allowedBy(this.#deps.store, users, actor, 'groupAdd');
    const refused = users.filter((u) => !allowed.has(u));
    if (refused.length) throw new ParleyError('E_ADD_NOT_ALLOWED', refused.slice(0, 20).join(','));
  }
}
