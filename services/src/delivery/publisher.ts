/**
 * Puts envelopes on device inboxes from outside a broker node, two ways:
 * - `msg`, `stored` and `synced` (live only: broker/src/aedes-internals.ts) go over the delivery
 *   bus (bus.ts) straight to the node that holds each device's connection, one publish per node
 *   per call; a device connected nowhere gets them from the store (or, for `stored`, by resending)
 *   when it comes back;
 * - `receipt`, `tally` and `error` go through a headless Aedes (no listeners) on the brokers'
 *   aedes-persistence-redis and mqemitter-redis: its publish() enqueues the packet in Redis for
 *   the device's persistent session (so a device that is away gets it on reconnect) and emits it
 *   on the cluster bus. It resolves once the packet is in Redis.
 */
import { Aedes } from 'aedes';
import { encode, inboxTopic, type Envelope } from '@parley/client-sdk/protocol';
import { LIVE_ONLY_KINDS } from '../../../broker/src/index.js';
import type { BusSender, LiveDelivery } from './bus.js';

export interface InboxPublisher {
  publish(deviceId: string, env: Envelope): Promise<void>;
  /**
   * Publishes in order per device; resolves when all are sent (live) or enqueued (the others),
   * with the devices that had a `msg` among the items and are connected nowhere (the candidates
   * for a push wake-up).
   */
  publishAll(items: Array<{ deviceId: string; env: Envelope }>): Promise<string[]>;
  close(): Promise<void>;
}

export async function createInboxPublisher(deps: { persistence: unknown; mq: object; bus: BusSender; id?: string }): Promise<InboxPublisher> {
  const aedes = await Aedes.createBroker({
    persistence: deps.persistence,
    mq: deps.mq,
    ...(deps.id ? { id: deps.id } : {}),
  });
  const queued = (deviceId: string, env: Envelope): Promise<void> =>
    new Promise((res, rej) => {
      aedes.publish(
        { cmd: 'publish', topic: inboxTopic(deviceId), payload: Buffer.from(encode(env)), qos: 1, retain: false, dup: false },
        (err) => (err ? rej(err) : res()),
      );
    });
  const publishAll = async (items: Array<{ deviceId: string; env: Envelope }>): Promise<string[]> => {
    const live: LiveDelivery[] = [];
    const rest: Array<Promise<void>> = [];
    // One encoding per envelope object, however many devices it goes to (a fan-out shares it).
    const encoded = new Map<Envelope, Uint8Array>();
    for (const i of items) {
      if (!LIVE_ONLY_KINDS.has(i.env.kind)) {
        // Aedes' publish pipeline keeps per-call order; RPUSH order = call order per device.
        rest.push(queued(i.deviceId, i.env));
        continue;
      }
      let payload = encoded.get(i.env);
      if (!payload) encoded.set(i.env, (payload = encode(i.env)));
      live.push({ deviceId: i.deviceId, payload });
    }
    const [away] = await Promise.all([deps.bus.send(live), ...rest]);
    if (away.length === 0) return away;
    // Only when someone is away (nothing is added while every device is connected).
    const gotMsg = new Set<string>();
    for (const i of items) if (i.env.kind === 'msg') gotMsg.add(i.deviceId);
    return away.filter((d) => gotMsg.has(d));
  };
  return {
    publish: async (deviceId, env) => { await publishAll([{ deviceId, env }]); },
    publishAll,
    close: () => new Promise<void>((r) => aedes.close(() => r())),
  };
}
