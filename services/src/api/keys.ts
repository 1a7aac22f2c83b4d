/**
 * The MLS key directory's routes (docs/E2EE-CHOICE.md: the server is MLS's Delivery Service). A
 * device publishes its identity (MLS credential and signature public key) and a pool of one-time
 * key packages plus a last-resort one; another user's device claims one package of each of a
 * user's devices to add them to a group. Everything is opaque bytes, carried as base64url: the
 * server never parses a key package and never sees a private key.
 *
 * Claims are rate-limited per claiming device, weighted by the users named (a drained pool would
 * force everyone onto the last-resort package), and blocked pairs get none of each other's. A
 * claim that leaves a device's pool under the low-water mark tells that device at once (a `keys`
 * envelope on its `live/` topic). A device's first identity, a change of it and its revocation
 * become `identity` events in its user's chats (services/src/workers/identity-events.ts).
 */
import type { FastifyRequest } from 'fastify';
import { ParleyError, isUserId } from '@parley/client-sdk/protocol';
import {
  KEY_LIMITS, schemas, type ClaimedDeviceKeys, type DeviceIdentityInfo, type IdentityPublished, type KeyPackageCount,
  type KeyPackagesUploaded, type UserIdentities,
} from '@parley/client-sdk/api-types';
import { userPairKey, type DeviceIdentity, type KeyPackage } from '../store/types.js';
import { parse, type RouteContext } from './context.js';

/** The claim limit's window. */
const CLAIM_WINDOW_SEC = 3600;
/**
 * An upload's body may exceed the API's general limit: a full batch of the largest key packages
 * in base64url, with room for the JSON around them.
 */
const UPLOAD_BODY_LIMIT = (KEY_LIMITS.packagesPerUpload + 1) * (Math.ceil((KEY_LIMITS.keyPackageBytes * 4) / 3) + KEY_LIMITS.refChars + 64) + 1024;

const toBytes = (b64url: string): Uint8Array => new Uint8Array(Buffer.from(b64url, 'base64url'));
const toB64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
const toPackage = (p: { ref: string; data: string }): KeyPackage => ({ ref: p.ref, data: toBytes(p.data) });

const identityInfo = (i: DeviceIdentity): DeviceIdentityInfo => ({
  deviceId: i.deviceId, credential: toB64(i.credential), signatureKey: toB64(i.signatureKey), changedAt: i.changedAt, changed: i.changed,
});

export function registerKeyRoutes(ctx: RouteContext): void {
  const { app, deps, opts, now, authDevice } = ctx;
  const { store, limiter, log } = deps;
  const { maxPackages, lowWater, claimsPerHour } = opts.keys;
  const poolState = (count: number, lastResort: boolean): KeyPackageCount => ({ count, low: count < lowWater, target: maxPackages, lastResort });

  app.put('/v1/keys/identity', async (req): Promise<IdentityPublished> => {
    const caller = await authDevice(req);
    const body = parse(schemas.publishIdentity, req.body);
    // What was there decides the event: none (added), other bytes (changed), the same (nothing).
    const [before] = await store.getIdentities([caller.deviceId]);
    const stored = await store.putIdentity({
      deviceId: caller.deviceId, userId: caller.userId, credential: toBytes(body.credential), signatureKey: toBytes(body.signatureKey),
    }, now());
    const change = before === undefined ? 'added' : stored.changed ? 'changed' : null;
    if (change) {
      // Held until the device has key packages (the others claim one on this event); a change
      // of identity dropped the old ones. Its next upload releases it. Queued after the store
      // write: should Redis fail right between, the request fails and a retry with the same
      // bytes is no change, so that one event is lost (nothing is ever written twice).
      const pool = change === 'added' ? await store.countKeyPackages(caller.deviceId) : { count: 0, lastResort: false };
      await deps.identityEvents.enqueue(
        { userId: caller.userId, deviceId: caller.deviceId, change, changedAt: stored.changedAt }, { hold: pool.count === 0 && !pool.lastResort },
      );
    }
    return { changed: stored.changed, changedAt: stored.changedAt };
  });

  app.post('/v1/keys/packages', { bodyLimit: UPLOAD_BODY_LIMIT }, async (req): Promise<KeyPackagesUploaded> => {
    const caller = await authDevice(req);
    const body = parse(schemas.uploadKeyPackages, req.body);
    const { added, count } = await store.addKeyPackages(
      { deviceId: caller.deviceId, userId: caller.userId }, body.packages.map(toPackage),
      body.lastResort ? toPackage(body.lastResort) : null, now(), maxPackages,
    );
    // A pool filled from empty may have identity events waiting for it (PUT /v1/keys/identity).
    // The upload stands either way: held events not released here go when their delay ends.
    if (count === added.length && (added.length > 0 || body.lastResort)) {
      const [identity] = await store.getIdentities([caller.deviceId]);
      if (identity) {
        await deps.identityEvents.release(caller.deviceId, identity.changedAt)
          .catch((err: unknown) => log.warn({ err }, 'key directory: could not release the identity events'));
      }
    }
    return { accepted: added, ...poolState(count, body.lastResort !== undefined || (await store.countKeyPackages(caller.deviceId)).lastResort) };
  });

  app.get('/v1/keys/packages/count', async (req): Promise<KeyPackageCount> => {
    const caller = await authDevice(req);
    parse(schemas.countKeyPackages, req.query);
    const { count, lastResort } = await store.countKeyPackages(caller.deviceId);
    return poolState(count, lastResort);
  });

  app.post('/v1/keys/claim', async (req, reply): Promise<{ devices: ClaimedDeviceKeys[] }> => {
    const caller = await authDevice(req);
    const body = parse(schemas.claimKeyPackages, req.body);
    const users = [...new Set(body.users)];
    // Only these devices (of the users named), when given: the others' pools are left alone.
    const only = body.devices ? new Set(body.devices) : null;
    // Checked before counting: a refused claim does not use up the rest of the hour's budget.
    const used = await limiter.peek(`keys:claim:${caller.deviceId}`);
    const window = used.count + users.length > claimsPerHour ? used : await limiter.take(`keys:claim:${caller.deviceId}`, CLAIM_WINDOW_SEC, users.length);
    if (window === used || window.count > claimsPerHour) {
      void reply.header('retry-after', String(Math.max(1, window.resetSec)));
      throw new ParleyError('E_RATE_LIMITED', `key package claims: at most ${claimsPerHour} users per hour; retry after ${window.resetSec} s`);
    }
    // A block either way: the pair gets nothing of each other (as an unknown user: left out).
    const blocked = await store.blockedPairs(users.filter((u) => u !== caller.userId).map((u): [string, string] => [caller.userId, u]));
    const allowed = users.filter((u) => !blocked.has(userPairKey(caller.userId, u)));
    // Active devices only, never the caller's own (it is the one adding the others).
    const devices = (await store.listDevicesOfUsers(allowed)).filter((d) => d.deviceId !== caller.deviceId && (only === null || only.has(d.deviceId)));
    const identities = new Map((await store.getIdentities(devices.map((d) => d.deviceId))).map((i) => [i.deviceId, i]));
    // A package without its device's identity is of no use: it stays in the pool.
    const claimed = new Map((await store.claimKeyPackages(devices.filter((d) => identities.has(d.deviceId)).map((d) => d.deviceId)))
      .map((c) => [c.deviceId, c]));
    // The devices this claim left low are told now (not awaited: the claim is made either way; a
    // device that misses it checks its count when it connects).
    const low = [...claimed.values()].filter((c) => c.remaining < lowWater);
    if (low.length > 0) {
      deps.notifyKeys(low.map((c) => ({ deviceId: c.deviceId, count: c.remaining, low: true })))
        .catch((err: unknown) => log.warn({ err }, 'key directory: could not send the replenish notices'));
    }
    return {
      devices: devices.map((d): ClaimedDeviceKeys => {
        const identity = identities.get(d.deviceId);
        const c = claimed.get(d.deviceId);
        return {
          userId: d.userId, deviceId: d.deviceId, identity: identity ? identityInfo(identity) : null,
          keyPackage: c ? { ref: c.ref, data: toB64(c.data) } : null, lastResort: c?.lastResort ?? false,
          low: identity !== undefined && (c === undefined || c.lastResort || c.remaining < lowWater),
        };
      }),
    };
  });

  /** The identities of these users' active devices, by user, each user's devices oldest first. */
  const identitiesOf = async (userIds: string[]): Promise<Map<string, DeviceIdentityInfo[]>> => {
    const devices = (await store.listDevicesOfUsers(userIds))
      .sort((a, b) => a.createdAt - b.createdAt || (a.deviceId < b.deviceId ? -1 : 1));
    const found = new Map((await store.getIdentities(devices.map((d) => d.deviceId))).map((i) => [i.deviceId, i]));
    const out = new Map<string, DeviceIdentityInfo[]>(userIds.map((u) => [u, []]));
    for (const d of devices) {
      const i = found.get(d.deviceId);
      if (i) out.get(d.userId)?.push(identityInfo(i));
    }
    return out;
  };

  // Many users' identities at once (a group's members, to check their security codes or build the
  // group): consumes nothing, so it is bounded by the body (KEY_LIMITS.usersPerClaim users), not rate-limited.
  app.post('/v1/keys/identities', async (req): Promise<{ users: UserIdentities[] }> => {
    const caller = await authDevice(req);
    const users = [...new Set(parse(schemas.getIdentities, req.body).users)];
    // A block either way, an unknown user, a user without identities: all an empty list, as the
    // single route's E_USER_NOT_FOUND does not tell a block from an unknown user either.
    const blocked = await store.blockedPairs(users.filter((u) => u !== caller.userId).map((u): [string, string] => [caller.userId, u]));
    const found = await identitiesOf(users.filter((u) => !blocked.has(userPairKey(caller.userId, u))));
    return { users: users.map((userId) => ({ userId, devices: found.get(userId) ?? [] })) };
  });

  // Every active device's identity, for safety numbers ("security codes").
  app.get('/v1/users/:userId/identities', async (req: FastifyRequest<{ Params: { userId: string } }>): Promise<UserIdentities> => {
    const caller = await authDevice(req);
    const { userId } = req.params;
    if (!isUserId(userId)) throw new ParleyError('E_VALIDATION', 'userId');
    if (!(await store.getUser(userId))) throw new ParleyError('E_USER_NOT_FOUND', userId);
    // A block either way: as for claims, the pair is unknown to each other here.
    if (userId !== caller.userId && (await store.blockedPairs([[caller.userId, userId]])).size > 0) {
      throw new ParleyError('E_USER_NOT_FOUND', userId);
    }
    // In device order (oldest first), those that published one.
    return { userId, devices: (await identitiesOf([userId])).get(userId) ?? [] };
  });
}
