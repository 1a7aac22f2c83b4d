/**
 * The admin API under `/admin/api/` (JSON, answered by the API role): the overview, a client's
 * look-up, and disconnecting or revoking it. Authenticated by the admin token only (admin-token.ts):
 * a device token is refused here, and the admin token is no device token (device tokens name their
 * device and are checked against the store). Failed admin authentications are limited per client
 * address across the cluster (Redis; `req.ip`, which trusts X-Forwarded-For only with
 * PARLEY_TRUST_PROXY); every action is logged with the caller's address. No CORS here
 * (services/src/api/app.ts leaves /admin out of it): only the dashboard's own page calls this API.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ParleyError } from '@parley/client-sdk/protocol';
import type { Store } from '../store/types.js';
import type { RateLimiter } from '../auth/rate-limit.js';
import { revokeDevice, type RevokeDeps } from '../auth/revoke-device.js';
import { parse } from '../api/context.js';
import { adminSchemas, type ActionResult, type ClientView, type Overview } from './admin-types.js';
import type { AdminToken } from './admin-token.js';

/** Failed admin authentications allowed per client address and window; then E_RATE_LIMITED, even for the right token. */
export const ADMIN_FAILURES = 10;
export const ADMIN_FAILURE_WINDOW_SEC = 600;

export interface AdminRouteDeps {
  token: AdminToken;
  limiter: RateLimiter;
  store: Pick<Store, 'getDevice' | 'revokeDevice' | 'deletePushRegistration' | 'deleteDeviceKeys' | 'getIdentities'>;
  overview(): Promise<Overview>;
  client(deviceId: string): Promise<ClientView | null>;
  /** Whether the device is connected to some broker node now. */
  connected(deviceId: string): Promise<boolean>;
  /** Closes the device's connection on every broker node (it may reconnect). */
  disconnect(deviceId: string): Promise<void>;
  /** A revocation's identity events (RevokeDeps). */
  identityEvents: RevokeDeps['identityEvents'];
  now(): number;
  log: Logger;
}

/** Redis or the store failing inside a route is E_UNAVAILABLE (logged), not an internal error. */
async function available<T>(log: Logger, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ParleyError) throw err;
    log.error({ err }, `admin ${what} failed`);
    throw new ParleyError('E_UNAVAILABLE', `${what}: Redis or the store did not answer`);
  }
}

export function registerAdminRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const { token, limiter, store } = deps;
  const log = deps.log;

  const refused = (reply: FastifyReply, retryAfterSec: number): ParleyError => {
    void reply.header('retry-after', String(Math.max(1, retryAfterSec)));
    return new ParleyError('E_RATE_LIMITED', 'too many failed admin authentications from this address; retry later');
  };

  // Before the body is read (an onRequest hook). The token is checked here, in this process; a
  // failure is counted with one atomic INCR whose own result decides the answer, so of concurrent
  // wrong tokens at most ADMIN_FAILURES get "wrong token", the others E_RATE_LIMITED. The right
  // token is never counted, and is refused too while the address is over the limit: there, right
  // and wrong tokens get the same answer.
  const authAdmin = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const h = req.headers.authorization;
    if (!h || !h.startsWith('Bearer ')) throw new ParleyError('E_AUTH_REQUIRED', 'the admin token is required');
    const key = `admin:ip:${req.ip}`;
    if (token.verify(h.slice(7).trim())) {
      const w = await available(log, 'authentication', () => limiter.peek(key));
      if (w.count >= ADMIN_FAILURES) throw refused(reply, w.resetSec);
      return;
    }
    const w = await available(log, 'authentication', () => limiter.take(key, ADMIN_FAILURE_WINDOW_SEC));
    if (w.count > ADMIN_FAILURES) throw refused(reply, w.resetSec);
    log.warn({ ip: req.ip }, 'bad admin token');
    throw new ParleyError('E_AUTH_REQUIRED', 'the admin token is wrong');
  };

  const deviceOf = async (req: FastifyRequest) => {
    const { deviceId } = parse(adminSchemas.clientParams, req.params);
    const device = await available(log, 'client look-up', () => store.getDevice(deviceId));
    if (!device) throw new ParleyError('E_NOT_FOUND', 'no such device');
    return device;
  };

  void app.register(async (admin) => {
    admin.addHook('onRequest', async (_req, reply) => {
      // Live figures and personal data: never cached, never taken for another content type.
      void reply.header('cache-control', 'no-store').header('x-content-type-options', 'nosniff');
    });
    admin.addHook('onRequest', authAdmin);

    admin.get('/overview', async (req) => {
      parse(adminSchemas.noQuery, req.query);
      return available(log, 'overview', () => deps.overview());
    });

    admin.get('/clients/:deviceId', async (req) => {
      const { deviceId } = parse(adminSchemas.clientParams, req.params);
      const view = await available(log, 'client look-up', () => deps.client(deviceId));
      if (!view) throw new ParleyError('E_NOT_FOUND', 'no such device');
      return view;
    });

    // Closes the connection wherever it is; the device may connect again at once (its token still works).
    admin.post('/clients/:deviceId/disconnect', async (req): Promise<ActionResult> => {
      parse(adminSchemas.action, req.body);
      const device = await deviceOf(req);
      const wasConnected = await available(log, 'disconnect', () => deps.connected(device.deviceId));
      await available(log, 'disconnect', () => deps.disconnect(device.deviceId));
      log.info({ admin: 'disconnect', deviceId: device.deviceId, ip: req.ip }, 'admin action');
      return { deviceId: device.deviceId, done: wasConnected };
    });

    // What the device's own user can do (DELETE /v1/devices/:deviceId): its token stops working everywhere.
    admin.post('/clients/:deviceId/revoke', async (req): Promise<ActionResult> => {
      parse(adminSchemas.action, req.body);
      const device = await deviceOf(req);
      await available(log, 'revoke', () => revokeDevice({ store, disconnect: deps.disconnect, identityEvents: deps.identityEvents }, device.deviceId, deps.now()));
      log.info({ admin: 'revoke', deviceId: device.deviceId, userId: device.userId, ip: req.ip }, 'admin action');
      return { deviceId: device.deviceId, done: true };
    });
  }, { prefix: '/admin/api' });
}
