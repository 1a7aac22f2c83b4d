/**
 * Puts envelopes on device inboxes from outside a broker node. The workers run a headless Aedes
 * instance (no listeners) on the same aedes-persistence-redis and mqemitter-redis as the broker
 * nodes: its publish() enqueues the packet in Redis for every persistent subscriber (so a device
 * that is away gets it on reconnect) and emits it on the cluster bus (so the node holding the
 * device's connection delivers it now). It resolves once the packet is in Redis.
 */
import { Aedes } from 'aedes';
import { encode, inboxTopic, type Envelope } from '@parley/client-sdk';

export interface InboxPublisher {
  publish(deviceId: string, env: Envelope): Promise<void>;
  /** Publishes in order per device; resolves when all are enqueued. */
  publishAll(items: Array<{ deviceId: string; env: Envelope }>): Promise<void>;
  close(): Promise<void>;
}

export async function createInboxPublisher(deps: { persistence: unknown; mq: object; id?: string }): Promise<InboxPublisher> {
  const aedes = await Aedes.createBroker({
    persistence: deps.persistence,
    mq: deps.mq,
    ...(deps.id ? { id: deps.id } : {}),
  });
  const publish = (deviceId: string, env: Envelope): Promise<void> =>
    new Promise((res, rej) => {
      aedes.publish(
        { cmd: 'publish', topic: inboxTopic(deviceId), payload: Buffer.from(encode(env)), qos: 1, retain: false, dup: false },
        (err) => (err ? rej(err) : res()),
      );
    });
  return {
    publish,
    async publishAll(items) {
      // Aedes' publish pipeline keeps per-call order on the bus; issuing them all at once and
      // waiting for all keeps per-device order (Redis list RPUSH order = call order).
      await Promise.all(items.map((i) => publish(i.deviceId, i.env)));
    },
    close: () => new Promise<void>((r) => aedes.close(() => r())),
  };
}
