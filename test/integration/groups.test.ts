/**
 * Groups and multi-device through the SDK (ParleyClient with its apiUrl): three users with two
 * devices each, membership changes as messages of the group, group receipts, deletion, linking a
 * device with a link code after 200 messages (and a seq gap made on purpose), revocation, and the
 * catalogue errors of bad group input.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStateStore, ParleyApi, ParleyError, type ChatMessage } from '@parley/client-sdk';
import { startTestPlatform, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, statusOf, type Recorded } from '../helpers/sdk.js';
import { startDropProxy, type DropProxy } from '../helpers/drop-proxy.js';

const MAX_MEMBERS = 6;

let p: TestPlatform;
let api: ParleyApi;
const proxies: DropProxy[] = [];

beforeAll(async () => {
  // Many registrations from one address: the per-address code limit is tested elsewhere.
  p = await startTestPlatform({ PARLEY_MAX_GROUP_MEMBERS: String(MAX_MEMBERS), PARLEY_CODE_RATE_PER_IP: '1000' });
  api = new ParleyApi(p.httpUrl);
}, 60_000);

afterAll(async () => {
  await closeAll();
  for (const x of proxies) await x.close();
  await p?.close();
});

/** A user with a primary device and a second one linked by link code (through its QR payload). */
async function userWithTwoDevices(): Promise<{ user: Registered; devices: [Recorded, Recorded] }> {
  const user = await p.register();
  const first = device(p.mqttUrl, user, { apiUrl: p.httpUrl });
  const link = await first.client.createLinkCode();
  expect(link.qr).toBe(`parley:link:${link.code}`);
  const second = await api.linkDevice(link.qr, 'laptop');
  expect(second.userId).toBe(user.userId);
  // A link code is single use.
  await expect(api.linkDevice(link.code)).rejects.toMatchObject({ code: 'E_LINK_CODE' });
  return { user, devices: [first, device(p.mqttUrl, { ...second }, { apiUrl: p.httpUrl })] };
}

const chatMsgs = (r: Recorded, chatId: string): ChatMessage[] => r.messages.filter((m) => m.chatId === chatId && !m.event);
const events = (r: Recorded, chatId: string): string[] => r.messages.filter((m) => m.chatId === chatId && m.event).map((m) => m.event!.type);
const codeOf = async (p2: Promise<unknown>): Promise<string | undefined> => p2.then(() => undefined, (e: unknown) => (e instanceof ParleyError ? e.code : String(e)));

describe('a group of three users with two devices each', () => {
  it('every other device gets each message exactly once in one seq order; the sender sees delivered to all, then read by all', async () => {
    const users = [await userWithTwoDevices(), await userWithTwoDevices(), await userWithTwoDevices()];
    const all = users.flatMap((u) => u.devices);
    await Promise.all(all.map((d) => d.client.connect()));
    const [alice, bob, carol] = users as [typeof users[0], typeof users[0], typeof users[0]];
    const chat = await alice.devices[0].client.createChat({ name: 'Trip', members: [bob.user.userId, carol.user.userId] });
    expect(chat).toMatchObject({ kind: 'group', name: 'Trip', lastSeq: 1, me: { role: 'admin', left: false } });
    expect(chat.members.map((m) => m.userId).sort()).toEqual([alice.user.userId, bob.user.userId, carol.user.userId].sort());
    // The `created` message reaches all six devices, the creator's included, as a chatUpdate.
    await until(() => all.every((d) => d.updates.some((u) => u.type === 'event' && u.chatId === chat.chatId)), 15_000, 'created everywhere');

    // One message from each of three different devices.
    const sent = [
      await alice.devices[1].client.sendMessage(chat.chatId, 'from alice laptop'),
      await bob.devices[0].client.sendMessage(chat.chatId, 'from bob phone'),
      await carol.devices[1].client.sendMessage(chat.chatId, 'from carol laptop'),
    ];
    expect(sent.map((s) => s.msgId)).toEqual(sent.map((s) => `${chat.chatId}.${s.seq.toString(36)}`));
    const senders = [alice.devices[1], bob.devices[0], carol.devices[1]];
    await until(() => all.every((d) => chatMsgs(d, chat.chatId).length + sent.filter((_s, i) => senders[i] === d).length >= 3), 15_000, 'messages everywhere');
    for (const d of all) {
      const got = chatMsgs(d, chat.chatId);
      const own = senders.indexOf(d);
      // Each device: the other five's messages, once each, in the chat's seq order.
      expect(got.map((m) => m.seq)).toEqual(sent.filter((_s, i) => i !== own).map((s) => s.seq));
      expect(new Set(got.map((m) => m.msgId)).size).toBe(got.length);
    }
    // What one device of a user sends shows on the user's other device, as its own.
    expect(chatMsgs(alice.devices[0], chat.chatId).find((m) => m.text === 'from alice laptop')?.own).toBe(true);

    // Delivered to all (both other users have it on a device), then read by all.
    const first = sent[0]!;
    await until(() => statusOf(alice.devices[1], first.msgId) === 'delivered', 15_000, 'delivered to all');
    const st = await alice.devices[1].client.getMessageStatus(first.msgId);
    expect(st).toMatchObject({ deliveredToAll: true, readByAll: false });
    expect(st.users.map((u) => u.userId).sort()).toEqual([bob.user.userId, carol.user.userId].sort());
    await bob.devices[1].client.markRead(first.msgId);
    await until(async () => (await alice.devices[0].client.getMessageStatus(first.msgId)).users.some((u) => u.readAt !== null), 15_000, 'bob read');
    expect(statusOf(alice.devices[1], first.msgId)).toBe('delivered'); // one of two has read: not yet
    await carol.devices[0].client.markRead(first.msgId);
    await until(() => statusOf(alice.devices[1], first.msgId) === 'read', 15_000, 'read by all');
    expect((await alice.devices[1].client.getMessageStatus(first.msgId)).readByAll).toBe(true);
    // Bob's read shows on Bob's other device.
    await until(() => bob.devices[0].updates.some((u) => u.type === 'receipt' && u.status === 'read' && u.by === bob.user.userId), 15_000, "bob's read on his phone");

    // The chat list of a device shows the group, its last message and unread count.
    const list = await carol.devices[0].client.listChats();
    expect(list.find((c) => c.chatId === chat.chatId)).toMatchObject({ name: 'Trip', lastMessage: { text: 'from carol laptop' } });
  }, 90_000);
});

describe('membership', () => {
  it('only admins change it; a removed member gets nothing after; a new member nothing before; deletion stops everything', async () => {
    const [owner, m1, m2, late] = [await p.register(), await p.register(), await p.register(), await p.register()];
    const [dOwner, d1, d2, dLate] = [owner, m1, m2, late].map((u) => device(p.mqttUrl, u, { apiUrl: p.httpUrl })) as [Recorded, Recorded, Recorded, Recorded];
    await Promise.all([dOwner, d1, d2, dLate].map((d) => d.client.connect()));
    const chat = await dOwner.client.createChat({ name: 'Club', members: [m1.userId, m2.userId] });
    const id = chat.chatId;

    // A non-admin cannot change membership or settings, or delete the group.
    expect(await codeOf(d1.client.addUserToGroup(id, late.userId))).toBe('E_NOT_ADMIN');
    expect(await codeOf(d1.client.removeUserFromGroup(id, m2.userId))).toBe('E_NOT_ADMIN');
    expect(await codeOf(d1.client.updateChat(id, { name: 'Mine' }))).toBe('E_NOT_ADMIN');
    expect(await codeOf(d1.client.deleteGroup(id))).toBe('E_NOT_ADMIN');

    await dOwner.client.sendMessage(id, 'before');
    const removed = await dOwner.client.removeUserFromGroup(id, m2.userId);
    expect(removed.chat.members.map((m) => m.userId)).not.toContain(m2.userId);
    const added = await dOwner.client.addUserToGroup(id, late.userId);
    expect(added.chat.members.map((m) => m.userId)).toContain(late.userId);
    await dOwner.client.sendMessage(id, 'after');
    await until(() => chatMsgs(dLate, id).length >= 1 && chatMsgs(d1, id).length >= 2, 15_000, 'after delivered');

    // The removed member got the removal itself and nothing after; its sends are refused.
    await until(() => events(d2, id).includes('removed'), 15_000, 'removal seen');
    expect(chatMsgs(d2, id).map((m) => m.text)).toEqual(['before']);
    await expect(d2.client.sendMessage(id, 'still here?')).rejects.toMatchObject({ code: 'E_NOT_MEMBER' });
    // The new member: its addition and what follows, nothing before; history starts there too.
    expect(chatMsgs(dLate, id).map((m) => m.text)).toEqual(['after']);
    expect(events(dLate, id)).toEqual(['added']);
    const history = await dLate.client.readNewMessages(id);
    expect(history.messages.map((m) => m.text ?? m.event?.type)).toEqual(['added', 'after']);
    // Every device saw the same history of who was in the group when.
    expect(events(d1, id)).toEqual(['created', 'removed', 'added']);

    // Admins: promote, then the last admin leaves and the oldest member is promoted.
    await dOwner.client.promoteUserToAdmin(id, m1.userId);
    expect(await codeOf(dOwner.client.promoteUserToAdmin(id, m2.userId))).toBe('E_NOT_MEMBER');
    await d1.client.leaveGroup(id);
    await dOwner.client.leaveGroup(id);
    const after = await dLate.client.getChat(id);
    expect(after.members).toEqual([expect.objectContaining({ userId: late.userId, role: 'admin' })]);

    // Deleting stops delivery; members see a chatUpdate.
    await dLate.client.deleteGroup(id);
    await until(() => dLate.updates.some((u) => u.type === 'event' && u.event.type === 'deleted'), 15_000, 'deleted seen');
    await expect(dLate.client.sendMessage(id, 'anyone?')).rejects.toMatchObject({ code: 'E_CHAT_DELETED' });
    expect((await dLate.client.getChat(id)).deleted).toBe(true);
  }, 60_000);

  it('invitation links: expiry and revocation; joining sees only what follows', async () => {
    const [owner, guest] = [await p.register(), await p.register()];
    const [dOwner, dGuest] = [owner, guest].map((u) => device(p.mqttUrl, u, { apiUrl: p.httpUrl })) as [Recorded, Recorded];
    await Promise.all([dOwner.client.connect(), dGuest.client.connect()]);
    const chat = await dOwner.client.createChat({ name: 'Open', members: [] });
    await dOwner.client.sendMessage(chat.chatId, 'old news');
    const invite = await dOwner.client.createInvite(chat.chatId, 3600);
    expect((await dOwner.client.listInvites(chat.chatId)).map((i) => i.inviteId)).toEqual([invite.inviteId]);
    const revoked = await dOwner.client.createInvite(chat.chatId);
    await dOwner.client.revokeInvite(chat.chatId, revoked.inviteId);
    expect(await codeOf(dGuest.client.joinGroup(revoked.code))).toBe('E_LINK_CODE');
    expect(await codeOf(dGuest.client.joinGroup('not-a-real-code'))).toBe('E_LINK_CODE');
    const joined = await dGuest.client.joinGroup(invite.code);
    expect(joined.chat.members.map((m) => m.userId)).toContain(guest.userId);
    expect(await codeOf(dGuest.client.joinGroup(invite.code))).toBe('E_ALREADY_MEMBER');
    await dOwner.client.sendMessage(chat.chatId, 'welcome');
    await until(() => chatMsgs(dGuest, chat.chatId).length >= 1, 15_000, 'welcome');
    expect(chatMsgs(dGuest, chat.chatId).map((m) => m.text)).toEqual(['welcome']);
  }, 30_000);
});

describe('coming back, invitations and link codes after a change', () => {
  it('a member added back goes on from the addition (no hole); one removed by an admin cannot rejoin by invitation', async () => {
    const [owner, m, guest] = [await p.register(), await p.register(), await p.register()];
    const [dOwner, dM, dGuest] = [owner, m, guest].map((u) => device(p.mqttUrl, u, { apiUrl: p.httpUrl, gapTimeoutMs: 200 })) as [Recorded, Recorded, Recorded];
    await Promise.all([dOwner, dM, dGuest].map((d) => d.client.connect()));
    const chat = await dOwner.client.createChat({ name: 'Door', members: [m.userId] });
    const invite = await dOwner.client.createInvite(chat.chatId);
    await dOwner.client.sendMessage(chat.chatId, 'one');
    await dOwner.client.removeUserFromGroup(chat.chatId, m.userId);
    await dOwner.client.sendMessage(chat.chatId, 'while out');
    expect(await codeOf(dM.client.joinGroup(invite.code))).toBe('E_FORBIDDEN');
    await dOwner.client.addUserToGroup(chat.chatId, m.userId);
    await dOwner.client.sendMessage(chat.chatId, 'back');
    await until(() => chatMsgs(dM, chat.chatId).length >= 2, 15_000, 'back delivered');
    expect(chatMsgs(dM, chat.chatId).map((x) => x.text)).toEqual(['one', 'back']);
    expect(events(dM, chat.chatId)).toEqual(['created', 'removed', 'added']);
    expect(dM.errors.filter((e) => e.code === 'E_MESSAGE_GONE')).toEqual([]);
    // An invitation dies with its maker's admin rights.
    await dOwner.client.promoteUserToAdmin(chat.chatId, m.userId);
    const fromM = await dM.client.createInvite(chat.chatId);
    await dOwner.client.demoteAdmin(chat.chatId, m.userId);
    expect(await codeOf(dGuest.client.joinGroup(fromM.code))).toBe('E_LINK_CODE');
    expect((await dGuest.client.joinGroup(invite.code)).chat.members.map((x) => x.userId)).toContain(guest.userId);
  }, 30_000);

  it('a link code dies with the device that made it', async () => {
    const u = await p.register();
    const phone = device(p.mqttUrl, u, { apiUrl: p.httpUrl });
    const tablet = await api.linkDevice((await phone.client.createLinkCode()).code, 'tablet');
    const tabletClient = device(p.mqttUrl, tablet, { apiUrl: p.httpUrl });
    const code = await tabletClient.client.createLinkCode();
    await phone.client.revokeDevice(tablet.deviceId);
    expect(await codeOf(api.linkDevice(code.code))).toBe('E_LINK_CODE');
  });

  it('deleting a group: every member sees it, and nothing more is delivered or accepted', async () => {
    const [owner, m] = [await p.register(), await p.register()];
    const [dOwner, dM] = [owner, m].map((u) => device(p.mqttUrl, u, { apiUrl: p.httpUrl })) as [Recorded, Recorded];
    await Promise.all([dOwner.client.connect(), dM.client.connect()]);
    const chat = await dOwner.client.createChat({ name: 'Short-lived', members: [m.userId] });
    await dOwner.client.sendMessage(chat.chatId, 'hello');
    await dOwner.client.deleteGroup(chat.chatId);
    const deleted = (r: Recorded): boolean => r.updates.some((x) => x.type === 'event' && x.chatId === chat.chatId && x.event.type === 'deleted');
    await until(() => deleted(dOwner) && deleted(dM), 15_000, 'deleted seen by both');
    await expect(dM.client.sendMessage(chat.chatId, 'hello?')).rejects.toMatchObject({ code: 'E_CHAT_DELETED' });
    await expect(dOwner.client.sendMessage(chat.chatId, 'hello?')).rejects.toMatchObject({ code: 'E_CHAT_DELETED' });
    expect(await codeOf(dOwner.client.addUserToGroup(chat.chatId, m.userId))).toBe('E_CHAT_DELETED');
    expect(chatMsgs(dM, chat.chatId).map((x) => x.text)).toEqual(['hello']);
    expect((await dM.client.listChats()).find((c) => c.chatId === chat.chatId)).toMatchObject({ deleted: true, left: true });
  }, 30_000);
});

describe('a hole the broker does not resend', () => {
  /**
   * A device whose saved state says it has seq 1 of a group it is only now added to: the broker
   * resends from the device's start (its addition), so the hole before is read from history when
   * the group shares it, and reported (E_MESSAGE_GONE) when it does not. `userId` is left out of
   * the client so it does not restart the chat at its addition.
   */
  async function holeScenario(shareHistory: boolean): Promise<Recorded> {
    const [owner, late] = [await p.register(), await p.register()];
    const dOwner = device(p.mqttUrl, owner, { apiUrl: p.httpUrl });
    await dOwner.client.connect();
    const chat = await dOwner.client.createChat({ name: 'Holes', members: [], shareHistory });
    for (const t of ['a', 'b', 'c']) await dOwner.client.sendMessage(chat.chatId, t);
    const state = new MemoryStateStore();
    state.set(`seq:${chat.chatId}`, '1');
    const dLate = device(p.mqttUrl, { deviceId: late.deviceId, token: late.token, userId: undefined as unknown as string }, { apiUrl: p.httpUrl, gapTimeoutMs: 200, state });
    await dLate.client.connect();
    await dOwner.client.addUserToGroup(chat.chatId, late.userId);
    await dOwner.client.sendMessage(chat.chatId, 'd');
    await until(() => dLate.messages.some((x) => x.text === 'd'), 15_000, 'd delivered');
    return dLate;
  }

  it('reads it from history when the member may see it', async () => {
    const d = await holeScenario(true);
    expect(d.messages.map((x) => x.text ?? x.event?.type)).toEqual(['a', 'b', 'c', 'added', 'd']);
    expect(d.errors.filter((e) => e.code === 'E_MESSAGE_GONE')).toEqual([]);
  }, 30_000);

  it('reports it, once, when the server has nothing for it', async () => {
    const d = await holeScenario(false);
    expect(d.messages.map((x) => x.text ?? x.event?.type)).toEqual(['added', 'd']);
    expect(d.errors.filter((e) => e.code === 'E_MESSAGE_GONE').map((e) => e.detail)).toEqual([expect.stringMatching(/seq 2\.\.4$/)]);
  }, 30_000);
});

describe('a group that shares its history', () => {
  it('lets a member who joins later read what came before, but delivers only what follows', async () => {
    const [owner, late] = [await p.register(), await p.register()];
    const [dOwner, dLate] = [owner, late].map((u) => device(p.mqttUrl, u, { apiUrl: p.httpUrl })) as [Recorded, Recorded];
    await Promise.all([dOwner.client.connect(), dLate.client.connect()]);
    const chat = await dOwner.client.createChat({ name: 'Archive', members: [], shareHistory: true, description: 'all of it' });
    expect(chat).toMatchObject({ shareHistory: true, description: 'all of it' });
    await dOwner.client.sendMessage(chat.chatId, 'early');
    await dOwner.client.addUserToGroup(chat.chatId, late.userId);
    await dOwner.client.sendMessage(chat.chatId, 'later');
    await until(() => chatMsgs(dLate, chat.chatId).length >= 1, 15_000, 'later delivered');
    expect(chatMsgs(dLate, chat.chatId).map((m) => m.text)).toEqual(['later']);
    const page = await dLate.client.readNewMessages(chat.chatId);
    expect(page.messages.map((m) => m.text ?? m.event?.type)).toEqual(['created', 'early', 'added', 'later']);
    // Paging back from the end, two at a time.
    const last = await dLate.client.readEarlierMessages(chat.chatId, undefined, 2);
    expect(last).toMatchObject({ more: true, messages: [{ event: { type: 'added' } }, { text: 'later' }] });
    const before = await dLate.client.readEarlierMessages(chat.chatId, last.messages[0]!.msgId, 2);
    expect(before).toMatchObject({ more: false, messages: [{ event: { type: 'created' } }, { text: 'early' }] });
  }, 30_000);
});

describe('a device linked after 200 messages', () => {
  it('gets its chats and their messages with no call from the user; a message dropped on purpose is refetched', async () => {
    const a = await p.register();
    const b = await p.register();
    const da = device(p.mqttUrl, a, { apiUrl: p.httpUrl });
    const db = device(p.mqttUrl, b, { apiUrl: p.httpUrl });
    await Promise.all([da.client.connect(), db.client.connect()]);
    const direct = await da.client.createChat(b.userId);
    const group = await da.client.createChat({ name: 'Two', members: [b.userId] });
    for (let i = 0; i < 100; i++) {
      await da.client.send(direct.chatId, `d${i}`);
      await db.client.send(group.chatId, `g${i}`);
    }
    await until(() => chatMsgs(db, direct.chatId).length === 100 && chatMsgs(da, group.chatId).length === 100, 30_000, '200 exchanged');

    // B links a laptop by link code; its connection drops one message in the middle of the group.
    const link = await db.client.createLinkCode();
    const laptop = await api.linkDevice(link.code, 'laptop');
    const dropSeq = 50;
    const proxy = await startDropProxy(Number(new URL(p.mqttUrl).port), (chatId, seq) => chatId === group.chatId && seq === dropSeq);
    proxies.push(proxy);
    const dl = device(proxy.url, laptop, { apiUrl: p.httpUrl, gapTimeoutMs: 300 });
    const lists: string[][] = [];
    dl.client.on('chatList', (chats) => lists.push(chats.map((c) => c.chatId).sort()));
    await dl.client.connect();
    await until(() => chatMsgs(dl, direct.chatId).length === 100 && chatMsgs(dl, group.chatId).length === 100, 30_000, 'history on the new device');
    expect(proxy.dropped).toEqual([`${group.chatId}:${dropSeq}`]);
    // Everything, once, in order: B's own group messages (sent from the phone) and A's direct ones.
    expect(chatMsgs(dl, group.chatId).map((m) => m.text)).toEqual(Array.from({ length: 100 }, (_v, i) => `g${i}`));
    expect(chatMsgs(dl, group.chatId).every((m) => m.own)).toBe(true);
    expect(chatMsgs(dl, direct.chatId).map((m) => m.text)).toEqual(Array.from({ length: 100 }, (_v, i) => `d${i}`));
    expect(dl.errors.filter((e) => e.code === 'E_MESSAGE_GONE')).toEqual([]);
    // Its chat list came by itself on the first connection (and is there when asked).
    await until(() => lists.length > 0, 10_000, 'the chat list');
    expect(lists[0]).toEqual([direct.chatId, group.chatId].sort());
    const chats = await dl.client.listChats();
    expect(chats.map((c) => c.chatId).sort()).toEqual([direct.chatId, group.chatId].sort());
    expect((await db.client.listDevices()).map((d) => d.deviceId)).toEqual([b.deviceId, laptop.deviceId]);

    // Revoking it from the phone disconnects it at once, and its token no longer works.
    const t0 = Date.now();
    await db.client.revokeDevice(laptop.deviceId);
    await until(() => dl.client.state !== 'connected', 5_000, 'revoked device disconnected');
    expect(Date.now() - t0).toBeLessThan(1_000);
    await expect(dl.client.listChats()).rejects.toMatchObject({ code: 'E_AUTH_TOKEN' });
  }, 90_000);
});

describe('bad group input', () => {
  it('answers with catalogue codes and crashes nothing', async () => {
    const [owner, other, outsider] = [await p.register(), await p.register(), await p.register()];
    const d = device(p.mqttUrl, owner, { apiUrl: p.httpUrl });
    const dOut = device(p.mqttUrl, outsider, { apiUrl: p.httpUrl });
    await Promise.all([d.client.connect(), dOut.client.connect()]);
    const unknownGroup = 'gAAAAAAAAAAAA';
    expect(await codeOf(d.client.getChat(unknownGroup))).toBe('E_CHAT_NOT_FOUND');
    expect(await codeOf(d.client.addUserToGroup(unknownGroup, other.userId))).toBe('E_CHAT_NOT_FOUND');
    expect(await codeOf(d.client.createChat({ name: '   ', members: [other.userId] }))).toBe('E_VALIDATION');
    expect(await codeOf(d.client.createChat({ name: 'x'.repeat(5000), members: [other.userId] }))).toBe('E_VALIDATION');
    expect(await codeOf(d.client.createChat({ name: 'x'.repeat(101), members: [other.userId] }))).toBe('E_VALIDATION');
    expect(await codeOf(d.client.createChat({ name: 'Ghosts', members: ['uAAAAAAAAAAAA'] }))).toBe('E_USER_NOT_FOUND');
    const many = await Promise.all(Array.from({ length: MAX_MEMBERS }, () => p.register()));
    expect(await codeOf(d.client.createChat({ name: 'Crowd', members: many.map((u) => u.userId) }))).toBe('E_GROUP_FULL');
    const chat = await d.client.createChat({ name: 'Fine', members: [other.userId] });
    expect(await codeOf(d.client.modifyChatParticipants(chat.chatId, { add: many.map((u) => u.userId) }))).toBe('E_GROUP_FULL');
    expect(await codeOf(d.client.addUserToGroup(chat.chatId, other.userId))).toBe('E_ALREADY_MEMBER');
    expect(await codeOf(d.client.addUserToGroup(chat.chatId, 'uAAAAAAAAAAAA'))).toBe('E_USER_NOT_FOUND');
    expect(await codeOf(d.client.promoteUserToAdmin(chat.chatId, outsider.userId))).toBe('E_NOT_MEMBER');
    expect(await codeOf(d.client.demoteAdmin(chat.chatId, owner.userId))).toBe('E_VALIDATION');
    expect(await codeOf(dOut.client.getChat(chat.chatId))).toBe('E_CHAT_NOT_FOUND');
    expect(await codeOf(dOut.client.readNewMessages(chat.chatId))).toBe('E_NOT_MEMBER');
    // A non-member sending to the group: refused with the message's clientMsgId.
    await expect(dOut.client.sendMessage(chat.chatId, 'let me in')).rejects.toMatchObject({ code: 'E_NOT_MEMBER' });
    // Raw HTTP: bad ids and bodies.
    const raw = await fetch(`${p.httpUrl}/v1/chats/not-an-id/participants`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${owner.token}` }, body: '{"add":[1]}',
    });
    expect(raw.status).toBe(400);
    expect(((await raw.json()) as { error: { code: string } }).error.code).toBe('E_VALIDATION');
    // The platform still answers.
    expect((await d.client.getChat(chat.chatId)).name).toBe('Fine');
  }, 60_000);
});
