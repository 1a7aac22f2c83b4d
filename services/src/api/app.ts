/**
 * The HTTP API (fastify): registration with SMS codes, devices (link codes, listing, revocation);
 * contacts, profile, privacy and blocks are in social.ts; chats, groups, message status and history
 * in chats.ts; the MLS key directory in keys.ts. Built without listening so tests can use inject() or an ephemeral port. Every error answer is
 * `{ error: { code, message, detail? } }` from the catalogue. Request schemas are declared once,
 * in client-sdk/src/api-types.ts, and shared with the SDK.
 */
import cors from '@fastify/cors';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ParleyError, newId } from '@parley/client-sdk/protocol';
import { schemas, type LinkCode, type VerifyResult } from '@parley/client-sdk/api-types';
import { StoreError, type Device, type Store } from '../store/types.js';
import type { TokenVerifier } from '../auth/device-auth.js';
import type { RateLimiter } from '../auth/rate-limit.js';
import { hashCode, hashGrant, newCode, newDeviceToken, newGrantCode } from '../auth/secrets.js';
import { revokeDevice } from '../auth/revoke-device.js';
import type { SmsSender } from '../sms/sms.js';
import type { Groups } from '../groups/groups.js';
import { registerChatRoutes } from './chats.js';
import { registerMediaRoutes } from './media.js';
import { registerPushRoutes } from './push.js';
import type { PushApiConfig } from '../push/setup.js';
import type { Attachments } from '../media/attachments.js';
import { parse } from './context.js';
import { registerSocialRoutes } from './social.js';
import type { ContactLimiter } from '../social/contact-limits.js';
import { registerAccountRoutes } from './account.js';
import type { AccountRedis, ForgetTarget } from '../account/redis-account.js';
import type { BlobStore } from '../media/blob-store.js';
import { registerStatusRoutes } from './status.js';
import { registerKeyRoutes } from './keys.js';
import type { StatusService } from '../status/status.js';
import type { IdentityEventsQueue } from '../workers/identity-events.js';
import type { KeysNotice } from '../live/live.js';

export interface ApiOptions {
  /** Active devices per user, the primary included. */
  maxDevices: number;
  /** Messages per chat a newly linked device receives from before it was linked. */
  linkHistory: number;
  linkCodeTtlMs: number;
  codeTtlMs: number;
  codeMaxAttempts: number;
  codeRatePerPhone: number;
  codeRatePerIp: number;
  rateWindowSec: number;
  trustProxy: boolean;
  /**
   * Origins browsers may call the API from (the SDK in a web app): `*` for any. Safe because
   * the API authenticates with bearer tokens, never cookies. @defaultValue ['*']
   */
  corsOrigins: string[];
  /** @defaultValue 65536 */
  bodyLimit: number;
  /** Account deletion: how long the SMS confirmation code is valid. */
  deletionCodeTtlMs: number;
  /** Account exports per user per hour. */
  exportsPerHour: number;
  /** The MLS key directory (api/keys.ts): pool maximum (and target), low-water mark, claimed users per device per hour. */
  keys: { maxPackages: number; lowWater: number; claimsPerHour: number };
}

export interface ApiDeps {
  store: Store;
  auth: TokenVerifier;
  limiter: RateLimiter;
  sms: SmsSender;
  /** Server secret for code HMACs. */
  secret: string;
  /** Disconnects a revoked device on every broker node. */
  revoke(deviceId: string): Promise<void>;
  groups: Groups;
  attachments: Attachments;
  /** The embedded media store's signed-URL routes (absent with an S3 endpoint). */
  blobRoutes?: (app: FastifyInstance) => void;
  log: Logger;
  now?: () => number;
  /** Contacts discovery's limits (per user and per client address, cluster-wide). */
  contactLimiter: ContactLimiter;
  /** Push registration settings (services/src/push/setup.ts); absent: every kind is refused. */
  push?: PushApiConfig;
  /** Status posts (services/src/status/status.ts). */
  status: StatusService;
  /** Account deletion and export (services/src/account/): deletion codes and the user's Redis keys, and the media objects. */
  account: { redis: AccountRedis; blobs: BlobStore; extraRedisKeys?: (target: ForgetTarget) => string[] };
  /** Forgets a deleted user's presence, last seen, watches and typing state on every node (services/src/live/). */
  forgetLive(userId: string, deviceIds: string[]): Promise<void>;
  /**
   * Queues the `identity` events of a device's identity change in its user's chats (its first
   * publication, other bytes, its revocation: services/src/workers/identity-events.ts).
   */
  identityEvents: IdentityEventsQueue;
  /** Tells connected devices, on their `live/` topic, that their key package pools ran low (services/src/live/). */
  notifyKeys(notices: KeysNotice[]): Promise<void>;
  /** Extra routes (metrics, dashboard) registered by the composition root. */
  extend?: (app: FastifyInstance) => void;
}

/**
 * Whether a request path is the dashboard's (its page, assets and API), decoded as the router
 * decodes it (`/%61dmin` is `/admin` to it) so that no spelling of it gets CORS headers.
 */
export function isAdminPath(url: string): boolean {
  const raw = url.split('?', 1)[0] ?? '';
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    path = raw;
  }
  return /^\/+admin(?:[/?#]|$)/i.test(path);
}

export function createApi(deps: ApiDeps, opts: ApiOptions): FastifyInstance {
  const now = deps.now ?? Date.now;
  const { store, limiter } = deps;
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: opts.bodyLimit,
    trustProxy: opts.trustProxy,
    logController: new LogController({ disableRequestLogging: true }),
    // Errors Fastify answers before any route or the error handler (found by
    // test/reliability/fuzz-input.test.ts): a bad percent-encoding, an over-long path parameter,
    // and unparseable HTTP. They get catalogue bodies too.
    frameworkErrors: (err, _req, reply) => {
      const pe = new ParleyError('E_BAD_REQUEST', err.message);
      return (reply as unknown as FastifyReply).status(pe.status).send(pe.toJSON());
    },
    clientErrorHandler: (err: Error & { code?: string }, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const detail = err.code === 'HPE_HEADER_OVERFLOW' ? 'HTTP headers too large'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request timeout' : 'malformed HTTP request';
      const pe = new ParleyError('E_BAD_REQUEST', detail);
      const body = JSON.stringify(pe.toJSON());
      if (socket.writable) {
        socket.write(`HTTP/1.1 ${pe.status} Bad Request\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`);
      }
      socket.destroy(err);
    },
  });

  // JSON only: a text/plain body would otherwise reach the handlers as a string.
  app.removeContentTypeParser('text/plain');
  // Browsers: the SDK calls the API and the embedded media URLs from a web app's origin, and reads
  // the ETag of each uploaded part. Never the dashboard (/admin, /admin/api/*): no other site's page
  // may make an operator's browser call it (a preflight there is refused, answers carry no CORS
  // header), or it could send wrong admin tokens from his address and lock him out.
  const corsOptions = {
    origin: opts.corsOrigins.includes('*') ? '*' : opts.corsOrigins,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['authorization', 'content-type', 'range'],
    exposedHeaders: ['etag', 'content-range', 'content-length'],
    maxAge: 600,
    // An OPTIONS that is not a proper preflight gets 204, not @fastify/cors' plain-text 400
    // (found by the HTTP fuzzer: every error body is a catalogue one).
    strictPreflight: false,
  };
  void app.register(cors, {
    delegator: (req, cb) => cb(null, isAdminPath(req.url) ? { origin: false } : corsOptions),
  });

  app.setErrorHandler((err, req, reply) => {
    if (err instanceof ParleyError) return reply.status(err.status).send(err.toJSON());
    const e = err as { code?: string; statusCode?: number; message?: string };
    let pe: ParleyError;
    switch (e.code) {
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': pe = new ParleyError('E_UNSUPPORTED_MEDIA_TYPE'); break;
      case 'FST_ERR_CTP_BODY_TOO_LARGE': pe = new ParleyError('E_PAYLOAD_TOO_LARGE'); break;
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
        pe = new ParleyError('E_BAD_REQUEST', 'body is not valid JSON'); break;
      default:
        if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) pe = new ParleyError('E_BAD_REQUEST', e.message);
        else {
          req.log.error({ err }, 'unhandled error');
          pe = new ParleyError('E_INTERNAL');
        }
    }
    return reply.status(pe.status).send(pe.toJSON());
  });
  app.setNotFoundHandler((_req, reply) => {
    const pe = new ParleyError('E_NOT_FOUND', 'no such route');
    return reply.status(pe.status).send(pe.toJSON());
  });

  const authDevice = async (req: FastifyRequest): Promise<Device> => {
    const h = req.headers.authorization;
    if (!h || !h.startsWith('Bearer ')) throw new ParleyError('E_AUTH_REQUIRED');
    const ipKey = `api:ip:${req.ip}`;
    if (await limiter.over(ipKey, 60)) throw new ParleyError('E_RATE_LIMITED');
    const device = await deps.auth.verifyToken(h.slice(7).trim());
    if (!device) {
      await limiter.hit(ipKey, 60, 60);
      req.log.warn({ ip: req.ip }, 'bad device token');
      throw new ParleyError('E_AUTH_TOKEN');
    }
    return device;
  };

  app.get('/healthz', async () => ({ ok: true }));

  // registerAccount: send a one-time code by SMS.
  app.post('/v1/register', async (req, reply) => {
    const { phone: p } = parse(schemas.register, req.body);
    const okPhone = await limiter.hit(`code:phone:${p}`, opts.codeRatePerPhone, opts.rateWindowSec);
    const okIp = await limiter.hit(`code:ip:${req.ip}`, opts.codeRatePerIp, opts.rateWindowSec);
    if (!okPhone || !okIp) {
      req.log.warn({ ip: req.ip }, 'code request rate-limited');
      throw new ParleyError('E_RATE_LIMITED', 'too many codes requested');
    }
    const code = newCode();
    const t = now();
    await store.putPendingRegistration({
      phone: p, codeHash: hashCode(deps.secret, p, code), expiresAt: t + opts.codeTtlMs, attempts: 0, createdAt: t,
    });
    try {
      await deps.sms.send(p, `Your Parley code is ${code}. It expires in ${Math.round(opts.codeTtlMs / 60000)} minutes.`);
    } catch (err) {
      req.log.error({ err: err instanceof Error ? err.message : String(err) }, 'SMS provider failed');
      throw new ParleyError('E_UNAVAILABLE', 'the SMS provider did not accept the message; retry later');
    }
    return reply.status(202).send({ expiresInSec: Math.round(opts.codeTtlMs / 1000) });
  });

  // validateAccount: check the code, create the user if new, and issue the primary device's token.
  // A verification is a new primary phone: every earlier device of the user is revoked.
  app.post('/v1/verify', async (req) => {
    const body = parse(schemas.verify, req.body);
    const pending = await store.getPendingRegistration(body.phone);
    if (!pending || pending.expiresAt <= now()) throw new ParleyError('E_CODE_EXPIRED');
    if (pending.attempts >= opts.codeMaxAttempts) throw new ParleyError('E_CODE_ATTEMPTS');
    if (pending.codeHash !== hashCode(deps.secret, body.phone, body.code)) {
      const attempts = await store.bumpRegistrationAttempts(body.phone);
      req.log.warn({ ip: req.ip, attempts }, 'wrong verification code');
      throw new ParleyError(attempts >= opts.codeMaxAttempts ? 'E_CODE_ATTEMPTS' : 'E_CODE_INVALID');
    }
    await store.deletePendingRegistration(body.phone);
    const t = now();
    const { user } = await store.getOrCreateUserByPhone(body.phone, newId('user'), t);
    for (const d of await store.listDevices(user.userId)) await revokeDevice({ store, disconnect: deps.revoke, identityEvents: (job) => deps.identityEvents.enqueue(job) }, d.deviceId, t);
    const deviceId = newId('device');
    const { token, tokenHash } = newDeviceToken(deviceId);
    await store.addDevice({ deviceId, userId: user.userId, tokenHash, name: body.deviceName ?? 'primary', createdAt: t }, { maxActive: opts.maxDevices, historyDepth: opts.linkHistory });
    return { userId: user.userId, deviceId, token };
  });

  /** A new device of a user; it receives its chats' recent history on its first connection. */
  const addDevice = async (userId: string, name: string): Promise<VerifyResult> => {
    const deviceId = newId('device');
    const { token, tokenHash } = newDeviceToken(deviceId);
    try {
      await store.addDevice({ deviceId, userId, tokenHash, name, createdAt: now() }, { maxActive: opts.maxDevices, historyDepth: opts.linkHistory });
    } catch (err) {
      if (err instanceof StoreError && err.code === 'DEVICE_LIMIT') throw new ParleyError('E_DEVICE_LIMIT', `at most ${opts.maxDevices}`);
      throw err;
    }
    return { userId, deviceId, token };
  };

  // Link a companion device (web, desktop) from a device of the account: the token is returned
  // to the calling device, which hands it over itself.
  app.post('/v1/devices', async (req, reply) => {
    const caller = await authDevice(req);
    const body = parse(schemas.addDevice, req.body);
    return reply.status(201).send(await addDevice(caller.userId, body.deviceName ?? 'companion'));
  });

  // A short-lived, single-use link code (and its QR payload) for a new device to join the account.
  app.post('/v1/devices/link-codes', async (req, reply) => {
    const caller = await authDevice(req);
    parse(schemas.linkCode, req.body ?? {});
    if (!(await limiter.hit(`linkcode:${caller.userId}`, 10, 3600))) throw new ParleyError('E_RATE_LIMITED', 'too many link codes');
    const code = newGrantCode('link');
    const t = now();
    const expiresAt = t + opts.linkCodeTtlMs;
    await store.putGrant({
      codeHash: hashGrant(deps.secret, 'link', code), kind: 'link', userId: caller.userId, deviceId: caller.deviceId, chatId: null, createdAt: t, expiresAt,
    });
    const answer: LinkCode = { code, qr: `parley:link:${code}`, expiresAt };
    return reply.status(201).send(answer);
  });

  // The new device: trades a link code for its own token. Guessing is rate-limited per address.
  app.post('/v1/devices/link', async (req, reply) => {
    const body = parse(schemas.linkDevice, req.body);
    const ipKey = `link:ip:${req.ip}`;
    if (await limiter.over(ipKey, 20)) throw new ParleyError('E_RATE_LIMITED', 'too many link attempts');
    const code = body.code.startsWith('parley:link:') ? body.code.slice('parley:link:'.length) : body.code;
    const hash = hashGrant(deps.secret, 'link', code);
    const grant = await store.getGrant(hash, now());
    // A code dies with the device that made it (revoked, or every device of a phone verified
    // again): a stolen device cannot keep linking new ones.
    const issuer = grant?.deviceId ? await store.getDevice(grant.deviceId) : null;
    // Single use: of two devices racing with one code, only the one that deletes it goes on.
    if (!grant || grant.kind !== 'link' || !issuer || issuer.revokedAt !== null || issuer.userId !== grant.userId || !(await store.deleteGrant(hash))) {
      await limiter.hit(ipKey, 20, 600);
      req.log.warn({ ip: req.ip }, 'bad link code');
      throw new ParleyError('E_LINK_CODE');
    }
    try {
      return reply.status(201).send(await addDevice(grant.userId, body.deviceName ?? 'companion'));
    } catch (err) {
      // Refused (the device limit): the code stays usable once a device is removed.
      await store.putGrant(grant);
      throw err;
    }
  });

  app.get('/v1/devices', async (req) => {
    const caller = await authDevice(req);
    const devices = await store.listDevices(caller.userId);
    return { devices: devices.map((d) => ({ deviceId: d.deviceId, name: d.name, createdAt: d.createdAt })), current: caller.deviceId };
  });

  // Deactivate a client: its token stops working and its connection is closed cluster-wide.
  app.delete<{ Params: { deviceId: string } }>('/v1/devices/:deviceId', async (req) => {
    const caller = await authDevice(req);
    const target = await store.getDevice(req.params.deviceId);
    if (!target || target.userId !== caller.userId || target.revokedAt !== null) throw new ParleyError('E_NOT_FOUND', 'no such device');
    await revokeDevice({ store, disconnect: deps.revoke, identityEvents: (job) => deps.identityEvents.enqueue(job) }, target.deviceId, now());
    return { revoked: target.deviceId };
  });

  app.get('/v1/users/me', async (req) => {
    const caller = await authDevice(req);
    const user = await store.getUser(caller.userId);
    return { userId: caller.userId, deviceId: caller.deviceId, phone: user?.phone };
  });

  registerChatRoutes({ app, deps, opts, now, authDevice });
  registerMediaRoutes({ app, deps, opts, now, authDevice });
  deps.blobRoutes?.(app);
  registerSocialRoutes({ app, deps, opts, now, authDevice });
  registerPushRoutes({ app, deps, opts, now, authDevice });
  registerStatusRoutes({ app, deps, opts, now, authDevice });
  registerKeyRoutes({ app, deps, opts, now, authDevice });
  registerAccountRoutes({ app, deps, opts, now, authDevice });

  deps.extend?.(app);
  return app;
}
