/**
 * Configuration: parsed from the environment once, at the process edge, validated, frozen and
 * passed down. No other module reads process.env. Every variable is documented in
 * docs/CONFIG.md; a bad value stops the process with a message naming the variable.
 */
import { z } from 'zod';
import { ParleyError } from '@parley/client-sdk/protocol';

/** What the dashboard's admin token must look like (PARLEY_ADMIN_TOKEN, or the generated file: services/src/admin/admin-token.ts): long, and safe in an HTTP header. */
export const ADMIN_TOKEN_RE = /^[\x21-\x7e]{32,512}$/;

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const nonNegativeInt = z.coerce.number().int().min(0);

const ROLES = ['broker', 'api', 'workers'] as const;
export type Role = (typeof ROLES)[number];

const schema = z.object({
  PARLEY_ROLES: z
    .string()
    .default('all')
    .transform((v, ctx) => {
      const parts = v === 'all' ? [...ROLES] : v.split(',').map((s) => s.trim()).filter(Boolean);
      for (const p of parts) {
        if (!(ROLES as readonly string[]).includes(p)) {
          ctx.addIssue({ code: 'custom', message: `unknown role "${p}" (use all or ${ROLES.join(',')})` });
        }
      }
      return parts as Role[];
    }),
  PARLEY_DATA_DIR: z.string().min(1).default('./data'),
  PARLEY_HOST: z.string().min(1).default('0.0.0.0'),
  PARLEY_MQTT_PORT: port.default(1883),
  PARLEY_WS_PORT: port.default(8083),
  PARLEY_HTTP_PORT: port.default(8080),
  PARLEY_METRICS_PORT: port.optional(),
  PARLEY_REDIS_URL: z.string().url().optional(),
  PARLEY_REDIS_PORT: port.default(0),
  PARLEY_REDIS_APPENDFSYNC: z.enum(['everysec', 'always', 'no']).default('everysec'),
  PARLEY_STORE: z.enum(['sqlite', 'mongo']).default('sqlite'),
  MONGO_URL: z.string().optional(),
  PARLEY_MONGO_DB: z.string().min(1).default('parley'),
  PARLEY_SECRET: z.string().min(16).optional(),
  PARLEY_ADMIN_TOKEN: z.string().regex(ADMIN_TOKEN_RE, 'at least 32 printable characters, no spaces (at most 512)').optional(),
  PARLEY_SMS: z.enum(['console', 'webhook']).default('console'),
  PARLEY_SMS_WEBHOOK_URL: z.string().url().optional(),
  PARLEY_MAX_PAYLOAD_BYTES: positiveInt.default(65536),
  PARLEY_MAX_DEVICES: positiveInt.max(64).default(5),
  PARLEY_LINK_HISTORY: z.coerce.number().int().min(0).max(100_000).default(1000),
  PARLEY_LINK_CODE_TTL_SEC: positiveInt.max(3600).default(120),
  PARLEY_MAX_GROUP_MEMBERS: positiveInt.max(4096).default(1024),
  PARLEY_MEDIA: z.enum(['embedded', 's3']).default('embedded'),
  PARLEY_PUBLIC_URL: z.string().url().optional(),
  PARLEY_CORS_ORIGINS: z.string().default('*').transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean)),
  S3_ENDPOINT: z.string().url().optional(),
  S3_PUBLIC_ENDPOINT: z.string().url().optional(),
  S3_ACCESS_KEY: z.string().optional(),
  S3_SECRET_KEY: z.string().optional(),
  S3_BUCKET: z.string().min(3).max(63).default('parley-media'),
  S3_REGION: z.string().default('us-east-1'),
  PARLEY_MEDIA_RETENTION_DAYS: z.coerce.number().positive().default(30),
  PARLEY_MEDIA_MAX_IMAGE_MB: positiveInt.default(16),
  PARLEY_MEDIA_MAX_VIDEO_MB: positiveInt.default(100),
  PARLEY_MEDIA_MAX_AUDIO_MB: positiveInt.default(100),
  PARLEY_MEDIA_MAX_DOCUMENT_MB: positiveInt.default(2048),
  PARLEY_MEDIA_MAX_PIXELS: positiveInt.default(50_000_000),
  PARLEY_RETENTION_DAYS: z.coerce.number().positive().default(30),
  PARLEY_CODE_TTL_SEC: positiveInt.default(900),
  PARLEY_CODE_MAX_ATTEMPTS: positiveInt.default(5),
  PARLEY_CODE_RATE_PER_PHONE: positiveInt.default(5),
  PARLEY_CODE_RATE_PER_IP: positiveInt.default(30),
  PARLEY_RATE_WINDOW_SEC: positiveInt.default(3600),
  PARLEY_LOGIN_FAILURES_PER_MIN: positiveInt.default(20),
  PARLEY_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  PARLEY_WORKER_CONCURRENCY: positiveInt.default(8),
  PARLEY_PERSIST_SHARDS: positiveInt.max(64).default(8),
  PARLEY_FANOUT_CHUNK: positiveInt.max(10_000).default(128),
  PARLEY_BATCH_MAX: positiveInt.default(500),
  PARLEY_BATCH_DELAY_MS: z.coerce.number().min(0).default(1),
  PARLEY_BATCH_IN_FLIGHT: positiveInt.default(1),
  PARLEY_ACK_DELAY_MS: z.coerce.number().min(0).default(20),
  PARLEY_INGEST_MAX_BACKLOG_MS: z.coerce.number().int().min(0).default(2000),
  PARLEY_INGEST_MAX_HOLD_MS: positiveInt.default(10_000),
  PARLEY_TRUST_PROXY: bool.default(false),
  // Broker limits (broker/src/limits.ts); 0 turns a limit off where docs/CONFIG.md says so.
  PARLEY_MAX_CONNECTIONS: nonNegativeInt.default(10_000),
  PARLEY_MAX_PACKET_BYTES: positiveInt.optional(),
  PARLEY_PUBLISH_RATE: nonNegativeInt.default(1000),
  PARLEY_PUBLISH_BURST: positiveInt.default(10_000),
  PARLEY_MAX_INFLIGHT: nonNegativeInt.default(1000),
  PARLEY_DRAIN_TIMEOUT_MS: nonNegativeInt.default(10_000),
  // Presence (services/src/live/presence.ts): a node refreshes its connections every REFRESH;
  // a connection not refreshed for TTL (its node stopped) goes offline.
  PARLEY_PRESENCE_TTL_SEC: positiveInt.default(30),
  PARLEY_PRESENCE_REFRESH_SEC: positiveInt.default(10),
  PARLEY_CONTACTS_PER_DAY: positiveInt.default(5000),
  PARLEY_CONTACTS_REQUESTS_PER_HOUR: positiveInt.default(60),
  PARLEY_VAPID_PUBLIC_KEY: z.string().regex(/^[A-Za-z0-9_-]{86,88}$/, 'an uncompressed P-256 public key, base64url').optional(),
  PARLEY_VAPID_PRIVATE_KEY: z.string().regex(/^[A-Za-z0-9_-]{42,44}$/, 'a P-256 private key, base64url').optional(),
  PARLEY_VAPID_SUBJECT: z.string().regex(/^(mailto:|https:\/\/)\S+$/, 'a mailto: or https: URL').default('mailto:push@parley.invalid'),
  PARLEY_WEBPUSH_ORIGINS: z.string()
    .default('https://fcm.googleapis.com,https://updates.push.services.mozilla.com,https://*.notify.windows.com,https://web.push.apple.com')
    .transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
    .refine((list) => list.every((o) => o === '*' || /^https?:\/\/(\*\.)?[a-z0-9.-]+(:\d+)?$/i.test(o)), 'origins like https://*.example.com or http://localhost:8090, or *'),
  PARLEY_FCM_SERVICE_ACCOUNT: z.string().min(1).optional(),
  PARLEY_FCM_PROJECT_ID: z.string().min(1).optional(),
  PARLEY_FCM_ENDPOINT: z.string().url().default('https://fcm.googleapis.com'),
  PARLEY_FCM_TOKEN_URL: z.string().url().optional(),
  PARLEY_APNS_KEY_FILE: z.string().min(1).optional(),
  PARLEY_APNS_KEY_ID: z.string().min(1).optional(),
  PARLEY_APNS_TEAM_ID: z.string().min(1).optional(),
  PARLEY_APNS_TOPIC: z.string().regex(/^[A-Za-z0-9.-]{1,255}$/, 'a bundle id').optional(),
  PARLEY_APNS_ENVIRONMENT: z.enum(['production', 'development']).default('production'),
  PARLEY_APNS_ENDPOINT: z.string().url().optional(),
  PARLEY_APNS_PUSH_TYPE: z.enum(['background', 'alert']).default('background'),
  PARLEY_PUSH_MIN_INTERVAL_MS: nonNegativeInt.default(3000),
  PARLEY_PUSH_CONCURRENCY: positiveInt.max(1000).default(16),
  PARLEY_PUSH_TTL_SEC: positiveInt.max(2_419_200).default(86_400),
  PARLEY_PUSH_MAX_ATTEMPTS: positiveInt.max(20).default(5),
  PARLEY_PUSH_RETRY_BASE_MS: positiveInt.default(1000),
  PARLEY_STATUS_TTL_HOURS: z.coerce.number().positive().max(24 * 30).default(24),
  PARLEY_STATUS_MAX_LIVE: positiveInt.max(1000).default(30),
  PARLEY_STATUS_POSTS_PER_HOUR: positiveInt.default(30),
  /** Account deletion: how long the SMS confirmation code is valid. */
  PARLEY_DELETION_CODE_TTL_SEC: positiveInt.max(3600).default(300),
  /** Account export: archives per user per hour. */
  PARLEY_EXPORTS_PER_HOUR: positiveInt.max(1000).default(4),
  /** The MLS key directory (services/src/api/keys.ts). */
  PARLEY_KEY_PACKAGES_MAX: positiveInt.max(10_000).default(200),
  PARLEY_KEY_PACKAGES_LOW: nonNegativeInt.default(20),
  PARLEY_KEY_CLAIMS_PER_HOUR: positiveInt.default(5000),
});

export interface Config {
  roles: readonly Role[];
  dataDir: string;
  host: string;
  mqttPort: number;
  wsPort: number;
  httpPort: number;
  /**
   * A small HTTP listener for /metrics, /healthz and /readyz (0 = any free port); unset = none.
   * The API serves the same routes, so a process without the `api` role needs it to be watched.
   */
  metricsPort: number | undefined;
  /** External Redis; when absent a private redis-server is spawned under dataDir. */
  redisUrl: string | undefined;
  redisPort: number;
  redisAppendfsync: 'everysec' | 'always' | 'no';
  store: { kind: 'sqlite'; file: string } | { kind: 'mongo'; url: string; dbName: string };
  /** Server secret for code HMACs; generated and kept under dataDir when not given. */
  secret: string | undefined;
  /** The dashboard's admin credential (services/src/admin/admin-token.ts); generated into dataDir when not given. */
  adminToken: string | undefined;
  sms: { kind: 'console' } | { kind: 'webhook'; url: string };
  maxPayloadBytes: number;
  maxDevices: number;
  /** Messages per chat a newly linked device receives from before it was linked. */
  linkHistory: number;
  linkCodeTtlMs: number;
  maxGroupMembers: number;
  /** Where media objects live: files under the data dir served by the API, or an S3 endpoint. */
  media:
    | { kind: 'embedded'; root: string }
    | { kind: 's3'; endpoint: string; publicEndpoint: string | undefined; accessKey: string; secretKey: string; bucket: string; region: string };
  mediaRetentionMs: number;
  /** The HTTP API's base URL as clients reach it (behind a proxy); the embedded media store signs URLs to it. */
  publicUrl: string | undefined;
  /** Origins a browser may call the API from; `*` for any. */
  corsOrigins: string[];
  /** Largest upload per kind, bytes. */
  mediaMaxBytes: { image: number; video: number; audio: number; voice: number; document: number };
  /** Images with more pixels are refused by the thumbnailer (decompression bombs). */
  mediaMaxPixels: number;
  retentionMs: number;
  codeTtlMs: number;
  codeMaxAttempts: number;
  codeRatePerPhone: number;
  codeRatePerIp: number;
  rateWindowSec: number;
  loginFailuresPerMin: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  workerConcurrency: number;
  /**
   * How many ordered `persist` queues the chats are spread over (by a hash of the chat). Change it
   * only with the queues drained: a chat's waiting jobs would otherwise sit in two queues.
   */
  persistShards: number;
  /** Devices per fan-out job; chats with at most this many devices are delivered inline. */
  fanoutChunk: number;
  batchMax: number;
  batchDelayMs: number;
  batchInFlight: number;
  ackDelayMs: number;
  /** Back-pressure on new messages (services/src/ingest-gate.ts). */
  ingestGate: { maxBacklogMs: number; maxHoldMs: number };
  trustProxy: boolean;
  /** Per-node and per-client broker limits (broker/src/limits.ts). */
  brokerLimits: {
    maxConnections: number;
    maxPacketBytes: number;
    publishRatePerSec: number;
    publishBurst: number;
    maxInflight: number;
    drainTimeoutMs: number;
  };
  presence: { ttlMs: number; refreshMs: number };
  /**
   * Contacts discovery limits against enumeration (Redis, cluster-wide): phone hashes a user may
   * look up per day, and look-up requests per client address per hour.
   */
  contactLimits: { hashesPerUserPerDay: number; requestsPerAddressPerHour: number };
  /** Push wake-ups for offline devices (services/src/push/, services/src/workers/push.ts). */
  push: {
    /** VAPID keys; generated into the data dir when unset. */
    vapid: { publicKey: string | undefined; privateKey: string | undefined; subject: string };
    /** Web Push endpoints a device may register: origins, `*.` matching any subdomain, `*` any https URL. */
    webpushOrigins: readonly string[];
    /** FCM HTTP v1; null = FCM registrations refused. */
    fcm: { serviceAccountFile: string; projectId: string | undefined; endpoint: string; tokenUrl: string | undefined } | null;
    /** APNs token auth; null = APNs registrations refused. */
    apns: {
      keyFile: string; keyId: string; teamId: string; topic: string | undefined; environment: 'production' | 'development';
      endpoint: string | undefined; pushType: 'background' | 'alert';
    } | null;
    /** At most one wake-up per device and chat in this long. */
    minIntervalMs: number;
    /** Concurrent `push` jobs per worker process. */
    concurrency: number;
    /** How long a push service keeps an undelivered wake-up. */
    ttlSec: number;
    /** Sends per device and wake-up before it is given up (retryable failures). */
    maxAttempts: number;
    /** First retry delay; doubled each time. */
    retryBaseMs: number;
  };
  /** Status posts: how long one lives, how many of a user's may be live at once, how many he may post per hour. */
  status: { ttlMs: number; maxLive: number; postsPerHour: number };
  /** Account deletion and export: the confirmation code's lifetime, exports per user per hour. */
  account: { deletionCodeTtlMs: number; exportsPerHour: number };
  /**
   * The MLS key directory: key packages a device may hold (and is asked to keep, `target`), the
   * count under which it is told it runs low, and the users a device may claim key packages of
   * per hour (against draining others' pools).
   */
  keys: { maxPackages: number; lowWater: number; claimsPerHour: number };
}

const MB = 1024 * 1024;

/** Parses an environment; throws ParleyError(E_CONFIG) naming every bad variable. */
export function parseConfig(env: Record<string, string | undefined>): Readonly<Config> {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const r = schema.safeParse(cleaned);
  if (!r.success) {
    const detail = r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ParleyError('E_CONFIG', detail);
  }
  const e = r.data;
  if (e.PARLEY_STORE === 'mongo' && !e.MONGO_URL) {
    throw new ParleyError('E_CONFIG', 'MONGO_URL: required when PARLEY_STORE=mongo');
  }
  if (e.PARLEY_MEDIA === 's3' && (!e.S3_ENDPOINT || !e.S3_ACCESS_KEY || !e.S3_SECRET_KEY)) {
    throw new ParleyError('E_CONFIG', 'S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY: required when PARLEY_MEDIA=s3');
  }
  if (e.PARLEY_PRESENCE_TTL_SEC < 2 * e.PARLEY_PRESENCE_REFRESH_SEC) {
    // One late refresh must not flap a connected user offline.
    throw new ParleyError('E_CONFIG', 'PARLEY_PRESENCE_TTL_SEC: must be at least twice PARLEY_PRESENCE_REFRESH_SEC');
  }
  if (!e.PARLEY_VAPID_PUBLIC_KEY !== !e.PARLEY_VAPID_PRIVATE_KEY) {
    throw new ParleyError('E_CONFIG', 'PARLEY_VAPID_PUBLIC_KEY, PARLEY_VAPID_PRIVATE_KEY: set both or neither');
  }
  const apnsSet = [e.PARLEY_APNS_KEY_FILE, e.PARLEY_APNS_KEY_ID, e.PARLEY_APNS_TEAM_ID].filter(Boolean).length;
  if (apnsSet !== 0 && apnsSet !== 3) {
    throw new ParleyError('E_CONFIG', 'PARLEY_APNS_KEY_FILE, PARLEY_APNS_KEY_ID, PARLEY_APNS_TEAM_ID: set all three or none');
  }
  if (e.PARLEY_KEY_PACKAGES_LOW >= e.PARLEY_KEY_PACKAGES_MAX) {
    throw new ParleyError('E_CONFIG', 'PARLEY_KEY_PACKAGES_LOW: must be below PARLEY_KEY_PACKAGES_MAX');
  }
  if (e.PARLEY_SMS === 'webhook' && !e.PARLEY_SMS_WEBHOOK_URL) {
    throw new ParleyError('E_CONFIG', 'PARLEY_SMS_WEBHOOK_URL: required when PARLEY_SMS=webhook');
  }
  const cfg: Config = {
    roles: Object.freeze(e.PARLEY_ROLES),
    dataDir: e.PARLEY_DATA_DIR,
    host: e.PARLEY_HOST,
    mqttPort: e.PARLEY_MQTT_PORT,
    wsPort: e.PARLEY_WS_PORT,
    httpPort: e.PARLEY_HTTP_PORT,
    metricsPort: e.PARLEY_METRICS_PORT,
    redisUrl: e.PARLEY_REDIS_URL,
    redisPort: e.PARLEY_REDIS_PORT,
    redisAppendfsync: e.PARLEY_REDIS_APPENDFSYNC,
    store:
      e.PARLEY_STORE === 'mongo'
        ? { kind: 'mongo', url: e.MONGO_URL as string, dbName: e.PARLEY_MONGO_DB }
        : { kind: 'sqlite', file: `${e.PARLEY_DATA_DIR}/parley.sqlite` },
    secret: e.PARLEY_SECRET,
    adminToken: e.PARLEY_ADMIN_TOKEN,
    sms: e.PARLEY_SMS === 'webhook' ? { kind: 'webhook', url: e.PARLEY_SMS_WEBHOOK_URL as string } : { kind: 'console' },
    maxPayloadBytes: e.PARLEY_MAX_PAYLOAD_BYTES,
    maxDevices: e.PARLEY_MAX_DEVICES,
    linkHistory: e.PARLEY_LINK_HISTORY,
    linkCodeTtlMs: e.PARLEY_LINK_CODE_TTL_SEC * 1000,
    maxGroupMembers: e.PARLEY_MAX_GROUP_MEMBERS,
    media: e.PARLEY_MEDIA === 's3'
      ? { kind: 's3', endpoint: e.S3_ENDPOINT as string, publicEndpoint: e.S3_PUBLIC_ENDPOINT, accessKey: e.S3_ACCESS_KEY as string, secretKey: e.S3_SECRET_KEY as string, bucket: e.S3_BUCKET, region: e.S3_REGION }
      : { kind: 'embedded', root: `${e.PARLEY_DATA_DIR}/media` },
    mediaRetentionMs: Math.round(e.PARLEY_MEDIA_RETENTION_DAYS * 86_400_000),
    publicUrl: e.PARLEY_PUBLIC_URL,
    corsOrigins: e.PARLEY_CORS_ORIGINS,
    mediaMaxBytes: Object.freeze({
      image: e.PARLEY_MEDIA_MAX_IMAGE_MB * MB, video: e.PARLEY_MEDIA_MAX_VIDEO_MB * MB, audio: e.PARLEY_MEDIA_MAX_AUDIO_MB * MB,
      voice: e.PARLEY_MEDIA_MAX_AUDIO_MB * MB, document: e.PARLEY_MEDIA_MAX_DOCUMENT_MB * MB,
    }),
    mediaMaxPixels: e.PARLEY_MEDIA_MAX_PIXELS,
    retentionMs: Math.round(e.PARLEY_RETENTION_DAYS * 86_400_000),
    codeTtlMs: e.PARLEY_CODE_TTL_SEC * 1000,
    codeMaxAttempts: e.PARLEY_CODE_MAX_ATTEMPTS,
    codeRatePerPhone: e.PARLEY_CODE_RATE_PER_PHONE,
    codeRatePerIp: e.PARLEY_CODE_RATE_PER_IP,
    rateWindowSec: e.PARLEY_RATE_WINDOW_SEC,
    loginFailuresPerMin: e.PARLEY_LOGIN_FAILURES_PER_MIN,
    logLevel: e.PARLEY_LOG_LEVEL,
    workerConcurrency: e.PARLEY_WORKER_CONCURRENCY,
    persistShards: e.PARLEY_PERSIST_SHARDS,
    fanoutChunk: e.PARLEY_FANOUT_CHUNK,
    batchMax: e.PARLEY_BATCH_MAX,
    batchDelayMs: e.PARLEY_BATCH_DELAY_MS,
    batchInFlight: e.PARLEY_BATCH_IN_FLIGHT,
    ackDelayMs: e.PARLEY_ACK_DELAY_MS,
    ingestGate: { maxBacklogMs: e.PARLEY_INGEST_MAX_BACKLOG_MS, maxHoldMs: e.PARLEY_INGEST_MAX_HOLD_MS },
    trustProxy: e.PARLEY_TRUST_PROXY,
    brokerLimits: Object.freeze({
      maxConnections: e.PARLEY_MAX_CONNECTIONS,
      // Twice the payload limit by default, so a payload somewhat over it still gets the polite
      // E_PAYLOAD_TOO_LARGE answer; only far larger packets close the connection.
      maxPacketBytes: e.PARLEY_MAX_PACKET_BYTES ?? 2 * e.PARLEY_MAX_PAYLOAD_BYTES + 1024,
      publishRatePerSec: e.PARLEY_PUBLISH_RATE,
      publishBurst: e.PARLEY_PUBLISH_BURST,
      maxInflight: e.PARLEY_MAX_INFLIGHT,
      drainTimeoutMs: e.PARLEY_DRAIN_TIMEOUT_MS,
    }),
    presence: Object.freeze({ ttlMs: e.PARLEY_PRESENCE_TTL_SEC * 1000, refreshMs: e.PARLEY_PRESENCE_REFRESH_SEC * 1000 }),
    contactLimits: Object.freeze({ hashesPerUserPerDay: e.PARLEY_CONTACTS_PER_DAY, requestsPerAddressPerHour: e.PARLEY_CONTACTS_REQUESTS_PER_HOUR }),
    push: Object.freeze({
      vapid: Object.freeze({ publicKey: e.PARLEY_VAPID_PUBLIC_KEY, privateKey: e.PARLEY_VAPID_PRIVATE_KEY, subject: e.PARLEY_VAPID_SUBJECT }),
      webpushOrigins: Object.freeze(e.PARLEY_WEBPUSH_ORIGINS),
      fcm: e.PARLEY_FCM_SERVICE_ACCOUNT
        ? Object.freeze({ serviceAccountFile: e.PARLEY_FCM_SERVICE_ACCOUNT, projectId: e.PARLEY_FCM_PROJECT_ID, endpoint: e.PARLEY_FCM_ENDPOINT, tokenUrl: e.PARLEY_FCM_TOKEN_URL })
        : null,
      apns: e.PARLEY_APNS_KEY_FILE && e.PARLEY_APNS_KEY_ID && e.PARLEY_APNS_TEAM_ID
        ? Object.freeze({
          keyFile: e.PARLEY_APNS_KEY_FILE, keyId: e.PARLEY_APNS_KEY_ID, teamId: e.PARLEY_APNS_TEAM_ID, topic: e.PARLEY_APNS_TOPIC,
          environment: e.PARLEY_APNS_ENVIRONMENT, endpoint: e.PARLEY_APNS_ENDPOINT, pushType: e.PARLEY_APNS_PUSH_TYPE,
        })
        : null,
      minIntervalMs: e.PARLEY_PUSH_MIN_INTERVAL_MS,
      concurrency: e.PARLEY_PUSH_CONCURRENCY,
      ttlSec: e.PARLEY_PUSH_TTL_SEC,
      maxAttempts: e.PARLEY_PUSH_MAX_ATTEMPTS,
      retryBaseMs: e.PARLEY_PUSH_RETRY_BASE_MS,
    }),
    status: Object.freeze({
      ttlMs: Math.round(e.PARLEY_STATUS_TTL_HOURS * 3_600_000), maxLive: e.PARLEY_STATUS_MAX_LIVE, postsPerHour: e.PARLEY_STATUS_POSTS_PER_HOUR,
    }),
    account: Object.freeze({ deletionCodeTtlMs: e.PARLEY_DELETION_CODE_TTL_SEC * 1000, exportsPerHour: e.PARLEY_EXPORTS_PER_HOUR }),
    keys: Object.freeze({
      maxPackages: e.PARLEY_KEY_PACKAGES_MAX, lowWater: e.PARLEY_KEY_PACKAGES_LOW, claimsPerHour: e.PARLEY_KEY_CLAIMS_PER_HOUR,
    }),
  };
  return Object.freeze(cfg);
}
