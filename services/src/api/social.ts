/**
 * Social routes: contacts discovery (`POST /v1/contacts/lookup`, phone hashes only, rate-limited),
 * the contacts list, the profile (own and others', as their privacy allows), the avatar's download
 * URL, privacy settings, and blocking. The privacy rules are in services/src/social/privacy.ts.
 *
 * What the server keeps of an uploaded address book: nothing. The hashes are matched against the
 * users' phone hashes in memory and dropped (never stored, never logged); with `save` (the
 * default) the matched users' ids become the caller's contacts, and that list is all that stays.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ParleyError, isUserId } from '@parley/client-sdk/protocol';
import { schemas, type ContactMatch, type PrivacySettings, type ProfileInfo } from '@parley/client-sdk/api-types';
import type { Store } from '../store/types.js';
import { requireUsersExist } from '../store/users-exist.js';
import { allowedBy } from '../social/privacy.js';
import type { LimitVerdict } from '../social/contact-limits.js';
import { parse, type RouteContext } from './context.js';

type UserParams = { Params: { userId: string } };

function userIdOf(req: FastifyRequest<UserParams>): string {
  if (!isUserId(req.params.userId)) throw new ParleyError('E_VALIDATION', 'userId');
  return req.params.userId;
}

/**
 * A user's profile as `viewerId` may see it: the name always (as WhatsApp shows a sender's name
 * to anyone he writes to, blocked or not); about and photo as his privacy settings allow, and
 * never to a user he blocked.
 */
export async function profileFor(store: Store, userId: string, viewerId: string): Promise<ProfileInfo> {
  const profile = await store.getProfile(userId);
  const base = { userId, name: profile?.name ?? '' };
  if (userId === viewerId) return { ...base, about: profile?.about ?? '', avatar: profile?.avatar ?? null };
  if (!profile) return { ...base, about: null, avatar: null };
  const privacies = await store.getPrivacies([userId]);
  const [photo, about] = await Promise.all([
    profile.avatar ? allowedBy(store, [userId], viewerId, 'photo', privacies) : Promise.resolve(new Set<string>()),
    profile.about ? allowedBy(store, [userId], viewerId, 'about', privacies) : Promise.resolve(new Set<string>()),
  ]);
  return { ...base, about: about.has(userId) ? profile.about : null, avatar: photo.has(userId) ? profile.avatar : null };
}

export function registerSocialRoutes(ctx: RouteContext): void {
  const { app, deps, now, authDevice } = ctx;
  const { store, attachments } = deps;

  // Contacts discovery: which of these phone hashes are registered users. Limited per user
  // (hashes per day) and per client address (requests per hour), cluster-wide.
  app.post('/v1/contacts/lookup', async (req, reply: FastifyReply) => {
    const caller = await authDevice(req);
    const body = parse(schemas.contactsLookup, req.body);
    const hashes = [...new Set(body.hashes)];
    let verdict: LimitVerdict;
    try {
      verdict = await deps.contactLimiter.consume(caller.userId, req.ip, hashes.length);
    } catch (err) {
      req.log.error({ err: err instanceof Error ? err.message : String(err) }, 'contacts rate limiter unavailable');
      throw new ParleyError('E_UNAVAILABLE', 'rate limiter');
    }
    if (!verdict.ok) {
      req.log.warn({ userId: caller.userId, ip: req.ip, scope: verdict.scope }, 'contacts look-up rate-limited');
      void reply.header('retry-after', String(verdict.retryAfterSec));
      throw new ParleyError('E_RATE_LIMITED', `contacts look-ups per ${verdict.scope}: retry after ${verdict.retryAfterSec} s`);
    }
    const matches: ContactMatch[] = (await store.getUsersByPhoneHashes(hashes)).map((u) => ({ hash: u.phoneHash, userId: u.userId }));
    if (body.save !== false && matches.length) await store.addContacts(caller.userId, matches.map((m) => m.userId), now());
    return { matches };
  });

  app.get('/v1/contacts', async (req) => {
    const caller = await authDevice(req);
    return { contacts: await store.listContacts(caller.userId) };
  });

  // Adds and removes contacts by userId (e.g. a user met in a group).
  app.post('/v1/contacts', async (req) => {
    const caller = await authDevice(req);
    const body = parse(schemas.contacts, req.body);
    const add = [...new Set(body.add ?? [])].filter((u) => u !== caller.userId);
    const remove = [...new Set(body.remove ?? [])];
    if (add.some((u) => remove.includes(u))) throw new ParleyError('E_VALIDATION', 'a user is both added and removed');
    await requireUsersExist(store, add);
    if (remove.length) await store.removeContacts(caller.userId, remove);
    if (add.length) await store.addContacts(caller.userId, add, now());
    return { contacts: await store.listContacts(caller.userId) };
  });

  app.get('/v1/profile', async (req) => {
    const caller = await authDevice(req);
    return profileFor(store, caller.userId, caller.userId);
  });

  // Name (1-25 characters), about (at most 139), avatar (an image attachment of the caller's,
  // ready; null removes it). The avatar is kept past the media retention while it is the avatar.
  app.patch('/v1/profile', async (req) => {
    const caller = await authDevice(req);
    const body = parse(schemas.profile, req.body);
    const before = body.avatar !== undefined ? await store.getProfile(caller.userId) : null;
    if (body.avatar) await attachments.pinAvatar(caller.userId, body.avatar);
    const after = await store.putProfile(caller.userId, {
      ...(body.name !== undefined ? { name: body.name } : {}),
      ...(body.about !== undefined ? { about: body.about } : {}),
      ...(body.avatar !== undefined ? { avatar: body.avatar } : {}),
    }, now());
    // The photo it replaced expires like any other media from now on. (Two concurrent changes of
    // the photo can leave the losing one pinned until the account goes: rare, and bounded.)
    if (before?.avatar && before.avatar !== after.avatar) await attachments.unpinAvatar(before.avatar);
    return profileFor(store, caller.userId, caller.userId);
  });

  app.get<UserParams>('/v1/users/:userId/profile', async (req) => {
    const caller = await authDevice(req);
    const userId = userIdOf(req);
    if (!(await store.getUser(userId))) throw new ParleyError('E_USER_NOT_FOUND', userId);
    return profileFor(store, userId, caller.userId);
  });

  // A short-lived download URL of the user's photo, when his privacy lets the caller see it
  // (E_NOT_FOUND otherwise, as when he has none: the caller learns nothing more).
  app.get<UserParams>('/v1/users/:userId/avatar', async (req) => {
    const caller = await authDevice(req);
    const userId = userIdOf(req);
    const q = parse(schemas.avatar, req.query);
    const avatar = (await profileFor(store, userId, caller.userId)).avatar;
    if (!avatar) throw new ParleyError('E_NOT_FOUND', 'no photo');
    return attachments.downloadUrl(caller.userId, avatar, q.thumbnail === '1' || q.thumbnail === 'true');
  });

  app.get('/v1/privacy', async (req) => {
    const caller = await authDevice(req);
    const p: PrivacySettings = await store.getPrivacy(caller.userId);
    return p;
  });

  app.patch('/v1/privacy', async (req) => {
    const caller = await authDevice(req);
    const body = parse(schemas.privacy, req.body);
    const patch = Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
    const p: PrivacySettings = await store.putPrivacy(caller.userId, patch);
    return p;
  });

  app.get('/v1/blocks', async (req) => {
    const caller = await authDevice(req);
    return { blocked: await store.listBlocked(caller.userId) };
  });

  app.post('/v1/blocks', async (req, reply) => {
    const caller = await authDevice(req);
    const { userId } = parse(schemas.block, req.body);
    if (userId === caller.userId) throw new ParleyError('E_VALIDATION', 'userId: not yourself');
    await requireUsersExist(store, [userId]);
    await store.block(caller.userId, userId, now());
    return reply.status(201).send({ blocked: await store.listBlocked(caller.userId) });
  });

  // Idempotent: unblocking a user who is not blocked changes nothing.
  app.delete<UserParams>('/v1/blocks/:userId', async (req) => {
    const caller = await authDevice(req);
    await store.unblock(caller.userId, userIdOf(req));
    return { blocked: await store.listBlocked(caller.userId) };
  });
}
