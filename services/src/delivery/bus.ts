/**
 * Live delivery of the envelopes that need no copy in a device's session (`msg`, `stored`,
 * `synced`: broker/src/aedes-internals.ts), over Redis pub/sub, routed to the one broker node that
 * holds the device's connection:
 * - each broker node records `<prefix>:at:<deviceId>` = `<nodeId> <connection>` when a device is
 *   ready there (before that device's catch-up reads the store), and removes it when that
 *   connection goes, only if the route is still that connection's: a device that reconnected
 *   (to this node or another) before its old connection was cleaned up keeps its new route; a
 *   device that is connected nowhere costs nothing: it catches up from the store when it comes
 *   back;
 * - a worker looks up the nodes of a batch's devices in one MGET and sends each node one PUBLISH
 *   on `<prefix>:node:<nodeId>` with all of that node's deliveries, in order; the node hands each
 *   to the device's delivery agent.
 * So a message to a 1,024-member group costs one publish per broker node and chunk, not one per
 * device, and nothing is encoded twice (the envelope bytes travel as they are).
 *
 * Frame: repeated [u8 deviceId length][deviceId][u32 payload length][payload].
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { DeliveryBus, DeviceRoutes } from '../../../broker/src/index.js';
import { groupBy } from '../group-by.js';

export interface LiveDelivery {
  deviceId: string;
  payload: Uint8Array;
}

export interface BusSender {
  /**
   * Sends each delivery to the node its device is connected to (in order per device); skips
   * devices connected nowhere and returns them (read from the same look-up: the push trigger's
   * "not connected" costs nothing more).
   */
  send(items: LiveDelivery[]): Promise<string[]>;
}

const routeKey = (prefix: string, deviceId: string): string => `${prefix}:at:${deviceId}`;
const nodeChannel = (prefix: string, nodeId: string): string => `${prefix}:node:${nodeId}`;
/** A route names the node, then the connection on it. */
const routeValue = (nodeId: string, connection: string): string => `${nodeId} ${connection}`;
const nodeOfRoute = (route: string): string => route.split(' ', 1)[0]!;

export function encodeFrame(items: LiveDelivery[]): Buffer {
  let size = 0;
  for (const i of items) size += 1 + Buffer.byteLength(i.deviceId) + 4 + i.payload.length;
  const buf = Buffer.allocUnsafe(size);
  let o = 0;
  for (const i of items) {
    const n = buf.write(i.deviceId, o + 1, 'latin1');
    buf[o] = n;
    o += 1 + n;
    buf.writeUInt32BE(i.payload.length, o);
    o += 4;
    buf.set(i.payload, o);
    o += i.payload.length;
  }
  return buf;
}

/** Decodes a frame; a malformed tail (never written by `encodeFrame`) is ignored. */
export function decodeFrame(buf: Buffer): LiveDelivery[] {
  const out: LiveDelivery[] = [];
  let o = 0;
  while (o < buf.length) {
    const n = buf[o]!;
    if (o + 1 + n + 4 > buf.length) break;
    const deviceId = buf.toString('latin1', o + 1, o + 1 + n);
    o += 1 + n;
    const len = buf.readUInt32BE(o);
    o += 4;
    if (o + len > buf.length) break;
    out.push({ deviceId, payload: buf.subarray(o, o + len) });
    o += len;
  }
  return out;
}

// Delete the route only if it is still this connection's: the device may have reconnected since.
const UNREGISTER = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * The broker's side: its routes and its subscription. `onError`: the subscriber connection's
 * 'error' listener (it reconnects by itself; the resync below covers the gap).
 */
export function redisDeliveryBus(
  conn: RedisOptions, redis: Redis, prefix: string, onError: (err: Error) => void = () => undefined,
): DeliveryBus & DeviceRoutes {
  return {
    async register(deviceId, nodeId, connection) {
      await redis.set(routeKey(prefix, deviceId), routeValue(nodeId, connection));
    },
    async restore(deviceId, nodeId, connection) {
      await redis.set(routeKey(prefix, deviceId), routeValue(nodeId, connection), 'NX');
    },
    async unregister(deviceId, nodeId, connection) {
      await redis.eval(UNREGISTER, 1, routeKey(prefix, deviceId), routeValue(nodeId, connection));
    },
    async listen(nodeId, deliver, resync) {
      const sub = new Redis({ ...conn, maxRetriesPerRequest: null });
      sub.on('error', onError);
      let lost = false;
      sub.on('close', () => { lost = true; });
      sub.on('ready', () => {
        if (!lost) return;
        lost = false;
        // Re-subscribed (ioredis does it) after a gap in which publishes were lost.
        resync();
      });
      sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
        for (const d of decodeFrame(message)) deliver(d.deviceId, d.payload);
      });
      await sub.subscribe(nodeChannel(prefix, nodeId));
      return {
        async close() {
          sub.disconnect();
        },
      };
    },
  };
}

/** Which of these devices have a route now (are connected to some node), in order: one MGET. */
export async function connectedDevices(redis: Redis, prefix: string, deviceIds: string[]): Promise<boolean[]> {
  if (deviceIds.length === 0) return [];
  const routes = await redis.mget(deviceIds.map((d) => routeKey(prefix, d)));
  return routes.map((r) => r !== null);
}

/** Where the device is connected now (its node and that connection's token), or null: the dashboard's client look-up. */
export async function deviceRoute(redis: Redis, prefix: string, deviceId: string): Promise<{ nodeId: string; connection: string } | null> {
  const route = await redis.get(routeKey(prefix, deviceId));
  if (!route) return null;
  const sp = route.indexOf(' ');
  return sp < 0 ? { nodeId: route, connection: '' } : { nodeId: route.slice(0, sp), connection: route.slice(sp + 1) };
}

/** The workers' side: look up where the devices are, one publish per node. */
export function redisBusSender(redis: Redis, prefix: string): BusSender {
  return {
    async send(items) {
      if (items.length === 0) return [];
      const devices = [...new Set(items.map((i) => i.deviceId))];
      const nodes = await redis.mget(devices.map((d) => routeKey(prefix, d)));
      const nodeOf = new Map<string, string>();
      const away: string[] = [];
      devices.forEach((d, i) => {
        const route = nodes[i];
        if (route) nodeOf.set(d, nodeOfRoute(route));
        else away.push(d);
      });
      const byNode = groupBy(items, (item) => nodeOf.get(item.deviceId));
      await Promise.all([...byNode].map(([node, list]) => redis.publish(nodeChannel(prefix, node), encodeFrame(list))));
      return away;
    },
  };
}
