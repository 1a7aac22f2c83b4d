/**
 * Configuration: parsed from the environment once, at the process edge, validated, frozen and
 * passed down. No other module reads process.env. Every variable is documented in
 * docs/CONFIG.md; a bad value stops the process with a message naming the variable.
 */
import { z } from 'zod';
import { ParleyError } from '@parley/client-sdk/protocol';

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
  PARLEY_REDIS_URL: z.string().url().optional(),
  PARLEY_REDIS_PORT: port.default(0),
  PARLEY_REDIS_APPENDFSYNC: z.enum(['everysec', 'always', 'no']).default('everysec'),
  PARLEY_STORE: z.enum(['sqlite', 'mongo']).default('sqlite'),
  MONGO_URL: z.string().optional(),
  PARLEY_MONGO_DB: z.string().min(1).default('parley'),
  PARLEY_SECRET: z.string().min(16).optional(),
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
  // [presence] variables above this line (and in docs/CONFIG.md)
  // [social] variables above this line (and in docs/CONFIG.md)
  // [push] variables above this line (and in docs/CONFIG.md)
  // [status] variables above this line (and in docs/CONFIG.md)
  // [account] variables above this line (and in docs/CONFIG.md)
});

export interface Config {
  roles: readonly Role[];
  dataDir: string;
  host: string;
  mqttPort: number;
  wsPort: number;
  httpPort: number;
  /** External Redis; when absent a private redis-server is spawned under dataDir. */
  redisUrl: string | undefined;
  redisPort: number;
  redisAppendfsync: 'everysec' | 'always' | 'no';
  store: { kind: 'sqlite'; file: string } | { kind: 'mongo'; url: string; dbName: string };
  /** Server secret for code HMACs; generated and kept under dataDir when not given. */
  secret: string | undefined;
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
  // [presence] fields above this line
  // [social] fields above this line
  // [push] fields above this line
  // [status] fields above this line
  // [account] fields above this line
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
    redisUrl: e.PARLEY_REDIS_URL,
    redisPort: e.PARLEY_REDIS_PORT,
    redisAppendfsync: e.PARLEY_REDIS_APPENDFSYNC,
    store:
      e.PARLEY_STORE === 'mongo'
        ? { kind: 'mongo', url: e.MONGO_URL as string, dbName: e.PARLEY_MONGO_DB }
        : { kind: 'sqlite', file: `${e.PARLEY_DATA_DIR}/parley.sqlite` },
    secret: e.PARLEY_SECRET,
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
    // [presence] values above this line
    // [social] values above this line
    // [push] values above this line
    // [status] values above this line
    // [account] values above this line
  };
  return Object.freeze(cfg);
}
