/**
 * End-to-end encryption through the SDK on a real platform (client-sdk/src/e2ee/, MLS via
 * ts-mls): 1:1 and group chats between users with several devices decrypt on every device,
 * the sender's other devices included; the server's database file and Redis never hold the
 * plaintext; a device back after 100 messages reads them all; a removed member, a revoked device
 * and a newly added member read only what their membership allows (checked with their own stored
 * keys, `canDecrypt`); encrypted media round-trips and a tampered object is refused; a changed
 * identity shows the "security code changed" event and safety numbers agree on both sides.
 */
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryKeyStorage, MemoryStateStore, type ChatMessage, type ParleyClient, type UndecryptableMessage } from '@parley/client-sdk';
import { canDecrypt, decodeE2ee, isE2eeBody } from '@parley/client-sdk/protocol';
import { startTestPlatform, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { png } from '../helpers/media.js';
import { closeAll, device, statusOf, type Recorded } from '../helpers/sdk.js';

let tp: TestPlatform;
let redis: Redis;

beforeAll(async () => {
  tp = await startTestPlatform({ PARLEY_CODE_RATE_PER_IP: '1000', PARLEY_KEY_CLAIMS_PER_HOUR: '10000' });
  redis = new Redis(tp.platform.urls.redis);
}, 60_000);

afterAll(async () => {
  await closeAll();
  redis?.disconnect();
  await tp?.close();
});

interface Dev extends Recorded {
  reg: Registered;
  keys: MemoryKeyStorage;
  state: MemoryStateStore;
  undecryptable: UndecryptableMessage[];
}

/** An SDK client with end-to-end encryption on (its keys in `keys`, kept by the test). */
async function e2eeDevice(reg: Registered, keys = new MemoryKeyStorage(), state = new MemoryStateStore()): Promise<Dev> {
  const rec = device(tp.mqttUrl, reg, { apiUrl: tp.httpUrl, e2ee: { storage: keys }, state });
  const undecryptable: UndecryptableMessage[] = [];
  rec.client.on('undecryptable', (u) => undecryptable.push(u));
  await rec.client.connect();
  await rec.client.e2eeReady();
  return { ...rec, reg, keys, state, undecryptable };
}

const texts = (d: Dev, chatId?: string): string[] =>
  d.messages.filter((m) => !m.event && (chatId === undefined || m.chatId === chatId)).map((m) => m.text ?? '');
const got = (d: Dev, text: string): ChatMessage | undefined => d.messages.find((m) => m.text === text);
const waitText = (d: Dev, text: string, ms = 20_000): Promise<void> => until(() => got(d, text) !== undefined, ms, `"${text}" at ${d.reg.deviceId}`);

/** Every byte the platform keeps: its database files and every value in Redis. */
async function everythingStored(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (const f of readdirSync(tp.dataDir)) {
    if (f.startsWith('parley.sqlite')) parts.push(readFileSync(join(tp.dataDir, f)));
  }
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    for (const k of keys) {
      const type = await redis.type(k);
      if (type === 'string') parts.push((await redis.getBuffer(k)) ?? Buffer.alloc(0));
      else if (type === 'list') parts.push(...(await redis.lrangeBuffer(k, 0, -1)));
      else if (type === 'set') parts.push(...(await redis.smembersBuffer(k)));
      else if (type === 'zset') parts.push(...(await redis.zrangeBuffer(k, '0', '-1')));
      else if (type === 'hash') parts.push(...Object.values(await redis.hgetallBuffer(k)));
      else if (type === 'stream') for (const [, fields] of await redis.xrangeBuffer(k, '-', '+')) parts.push(...fields);
    }
  } while (cursor !== '0');
  return Buffer.concat(parts);
}

/** A copy of a device's keys as they are now (what a thief or a malicious server could keep). */
async function snapshot(keys: MemoryKeyStorage): Promise<MemoryKeyStorage> {
  const copy = new MemoryKeyStorage();
  for (const k of await keys.keys('')) await copy.set(k, (await keys.get(k))!);
  return copy;
}

/** The raw body of a message as the server stores it (history, read by a member). */
async function storedBody(reader: ParleyClient, chatId: string, seq: number): Promise<Uint8Array> {
  const page = await reader.readNewMessages(chatId, seq - 1, 1);
  const m = page.messages[0];
  if (!m || m.seq !== seq || m.data === undefined) throw new Error(`no binary body at ${chatId} seq ${seq}`);
  return new Uint8Array(Buffer.from(m.data, 'base64'));
}

describe('1:1 with linked devices', () => {
  it('decrypts on both devices of the recipient and on the sender\'s other device; no plaintext on the server', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const alice2 = await tp.linkDevice(alice.token);
    const bob2 = await tp.linkDevice(bob.token);
    const [a1, a2, b1, b2] = await Promise.all([e2eeDevice(alice), e2eeDevice(alice2), e2eeDevice(bob), e2eeDevice(bob2)]);

    // b2 is away while the first messages go: they wait for it in Redis, encrypted.
    await b2.client.close();
    const secret1 = `attack at dawn ${randomBytes(6).toString('hex')}`;
    const sent = await a1.client.sendMessage(bob.userId, secret1);
    await Promise.all([waitText(b1, secret1), waitText(a2, secret1)]);
    expect(got(b1, secret1)).toMatchObject({ encrypted: true, own: false, from: alice.userId, fromDevice: alice.deviceId, msgId: sent.msgId });
    expect(got(a2, secret1)).toMatchObject({ encrypted: true, own: true });
    // Ticks work as before: receipts are outside the ciphertext.
    await b1.client.markRead(sent.msgId);
    await until(() => statusOf(a1, sent.msgId) === 'read', 15_000, 'the read tick');

    const haystack = await everythingStored();
    expect(haystack.includes(Buffer.from(secret1))).toBe(false);
    // The body the server keeps is ciphertext, and bigger than the text.
    const body = await storedBody(a1.client, sent.chatId, sent.seq);
    expect(Buffer.from(body).includes(Buffer.from(secret1))).toBe(false);
    expect(body.length).toBeGreaterThan(secret1.length);

    // b2 comes back with its keys and reads it; then it answers, and all three others read that.
    const b2back = await e2eeDevice(bob2, b2.keys, b2.state);
    await waitText(b2back, secret1);
    const secret2 = `roger ${randomBytes(6).toString('hex')}`;
    await b2back.client.sendMessage(alice.userId, secret2);
    await Promise.all([waitText(a1, secret2), waitText(a2, secret2), waitText(b1, secret2)]);
    expect(got(b1, secret2)?.own).toBe(true);
    expect((await everythingStored()).includes(Buffer.from(secret2))).toBe(false);
    for (const d of [a1, a2, b1, b2back]) expect(d.undecryptable).toEqual([]);
  }, 90_000);

  it('a device linked later is added to the chat\'s group before the next message, and cannot read the earlier ones', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const [a1, b1] = await Promise.all([e2eeDevice(alice), e2eeDevice(bob)]);
    const before = await b1.client.sendMessage(alice.userId, 'before the new phone');
    await waitText(a1, 'before the new phone');
    const alice3 = await tp.linkDevice(alice.token);
    const a3 = await e2eeDevice(alice3);
    // Its first identity shows up in the chat (event `identity`, change `added`); bob's next message includes it.
    await until(() => b1.updates.some((u) => u.type === 'event' && u.event.type === 'identity' && u.event.change === 'added' && u.event.device === alice3.deviceId), 15_000, 'the new device event');
    await b1.client.sendMessage(alice.userId, 'after the new phone');
    await Promise.all([waitText(a3, 'after the new phone'), waitText(a1, 'after the new phone')]);
    expect(await canDecrypt(a3.keys, before.chatId, await storedBody(b1.client, before.chatId, before.seq))).toBe(false);

    // The server gave the new device recent history (PARLEY_LINK_HISTORY): it cannot read it, says
    // so, and asks for it again; bob's device does not resend what went out before a3 was in the group.
    await until(() => a3.undecryptable.some((u) => u.seq === before.seq), 15_000, 'the earlier message reported');
    const isResendRequest = (m: { fromDevice: string; data?: string | undefined }): boolean => m.fromDevice === alice3.deviceId && m.data !== undefined
      && isE2eeBody(Buffer.from(m.data, 'base64')) && decodeE2ee(Buffer.from(m.data, 'base64')).type === 'resend';
    await until(async () => (await b1.client.readNewMessages(before.chatId, 0, 100)).messages.some(isResendRequest), 15_000, 'the resend request');
    // Bob's device has seen the request once it has a message alice sent after it; what bob sends
    // next comes after anything it would have resent.
    await a1.client.sendMessage(bob.userId, 'ping');
    await waitText(b1, 'ping');
    await b1.client.sendMessage(alice.userId, 'marker');
    await waitText(a3, 'marker');
    expect(texts(a3)).not.toContain('before the new phone');
    expect(a3.messages.filter((m) => m.replaces !== undefined)).toEqual([]);
  }, 60_000);

  it('a device that was away for 100 messages decrypts all of them, in order', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const [a1, b1] = await Promise.all([e2eeDevice(alice), e2eeDevice(bob)]);
    await a1.client.sendMessage(bob.userId, 'hello');
    await waitText(b1, 'hello');
    await b1.client.close();
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < 100; i++) sends.push(a1.client.sendMessage(bob.userId, `m${i}`));
    await Promise.all(sends);
    const back = await e2eeDevice(bob, b1.keys, b1.state);
    await until(() => texts(back).length >= 100, 60_000, '100 messages after reconnecting');
    expect(texts(back)).toEqual(Array.from({ length: 100 }, (_, i) => `m${i}`));
    expect(back.undecryptable).toEqual([]);
  }, 120_000);
});

describe('groups', () => {
  it('members read on all devices; a removed member, a revoked device and a new member read only their share', async () => {
    const [alice, bob, carol, dave] = await Promise.all([tp.register(), tp.register(), tp.register(), tp.register()]);
    const alice2 = await tp.linkDevice(alice.token);
    const [a1, a2, b1, c1] = await Promise.all([e2eeDevice(alice), e2eeDevice(alice2), e2eeDevice(bob), e2eeDevice(carol)]);
    const group = await a1.client.createChat({ name: 'e2ee', members: [bob.userId, carol.userId] });
    const chatId = group.chatId;

    const g1 = await a1.client.sendMessage(chatId, 'g1 for all three');
    await Promise.all([waitText(b1, 'g1 for all three'), waitText(c1, 'g1 for all three'), waitText(a2, 'g1 for all three')]);
    expect(got(c1, 'g1 for all three')).toMatchObject({ encrypted: true, chatId });

    // Carol's keys as they were while she was a member (her device would drop them on removal;
    // a modified one, or a server that hid the removal from her, would not). They work: they read
    // a message she had not yet received when they were copied.
    const carolKeys = await snapshot(c1.keys);
    const g1b = await a1.client.sendMessage(chatId, 'g1b still for carol');
    await waitText(c1, 'g1b still for carol');
    expect(await canDecrypt(carolKeys, chatId, await storedBody(b1.client, chatId, g1b.seq))).toBe(true);

    // Carol is removed: the next message is committed past her.
    await a1.client.removeUserFromGroup(chatId, carol.userId);
    await until(() => a1.updates.some((u) => u.type === 'event' && u.chatId === chatId && u.event.type === 'removed'), 15_000, 'the removal event');
    const g2 = await a1.client.sendMessage(chatId, 'g2 after carol left');
    await Promise.all([waitText(b1, 'g2 after carol left'), waitText(a2, 'g2 after carol left')]);
    const g2body = await storedBody(b1.client, chatId, g2.seq);
    expect(await canDecrypt(carolKeys, chatId, g2body)).toBe(false);
    expect(got(c1, 'g2 after carol left')).toBeUndefined();

    // Dave is added: he reads what follows, not what came before.
    const d1 = await e2eeDevice(dave);
    await a1.client.addUserToGroup(chatId, dave.userId);
    await until(() => a1.updates.some((u) => u.type === 'event' && u.chatId === chatId && u.event.type === 'added'), 15_000, 'the add event');
    await a1.client.sendMessage(chatId, 'g3 welcome dave');
    await waitText(d1, 'g3 welcome dave');
    const g1body = await storedBody(b1.client, chatId, g1.seq);
    expect(await canDecrypt(d1.keys, chatId, g1body)).toBe(false);
    expect(await canDecrypt(d1.keys, chatId, g2body)).toBe(false);

    // Alice's second device is revoked: bob's next message is committed past it. Its keys from
    // before still read a message of the old epoch (g3), not the one after.
    await waitText(a2, 'g3 welcome dave');
    const a2Keys = await snapshot(a2.keys);
    const g3b = await a1.client.sendMessage(chatId, 'g3b still for alice2');
    await waitText(a2, 'g3b still for alice2');
    expect(await canDecrypt(a2Keys, chatId, await storedBody(b1.client, chatId, g3b.seq))).toBe(true);
    await a1.client.revokeDevice(alice2.deviceId);
    await until(() => b1.updates.some((u) => u.type === 'event' && u.chatId === chatId && u.event.type === 'identity' && u.event.change === 'removed'), 15_000, 'the identity event');
    const g4 = await b1.client.sendMessage(chatId, 'g4 after the revocation');
    await Promise.all([waitText(a1, 'g4 after the revocation'), waitText(d1, 'g4 after the revocation')]);
    const g4body = await storedBody(b1.client, chatId, g4.seq);
    expect(await canDecrypt(a2.keys, chatId, g4body)).toBe(false);
    expect((await everythingStored()).includes(Buffer.from('g4 after the revocation'))).toBe(false);
    for (const d of [a1, b1, d1]) expect(d.undecryptable).toEqual([]);
  }, 120_000);
});

/** Files under a directory, recursively. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

describe('media', () => {
  it('encrypted media round-trips with its client-made thumbnail; the stored object is not the plaintext; a tampered one is refused', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const [a1, b1] = await Promise.all([e2eeDevice(alice), e2eeDevice(bob)]);
    const picture = await png(320, 240);
    const thumbnail = await png(32, 24);
    const preview = 'YJqGPQw7sFlslqhFafSE+Q6oJ1h2iHB2Rw'; // a ThumbHash the app made (base64)
    await a1.client.sendMedia(bob.userId, picture, { kind: 'image', contentType: 'image/png', caption: 'secret picture', thumbnail, preview });
    await waitText(b1, 'secret picture');
    const m = got(b1, 'secret picture')!;
    expect(m).toMatchObject({ encrypted: true, media: { kind: 'image', encrypted: true } });
    expect(m.mediaKey).toBeTypeOf('string');
    expect(Buffer.from(await b1.client.downloadMedia(m))).toEqual(picture);
    expect(Buffer.from(await b1.client.downloadMedia(m, { thumbnail: true }))).toEqual(thumbnail);
    // The preview is the sender's, from inside the message: the server could not make one.
    expect(m.media?.preview).toBe(preview);
    const onServer = (await b1.client.readNewMessages(m.chatId, m.seq - 1, 1)).messages[0];
    expect(onServer?.media?.preview).toBeUndefined();

    // On the server's disk: ciphertext only (no file holds the picture's bytes).
    const objects = filesUnder(join(tp.dataDir, 'media'));
    const stored = objects.map((f) => readFileSync(f));
    expect(stored.some((b) => b.includes(picture.subarray(0, 64)) || b.includes(picture.subarray(picture.length - 64)))).toBe(false);
    // Tampering with the object (one bit) is detected on download.
    const object = objects.find((f) => readFileSync(f).length === m.media!.size);
    expect(object).toBeDefined();
    const bytes = readFileSync(object!);
    bytes[bytes.length >> 1]! ^= 1;
    writeFileSync(object!, bytes);
    await expect(b1.client.downloadMedia(m)).rejects.toMatchObject({ code: 'E_MEDIA_CHECKSUM' });
  }, 60_000);
});

describe('identity', () => {
  it('a changed identity shows "security code changed" in the chat and the chat goes on; safety numbers match on both sides', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const [a1, b1] = await Promise.all([e2eeDevice(alice), e2eeDevice(bob)]);
    const first = await a1.client.sendMessage(bob.userId, 'before the reinstall');
    await waitText(b1, 'before the reinstall');

    const aliceSees = await a1.client.getSafetyNumber(bob.userId);
    const bobSees = await b1.client.getSafetyNumber(alice.userId);
    expect(aliceSees.safetyNumber).toMatch(/^[0-9]{60}$/);
    expect(aliceSees.safetyNumber).toBe(bobSees.safetyNumber);
    expect(await b1.client.verifySafetyQr(alice.userId, aliceSees.qr)).toBe(true);
    expect(await a1.client.verifySafetyQr(bob.userId, bobSees.qr)).toBe(true);

    // Bob reinstalls: same device, new keys.
    await b1.client.close();
    const b1new = await e2eeDevice(bob, new MemoryKeyStorage(), b1.state);
    await until(() => a1.updates.some((u) => u.type === 'event' && u.chatId === first.chatId && u.event.type === 'identity'
      && u.event.change === 'changed' && u.event.device === bob.deviceId), 15_000, 'the security code changed event');
    const event = a1.messages.find((m) => m.event?.type === 'identity');
    expect(event).toMatchObject({ chatId: first.chatId, from: bob.userId, event: { type: 'identity', change: 'changed', device: bob.deviceId } });

    const after = await a1.client.getSafetyNumber(bob.userId);
    expect(after.safetyNumber).not.toBe(aliceSees.safetyNumber);
    expect(await a1.client.verifySafetyQr(bob.userId, bobSees.qr)).toBe(false);
    expect((await b1new.client.getSafetyNumber(alice.userId)).safetyNumber).toBe(after.safetyNumber);

    // The chat goes on with bob's new keys (his old leaf is replaced).
    await a1.client.sendMessage(bob.userId, 'after the reinstall');
    await waitText(b1new, 'after the reinstall');
    expect(b1new.undecryptable).toEqual([]);
  }, 60_000);
});

describe('undecryptable', () => {
  it('a device that lost its group state reports what it cannot read, asks to be put back and gets the messages again', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const [a1, b1] = await Promise.all([e2eeDevice(alice), e2eeDevice(bob)]);
    await a1.client.sendMessage(bob.userId, 'first');
    await waitText(b1, 'first');

    // Bob's device restarts with its identity and key packages but without its group states.
    await b1.client.close();
    const kept = new MemoryKeyStorage();
    for (const k of await b1.keys.keys('')) if (!k.startsWith('g/')) await kept.set(k, (await b1.keys.get(k))!);
    const back = await e2eeDevice(bob, kept, b1.state);

    const lost = await a1.client.sendMessage(bob.userId, 'sent while bob had no group');
    await until(() => back.undecryptable.some((u) => u.seq === lost.seq), 15_000, 'the undecryptable event');
    expect(back.undecryptable.find((u) => u.seq === lost.seq)).toMatchObject({ chatId: lost.chatId, msgId: lost.msgId, reason: 'no-group', fromDevice: alice.deviceId });
    // Alice's device puts him back and sends the message again, naming the original.
    await waitText(back, 'sent while bob had no group', 30_000);
    expect(got(back, 'sent while bob had no group')).toMatchObject({ replaces: lost.msgId, encrypted: true });
    await a1.client.sendMessage(bob.userId, 'and what follows');
    await waitText(back, 'and what follows');
  }, 60_000);
});

describe('large handshakes', () => {
  it('a commit and Welcome bigger than one MQTT payload go as attachments, and the group works', async () => {
    // A small payload limit stands in for a group of hundreds (a 1,024-member Welcome is ~350 KB).
    const small = await startTestPlatform({ PARLEY_CODE_RATE_PER_IP: '1000', PARLEY_MAX_PAYLOAD_BYTES: '1536' });
    try {
      const users = await Promise.all([0, 1, 2, 3, 4].map(() => small.register()));
      const devs = await Promise.all(users.map(async (u) => {
        const rec = device(small.mqttUrl, u, { apiUrl: small.httpUrl, e2ee: true, maxPayloadBytes: 1536 });
        await rec.client.connect();
        await rec.client.e2eeReady();
        return rec;
      }));
      const [admin, ...others] = devs;
      const group = await admin!.client.createChat({ name: 'big handshakes', members: users.slice(1).map((u) => u.userId) });
      await admin!.client.sendMessage(group.chatId, 'to all five');
      await until(() => others.every((d) => d.messages.some((m) => m.text === 'to all five')), 30_000, 'everyone read it');
      // The handshake went as an attachment: a message with media and no readable body.
      // Handshakes never reach the application as messages.
      expect(others[0]!.messages.every((m) => m.event || m.text === 'to all five')).toBe(true);
      expect(others.every((d) => d.messages.find((m) => m.text === 'to all five')?.encrypted === true)).toBe(true);
      const page = await others[0]!.client.readNewMessages(group.chatId, 0, 50);
      expect(page.messages.some((m) => m.media !== undefined && m.media.kind === 'document')).toBe(true);
    } finally {
      await closeAll();
      await small.close();
    }
  }, 90_000);
});

describe('mixed senders', () => {
  it('a device without end-to-end encryption (a bot) is read in the clear and marked so; a malformed end-to-end body is reported, not fatal', async () => {
    const bot = await tp.register();
    const bob = await tp.register();
    const b1 = await e2eeDevice(bob);
    const botDevice = device(tp.mqttUrl, bot, { apiUrl: tp.httpUrl });
    await botDevice.client.connect();
    await botDevice.client.sendMessage(bob.userId, 'a notice in the clear');
    await waitText(b1, 'a notice in the clear');
    expect(got(b1, 'a notice in the clear')?.encrypted).toBe(false);
    const garbage = await botDevice.client.sendMessage(bob.userId, Buffer.concat([Buffer.from([0xe2, 0xee, 1]), randomBytes(64)]));
    await until(() => b1.undecryptable.some((u) => u.seq === garbage.seq), 15_000, 'the malformed body reported');
    expect(b1.undecryptable.find((u) => u.seq === garbage.seq)?.reason).toBe('failed');
    await botDevice.client.sendMessage(bob.userId, 'still fine');
    await waitText(b1, 'still fine');
  }, 60_000);
});

describe('forgeries', () => {
  it('a member re-posting another member\'s ciphertext as its own, and a member device writing in the clear, are refused', async () => {
    const [alice, bob, carol] = await Promise.all([tp.register(), tp.register(), tp.register()]);
    const [a1, b1, c1] = await Promise.all([e2eeDevice(alice), e2eeDevice(bob), e2eeDevice(carol)]);
    const group = await a1.client.createChat({ name: 'forgeries', members: [bob.userId, carol.userId] });
    const original = await b1.client.sendMessage(group.chatId, 'bob wrote this');
    await Promise.all([waitText(a1, 'bob wrote this'), waitText(c1, 'bob wrote this')]);

    // Carol's second device (no end-to-end keys of its own) re-posts bob's ciphertext: the server
    // names carol as the sender, MLS names bob's device, and its message key is used up: refused
    // (the signing-device check alone is in test/unit/e2ee-wire.test.ts).
    const carol2 = await tp.linkDevice(carol.token);
    const replayer = device(tp.mqttUrl, carol2, { apiUrl: tp.httpUrl });
    await replayer.client.connect();
    const replay = await replayer.client.sendMessage(group.chatId, await storedBody(a1.client, group.chatId, original.seq));
    await until(() => a1.undecryptable.some((u) => u.seq === replay.seq), 15_000, 'the replay refused');
    expect(a1.undecryptable.find((u) => u.seq === replay.seq)).toMatchObject({ fromDevice: carol2.deviceId });
    expect(['sender', 'failed']).toContain(a1.undecryptable.find((u) => u.seq === replay.seq)?.reason);

    // Bob's own device, talking in the clear (a modified client, or the server writing as it): refused too.
    await b1.client.close();
    const clear = device(tp.mqttUrl, bob, { apiUrl: tp.httpUrl });
    await clear.client.connect();
    const forged = await clear.client.sendMessage(group.chatId, 'not really from bob');
    await until(() => a1.undecryptable.some((u) => u.seq === forged.seq), 15_000, 'the cleartext refused');
    expect(a1.undecryptable.find((u) => u.seq === forged.seq)).toMatchObject({ reason: 'cleartext', fromDevice: bob.deviceId });
    expect(texts(a1)).not.toContain('not really from bob');
    expect(texts(a1).filter((t) => t === 'bob wrote this')).toHaveLength(1);
  }, 60_000);

  it('a block between two members of a group does not split the group', async () => {
    const [alice, bob, carol] = await Promise.all([tp.register(), tp.register(), tp.register()]);
    const [a1, b1, c1] = await Promise.all([e2eeDevice(alice), e2eeDevice(bob), e2eeDevice(carol)]);
    const group = await a1.client.createChat({ name: 'blocks', members: [bob.userId, carol.userId] });
    await a1.client.sendMessage(group.chatId, 'before the block');
    await Promise.all([waitText(b1, 'before the block'), waitText(c1, 'before the block')]);
    await b1.client.blockUser(carol.userId);
    await b1.client.sendMessage(group.chatId, 'bob after the block');
    await a1.client.sendMessage(group.chatId, 'alice after the block');
    await Promise.all([waitText(c1, 'alice after the block'), waitText(b1, 'alice after the block'), waitText(a1, 'bob after the block')]);
    await waitText(c1, 'bob after the block');
    for (const d of [a1, b1, c1]) expect(d.undecryptable).toEqual([]);
  }, 60_000);
});
