/**
 * The dashboard on the API role, wired in one place for the composition root: the page
 * (page-routes.ts) and the admin API (routes.ts) over the cluster view, the client look-up and
 * the revocation channel.
 */
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Store } from '../store/types.js';
import type { RateLimiter } from '../auth/rate-limit.js';
import { connectedDevices } from '../delivery/bus.js';
import type { AdminToken } from './admin-token.js';
import { readOverview, sharedOverview, type ClusterQueues } from './cluster-view.js';
import { readClient } from './client-view.js';
import type { LastErrors } from './last-error.js';
import { registerDashboardPage } from './page-routes.js';
import { registerAdminRoutes, type AdminRouteDeps } from './routes.js';

export interface AdminApiDeps {
  token: AdminToken;
  redis: Redis;
  prefix: string;
  queues: ClusterQueues;
  store: Store;
  limiter: RateLimiter;
  lastErrors: LastErrors;
  /** Closes a device's connection on every broker node. */
  disconnect(deviceId: string): Promise<void>;
  /** Queues a revoked device's identity events (services/src/workers/identity-events.ts). */
  identityEvents: AdminRouteDeps['identityEvents'];
  now(): number;
  log: Logger;
}

/** Registers `GET /admin` (the page, its module and styles) and `/admin/api/*`. */
export function adminApi(deps: AdminApiDeps): (app: FastifyInstance) => void {
  const { redis, prefix, store } = deps;
  // One computation at a time per API process, reused for a second: however many pages poll.
  const overview = sharedOverview(() => readOverview({ redis, prefix, queues: deps.queues }));
  return (app) => {
    registerDashboardPage(app);
    registerAdminRoutes(app, {
      token: deps.token,
      limiter: deps.limiter,
      store,
      overview,
      client: (deviceId) => readClient({ store, redis, prefix, lastErrors: deps.lastErrors }, deviceId),
      connected: async (deviceId) => (await connectedDevices(redis, prefix, [deviceId]))[0] ?? false,
      disconnect: deps.disconnect,
      identityEvents: deps.identityEvents,
      now: deps.now,
      log: deps.log,
    });
  };
}
