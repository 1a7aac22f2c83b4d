/**
 * Account export through the SDK and HTTP (issue 12, item 8; docs/EXPORT.md): the archive is
 * NDJSON with the documented header first and `end` last; it holds Alice's account, profile,
 * privacy, devices (without tokens), contacts and blocks, her chats with her membership window,
 * the messages she sent and those she received, media references whose fresh URLs download the
 * very bytes (her upload and one she received), and her status post; no token, token hash or code
 * hash appears anywhere in it. Exports are rate-limited.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExportRecord } from '@parley/client-sdk';
import { startTestPlatform, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, type Recorded } from '../helpers/sdk.js';
import { png } from '../helpers/media.js';
import { openStore, type Store } from '../../services/src/store/index.js';

let p: TestPlatform;
let store: Store;
let alice: Registered;
let bob: Registered;
let carol: Registered;
let da: Recorded;
let db: Recorded;

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  p = await startTestPlatform({ PARLEY_CODE_RATE_PER_IP: '1000', PARLEY_EXPORTS_PER_HOUR: '2' });
  store = await openStore({ kind: 'sqlite', file: join(p.dataDir, 'parley.sqlite') });
  [alice, bob, carol] = [await p.register(), await p.register(), await p.register()];
  da = device(p.mqttUrl, alice, { apiUrl: p.httpUrl });
  db = device(p.mqttUrl, bob, { apiUrl: p.httpUrl });
  await Promise.all([da.client.connect(), db.client.connect()]);
}, 60_000);

afterAll(async () => {
  await closeAll();
  await store?.close();
  await p?.close();
});

describe('account export', () => {
  it('is a documented NDJSON archive of her data, with working media URLs and no secrets', async () => {
    const mine = await png(40, 30);
    const theirs = await png(20, 10);
    await da.client.sendMessage(bob.userId, 'hi Bob');
    const photo = await da.client.sendMedia(bob.userId, mine, { kind: 'image', contentType: 'image/png', caption: 'mine' });
    const reply = await db.client.sendMessage(alice.userId, 'hi Alice');
    const gift = await db.client.sendMedia(alice.userId, theirs, { kind: 'image', contentType: 'image/png', caption: 'yours' });
    await until(() => da.messages.some((m) => m.msgId === gift.msgId) && db.messages.some((m) => m.msgId === photo.msgId), 10_000, 'messages delivered');
    const group = await da.client.createChat({ name: 'Walks', members: [bob.userId, carol.userId] });
    await da.client.sendMessage(group.chatId, 'Sunday?');
    await da.client.addContacts([bob.userId]);
    await da.client.blockUser(carol.userId);
    await da.client.setProfile({ name: 'Alice', about: 'walking' });
    await da.client.postStatus({ text: 'out for a walk' });
    // A pending deletion code: its hash must not be exported.
    await da.client.requestAccountDeletion();

    // The raw archive over HTTP.
    const res = await fetch(`${p.httpUrl}/v1/account/export`, { headers: { authorization: `Bearer ${alice.token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
    const text = await res.text();
    const lines = text.trimEnd().split('\n');
    const records = lines.map((l) => JSON.parse(l) as ExportRecord);
    expect(records[0]).toMatchObject({ type: 'header', format: 'parley-account-export', version: 1, userId: alice.userId });
    expect(records.at(-1)).toMatchObject({ type: 'end' });
    // No secrets: the token, its hash, the deletion code's hash.
    const redis = new Redis(p.platform.urls.redis);
    const codeHash = await redis.hget(`parley:delcode:${alice.userId}`, 'h');
    redis.disconnect();
    expect(codeHash).toMatch(/^[0-9a-f]{64}$/);
    const tokenHash = (await store.getDevice(alice.deviceId))!.tokenHash;
    for (const secret of [alice.token, alice.token.split('.')[1]!, tokenHash, codeHash!]) expect(text).not.toContain(secret);
    expect(text).not.toMatch(/tokenHash|codeHash|"token"/);

    // Her data.
    const of = <T extends ExportRecord['type']>(type: T) => records.filter((r): r is Extract<ExportRecord, { type: T }> => r.type === type);
    expect(of('account')).toEqual([{ type: 'account', userId: alice.userId, phone: alice.phone, createdAt: expect.any(Number) }]);
    expect(of('profile')[0]).toMatchObject({ name: 'Alice', about: 'walking' });
    expect(of('privacy')[0]).toMatchObject({ lastSeen: 'everyone', readReceipts: true });
    expect(of('device').map((d) => d.deviceId)).toEqual([alice.deviceId]);
    expect(of('contact').map((c) => c.userId)).toEqual([bob.userId]);
    expect(of('block').map((b) => b.userId)).toEqual([carol.userId]);
    const chats = of('chat');
    expect(chats.map((c) => c.kind).sort()).toEqual(['direct', 'group']);
    expect(chats.find((c) => c.kind === 'group')).toMatchObject({ name: 'Walks', membership: { role: 'admin', leftSeq: null } });
    const messages = of('message');
    const sent = messages.filter((m) => m.direction === 'sent').map((m) => m.text);
    const received = messages.filter((m) => m.direction === 'received');
    expect(sent).toEqual(expect.arrayContaining(['hi Bob', 'mine', 'Sunday?']));
    expect(received.map((m) => m.text)).toEqual(expect.arrayContaining(['hi Alice', 'yours']));
    expect(received.find((m) => m.msgId === reply.msgId)?.from).toBe(bob.userId);
    // Group changes are there too (received: written by the server).
    expect(messages.some((m) => m.chatId === group.chatId && m.event?.type === 'created')).toBe(true);
    expect(of('status').map((s) => s.text)).toEqual(['out for a walk']);

    // Media: her upload and the one she received, each with a URL that downloads the bytes.
    const media = of('media');
    expect(media).toHaveLength(2);
    const own = media.find((m) => m.owner === alice.userId)!;
    const got = media.find((m) => m.owner === bob.userId)!;
    for (const [m, bytes] of [[own, mine], [got, theirs]] as const) {
      expect(m.sha256).toBe(sha256(bytes));
      expect(m.urlExpiresAt).toBeGreaterThan(Date.now());
      const dl = await fetch(m.url!);
      expect(dl.status).toBe(200);
      expect(sha256(new Uint8Array(await dl.arrayBuffer()))).toBe(sha256(bytes));
    }
    expect(records.at(-1)).toMatchObject({ counts: { message: messages.length, media: 2, chat: 2 } });

    // Through the SDK: the same archive, parsed; then the hourly limit.
    const archive = await da.client.exportAccount();
    expect(archive.header).toMatchObject({ format: 'parley-account-export', version: 1 });
    expect(archive.records.filter((r) => r.type === 'message')).toHaveLength(messages.length);
    await expect(da.client.exportAccount()).rejects.toMatchObject({ code: 'E_RATE_LIMITED' });
  }, 60_000);

  it('needs a token', async () => {
    const res = await fetch(`${p.httpUrl}/v1/account/export`);
    expect(res.status).toBe(401);
    expect((await res.json()).error.code).toBe('E_AUTH_REQUIRED');
  });
});
