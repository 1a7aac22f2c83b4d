/**
 * Shared pieces of the store contract suites (test/contract/*.contract.ts): the per-test store
 * lifecycle, unique ids, and small fixtures built through the ports only.
 */
import { afterEach, beforeEach, expect } from 'vitest';
import { type Body } from '@parley/client-sdk';
import { newId } from '@parley/client-sdk/protocol';
import type { AccountStore, Chat, ChatStore, MemberRole, NewMessage, Store, StoredMessage } from '../../services/src/store/types.js';

/** Makes a fresh, empty adapter (not yet initialised) and a way to close and delete it. */
export type StoreFactory = () => Promise<{ store: Store; cleanup: () => Promise<void> }>;

/**
 * Registers the hooks of a suite: each test gets its own store, initialised, and torn down after.
 * Read `ctx.store` inside tests and hooks only.
 */
export function useStore(factory: StoreFactory): { readonly store: Store } {
  let current: { store: Store; cleanup: () => Promise<void> } | null = null;
  beforeEach(async () => {
    const made = await factory();
    try {
      await made.store.init();
    } catch (err) {
      await made.cleanup();
      throw err;
    }
    current = made;
  });
  afterEach(async () => {
    const made = current;
    current = null;
    await made?.cleanup();
  });
  return {
    get store(): Store {
      if (!current) throw new Error('no store: use ctx.store inside a test');
      return current.store;
    },
  };
}

let phoneCounter = 0;
/** A phone number no other test (or concurrent worker) uses. */
export function newPhone(): string {
  phoneCounter++;
  const rnd = Math.floor(Math.random() * 1e6).toString().padStart(6, '0');
  return `+44${rnd}${(phoneCounter % 10000).toString().padStart(4, '0')}`;
}

let clientMsgCounter = 0;
export const newClientMsgId = (): string => `m${(++clientMsgCounter).toString(36)}${newId('chat').slice(1, 7)}`;

/** Compares bodies with their type: text stays a string, bytes come back as a Uint8Array. */
export function expectBody(actual: Body, expected: Body): void {
  if (typeof expected === 'string') {
    expect(typeof actual).toBe('string');
    expect(actual).toBe(expected);
  } else {
    expect(actual).toBeInstanceOf(Uint8Array);
    expect(typeof actual).not.toBe('string');
    expect(Array.from(actual as Uint8Array)).toEqual(Array.from(expected));
  }
}

/** Code-unit order, as the stores compare ids (not localeCompare). */
export const cmp = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
export const byDevice = <T extends { deviceId: string }>(xs: T[]): T[] => [...xs].sort((a, b) => cmp(a.deviceId, b.deviceId));
export const sortIds = (ids: string[]): string[] => [...ids].sort(cmp);

export const keyOf = (m: { chatId: string; seq: number }): string => `${m.chatId}:${m.seq}`;
export const seqsOf = (ms: StoredMessage[]): number[] => ms.map((m) => m.seq);

export async function newUser(store: AccountStore, createdAt = 1_000): Promise<string> {
  const { user } = await store.getOrCreateUserByPhone(newPhone(), newId('user'), createdAt);
  return user.userId;
}

export async function newDevice(store: AccountStore, userId: string, createdAt = 1_000): Promise<string> {
  const deviceId = newId('device');
  await store.addDevice({ deviceId, userId, tokenHash: 'h'.repeat(64), name: 'phone', createdAt }, { maxActive: 10, historyDepth: 0 });
  return deviceId;
}

/** Alice (`a`, one device `da`) and Bob (`b`, devices `db1` and `db2`) in a direct chat. */
export interface Pair { a: string; b: string; da: string; db1: string; db2: string; chatId: string }

export async function newPair(store: AccountStore & ChatStore): Promise<Pair> {
  const a = await newUser(store);
  const b = await newUser(store);
  const da = await newDevice(store, a);
  const db1 = await newDevice(store, b, 1_001);
  const db2 = await newDevice(store, b, 1_002);
  const chat = await store.getOrCreateDirectChat(a, b, newId('chat'), 2_000);
  return { a, b, da, db1, db2, chatId: chat.chatId };
}

export function newMessage(
  chatId: string, senderUserId: string, senderDeviceId: string, body: Body = 'hi', ts = 5_000,
  clientMsgId = newClientMsgId(),
): NewMessage {
  return { chatId, senderUserId, senderDeviceId, clientMsgId, body, ts };
}

/** A message from Alice's device. */
export const fromA = (p: Pair, body: Body = 'hi', ts = 5_000, clientMsgId = newClientMsgId()): NewMessage =>
  newMessage(p.chatId, p.a, p.da, body, ts, clientMsgId);

/** A message from Bob's first device (Bob's second device is one of its recipients). */
export const fromB = (p: Pair, body: Body = 'yo', ts = 5_000, clientMsgId = newClientMsgId()): NewMessage =>
  newMessage(p.chatId, p.b, p.db1, body, ts, clientMsgId);

/** Resolves with the error a promise rejects with (null when it resolves). */
export const errorOf = (p: Promise<unknown>): Promise<unknown> => p.then(() => null, (e: unknown) => e);

/**
 * A group made through the ChatStore port, the way the group service does: the first member is
 * its creator, and seq 1 is its `created` message (so the first chat message is seq 2).
 */
export async function newGroup(
  store: ChatStore, chatId: string, members: Array<{ userId: string; role: MemberRole }>, at: number, name = 'group',
): Promise<Chat> {
  const admins = members.filter((m) => m.role === 'admin').map((m) => m.userId);
  const { chat } = await store.createGroupChat({
    chatId, name, description: null, avatar: null, shareHistory: false, members,
    created: {
      senderUserId: members[0]!.userId, clientMsgId: `created-${chatId}`, ts: at,
      event: { type: 'created', name, members: members.map((m) => m.userId), admins: admins.length ? admins : [members[0]!.userId] },
    },
  });
  return chat;
}

/** A chat's fields beyond id, kind, creation and last seq, as a direct chat (or a v2 chat) has them. */
export const DIRECT_DEFAULTS = { name: null, description: null, avatar: null, shareHistory: false, deletedAt: null, version: 0 } as const;
/** A member's fields beyond the v2 ones, for a member since the start who never left. */
export const MEMBER_DEFAULTS = { sinceSeq: 0, leftSeq: null, mutedUntil: 0, archived: false } as const;

/** The device and user of chatDevices rows (their seq window checked apart). */
export const devicesOnly = (rows: Array<{ deviceId: string; userId: string }>): Array<{ deviceId: string; userId: string }> =>
  rows.map(({ deviceId, userId }) => ({ deviceId, userId }));
