/**
 * The last error Parley sent each device, for the dashboard's client look-up: `<prefix>:lasterr:
 * <deviceId>` = `{ code, at }` (JSON), expiring after 7 days. Written from the three places that
 * tell a device it did something wrong: the broker's error envelopes (a refused publish: broker/
 * src/broker.ts through its `ClientErrors` port), the workers' error envelopes (a message to an
 * unknown recipient, a blocked chat: the publisher is wrapped below), and refused MQTT logins of
 * existing devices (services/src/auth/device-auth.ts). Only the code and the time: an error's
 * detail may name another user's chat or device, which must not outlive that user's deletion.
 * Account deletion removes the key (services/src/account/redis-account.ts), and a note written
 * after that is dropped (deletedDevicesKey below).
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { InboxPublisher } from '../delivery/publisher.js';

export const LAST_ERROR_TTL_SEC = 7 * 86_400;

export const lastErrorKey = (prefix: string, deviceId: string): string => `${prefix}:lasterr:${deviceId}`;

/**
 * Devices of deleted accounts, remembered for DELETED_DEVICES_MS: a sorted set of the SHA-1 of
 * their ids (not the ids: no key or member names a deleted user's device), scored by the deletion
 * time. Notes are written in the background and one may land after the deletion's DEL; the
 * writer's script skips a device found here, so none re-creates the key. Account deletion adds its
 * devices in the same transaction as that DEL (services/src/account/redis-account.ts), trims
 * entries older than DELETED_DEVICES_MS and sets the key to expire that long after the last one.
 */
export const deletedDevicesKey = (prefix: string): string => `${prefix}:lasterr-deleted`;
export const DELETED_DEVICES_MS = 10 * 60_000;
export const deletedDeviceMember = (deviceId: string): string => createHash('sha1').update(deviceId, 'utf8').digest('hex');

/** KEYS[1] the deleted devices; KEYS[2..] the last-error keys; ARGV[1] the TTL (s), then per key its device id and value. */
const NOTE_UNLESS_DELETED = `
local written = 0
for i = 2, #KEYS do
  local id = ARGV[2 * (i - 1)]
  if not redis.call('ZSCORE', KEYS[1], redis.sha1hex(id)) then
    redis.call('SET', KEYS[i], ARGV[2 * (i - 1) + 1], 'EX', ARGV[1])
    written = written + 1
  end
end
return written`;

export interface LastError {
  code: string;
  at: number;
}

export interface LastErrors {
  /** Notes an error sent to a device. Never waits and never throws (a lost note costs nothing). */
  sent(deviceId: string, code: string): void;
  /** Notes several at once (one round trip); the last one per device wins. */
  sentAll(items: ReadonlyArray<{ deviceId: string; code: string }>): void;
  get(deviceId: string): Promise<LastError | null>;
}

export function redisLastErrors(redis: Redis, prefix: string, log: Logger, now: () => number = Date.now): LastErrors {
  let warned = false;
  const sentAll = (items: ReadonlyArray<{ deviceId: string; code: string }>): void => {
    if (items.length === 0) return;
    const at = now();
    const last = new Map<string, string>();
    for (const i of items) last.set(i.deviceId, i.code);
    const keys = [deletedDevicesKey(prefix)];
    const args: Array<string | number> = [LAST_ERROR_TTL_SEC];
    for (const [deviceId, code] of last) {
      keys.push(lastErrorKey(prefix, deviceId));
      args.push(deviceId, JSON.stringify({ code, at }));
    }
    // One script: a device of a deleted account is not noted (see deletedDevicesKey).
    redis.eval(NOTE_UNLESS_DELETED, keys.length, ...keys, ...args).then(() => { warned = false; }, (err: unknown) => {
      // Once per outage: the Redis clients log the outage itself.
      if (warned) return;
      warned = true;
      log.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not note the last error of a device (Redis away?)');
    });
  };
  return {
    sent: (deviceId, code) => sentAll([{ deviceId, code }]),
    sentAll,
    async get(deviceId) {
      const v = await redis.get(lastErrorKey(prefix, deviceId));
      if (!v) return null;
      try {
        const parsed = JSON.parse(v) as Partial<LastError>;
        return typeof parsed.code === 'string' && typeof parsed.at === 'number' ? { code: parsed.code, at: parsed.at } : null;
      } catch {
        return null;
      }
    },
  };
}

/** The workers' publisher, noting every error envelope it delivers. */
export function notingErrors(publisher: InboxPublisher, errors: LastErrors): InboxPublisher {
  const publishAll: InboxPublisher['publishAll'] = async (items) => {
    const away = await publisher.publishAll(items);
    const sent: Array<{ deviceId: string; code: string }> = [];
    for (const i of items) if (i.env.kind === 'error') sent.push({ deviceId: i.deviceId, code: i.env.code });
    errors.sentAll(sent);
    return away;
  };
  return {
    publish: async (deviceId, env) => { await publishAll([{ deviceId, env }]); },
    publishAll,
    close: () => publisher.close(),
  };
}
