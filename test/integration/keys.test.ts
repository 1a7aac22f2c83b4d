/**
 * The MLS key directory through the SDK on a real platform (services/src/api/keys.ts): a device
 * publishes its identity and key packages; another user claims one package per active device
 * (never the same one twice, the last resort when the pool is empty, revoked devices and blocked
 * pairs left out); identities are listed for safety numbers; the claim rate is limited with
 * Retry-After; revoking a device and deleting an account remove the keys (checked through the
 * store's ports on the platform's own database file). The bytes are random stand-ins: the
 * server treats key packages as opaque, so real MLS encodings would go through the same way.
 */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParleyClient, ParleyError, type ClaimedDeviceKeys } from '@parley/client-sdk';
import { newId } from '@parley/client-sdk/protocol';
import { startTestPlatform, type Registered, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device } from '../helpers/sdk.js';
import { createSqliteStore } from '../../services/src/store/sqlite.js';
import type { Store } from '../../services/src/store/types.js';

const MAX = 120;
const LOW = 5;
const CLAIMS_PER_HOUR = 60;

let tp: TestPlatform;
let store: Store;

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
}, 60_000);

afterAll(async () => {
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
