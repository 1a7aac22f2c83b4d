/**
 * The dashboard's client look-up: a device as ops need it when a user reports a problem. Its
 * account row (store), where it is connected (its delivery route: node and connection time), how
 * many chat messages wait for it (the store's `pendingCount`, which counts what `pending` would list
 * without reading a message, up to a bound: a device away for weeks may have a great many), and the
 * last error it was sent (last-error.ts).
 */
import type { Redis } from 'ioredis';
import { connectedAt } from '../../../broker/src/index.js';
import type { Store } from '../store/types.js';
import { deviceRoute } from '../delivery/bus.js';
import type { ClientView } from './admin-types.js';
import type { LastErrors } from './last-error.js';

export interface ClientViewDeps {
  store: Pick<Store, 'getDevice' | 'pendingCount'>;
  redis: Redis;
  prefix: string;
  lastErrors: LastErrors;
  /** Queued messages counted at most (more shows as "10,000+"). @defaultValue 10000 */
  queuedLimit?: number;
}

/** Messages stored for the device and not acknowledged by it, up to `limit` (and whether there are more). */
async function countQueued(store: ClientViewDeps['store'], deviceId: string, limit: number): Promise<ClientView['queued']> {
  // limit + 1: enough to know there are more. Counted by the store, no message read.
  const n = await store.pendingCount(deviceId, limit + 1);
  return { count: Math.min(n, limit), more: n > limit };
}

/** The device, or null when there is no such device (never was, or deleted with its account). */
export async function readClient(deps: ClientViewDeps, deviceId: string): Promise<ClientView | null> {
  const device = await deps.store.getDevice(deviceId);
  if (!device) return null;
  const [route, queued, lastError] = await Promise.all([
    deviceRoute(deps.redis, deps.prefix, deviceId),
    countQueued(deps.store, deviceId, deps.queuedLimit ?? 10_000),
    deps.lastErrors.get(deviceId),
  ]);
  return {
    deviceId: device.deviceId,
    userId: device.userId,
    name: device.name,
    createdAt: device.createdAt,
    revokedAt: device.revokedAt,
    connection: route ? { nodeId: route.nodeId, since: connectedAt(route.connection) } : null,
    queued,
    lastError,
  };
}
