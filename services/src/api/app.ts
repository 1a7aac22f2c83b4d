/**
 * The HTTP API (fastify): registration with SMS codes, device linking and revocation, contacts
 * look-up, message status and history. Built without listening so tests can use inject() or an
 * ephemeral port. Every error answer is `{ error: { code, message, detail? } }` from the catalogue.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Logger } from 'pino';
import { ParleyError, isChatId, msgIdOf, newId, parseMsgId, type Body } from '@parley/client-sdk';
import { StoreError, type Device, type Store, type StoredMessage } from '../store/types.js';
import type { TokenVerifier } from '../auth/device-auth.js';
import type { RateLimiter } from '../auth/rate-limit.js';
import { hashCode, newCode, newDeviceToken } from '../auth/secrets.js';
import type { SmsSender } from '../sms/sms.js';

export interface ApiOptions {
  maxDevices: number;
  codeTtlMs: number;
  codeMaxAttempts: number;
  codeRatePerPhone: number;
  codeRatePerIp: number;
  rateWindowSec: number;
  trustProxy: boolean;
  /** @defaultValue 65536 */
  bodyLimit: number;
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
  log: Logger;
  now?: () => number;
  /** Extra routes (metrics, dashboard) registered by the composition root. */
  extend?: (app: FastifyInstance) => void;
}

/** E.164: a plus sign, a non-zero country digit, at most 15 digits in all. */
const E164 = /^\+[1-9][0-9]{6,14}$/;
const phone = z.string().regex(E164, 'E.164 phone number, e.g. +447700900123');

const schemas = {
  register: z.object({ phone }).strict(),
  verify: z.object({ phone, code: z.string().regex(/^[0-9]{6}$/, '6 digits'), deviceName: z.string().min(1).max(64).optional() }).strict(),
  link: z.object({ deviceName: z.string().min(1).max(64).optional() }).strict(),
  lookup: z.object({ phones: z.array(z.string().max(32)).min(1).max(256) }).strict(),
  history: z.object({
    after: z.coerce.number().int().min(0).default(0),
    limit: z.coerce.number().int().min(1).max(500).default(100),
  }).strict(),
};

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value ?? {});
  if (!r.success) {
    const i = r.error.issues[0];
    if (i?.path[0] === 'phone') throw new ParleyError('E_PHONE_INVALID', i.message);
    throw new ParleyError('E_VALIDATION', i ? `${i.path.join('.') || 'body'}: ${i.message}` : 'invalid');
  }
  return r.data;
}

function bodyJson(b: Body): { text: string } | { data: string } {
  return typeof b === 'string' ? { text: b } : { data: Buffer.from(b).toString('base64') };
}

function messageJson(m: StoredMessage): Record<string, unknown> {
  return {
    msgId: msgIdOf(m.chatId, m.seq), chatId: m.chatId, seq: m.seq, from: m.senderUserId,
    fromDevice: m.senderDeviceId, ts: m.ts, ...bodyJson(m.body),
  };
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
    for (const d of await store.listDevices(user.userId)) {
      await store.revokeDevice(d.deviceId, t);
      await deps.revoke(d.deviceId);
    }
    const deviceId = newId('device');
    const { token, tokenHash } = newDeviceToken(deviceId);
    await store.addDevice({ deviceId, userId: user.userId, tokenHash, name: body.deviceName ?? 'primary', createdAt: t }, opts.maxDevices);
    return { userId: user.userId, deviceId, token };
  });

  // Link a companion device (web, desktop) to the caller's account.
  app.post('/v1/devices', async (req, reply) => {
    const caller = await authDevice(req);
    const body = parse(schemas.link, req.body);
    const deviceId = newId('device');
    const { token, tokenHash } = newDeviceToken(deviceId);
    try {
      await store.addDevice({ deviceId, userId: caller.userId, tokenHash, name: body.deviceName ?? 'companion', createdAt: now() }, opts.maxDevices);
    } catch (err) {
      if (err instanceof StoreError && err.code === 'DEVICE_LIMIT') throw new ParleyError('E_DEVICE_LIMIT', `at most ${opts.maxDevices}`);
      throw err;
    }
    return reply.status(201).send({ userId: caller.userId, deviceId, token });
  });

  app.get('/v1/devices', async (req) => {
    const caller = await authDevice(req);
    const devices = await store.listDevices(caller.userId);
    return { devices: devices.map((d) => ({ deviceId: d.deviceId, name: d.name, createdAt: d.createdAt })) };
  });

  // Deactivate a client: its token stops working and its connection is closed cluster-wide.
  app.delete<{ Params: { deviceId: string } }>('/v1/devices/:deviceId', async (req) => {
    const caller = await authDevice(req);
    const target = await store.getDevice(req.params.deviceId);
    if (!target || target.userId !== caller.userId || target.revokedAt !== null) throw new ParleyError('E_NOT_FOUND', 'no such device');
    await store.revokeDevice(target.deviceId, now());
    await deps.revoke(target.deviceId);
    return { revoked: target.deviceId };
  });

  app.get('/v1/users/me', async (req) => {
    const caller = await authDevice(req);
    const user = await store.getUser(caller.userId);
    return { userId: caller.userId, deviceId: caller.deviceId, phone: user?.phone };
  });

  // Contacts discovery. Rate-limited per device against scraping the phone directory.
  app.post('/v1/users/lookup', async (req) => {
    const caller = await authDevice(req);
    const { phones } = parse(schemas.lookup, req.body);
    if (!(await limiter.hit(`lookup:${caller.userId}`, 2000, 3600))) throw new ParleyError('E_RATE_LIMITED', 'too many look-ups');
    const valid = phones.filter((p) => E164.test(p));
    const users = valid.length ? await store.getUsersByPhones(valid) : [];
    return { users: users.map((u) => ({ phone: u.phone, userId: u.userId })) };
  });

  // getMessageStatus
  app.get<{ Params: { msgId: string } }>('/v1/messages/:msgId/status', async (req) => {
    const caller = await authDevice(req);
    const id = parseMsgId(req.params.msgId);
    if (!id) throw new ParleyError('E_VALIDATION', 'msgId');
    if (!(await store.getMember(id.chatId, caller.userId))) throw new ParleyError('E_NOT_FOUND', 'no such message');
    const st = await store.messageStatus(id.chatId, id.seq);
    if (!st) throw new ParleyError('E_NOT_FOUND', 'no such message');
    const rec = st.recipients;
    const deliveredAt = rec.length && rec.every((r) => r.deliveredAt !== null) ? Math.max(...rec.map((r) => r.deliveredAt ?? 0)) : null;
    const anyDelivered = rec.some((r) => r.deliveredAt !== null);
    const anyRead = rec.some((r) => r.readAt !== null);
    return {
      msgId: req.params.msgId,
      status: anyRead ? 'read' : anyDelivered ? 'delivered' : 'sent',
      sentAt: st.message.ts,
      deliveredAt,
      recipients: rec,
    };
  });

  // readNewMessages: history after a seq, for sync on a new or returning device.
  app.get<{ Params: { chatId: string } }>('/v1/chats/:chatId/messages', async (req) => {
    const caller = await authDevice(req);
    if (!isChatId(req.params.chatId)) throw new ParleyError('E_VALIDATION', 'chatId');
    const q = parse(schemas.history, req.query);
    if (!(await store.getMember(req.params.chatId, caller.userId))) throw new ParleyError('E_NOT_MEMBER');
    const messages = await store.history(req.params.chatId, q.after, q.limit);
    return { messages: messages.map(messageJson) };
  });

  deps.extend?.(app);
  return app;
}
