/**
 * The composition root: wires a frozen Config to the adapters and starts the roles it names
 * (broker, api, workers; `all` by default). Nothing below this file reads the environment.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { WATCH_TTL_MS } from '@parley/client-sdk/protocol';
import { pino, type Logger } from 'pino';
import redisPersistence from 'aedes-persistence-redis';
import MQEmitterRedis from 'mqemitter-redis';
import type { FastifyInstance } from 'fastify';
import {
  createBrokerNode, isLiveOnlyPacket, liveOnlyPersistence, type BrokerNode,
} from '../../broker/src/index.js';
import type { Config } from './config.js';
import { startRedisServer, type RedisServer } from './redis/spawn.js';
import { redisErrorLog } from './redis/error-log.js';
import { createMetrics, type Metrics } from './metrics/metrics.js';
import { checkReadiness, opsRoutes, startOpsServer, type Ops } from './metrics/health.js';
import { openStore } from './store/index.js';
import type { Store } from './store/types.js';
import { JOB, enqueueFanout, openQueues, queueIngestSink, type QueueSettings, type Queues } from './queues.js';
import { createIngestGate } from './ingest-gate.js';
import { createInboxPublisher, type InboxPublisher } from './delivery/publisher.js';
import { redisBusSender, redisDeliveryBus } from './delivery/bus.js';
import { startWorkers, type Workers } from './workers/index.js';
import { createApi } from './api/app.js';
import { Groups } from './groups/groups.js';
import { avatarAccess } from './social/privacy.js';
import { redisContactLimiter } from './social/contact-limits.js';
import { Attachments, partSizeFor } from './media/attachments.js';
import type { BlobStore } from './media/blob-store.js';
import { createFsBlobStore, type FsBlobStore } from './media/fs-blob-store.js';
import { createS3BlobStore } from './media/s3-blob-store.js';
import { fanoutJobs } from './workers/fanout.js';
import { enqueueStatusFanout } from './workers/status-fanout.js';
import { identityEventsQueue } from './workers/identity-events.js';
import { StatusService } from './status/status.js';
import { createDeviceAuth } from './auth/device-auth.js';
import { redisRateLimiter } from './auth/rate-limit.js';
import { consoleSms, webhookSms, type SmsSender } from './sms/sms.js';
import { pushApiConfig, pushWorkerContext } from './push/setup.js';
import { createLiveService } from './live/live.js';
import { createRedisPresence } from './live/presence.js';
import { createRedisWatchers } from './live/watchers.js';
import { once, redisAccount, type BusEmitter } from './account/redis-account.js';
import { loadAdminToken } from './admin/admin-token.js';
import { adminApi } from './admin/admin-api.js';
import { clusterQueues } from './admin/cluster-view.js';
import { notingErrors, redisLastErrors } from './admin/last-error.js';
import { startNodeReporter } from './admin/node-report.js';
import { parleyVersion } from './admin/version.js';

export interface PlatformDeps {
  /** Replaces the SMS adapter chosen by config (tests capture codes this way). */
  sms?: SmsSender;
  logger?: Logger;
  /**
   * The clock of the API, its services and the workers (what expires when: status posts, codes,
   * media, retention). Tests move it forward; Redis TTLs and the broker keep real time. @defaultValue Date.now
   */
  now?: () => number;
}

export interface Platform {
  /** `metrics`: the /metrics, /healthz and /readyz listener (PARLEY_METRICS_PORT), when there is one. */
  readonly urls: { mqtt?: string; ws?: string; http?: string; metrics?: string; redis: string };
  readonly metrics: Metrics;
  readonly broker: BrokerNode | undefined;
  readonly redis: RedisServer | undefined;
  /** With the API role: the dashboard's address, and the file holding its admin token (null: PARLEY_ADMIN_TOKEN). */
  readonly dashboard: { url: string; tokenFile: string | null } | undefined;
  close(): Promise<void>;
}

/** Redacted everywhere: tokens, codes, passwords never reach a log line. */
export const REDACT = [
  'token', '*.token', 'password', '*.password', 'code', '*.code', 'secret', '*.secret',
  'req.headers.authorization', 'headers.authorization',
];

export function createLogger(level: Config['logLevel']): Logger {
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' } });
}

function loadSecret(cfg: Config): string {
  if (cfg.secret) return cfg.secret;
  const file = join(cfg.dataDir, 'secret');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const s = randomBytes(32).toString('base64url');
  writeFileSync(file, s + '\n', { mode: 0o600 });
  return s;
}

function redisConnection(url: string): { host: string; port: number; password?: string; db?: number } {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.pathname.length > 1 ? { db: Number(u.pathname.slice(1)) } : {}),
  };
}

/** The ioredis that aedes-persistence-redis itself loads (whatever version npm gave it). */
const PersistenceRedis = createRequire(createRequire(import.meta.url).resolve('aedes-persistence-redis'))('ioredis').Redis as typeof Redis;

const KEY_PREFIX = 'parley';
const REVOKE_CHANNEL = `${KEY_PREFIX}:revoke`;
/** Shutdown (see `close` below): all steps, one step, and what the last step keeps. main.ts ends the process at 20 s. */
const SHUTDOWN_BUDGET_MS = 14_000;
const SHUTDOWN_STEP_MS = 8_000;
const LAST_STEP_MS = 5_000;

export async function startPlatform(cfg: Readonly<Config>, deps: PlatformDeps = {}): Promise<Platform> {
  const log = deps.logger ?? createLogger(cfg.logLevel);
  const clock = deps.now ?? Date.now;
  const startedAt = Date.now();
  const dataDir = resolve(cfg.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const closers: Array<() => Promise<unknown>> = [];
  const metrics = createMetrics();
  // Readiness: false until every role is up, and again from the start of shutdown.
  let started = false;
  /** Set once a shutdown step was late: Redis is taken to be away, its clients are dropped, not quit. */
  let redisAway = false;
  /**
   * Runs the shutdown steps in reverse order of start, within SHUTDOWN_BUDGET_MS in all (main.ts
   * ends the process at 20 s). A step may never end: BullMQ's close() and ioredis' quit() wait
   * forever while Redis is unreachable (taskforcesh/bullmq#4656). So each step gets at most
   * SHUTDOWN_STEP_MS (workers finishing their jobs, a broker draining), and once one was late the
   * next ones get a second each; a step left behind is ended by the process exit. The last step
   * (the private Redis's SHUTDOWN, its AOF flush, when it is ours) always keeps LAST_STEP_MS.
   */
  const close = async (): Promise<void> => {
    started = false;
    const deadline = Date.now() + SHUTDOWN_BUDGET_MS;
    const steps = closers.reverse();
    for (const [i, c] of steps.entries()) {
      const last = i === steps.length - 1;
      const left = deadline - Date.now();
      const ms = last ? Math.max(LAST_STEP_MS, left) : Math.max(100, Math.min(redisAway ? 1000 : SHUTDOWN_STEP_MS, left - LAST_STEP_MS));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => { timer = setTimeout(() => r('late'), ms); });
      const outcome = await Promise.race([c().catch((err: unknown) => log.warn({ err }, 'error during shutdown')), late]);
      clearTimeout(timer);
      if (outcome === 'late') {
        log.warn({ ms }, 'a shutdown step did not finish in time (Redis unreachable?); going on without it');
        redisAway = true;
      }
    }
    closers.length = 0;
  };

  try {
    const secret = loadSecret({ ...cfg, dataDir });
    let redisServer: RedisServer | undefined;
    let redisUrl = cfg.redisUrl;
    if (!redisUrl) {
      // Supervised: restarted on the same port and AOF if it dies; every client below reconnects
      // by itself (docs/RELIABILITY.md, "Redis"). An external Redis is not ours to restart.
      redisServer = await startRedisServer({
        dir: join(dataDir, 'redis'), port: cfg.redisPort, appendfsync: cfg.redisAppendfsync,
        supervise: true, log: log.child({ role: 'redis' }),
      });
      closers.push(() => redisServer!.stop());
      redisServer.onRestart(() => metrics.redisRestarted());
      redisUrl = redisServer.url;
    }
    const conn = redisConnection(redisUrl);
    // Every Redis client's 'error' listener: ioredis and BullMQ reconnect by themselves.
    const redisErrorLogged = redisErrorLog(log);
    const redisError = (source: string) => {
      const logged = redisErrorLogged(source);
      return (err: Error): void => { metrics.redisError(source); logged(err); };
    };
    const redis = new Redis({ ...conn, maxRetriesPerRequest: 3 });
    // A command during an outage fails and its caller handles that.
    redis.on('error', redisError('commands'));
    closers.push(async () => { if (redisAway) redis.disconnect(); else await redis.quit(); });

    // Timed and counted per operation (parley_store_*), for every role that uses it.
    const store: Store = metrics.instrumentStore(await openStore(
      cfg.store.kind === 'sqlite' ? { kind: 'sqlite', file: resolve(cfg.store.file) } : cfg.store,
    ));
    closers.push(() => store.close());

    const queueSettings: QueueSettings = {
      connection: { ...conn, maxRetriesPerRequest: null }, prefix: KEY_PREFIX, persistShards: cfg.persistShards,
      onError: redisError,
    };
    const queues: Queues = openQueues(queueSettings);
    closers.push(() => queues.close());
    metrics.watchQueues([...queues.persist, queues.fanout, queues.events, queues.maintenance, queues.media, queues.push]);
    metrics.watchRedis(() => redis.ping());
    const ops: Ops = {
      // The store probe is a read by primary key that finds nothing.
      ready: () => checkReadiness({ started: () => started, probes: { redis: () => redis.ping(), store: () => store.progress('-', '-') } }),
      metrics: () => metrics.scrape(),
    };

    // Media objects: the embedded store (files under the data dir, served by the API) or S3.
    let fsBlobs: FsBlobStore | null = null;
    let blobs: BlobStore;
    if (cfg.media.kind === 'embedded') {
      blobs = fsBlobs = createFsBlobStore({
        root: resolve(cfg.media.root), publicUrl: `http://127.0.0.1:${cfg.httpPort}`, secret,
        // No part larger than the largest the attachments hand out: a client cannot store more
        // than about its declared size (parts are signed one by one, up to the declared count).
        maxPartBytes: partSizeFor(Math.max(...Object.values(cfg.mediaMaxBytes))),
      });
    } else {
      blobs = createS3BlobStore({
        endpoint: cfg.media.endpoint, accessKey: cfg.media.accessKey,
        ...(cfg.media.publicEndpoint ? { publicEndpoint: cfg.media.publicEndpoint } : {}), secretKey: cfg.media.secretKey, bucket: cfg.media.bucket,
        region: cfg.media.region, lifecycleDays: cfg.mediaRetentionMs / 86_400_000 + 1,
      });
    }
    await blobs.init();
    closers.push(() => blobs.close());
    const limiter = redisRateLimiter(redis, KEY_PREFIX);
    // The last error each device was sent, for the dashboard's client look-up.
    const lastErrors = redisLastErrors(redis, KEY_PREFIX, log);
    const auth = createDeviceAuth(store, limiter, { failuresPerMin: cfg.loginFailuresPerMin, errors: lastErrors });
    // Closes a device's connection on every broker node: a revocation, or the dashboard's disconnect.
    const disconnectEverywhere = async (deviceId: string): Promise<void> => { await redis.publish(REVOKE_CHANNEL, deviceId); };

    const retentionSec = Math.ceil(cfg.retentionMs / 1000);
    const newPersistence = () => {
      // Auto-pipelining: concurrent publishes share socket writes (aedes-persistence-redis awaits
      // each of its commands, so without it every command is its own write and round trip).
      // Our own connection: aedes-persistence-redis adds no 'error' listener to the one it makes.
      // Made with the library's own ioredis (5.x; ours is 6.x, and the library on a 6.x
      // connection left SDK clients unable to connect: test/reliability/workers.test.ts).
      const db = new PersistenceRedis({ ...conn, enableAutoPipelining: true });
      db.on('error', redisError('mqtt persistence'));
      const p = redisPersistence({ conn: db, maxSessionDelivery: 1_000_000, packetTTL: () => retentionSec });
      closers.push(() => p.destroy());
      // Chat messages get no Redis copy per device: devices catch up from the store by watermark.
      return liveOnlyPersistence(p, isLiveOnlyPacket);
    };
    const newMq = () => {
      const mq = new (MQEmitterRedis as unknown as new (o: object) => { close(cb: () => void): void; state: { on(ev: 'error', fn: (err: Error) => void): void } })({ ...conn });
      // mqemitter-redis re-emits its connections' errors on `state`; unhandled, the first
      // ECONNREFUSED while Redis restarts would crash the process. ioredis reconnects by itself.
      mq.state.on('error', redisError('cluster bus'));
      return mq;
    };

    // Presence, watches and typing: Redis only, shared by every node; envelopes over the delivery bus.
    const live = createLiveService({
      presence: createRedisPresence(redis, KEY_PREFIX, { ttlMs: cfg.presence.ttlMs }),
      watchers: createRedisWatchers(redis, KEY_PREFIX, WATCH_TTL_MS),
      store, send: (items) => redisBusSender(redis, KEY_PREFIX).send(items), now: Date.now, log: log.child({ role: 'live' }),
    });

    const urls: { mqtt?: string; ws?: string; http?: string; metrics?: string; redis: string } = { redis: redisUrl };
    const shownHost = cfg.host === '0.0.0.0' ? '127.0.0.1' : cfg.host;

    let workers: Workers | undefined;
    let publisher: InboxPublisher | undefined;
    if (cfg.roles.includes('workers')) {
      publisher = notingErrors(await createInboxPublisher({ persistence: newPersistence(), mq: newMq(), bus: redisBusSender(redis, KEY_PREFIX) }), lastErrors);
      closers.push(() => publisher!.close());
      workers = await startWorkers(
        {
          store, publisher, log: log.child({ role: 'workers' }), now: clock, retentionMs: cfg.retentionMs,
          workerId: `${hostname()}:${process.pid}`,
          fanoutChunk: cfg.fanoutChunk,
          media: { blobs, maxPixels: cfg.mediaMaxPixels, timeoutSec: 20 },
          enqueueFanout: (jobs) => enqueueFanout(queues, jobs),
          ...pushWorkerContext(cfg.push, { dataDir, redis, prefix: KEY_PREFIX, queues, onClose: (c) => { closers.push(c); } }),
          enqueueStatusFanout: (jobs) => enqueueStatusFanout(queues, jobs),
          observer: metrics.workers,
        },
        queueSettings, queues, { concurrency: cfg.workerConcurrency, pushConcurrency: cfg.push.concurrency }, metrics.jobs,
      );
      closers.push(() => workers!.close());
    }

    let broker: BrokerNode | undefined;
    if (cfg.roles.includes('broker')) {
      const brokerLog = log.child({ role: 'broker' });
      const deliveryBus = redisDeliveryBus(conn, redis, KEY_PREFIX, redisError('delivery bus'));
      const gate = createIngestGate(queues.persist, cfg.ingestGate, (over, ageMs) => {
        if (over) brokerLog.warn({ backlogMs: ageMs }, 'persist backlog over the limit: holding sent ticks (back-pressure)');
        else brokerLog.info({ backlogMs: ageMs }, 'persist backlog back under the limit');
      });
      broker = await createBrokerNode(
        {
          persistence: newPersistence(), mq: newMq(), positions: store, bus: deliveryBus, routes: deliveryBus,
          auth, ingest: queueIngestSink(queues, gate), live, logger: brokerLog, observer: metrics.broker, errors: lastErrors,
        },
        { liveRefreshMs: cfg.presence.refreshMs, host: cfg.host, mqttPort: cfg.mqttPort, wsPort: cfg.wsPort, maxPayloadBytes: cfg.maxPayloadBytes, batch: { maxItems: cfg.batchMax, maxDelayMs: cfg.batchDelayMs, maxInFlight: cfg.batchInFlight }, ackDelayMs: cfg.ackDelayMs, limits: cfg.brokerLimits },
      );
      const b = broker;
      closers.push(() => b.close());
      await b.listen();
      metrics.watchConnections(() => b.connectedClients());
      metrics.watchInFlight(() => b.inFlight());
      const sub = new Redis({ ...conn });
      sub.on('error', redisError('revocations'));
      closers.push(async () => { if (redisAway) sub.disconnect(); else await sub.quit(); });
      await sub.subscribe(REVOKE_CHANNEL);
      // One message for a revocation and for the dashboard's disconnect: either way the device's
      // connection here closes (revocation is the store's part, done before publishing).
      sub.on('message', (_channel: string, deviceId: string) => b.disconnect(deviceId));
      urls.mqtt = `mqtt://${shownHost}:${b.mqttPort}`;
      urls.ws = `ws://${shownHost}:${b.wsPort}/mqtt`;
    }

    let api: FastifyInstance | undefined;
    let dashboard: Platform['dashboard'];
    if (cfg.roles.includes('api')) {
      const adminToken = loadAdminToken(cfg.adminToken, dataDir, log);
      api = createApi(
        {
          store, auth, limiter, secret, log: log.child({ role: 'api' }),
          sms: deps.sms ?? (cfg.sms.kind === 'webhook' ? webhookSms(cfg.sms.url) : consoleSms(log.child({ role: 'sms' }))),
          revoke: disconnectEverywhere,
          // Group changes are messages of the group: delivered by the fan-out like any other.
          attachments: new Attachments(
            {
              store, blobs, now: clock,
              // A user's profile photo: downloadable by those his privacy lets see it.
              avatarAccess: avatarAccess(store),
              enqueueThumbnail: async (attachmentId, again) => {
                // Again: a new job id per minute, since a failed job keeps its id for a week.
                const jobId = again ? `thumb-${attachmentId}-${Math.floor(Date.now() / 60_000)}` : `thumb-${attachmentId}`;
                await queues.media.add(JOB.thumbnail, { attachmentId }, { jobId });
              },
            },
            { maxBytes: cfg.mediaMaxBytes, retentionMs: cfg.mediaRetentionMs, uploadUrlTtlSec: 3600, downloadUrlTtlSec: 300 },
          ),
          ...(fsBlobs ? { blobRoutes: (app: FastifyInstance) => fsBlobs.routes(app) } : {}),
          groups: new Groups(
            { store, now: clock, deliver: (m) => enqueueFanout(queues, fanoutJobs(m.chatId, [m.seq])) },
            { maxGroupMembers: cfg.maxGroupMembers },
          ),
          contactLimiter: redisContactLimiter(redis, KEY_PREFIX, cfg.contactLimits),
          push: pushApiConfig(cfg.push, dataDir),
          now: clock,
          status: new StatusService(
            { store, limiter, now: clock, enqueueFanout: (job) => enqueueStatusFanout(queues, [job]) },
            cfg.status,
          ),
          // Account deletion: its Redis side, and the cluster bus on which it tells every node's
          // subscription table that the deleted devices' MQTT sessions are gone (opened on first use).
          account: {
            redis: redisAccount(redis, KEY_PREFIX, once(() => {
              const mq = newMq();
              closers.push(() => new Promise<void>((r) => mq.close(() => r())));
              return mq as unknown as BusEmitter;
            })),
            blobs,
          },
          forgetLive: (userId, deviceIds) => live.forget(userId, deviceIds),
          // A device's identity changes, as events in its user's chats (a job: one commit per chat).
          identityEvents: identityEventsQueue(queues),
          // "Replenish": to the device's live/ topic over the delivery bus, like presence and typing.
          notifyKeys: (notices) => live.notifyKeys(notices),
          // GET /metrics and /readyz beside the API's /healthz; the dashboard (/admin).
          extend: (app) => {
            opsRoutes(app, ops);
            adminApi({
              token: adminToken, redis, prefix: KEY_PREFIX, store, limiter, lastErrors, disconnect: disconnectEverywhere, now: clock,
              identityEvents: (job) => identityEventsQueue(queues).enqueue(job),
              queues: clusterQueues(queues),
              log: log.child({ role: 'admin' }),
            })(app);
          },
        },
        {
          maxDevices: cfg.maxDevices, linkHistory: cfg.linkHistory, linkCodeTtlMs: cfg.linkCodeTtlMs, codeTtlMs: cfg.codeTtlMs, codeMaxAttempts: cfg.codeMaxAttempts,
          codeRatePerPhone: cfg.codeRatePerPhone, codeRatePerIp: cfg.codeRatePerIp, rateWindowSec: cfg.rateWindowSec,
          trustProxy: cfg.trustProxy, bodyLimit: 65536, corsOrigins: cfg.corsOrigins,
          deletionCodeTtlMs: cfg.account.deletionCodeTtlMs, exportsPerHour: cfg.account.exportsPerHour,
          keys: cfg.keys,
        },
      );
      const a = api;
      await a.listen({ port: cfg.httpPort, host: cfg.host });
      closers.push(() => a.close());
      urls.http = `http://${shownHost}:${(a.server.address() as AddressInfo).port}`;
      // The embedded media store signs URLs to this API (its port is known only now when it is 0).
      fsBlobs?.setPublicUrl(cfg.publicUrl ?? urls.http);
      dashboard = { url: `${urls.http}/admin`, tokenFile: adminToken.file };
    }

    if (cfg.metricsPort !== undefined) {
      // Processes without the API role are watched here; with it, this is a second way in.
      const srv = await startOpsServer(ops, cfg.host, cfg.metricsPort);
      closers.push(() => srv.close());
      urls.metrics = `http://${shownHost}:${srv.port}`;
    }
    // Every process, whatever its roles, reports itself for the dashboard (services/src/admin/node-report.ts).
    const reporter = startNodeReporter({
      redis, prefix: KEY_PREFIX, registry: metrics.registry, log,
      identity: {
        nodeId: broker?.id ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`, roles: [...cfg.roles], host: hostname(), pid: process.pid,
        startedAt, version: parleyVersion(),
      },
    });
    closers.push(() => reporter.close());
    await reporter.reportNow();
    started = true;
    return { urls, broker, redis: redisServer, metrics, dashboard, close };
  } catch (err) {
    await close();
    throw err;
  }
}
