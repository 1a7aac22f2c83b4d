/**
 * The MLS key directory through the SDK on a real platform (services/src/api/keys.ts): a device
 * publishes its identity and key packages; another user claims one package per active device
 * (never the same one twice, the last resort when the pool is empty, revoked devices and blocked
 * pairs left out); identities are listed for safety numbers; the claim rate is limited with
 * Retry-After; revoking a device and deleting an account remove the keys (checked through the
 * store's ports on the platform's own database file). The bytes are random stand-ins: the
 * server treats key packages as opaque, so real MLS encodings would go through the same way.
 * Also: the batch identity look-up, claims restricted to some devices, the `identity` events a
 * device's first identity, its change and its revocation write into its user's chats, the live
 * `keys` notice of a pool left low by a claim, and the identities in the account export.
 */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParleyApi, ParleyClient, ParleyError, type ChatMessage, type ClaimedDeviceKeys, type ExportRecord } from '@parley/client-sdk';
import { decode, liveTopic, newId, type Envelope } from '@parley/client-sdk/protocol';
import { startTestPlatform, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, type Recorded } from '../helpers/sdk.js';
import { createSqliteStore } from '../../services/src/store/sqlite.js';
import type { Store } from '../../services/src/store/types.js';

const MAX = 120;
const LOW = 5;
const CLAIMS_PER_HOUR = 60;

let tp: TestPlatform;
let store: Store;
let api: ParleyApi;
const rawClients: mqtt.MqttClient[] = [];

beforeAll(async () => {
  tp = await startTestPlatform({
    PARLEY_CODE_RATE_PER_IP: '1000',
    PARLEY_KEY_PACKAGES_MAX: String(MAX),
    PARLEY_KEY_PACKAGES_LOW: String(LOW),
    PARLEY_KEY_CLAIMS_PER_HOUR: String(CLAIMS_PER_HOUR),
  });
  // A second connection to the platform's database: what the ports hold, checked directly.
  store = createSqliteStore({ file: join(tp.dataDir, 'parley.sqlite') });
  await store.init();
  api = new ParleyApi(tp.httpUrl);
}, 60_000);

afterAll(async () => {
  for (const c of rawClients) await c.endAsync(true).catch(() => undefined);
  await closeAll();
  await store?.close();
  await tp?.close();
});

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64url');
/** A stand-in key package: random bytes, and its "KeyPackageRef" (a SHA-256 of them). */
function keyPackage(size = 324): { ref: string; data: string } {
  const data = randomBytes(size);
  return { ref: createHash('sha256').update(data).digest('base64url'), data: b64(data) };
}
const identity = (): { credential: string; signatureKey: string } => ({ credential: b64(randomBytes(40)), signatureKey: b64(randomBytes(32)) });
const client = (r: Registered): ParleyClient => device(tp.mqttUrl, r, { apiUrl: tp.httpUrl }).client;
const codeOf = (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(() => undefined, (e: unknown) => (e instanceof ParleyError ? e.code : String(e)));
const byDevice = (ds: ClaimedDeviceKeys[], deviceId: string): ClaimedDeviceKeys | undefined => ds.find((d) => d.deviceId === deviceId);

describe('publishing', () => {
  it('publishes an identity (a repeat is no change, other bytes are) and reads it back', async () => {
    const alice = await tp.register();
    const a = client(alice);
    const id1 = identity();
    const first = await a.publishIdentity(id1);
    expect(first.changed).toBe(false);
    expect(await a.publishIdentity(id1)).toEqual(first);
    const id2 = identity();
    const second = await a.publishIdentity(id2);
    expect(second.changed).toBe(true);
    expect(second.changedAt).toBeGreaterThanOrEqual(first.changedAt);

    const listed = await client(await tp.register()).getIdentities(alice.userId);
    expect(listed).toEqual({ userId: alice.userId, devices: [{ deviceId: alice.deviceId, ...id2, changedAt: second.changedAt, changed: true }] });
    // Stored as the bytes that were sent, nothing more.
    const [stored] = await store.getIdentities([alice.deviceId]);
    expect(b64(stored!.credential)).toBe(id2.credential);
    expect(b64(stored!.signatureKey)).toBe(id2.signatureKey);
  });

  it('uploads key packages: counted, duplicates ignored, capped, told when low; bad input refused', async () => {
    const r = await tp.register();
    const c = client(r);
    expect(await c.countKeyPackages()).toEqual({ count: 0, low: true, target: MAX, lastResort: false });

    const batch = Array.from({ length: 4 }, () => keyPackage());
    expect(await c.uploadKeyPackages({ packages: batch })).toEqual({
      accepted: batch.map((p) => p.ref), count: 4, low: true, target: MAX, lastResort: false,
    });
    const more = [batch[0]!, keyPackage(), keyPackage()];
    const up = await c.uploadKeyPackages({ packages: more, lastResort: keyPackage() });
    expect(up).toEqual({ accepted: [more[1]!.ref, more[2]!.ref], count: 6, low: false, target: MAX, lastResort: true });
    expect(await c.countKeyPackages()).toEqual({ count: 6, low: false, target: MAX, lastResort: true });

    // A full batch of the largest packages (100 x 8 KiB: over the API's usual body limit) fits;
    // then the pool stops at its maximum.
    const big = Array.from({ length: 100 }, () => keyPackage(8192));
    expect((await c.uploadKeyPackages({ packages: big })).accepted).toHaveLength(100);
    const over = await c.uploadKeyPackages({ packages: Array.from({ length: 30 }, () => keyPackage()) });
    expect(over.accepted).toHaveLength(MAX - 106);
    expect(over.count).toBe(MAX);

    for (const bad of [
      { packages: [] },
      { packages: Array.from({ length: 101 }, () => keyPackage(8)) },
      { packages: [keyPackage(8193)] },
      { packages: [{ ref: 'r'.repeat(65), data: 'AAAA' }] },
      { packages: [{ ref: 'ok', data: 'not base64url!' }] },
      { packages: [{ ref: 'ok', data: 'AAAAA' }] },
    ]) expect(await codeOf(c.uploadKeyPackages(bad)), JSON.stringify(bad).slice(0, 80)).toBe('E_VALIDATION');
    expect(await codeOf(c.publishIdentity({ credential: b64(randomBytes(4097)), signatureKey: b64(randomBytes(32)) }))).toBe('E_VALIDATION');
    expect(await codeOf(c.publishIdentity({ credential: 'AAAA', signatureKey: '' }))).toBe('E_VALIDATION');
    // Only a device token gets in.
    expect(await codeOf(new ParleyClient({ url: tp.mqttUrl, deviceId: r.deviceId, token: `${r.deviceId}.wrong`, apiUrl: tp.httpUrl }).countKeyPackages())).toBe('E_AUTH_TOKEN');
  });
});

describe('claiming', () => {
  it('gives one package per active device, never twice, then the last resort; devices without keys get null', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    const bob2 = await tp.linkDevice(bob.token, 'laptop');
    const bob3 = await tp.linkDevice(bob.token, 'tablet (no keys yet)');
    const [b1, b2] = [client(bob), client(bob2)];
    const id1 = identity();
    await b1.publishIdentity(id1);
    await b2.publishIdentity(identity());
    const p1 = [keyPackage(), keyPackage()];
    const last = keyPackage();
    await b1.uploadKeyPackages({ packages: p1, lastResort: last });
    const p2 = [keyPackage()];
    await b2.uploadKeyPackages({ packages: p2 });
    const a = client(alice);

    const first = await a.claimKeyPackages([bob.userId, bob.userId]);
    expect(first.map((d) => d.deviceId).sort()).toEqual([bob.deviceId, bob2.deviceId, bob3.deviceId].sort());
    expect(byDevice(first, bob.deviceId)).toEqual({
      userId: bob.userId, deviceId: bob.deviceId, identity: { deviceId: bob.deviceId, ...id1, changedAt: expect.any(Number), changed: false },
      keyPackage: p1[0], lastResort: false, low: true,
    });
    expect(byDevice(first, bob2.deviceId)).toMatchObject({ keyPackage: p2[0], lastResort: false, low: true });
    expect(byDevice(first, bob3.deviceId)).toEqual({ userId: bob.userId, deviceId: bob3.deviceId, identity: null, keyPackage: null, lastResort: false, low: false });

    const second = await a.claimKeyPackages([bob.userId]);
    expect(byDevice(second, bob.deviceId)).toMatchObject({ keyPackage: p1[1], lastResort: false });
    // bob2's pool is empty and it has no last resort.
    expect(byDevice(second, bob2.deviceId)).toMatchObject({ keyPackage: null, lastResort: false, low: true });
    // bob's pool is empty: his last resort, handed out again and again.
    for (let i = 0; i < 2; i++) expect(byDevice(await a.claimKeyPackages([bob.userId]), bob.deviceId)).toMatchObject({ keyPackage: last, lastResort: true, low: true });
    expect(await b1.countKeyPackages()).toEqual({ count: 0, low: true, target: MAX, lastResort: true });

    // The claimer's own device is left out; his other devices are listed.
    const alice2 = await tp.linkDevice(alice.token);
    expect((await a.claimKeyPackages([alice.userId])).map((d) => d.deviceId)).toEqual([alice2.deviceId]);
    // Unknown users: nothing.
    expect(await a.claimKeyPackages([newId('user')])).toEqual([]);
  });

  it('concurrent claimers never get the same package', async () => {
    const carol = await tp.register();
    const c = client(carol);
    await c.publishIdentity(identity());
    const pool = Array.from({ length: 20 }, () => keyPackage());
    await c.uploadKeyPackages({ packages: pool });
    const claimers = [client(await tp.register()), client(await tp.register())];
    const got = (await Promise.all(Array.from({ length: 24 }, (_, i) => claimers[i % 2]!.claimKeyPackages([carol.userId])))).flat();
    const refs = got.flatMap((d) => (d.keyPackage ? [d.keyPackage.ref] : []));
    expect(refs.sort()).toEqual(pool.map((p) => p.ref).sort());
    expect(got.filter((d) => d.keyPackage === null)).toHaveLength(4);
  });

  it('leaves revoked devices out, and their keys are removed', async () => {
    const dan = await tp.register();
    const dan2 = await tp.linkDevice(dan.token);
    const d2 = client(dan2);
    await d2.publishIdentity(identity());
    await d2.uploadKeyPackages({ packages: [keyPackage(), keyPackage()], lastResort: keyPackage() });
    await client(dan).revokeDevice(dan2.deviceId);

    expect(await store.getIdentities([dan2.deviceId])).toEqual([]);
    expect(await store.countKeyPackages(dan2.deviceId)).toEqual({ count: 0, lastResort: false });
    const claimed = await client(await tp.register()).claimKeyPackages([dan.userId]);
    expect(claimed.map((d) => d.deviceId)).toEqual([dan.deviceId]);
    expect((await client(await tp.register()).getIdentities(dan.userId)).devices).toEqual([]);
  });

  it('blocked pairs get none of each other\'s packages, either way', async () => {
    const erin = await tp.register();
    const frank = await tp.register();
    const [e, f] = [client(erin), client(frank)];
    for (const c of [e, f]) {
      await c.publishIdentity(identity());
      await c.uploadKeyPackages({ packages: [keyPackage(), keyPackage()] });
    }
    await e.blockUser(frank.userId);
    expect(await f.claimKeyPackages([erin.userId])).toEqual([]);
    expect(await e.claimKeyPackages([frank.userId])).toEqual([]);
    // Nothing was taken from either pool.
    expect((await e.countKeyPackages()).count).toBe(2);
    expect((await f.countKeyPackages()).count).toBe(2);
    // Nor their identities (as an unknown user).
    expect(await codeOf(f.getIdentities(erin.userId))).toBe('E_USER_NOT_FOUND');
    expect(await codeOf(e.getIdentities(frank.userId))).toBe('E_USER_NOT_FOUND');
    await e.unblockUser(frank.userId);
    expect((await f.getIdentities(erin.userId)).devices).toHaveLength(1);
    expect((await f.claimKeyPackages([erin.userId]))[0]?.keyPackage).not.toBeNull();
  });

  it('limits the users a device claims per hour, with Retry-After', async () => {
    const greg = await tp.register();
    const g = client(greg);
    const ids = (n: number): string[] => Array.from({ length: n }, () => newId('user'));
    expect(await g.claimKeyPackages(ids(CLAIMS_PER_HOUR - 10))).toEqual([]);
    expect(await codeOf(g.claimKeyPackages(ids(20)))).toBe('E_RATE_LIMITED');
    // A refused claim used up nothing: what is left of the hour can still be claimed.
    expect(await g.claimKeyPackages(ids(10))).toEqual([]);
    const res = await fetch(`${tp.httpUrl}/v1/keys/claim`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${greg.token}` }, body: JSON.stringify({ users: ids(1) }),
    });
    expect(res.status).toBe(429);
    const retryAfter = Number(res.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('E_RATE_LIMITED');
    // Per device: another device is not held back.
    expect(await client(await tp.register()).claimKeyPackages(ids(CLAIMS_PER_HOUR))).toEqual([]);
    // At most 1,024 users per claim.
    expect(await codeOf(client(await tp.register()).claimKeyPackages(ids(1025)))).toBe('E_VALIDATION');
  });
});

describe('identities and deletion', () => {
  it('lists every active device\'s identity; unknown users are refused', async () => {
    const hana = await tp.register();
    const hana2 = await tp.linkDevice(hana.token);
    const hana3 = await tp.linkDevice(hana.token);
    const [i1, i3] = [identity(), identity()];
    await client(hana).publishIdentity(i1);
    await client(hana3).publishIdentity(i3);
    const viewer = client(await tp.register());
    const got = await viewer.getIdentities(hana.userId);
    expect(got.devices.map(({ deviceId, credential, signatureKey }) => ({ deviceId, credential, signatureKey })))
      .toEqual([{ deviceId: hana.deviceId, ...i1 }, { deviceId: hana3.deviceId, ...i3 }]);
    expect(got.devices.some((d) => d.deviceId === hana2.deviceId)).toBe(false);
    expect(await codeOf(viewer.getIdentities(newId('user')))).toBe('E_USER_NOT_FOUND');
    expect(await codeOf(viewer.getIdentities('not-a-user'))).toBe('E_VALIDATION');
  });

  it('deleting the account removes every identity and key package of its devices', async () => {
    const ivy = await tp.register();
    const ivy2 = await tp.linkDevice(ivy.token);
    const [c1, c2] = [client(ivy), client(ivy2)];
    for (const c of [c1, c2]) {
      await c.publishIdentity(identity());
      await c.uploadKeyPackages({ packages: [keyPackage(), keyPackage()], lastResort: keyPackage() });
    }
    const deviceIds = [ivy.deviceId, ivy2.deviceId];
    expect(await store.getIdentities(deviceIds)).toHaveLength(2);

    await c1.requestAccountDeletion();
    await c1.deleteAccount(tp.codes.get(ivy.phone)!);
    expect(await store.getIdentities(deviceIds)).toEqual([]);
    for (const d of deviceIds) expect(await store.countKeyPackages(d)).toEqual({ count: 0, lastResort: false });
    expect(await client(await tp.register()).claimKeyPackages([ivy.userId])).toEqual([]);
  });
});

describe('batch identity look-up and claims of some devices', () => {
  it('lists many users\' identities at once, as the single route does; unknown and blocked users get an empty list', async () => {
    const [jo, kim, lee, me] = [await tp.register(), await tp.register(), await tp.register(), await tp.register()];
    const jo2 = await tp.linkDevice(jo.token);
    const jo3 = await tp.linkDevice(jo.token);
    const [i1, i3, ik, il, im] = [identity(), identity(), identity(), identity(), identity()];
    await client(jo).publishIdentity(i1);
    await client(jo3).publishIdentity(i3);
    await client(kim).publishIdentity(ik);
    await client(lee).publishIdentity(il);
    await client(me).publishIdentity(im);
    await client(lee).blockUser(me.userId);
    const unknown = newId('user');

    const got = await api.listIdentities([jo.userId, unknown, kim.userId, jo.userId, lee.userId, me.userId], me.token);
    // In the order asked, each user once.
    expect(got.map((u) => u.userId)).toEqual([jo.userId, unknown, kim.userId, lee.userId, me.userId]);
    const pick = (u: { devices: Array<{ deviceId: string; credential: string; signatureKey: string }> }) =>
      u.devices.map(({ deviceId, credential, signatureKey }) => ({ deviceId, credential, signatureKey }));
    expect(pick(got[0]!)).toEqual([{ deviceId: jo.deviceId, ...i1 }, { deviceId: jo3.deviceId, ...i3 }]);
    expect(got[0]!.devices.some((d) => d.deviceId === jo2.deviceId)).toBe(false);
    expect(got[0]).toEqual(await client(me).getIdentities(jo.userId));
    expect(got[1]).toEqual({ userId: unknown, devices: [] });
    expect(pick(got[2]!)).toEqual([{ deviceId: kim.deviceId, ...ik }]);
    // lee blocked the caller: nothing of either for the other.
    expect(got[3]).toEqual({ userId: lee.userId, devices: [] });
    expect((await api.listIdentities([me.userId], lee.token))[0]).toEqual({ userId: me.userId, devices: [] });
    // The caller's own (all his devices, this one included).
    expect(pick(got[4]!)).toEqual([{ deviceId: me.deviceId, ...im }]);

    // It takes nothing from anyone's pool, and it is not counted as a claim.
    await client(kim).uploadKeyPackages({ packages: [keyPackage(), keyPackage()] });
    for (let i = 0; i < 3; i++) await api.listIdentities([kim.userId], me.token);
    expect((await client(kim).countKeyPackages()).count).toBe(2);

    for (const bad of [[], Array.from({ length: 1025 }, () => newId('user')), ['not-a-user'], [kim.deviceId]]) {
      expect(await codeOf(api.listIdentities(bad, me.token)), JSON.stringify(bad).slice(0, 60)).toBe('E_VALIDATION');
    }
    expect(await codeOf(api.listIdentities([kim.userId], `${me.deviceId}.wrong`))).toBe('E_AUTH_TOKEN');
  });

  it('claims only the devices named (of the users named): the others keep their packages', async () => {
    const [mia, ned] = [await tp.register(), await tp.register()];
    const mia2 = await tp.linkDevice(mia.token);
    const mia3 = await tp.linkDevice(mia.token);
    for (const r of [mia, mia2, mia3, ned]) {
      await client(r).publishIdentity(identity());
      await client(r).uploadKeyPackages({ packages: [keyPackage(), keyPackage()] });
    }
    const claimer = await tp.register();
    const got = await api.claimKeyPackages([mia.userId], claimer.token, { devices: [mia3.deviceId] });
    expect(got.map((d) => d.deviceId)).toEqual([mia3.deviceId]);
    expect(got[0]).toMatchObject({ userId: mia.userId, keyPackage: expect.any(Object), lastResort: false });
    expect((await store.countKeyPackages(mia3.deviceId)).count).toBe(1);
    for (const d of [mia.deviceId, mia2.deviceId, ned.deviceId]) expect((await store.countKeyPackages(d)).count).toBe(2);

    // A device of a user not named, or unknown, is not claimed; two of one user are.
    expect(await api.claimKeyPackages([mia.userId], claimer.token, { devices: [ned.deviceId, newId('device')] })).toEqual([]);
    expect((await store.countKeyPackages(ned.deviceId)).count).toBe(2);
    const two = await api.claimKeyPackages([mia.userId, ned.userId], claimer.token, { devices: [mia.deviceId, ned.deviceId] });
    expect(two.map((d) => d.deviceId).sort()).toEqual([mia.deviceId, ned.deviceId].sort());
    expect((await store.countKeyPackages(mia2.deviceId)).count).toBe(2);

    for (const devices of [[], [mia.userId], ['nope'], Array.from({ length: 1025 }, () => newId('device'))]) {
      expect(await codeOf(api.claimKeyPackages([mia.userId], claimer.token, { devices })), JSON.stringify(devices).slice(0, 60)).toBe('E_VALIDATION');
    }
  });
});

/** An SDK client without end-to-end encryption of its own: it only watches the chats' streams. */
const watcher = (r: Registered): Recorded => device(tp.mqttUrl, r, { apiUrl: tp.httpUrl, e2ee: false });
const identityEvents = (r: Recorded, chatId: string): Array<{ from: string; device: string; change: string }> =>
  r.messages.flatMap((m) => (m.chatId === chatId && m.event?.type === 'identity' ? [{ from: m.from, device: m.event.device, change: m.event.change }] : []));
/** What a device saw of a chat, in the order it saw it: texts, and events by their type (identity ones by their change). */
const seen = (r: Recorded, chatId: string): string[] =>
  r.messages.filter((m: ChatMessage) => m.chatId === chatId).map((m) => (m.event ? (m.event.type === 'identity' ? `identity:${m.event.change}` : m.event.type) : String(m.text)));

describe('identity events in chats', () => {
  it('a device\'s first identity, its change and its revocation reach every member device of each chat, in order with the messages; a repeat writes nothing', async () => {
    const [alice, bob, carol] = [await tp.register(), await tp.register(), await tp.register()];
    const laptop = await tp.linkDevice(alice.token, 'laptop');
    const [a1, b1, c1] = [watcher(alice), watcher(bob), watcher(carol)];
    await Promise.all([a1, b1, c1].map((d) => d.client.connect()));
    const direct = await b1.client.createChat(alice.userId);
    const group = await a1.client.createChat({ name: 'keys', members: [bob.userId, carol.userId] });
    // A chat alice left gets nothing.
    const old = await c1.client.createChat({ name: 'old', members: [alice.userId] });
    await a1.client.leaveGroup(old.chatId);
    await b1.client.sendMessage(direct.chatId, 'before');
    await until(() => a1.messages.some((m) => m.text === 'before'), 15_000, 'before');

    // The laptop publishes its first identity: `added`, from alice, in each of her chats, to
    // every member's devices (hers too). Not before it has key packages: the others claim one of
    // them when they see the event (a device publishes its identity first, then its packages).
    const first = identity();
    const l = client(laptop);
    await l.publishIdentity(first);
    await new Promise((r) => setTimeout(r, 300));
    expect(identityEvents(b1, direct.chatId)).toEqual([]);
    await l.uploadKeyPackages({ packages: [keyPackage(), keyPackage()] });
    const added = { from: alice.userId, device: laptop.deviceId, change: 'added' };
    const sees = (r: Recorded, chatId: string, n: number) => identityEvents(r, chatId).length >= n;
    await until(() => sees(b1, direct.chatId, 1) && sees(b1, group.chatId, 1) && sees(c1, group.chatId, 1) && sees(a1, direct.chatId, 1) && sees(a1, group.chatId, 1),
      15_000, 'added everywhere');
    for (const [r, chatId] of [[b1, direct.chatId], [b1, group.chatId], [c1, group.chatId], [a1, group.chatId]] as const) {
      expect(identityEvents(r, chatId)).toEqual([added]);
    }
    // Also a chatUpdate of type `event`, as for a group change.
    expect(b1.updates.some((u) => u.type === 'event' && u.chatId === direct.chatId && u.by === alice.userId && u.event.type === 'identity')).toBe(true);

    // The same bytes again: nothing. What alice sends next is the next thing in the chat.
    await l.publishIdentity(first);
    await a1.client.sendMessage(direct.chatId, 'after the repeat');
    await until(() => b1.messages.some((m) => m.text === 'after the repeat'), 15_000, 'after the repeat');

    // Other bytes: `changed` (the "security code changed" notice), once the device has uploaded
    // packages made with it (the old ones were dropped). Then the revocation: `removed`.
    await l.publishIdentity(identity());
    await l.uploadKeyPackages({ packages: [keyPackage()] });
    await until(() => sees(b1, direct.chatId, 2) && sees(c1, group.chatId, 2), 15_000, 'changed');
    await a1.client.sendMessage(group.chatId, 'new code');
    await client(alice).revokeDevice(laptop.deviceId);
    await until(() => sees(b1, direct.chatId, 3) && sees(b1, group.chatId, 3) && sees(c1, group.chatId, 3) && sees(a1, group.chatId, 3), 15_000, 'removed');
    await until(() => c1.messages.some((m) => m.text === 'new code'), 15_000, 'new code');

    expect(seen(b1, direct.chatId)).toEqual(['identity:added', 'after the repeat', 'identity:changed', 'identity:removed']);
    expect(seen(c1, group.chatId)).toEqual(['created', 'identity:added', 'identity:changed', 'new code', 'identity:removed']);
    expect(seen(a1, group.chatId)).toEqual(['created', 'identity:added', 'identity:changed', 'identity:removed']);
    for (const [r, chatId] of [[b1, direct.chatId], [c1, group.chatId], [a1, group.chatId]] as const) {
      const seqs = r.messages.filter((m) => m.chatId === chatId).map((m) => m.seq);
      expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
      expect(identityEvents(r, chatId).map((e) => e.change)).toEqual(['added', 'changed', 'removed']);
    }
    // In the store: one event per change and chat; none after alice left.
    const stored = async (chatId: string) => (await store.history(chatId, 0, 100)).filter((m) => m.event?.type === 'identity');
    expect(await stored(direct.chatId)).toHaveLength(3);
    expect(await stored(group.chatId)).toHaveLength(3);
    expect(await stored(old.chatId)).toHaveLength(0);
    expect((await stored(direct.chatId)).every((m) => m.senderUserId === alice.userId && m.senderDeviceId === '')).toBe(true);
    // Its history over HTTP shows them too.
    const history = await b1.client.readNewMessages(direct.chatId);
    expect(history.messages.filter((m) => m.event?.type === 'identity').map((m) => m.event)).toEqual([
      { type: 'identity', device: laptop.deviceId, change: 'added' }, { type: 'identity', device: laptop.deviceId, change: 'changed' },
      { type: 'identity', device: laptop.deviceId, change: 'removed' },
    ]);

    // A device that never published an identity is revoked without a word.
    const tablet = await tp.linkDevice(alice.token, 'tablet');
    await client(alice).revokeDevice(tablet.deviceId);
    await a1.client.sendMessage(direct.chatId, 'last');
    await until(() => b1.messages.some((m) => m.text === 'last'), 15_000, 'last');
    expect(identityEvents(b1, direct.chatId)).toHaveLength(3);
  }, 60_000);

  it('deleting an account writes its `left` messages and no identity events', async () => {
    const [olga, pia] = [await tp.register(), await tp.register()];
    const olga2 = await tp.linkDevice(olga.token);
    const p1 = watcher(pia);
    await p1.client.connect();
    const direct = await p1.client.createChat(olga.userId);
    const group = await p1.client.createChat({ name: 'g', members: [olga.userId] });
    for (const r of [olga, olga2]) {
      await client(r).publishIdentity(identity());
      await client(r).uploadKeyPackages({ packages: [keyPackage()] });
    }
    await until(() => identityEvents(p1, direct.chatId).length === 2 && identityEvents(p1, group.chatId).length === 2, 15_000, 'added');

    const o = client(olga);
    await o.requestAccountDeletion();
    await o.deleteAccount(tp.codes.get(olga.phone)!);
    await until(() => seen(p1, direct.chatId).includes('left') && seen(p1, group.chatId).includes('left'), 15_000, 'left');
    await p1.client.sendMessage(group.chatId, 'still here');
    await until(async () => (await store.history(group.chatId, 0, 100)).some((m) => m.body === 'still here'), 15_000, 'stored');
    for (const chatId of [direct.chatId, group.chatId]) {
      expect((await store.history(chatId, 0, 100)).filter((m) => m.event?.type === 'identity').map((m) => (m.event as { change: string }).change))
        .toEqual(['added', 'added']);
    }
    expect(seen(p1, group.chatId).slice(-1)).toEqual(['left']);
  }, 30_000);
});

describe('the live `keys` notice', () => {
  it('tells a connected device at once when a claim leaves its pool under the low-water mark', async () => {
    const [quinn, claimer] = [await tp.register(), await tp.register()];
    const q = client(quinn);
    await q.publishIdentity(identity());
    await q.uploadKeyPackages({ packages: Array.from({ length: LOW + 1 }, () => keyPackage()), lastResort: keyPackage() });
    // The device's own connection, subscribed to its live/ topic as the SDK is.
    const raw = await mqtt.connectAsync(tp.mqttUrl, { clientId: quinn.deviceId, username: quinn.deviceId, password: quinn.token, clean: false, reconnectPeriod: 0 });
    rawClients.push(raw);
    const live: Envelope[] = [];
    raw.on('message', (topic, payload) => { if (topic === liveTopic(quinn.deviceId)) live.push(decode(new Uint8Array(payload))); });
    await raw.subscribeAsync(liveTopic(quinn.deviceId), { qos: 0 });
    const c = client(claimer);

    // LOW left: not under the mark yet, nothing said.
    expect((await c.claimKeyPackages([quinn.userId]))[0]).toMatchObject({ low: false });
    // LOW - 1 left: told.
    expect((await c.claimKeyPackages([quinn.userId]))[0]).toMatchObject({ low: true });
    await until(() => live.length >= 1, 10_000, 'keys notice');
    expect(live).toEqual([{ kind: 'keys', count: LOW - 1, low: true }]);
    // Each claim that leaves it low says so again, down to the last resort.
    for (let i = 0; i < LOW; i++) await c.claimKeyPackages([quinn.userId]);
    await until(() => live.length >= LOW + 1, 10_000, 'every notice');
    expect(live.map((e) => (e.kind === 'keys' ? e.count : -1))).toEqual([LOW - 1, ...Array.from({ length: LOW - 1 }, (_, i) => LOW - 2 - i), 0]);
    // The device uploads more: the next claim leaves it above the mark, and says nothing.
    await q.uploadKeyPackages({ packages: Array.from({ length: LOW + 2 }, () => keyPackage()) });
    await c.claimKeyPackages([quinn.userId]);
    const before = live.length;
    await c.claimKeyPackages([quinn.userId]); // LOW left
    await new Promise((r) => setTimeout(r, 300));
    expect(live).toHaveLength(before);
  });
});

describe('the account export', () => {
  it('has the identities of his devices, after the devices', async () => {
    const rae = await tp.register();
    const rae2 = await tp.linkDevice(rae.token);
    const rae3 = await tp.linkDevice(rae.token);
    const [i1, i2] = [identity(), identity()];
    const p1 = await client(rae).publishIdentity(i1);
    await client(rae2).publishIdentity(identity());
    const p2 = await client(rae2).publishIdentity(i2);
    await client(rae3).publishIdentity(identity());
    await client(rae).revokeDevice(rae3.deviceId);

    const records: ExportRecord[] = [];
    for await (const r of api.exportAccountRecords(rae.token)) records.push(r);
    const types = records.map((r) => r.type);
    expect(types.lastIndexOf('device')).toBeLessThan(types.indexOf('identity'));
    expect(records.filter((r) => r.type === 'identity')).toEqual([
      { type: 'identity', deviceId: rae.deviceId, ...i1, changedAt: p1.changedAt },
      { type: 'identity', deviceId: rae2.deviceId, ...i2, changedAt: p2.changedAt },
    ]);
    expect(records.at(-1)).toMatchObject({ type: 'end', counts: { device: 3, identity: 2 } });
  });
});
