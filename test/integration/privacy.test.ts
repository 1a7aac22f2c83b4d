/**
 * Profile, privacy and blocking through the SDK on a real platform: a profile photo visible or
 * hidden by the photo setting (and a block), kept past the media retention while it is the photo;
 * a blocked user's 1:1 message (to the user id or the direct chat's id) is not delivered and its
 * sender gets E_BLOCKED; "who may add me to groups"; read receipts off: no read receipts either
 * way in a 1:1 chat while delivered ticks still flow (groups keep theirs).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParleyApi, ParleyError } from '@parley/client-sdk';
import { startTestPlatform, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, statusOf, type Recorded } from '../helpers/sdk.js';
import { png, sha256 } from '../helpers/media.js';

let tp: TestPlatform;

beforeAll(async () => {
  tp = await startTestPlatform();
}, 60_000);

afterAll(async () => {
  await closeAll();
  await tp?.close();
});

const errorOf = (p: Promise<unknown>): Promise<ParleyError | null> => p.then(() => null, (e: unknown) => e as ParleyError);
const online = async (r: Registered): Promise<Recorded> => {
  const rec = device(tp.mqttUrl, r, { apiUrl: tp.httpUrl });
  await rec.client.connect();
  return rec;
};
/** An attachment as `r` may see it (GET /v1/attachments/:id). */
const attachment = (r: Registered, attachmentId: string) => new ParleyApi(tp.httpUrl).getAttachment(attachmentId, r.token);
const readReceipts = (rec: Recorded, chatId: string) =>
  rec.updates.filter((u) => u.type === 'receipt' && u.chatId === chatId && u.status === 'read' && u.by === undefined);

describe('profile and photo privacy', () => {
  it('shows the name always, about and photo as the privacy settings allow; never to a blocked user', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const a = (await online(alice)).client;
    const b = (await online(bob)).client;

    expect(await a.getProfile()).toEqual({ userId: alice.userId, name: '', about: '', avatar: null });
    const photo = await png(80, 60);
    const up = await a.uploadMedia(photo, { kind: 'image', contentType: 'image/png' });
    const me = await a.setProfile({ name: '  Alice Liddell ', about: 'Down the rabbit hole', avatar: up.attachmentId });
    expect(me).toEqual({ userId: alice.userId, name: 'Alice Liddell', about: 'Down the rabbit hole', avatar: up.attachmentId });
    // The photo is kept while it is the photo (past the 30-day media retention).
    expect((await attachment(alice, up.attachmentId)).expiresAt).toBe(Number.MAX_SAFE_INTEGER);

    // Everyone (the default): Bob sees it all and downloads the photo, by the avatar route or the media path.
    expect(await b.getProfile(alice.userId)).toEqual(me);
    const url = await b.getAvatarUrl(alice.userId);
    expect(sha256(Buffer.from(await (await fetch(url.url)).arrayBuffer()))).toBe(sha256(photo));
    expect(await b.getAvatarUrl(alice.userId, { thumbnail: true })).toMatchObject({ url: expect.any(String) });
    expect(await attachment(bob, up.attachmentId)).toMatchObject({ attachmentId: up.attachmentId, state: 'ready' });

    // Contacts only: Bob is not in Alice's contacts.
    expect(await a.setPrivacy({ photo: 'contacts', about: 'nobody' })).toMatchObject({ photo: 'contacts', about: 'nobody', lastSeen: 'everyone' });
    expect(await b.getProfile(alice.userId)).toEqual({ userId: alice.userId, name: 'Alice Liddell', about: null, avatar: null });
    expect((await errorOf(b.getAvatarUrl(alice.userId)))?.code).toBe('E_NOT_FOUND');
    expect((await errorOf(attachment(bob, up.attachmentId)))?.code).toBe('E_NOT_FOUND');
    // Alice sees her own whatever her settings.
    expect(await a.getProfile()).toEqual(me);
    await a.addContacts([bob.userId]);
    expect(await b.getProfile(alice.userId)).toEqual({ userId: alice.userId, name: 'Alice Liddell', about: null, avatar: up.attachmentId });
    expect((await b.getAvatarUrl(alice.userId)).url).toEqual(expect.any(String));

    // Blocked: the name only, whatever the settings.
    await a.setPrivacy({ photo: 'everyone', about: 'everyone' });
    expect(await a.blockUser(bob.userId)).toEqual([bob.userId]);
    expect(await b.getProfile(alice.userId)).toEqual({ userId: alice.userId, name: 'Alice Liddell', about: null, avatar: null });
    expect((await errorOf(attachment(bob, up.attachmentId)))?.code).toBe('E_NOT_FOUND');
    // The block is one-way for profiles: Alice still sees Bob's.
    await b.setProfile({ name: 'Bob', about: 'hi' });
    expect(await a.getProfile(bob.userId)).toMatchObject({ name: 'Bob', about: 'hi' });
    expect(await a.unblockUser(bob.userId)).toEqual([]);
    expect(await a.unblockUser(bob.userId)).toEqual([]);
    expect(await b.getProfile(alice.userId)).toEqual(me);

    // A new photo: the old one expires like other media again (the retention counted from now).
    const up2 = await a.uploadMedia(await png(32, 32), { kind: 'image', contentType: 'image/png' });
    const before = Date.now();
    expect((await a.setProfile({ avatar: up2.attachmentId })).avatar).toBe(up2.attachmentId);
    const old = (await attachment(alice, up.attachmentId)).expiresAt;
    expect(old).toBeGreaterThanOrEqual(before + 30 * 86_400_000);
    expect(old).toBeLessThan(Date.now() + 30 * 86_400_000 + 1000);
    expect(await attachment(bob, up.attachmentId).then(() => 'visible', (e: ParleyError) => e.code)).toBe('E_NOT_FOUND');
    expect((await a.setProfile({ avatar: null })).avatar).toBeNull();
    expect((await attachment(alice, up2.attachmentId)).expiresAt).toBeLessThan(Number.MAX_SAFE_INTEGER);
  });

  it('refuses bad profiles and photos with catalogue errors', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const a = (await online(alice)).client;
    const b = (await online(bob)).client;
    const code = async (p: Promise<unknown>) => (await errorOf(p))?.code;
    expect(await code(a.setProfile({ name: 'x'.repeat(26) }))).toBe('E_VALIDATION');
    expect((await a.setProfile({ name: '😀'.repeat(25) })).name).toBe('😀'.repeat(25));
    expect(await code(a.setProfile({ name: '   ' }))).toBe('E_VALIDATION');
    expect(await code(a.setProfile({ about: 'y'.repeat(140) }))).toBe('E_VALIDATION');
    expect((await a.setProfile({ about: '' })).about).toBe('');
    expect(await code(a.setProfile({ avatar: 'mAAAAAAAAAAAA' }))).toBe('E_NOT_FOUND');
    expect(await code(a.setProfile({ avatar: 'not-an-id' }))).toBe('E_VALIDATION');
    // Someone else's image, or a document, is not a photo of Alice's.
    const bobs = await b.uploadMedia(await png(), { kind: 'image', contentType: 'image/png' });
    expect(await code(a.setProfile({ avatar: bobs.attachmentId }))).toBe('E_NOT_FOUND');
    const doc = await a.uploadMedia(new TextEncoder().encode('hello'), { kind: 'document', contentType: 'text/plain' });
    expect(await code(a.setProfile({ avatar: doc.attachmentId }))).toBe('E_VALIDATION');
    expect(await code(a.getProfile('uZZZZZZZZZZZZ'))).toBe('E_USER_NOT_FOUND');
    expect(await code(a.blockUser(alice.userId))).toBe('E_VALIDATION');
    expect(await code(a.blockUser('uZZZZZZZZZZZZ'))).toBe('E_USER_NOT_FOUND');
    expect(await code(a.setPrivacy({ photo: 'friends' as 'everyone' }))).toBe('E_VALIDATION');
    expect(await a.getPrivacy()).toEqual({ lastSeen: 'everyone', photo: 'everyone', about: 'everyone', readReceipts: true, groupAdd: 'everyone' });
  });
});

describe('blocking', () => {
  it("a blocked user's 1:1 message is not delivered; the sender gets E_BLOCKED, either way round", async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const a = await online(alice);
    const b = await online(bob);
    const first = await b.client.sendMessage(alice.userId, 'before');
    await until(() => a.messages.some((m) => m.msgId === first.msgId), 10_000, 'alice gets the first');

    await a.client.blockUser(bob.userId);
    expect(await a.client.listBlocked()).toEqual([bob.userId]);
    const refused = await errorOf(b.client.sendMessage(alice.userId, 'blocked one'));
    expect(refused).toMatchObject({ code: 'E_BLOCKED', ref: expect.any(String) });
    expect(b.errors.map((e) => e.code)).toContain('E_BLOCKED');
    // The blocker cannot write either, nor open a chat with him.
    expect((await errorOf(a.client.sendMessage(bob.userId, 'to a blocked user')))?.code).toBe('E_BLOCKED');
    expect((await errorOf(b.client.createChat(alice.userId)))?.code).toBe('E_BLOCKED');
    // Nor through the direct chat's id instead of the user id, either way round.
    expect(await errorOf(b.client.sendMessage(first.chatId, 'blocked, by chat id'))).toMatchObject({ code: 'E_BLOCKED', ref: expect.any(String) });
    expect((await errorOf(a.client.sendMessage(first.chatId, 'to a blocked user, by chat id')))?.code).toBe('E_BLOCKED');

    // Unblocked: what Bob sends now arrives, and nothing of what he sent while blocked ever did.
    await a.client.unblockUser(bob.userId);
    const after = await b.client.sendMessage(alice.userId, 'after');
    await until(() => a.messages.some((m) => m.msgId === after.msgId), 10_000, 'alice gets the one after');
    expect(a.messages.filter((m) => m.from === bob.userId).map((m) => m.text)).toEqual(['before', 'after']);
    expect(after.seq).toBe(first.seq + 1);
    expect((await a.client.readNewMessages(first.chatId)).messages.map((m) => m.text)).toEqual(['before', 'after']);
  });

  it("who may add me to groups: contacts, nobody, and a block; an invitation link still works", async () => {
    const admin = await tp.register();
    const carol = await tp.register();
    const dave = await tp.register();
    const erin = await tp.register();
    const ad = (await online(admin)).client;
    const c = (await online(carol)).client;
    const d = (await online(dave)).client;
    const e = (await online(erin)).client;
    await c.setPrivacy({ groupAdd: 'contacts' });
    await d.setPrivacy({ groupAdd: 'nobody' });
    await d.addContacts([admin.userId]);
    await e.blockUser(admin.userId);

    const refused = await errorOf(ad.createChat({ name: 'club', members: [carol.userId, dave.userId, erin.userId] }));
    expect(refused?.code).toBe('E_ADD_NOT_ALLOWED');
    expect(refused?.detail?.split(',').sort()).toEqual([carol.userId, dave.userId, erin.userId].sort());

    await c.addContacts([admin.userId]);
    const group = await ad.createChat({ name: 'club', members: [carol.userId] });
    expect(group.members.map((m) => m.userId).sort()).toEqual([admin.userId, carol.userId].sort());
    expect((await errorOf(ad.addUserToGroup(group.chatId, dave.userId)))?.code).toBe('E_ADD_NOT_ALLOWED');
    expect((await errorOf(ad.modifyChatParticipants(group.chatId, { remove: [carol.userId], add: [erin.userId] })))?.code).toBe('E_ADD_NOT_ALLOWED');
    // The whole change was refused: Carol is still in.
    expect((await ad.getChat(group.chatId)).members.map((m) => m.userId)).toContain(carol.userId);

    const invite = await ad.createInvite(group.chatId);
    expect((await d.joinGroup(invite.code)).chat.members.map((m) => m.userId)).toContain(dave.userId);
  });
});

describe('read receipts off', () => {
  /** Two users with two devices each (the second shows the reader's own read position syncing). */
  async function pair(): Promise<{ alice: Registered; bob: Registered; a: Recorded; a2: Recorded; b: Recorded; b2: Recorded }> {
    const alice = await tp.register();
    const bob = await tp.register();
    const a = await online(alice);
    const a2 = await online({ ...(await tp.linkDevice(alice.token)), userId: alice.userId });
    const b = await online(bob);
    const b2 = await online({ ...(await tp.linkDevice(bob.token)), userId: bob.userId });
    return { alice, bob, a, a2, b, b2 };
  }
  const ownRead = (rec: Recorded, chatId: string, seq: number) =>
    rec.updates.some((u) => u.type === 'receipt' && u.chatId === chatId && u.status === 'read' && u.by !== undefined && u.seq >= seq);

  it('neither side gets read receipts in a 1:1 chat; delivered ticks flow; own reads still sync', async () => {
    const { alice, bob, a, a2, b, b2 } = await pair();
    await b.client.setPrivacy({ readReceipts: false });

    // Alice -> Bob: delivered, and Bob reads it: Alice gets no read receipt.
    const m1 = await a.client.sendMessage(bob.userId, 'one');
    await until(() => statusOf(a, m1.msgId) === 'delivered', 10_000, 'alice sees delivered');
    await until(() => b.messages.some((m) => m.msgId === m1.msgId), 10_000, 'bob gets it');
    await b.client.markRead(m1.msgId);
    await until(() => ownRead(b2, m1.chatId, m1.seq), 10_000, "bob's other device learns his read");
    const status = await a.client.getMessageStatus(m1.msgId);
    expect(status.users).toEqual([{ userId: bob.userId, deliveredAt: expect.any(Number), readAt: null }]);
    expect(status.status).toBe('delivered');

    // Bob -> Alice (her receipts on): Alice reads it, Bob gets no read receipt either.
    const m2 = await b.client.sendMessage(alice.userId, 'two');
    await until(() => statusOf(b, m2.msgId) === 'delivered', 10_000, 'bob sees delivered');
    await until(() => a.messages.some((m) => m.msgId === m2.msgId), 10_000, 'alice gets it');
    await a.client.markRead(m2.msgId);
    await until(() => ownRead(a2, m2.chatId, m2.seq), 10_000, "alice's other device learns her read");
    expect((await b.client.getMessageStatus(m2.msgId)).users).toEqual([{ userId: alice.userId, deliveredAt: expect.any(Number), readAt: null }]);

    // Bob turns them on again; what is read from now on is announced both ways. Those receipts come
    // after any of the earlier reads would have: none came.
    await b.client.setPrivacy({ readReceipts: true });
    const m3 = await a.client.sendMessage(bob.userId, 'three');
    await until(() => b.messages.some((m) => m.msgId === m3.msgId), 10_000, 'bob gets three');
    await b.client.markRead(m3.msgId);
    await until(() => statusOf(a, m3.msgId) === 'read', 10_000, 'alice sees three read');
    const m4 = await b.client.sendMessage(alice.userId, 'four');
    await until(() => a.messages.some((m) => m.msgId === m4.msgId), 10_000, 'alice gets four');
    await a.client.markRead(m4.msgId);
    await until(() => statusOf(b, m4.msgId) === 'read', 10_000, 'bob sees four read');
    expect(readReceipts(a, m1.chatId).map((u) => (u as { seq: number }).seq)).toEqual([m3.seq]);
    expect(readReceipts(b, m1.chatId).map((u) => (u as { seq: number }).seq)).toEqual([m4.seq]);
    for (const rec of [a, b, a2, b2]) expect(rec.errors).toEqual([]);
  });

  it('groups keep their read tallies whatever the setting', async () => {
    const { bob, a, b } = await pair();
    await b.client.setPrivacy({ readReceipts: false });
    const group = await a.client.createChat({ name: 'g', members: [bob.userId] });
    await until(() => b.messages.some((m) => m.chatId === group.chatId), 10_000, 'bob gets the group');
    const m = await a.client.sendMessage(group.chatId, 'hi all');
    await until(() => b.messages.some((x) => x.msgId === m.msgId), 10_000, 'bob gets it');
    await b.client.markRead(m.msgId);
    await until(() => statusOf(a, m.msgId) === 'read', 10_000, 'alice sees it read by all');
  });
});
