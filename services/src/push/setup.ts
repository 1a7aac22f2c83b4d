/**
 * Push from the configuration: the VAPID keys (given, or generated once into the data dir so the
 * embedded platform has Web Push out of the box), the senders of the configured kinds, and which
 * Web Push endpoints a device may register.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config.js';
import type { PushKind } from '../store/types.js';
import type { Redis } from 'ioredis';
import { enqueuePush, type Queues } from '../queues.js';
import type { PushWorkerContext } from '../workers/context.js';
import { closeSenders, type PushSenders } from './sender.js';
import { createWebPushSender, generateVapidKeys, type VapidKeys } from './webpush.js';
import { createFcmSender, type ServiceAccount } from './fcm.js';
import { createApnsSender } from './apns.js';

type PushConfig = Config['push'];

/**
 * The configured VAPID keys, else the pair in `<dataDir>/vapid.json`, created on first use.
 * Every process of a cluster must use the same pair: set the variables when they do not share a
 * data dir. Created exclusively, so two processes starting at once agree on one pair.
 */
export function loadVapidKeys(cfg: PushConfig, dataDir: string): VapidKeys {
  const { publicKey, privateKey, subject } = cfg.vapid;
  if (publicKey && privateKey) return { publicKey, privateKey, subject };
  const file = join(dataDir, 'vapid.json');
  if (!existsSync(file)) {
    try {
      writeFileSync(file, JSON.stringify(generateVapidKeys()) + '\n', { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const kept = JSON.parse(readFileSync(file, 'utf8')) as { publicKey?: unknown; privateKey?: unknown };
  if (typeof kept.publicKey !== 'string' || typeof kept.privateKey !== 'string') throw new Error(`${file}: not a VAPID key pair`);
  return { publicKey: kept.publicKey, privateKey: kept.privateKey, subject };
}

/** The kinds this configuration can send (Web Push always: its keys are generated when unset). */
export function pushKinds(cfg: PushConfig): PushKind[] {
  return ['webpush', ...(cfg.fcm ? ['fcm' as const] : []), ...(cfg.apns ? ['apns' as const] : [])];
}

/** The senders of the configured kinds; reads the FCM service account and the APNs key. */
export function createPushSenders(cfg: PushConfig, vapid: VapidKeys): PushSenders {
  const senders: PushSenders = {
    webpush: createWebPushSender({ vapid, allowEndpoint: (e) => isAllowedWebPushEndpoint(e, cfg.webpushOrigins) }),
  };
  if (cfg.fcm) {
    const sa = JSON.parse(readFileSync(cfg.fcm.serviceAccountFile, 'utf8')) as ServiceAccount;
    if (typeof sa.private_key !== 'string' || typeof sa.client_email !== 'string') {
      throw new Error(`${cfg.fcm.serviceAccountFile}: not a service-account key (private_key, client_email)`);
    }
    senders.fcm = createFcmSender({
      serviceAccount: sa, endpoint: cfg.fcm.endpoint,
      ...(cfg.fcm.projectId ? { projectId: cfg.fcm.projectId } : {}), ...(cfg.fcm.tokenUrl ? { tokenUrl: cfg.fcm.tokenUrl } : {}),
    });
  }
  if (cfg.apns) {
    senders.apns = createApnsSender({
      key: readFileSync(cfg.apns.keyFile, 'utf8'), keyId: cfg.apns.keyId, teamId: cfg.apns.teamId, environment: cfg.apns.environment,
      pushType: cfg.apns.pushType, ...(cfg.apns.topic ? { topic: cfg.apns.topic } : {}), ...(cfg.apns.endpoint ? { endpoint: cfg.apns.endpoint } : {}),
    });
  }
  return senders;
}

/**
 * Whether a Web Push endpoint is one of the allowed push services. The server POSTs to what
 * devices register, so an open list would let any device make it call internal addresses.
 * Patterns: `https://host[:port]`, `https://*.domain` (any subdomain), or `*` (any https URL).
 * A pattern without a port matches https on its default port, and http on any port (a local
 * push service, in tests and private deployments).
 */
export function isAllowedWebPushEndpoint(endpoint: string, origins: readonly string[]): boolean {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    return false;
  }
  if (u.username || u.password) return false;
  return origins.some((o) => {
    if (o === '*') return u.protocol === 'https:';
    const m = /^(https?:)\/\/(\*\.)?([^:/]+)(?::(\d+))?$/i.exec(o);
    if (!m || u.protocol !== m[1]!.toLowerCase()) return false;
    const host = m[3]!.toLowerCase();
    const hostOk = m[2] ? u.hostname.endsWith(`.${host}`) : u.hostname === host;
    const portOk = m[4] ? u.port === m[4] : u.protocol === 'http:' || u.port === '';
    return hostOk && portOk;
  });
}

/** What the push routes need (services/src/api/push.ts). */
export interface PushApiConfig {
  /** Browsers subscribe with it (`applicationServerKey`). */
  vapidPublicKey: string;
  /** The kinds a device may register. */
  kinds: readonly PushKind[];
  webpushOrigins: readonly string[];
  /** The configured APNs topic: a registration may name it or one of its sub-topics. */
  apnsTopic: string | undefined;
}

export function pushApiConfig(cfg: PushConfig, dataDir: string): PushApiConfig {
  return {
    vapidPublicKey: loadVapidKeys(cfg, dataDir).publicKey, kinds: pushKinds(cfg), webpushOrigins: cfg.webpushOrigins,
    apnsTopic: cfg.apns?.topic,
  };
}

/** The push part of the worker context: senders, Redis, limits, and how to queue (retries). */
export function pushWorkerContext(
  cfg: PushConfig,
  deps: { dataDir: string; redis: Redis; prefix: string; queues: Queues; onClose(close: () => Promise<void>): void },
): { push: PushWorkerContext } {
  const senders = createPushSenders(cfg, loadVapidKeys(cfg, deps.dataDir));
  deps.onClose(() => closeSenders(senders));
  return {
    push: {
      senders, redis: deps.redis, prefix: deps.prefix, minIntervalMs: cfg.minIntervalMs, ttlSec: cfg.ttlSec,
      maxAttempts: cfg.maxAttempts, retryBaseMs: cfg.retryBaseMs,
      enqueue: (jobs, delayMs) => enqueuePush(deps.queues, jobs, delayMs),
    },
  };
}
