/**
 * A Parley broker node: Aedes with device authentication, the ACL, and the durable ingest of
 * server-bound publishes. Listeners (TCP, WebSocket) are optional so tests can hand it a stream.
 */
import { createServer as createTcpServer, type Server as TcpServer, type AddressInfo } from 'node:net';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { Aedes, type Client, type PublishPacket, type PubrelPacket } from 'aedes';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { Logger } from 'pino';
import {
  ParleyError, decode, encode, inboxTopic, msgIdOf, parseTopic, peekKind, peekPosition, peekTs, type ErrorCode, type Envelope,
} from '@parley/client-sdk/protocol';
import { decideSubscribe, decidePublish } from './acl.js';
import { Batcher, BatcherClosedError, type BatcherOptions } from './batcher.js';
import { SINK_TOPIC, filterServerBound } from './mq-filter.js';
import { createLimits, type BrokerLimits } from './limits.js';
import { connectedClient, connectedClients, inFlightMessages } from './aedes-internals.js';
import { newConnectionToken } from './connection-token.js';
import { createDeliveryAgent, type DeliveryAgentOptions } from './delivery-agent.js';
import {
  OUTBOX_HANDLERS, TypingGate, WatchGate, handleRead, type HandlerDeps, type HandlerResult, type Inbound,
} from './handlers/index.js';
import type {
  BrokerObserver, ClientErrors, DeliveryBus, DeviceAuthenticator, DeviceRoutes, IngestAck, IngestMessage, IngestRead, IngestSink, LiveConnection, LiveSink, PositionReader,
} from './ingest.js';
import { NO_OBSERVER } from './ingest.js';

export interface BrokerOptions {
  /** Node id, unique in the cluster. @defaultValue random */
  id?: string;
  /** @defaultValue '0.0.0.0' */
  host: string;
  /** TCP MQTT port; 0 = ephemeral; null = no TCP listener. @defaultValue 1883 */
  mqttPort: number | null;
  /** WebSocket port (path /mqtt); 0 = ephemeral; null = none. @defaultValue 8083 */
  wsPort: number | null;
  /** Largest accepted PUBLISH payload. @defaultValue 65536 */
  maxPayloadBytes: number;
  /** Group commit of ingest writes. */
  batch: Partial<BatcherOptions>;
  /**
   * How long delivery acks (devices' PUBACKs of `msg`) gather before they are written. Nothing
   * waits on that write but the delivered tick, so a longer window costs no message latency and
   * turns a stream of acks into fewer jobs and fewer `receipt` envelopes. @defaultValue 20
   */
  ackDelayMs: number;
  /** Seconds a client may stay connected without CONNECT completing. @defaultValue 10000 */
  connectTimeoutMs: number;
  /** Per-client and per-node limits (see limits.ts). @defaultValue DEFAULT_LIMITS */
  limits: Partial<BrokerLimits>;
  /** The delivery agent (delivery-agent.ts). @defaultValue DEFAULT_AGENT_OPTIONS */
  delivery: Partial<DeliveryAgentOptions>;
  /**
   * How often the node tells the live service its connections are still here. A node that stops
   * (crashes) leaves its users online until the presence TTL, which must be a few times longer.
   * @defaultValue 10000
   */
  liveRefreshMs: number;
}

export const DEFAULT_BROKER_OPTIONS: Readonly<BrokerOptions> = Object.freeze({
  host: '0.0.0.0',
  mqttPort: 1883,
  wsPort: 8083,
  maxPayloadBytes: 65536,
  batch: {},
  ackDelayMs: 20,
  connectTimeoutMs: 10_000,
  limits: {},
  delivery: {},
  liveRefreshMs: 10_000,
});

export interface BrokerDeps {
  /**
   * aedes-persistence-redis (shared by every node and by the workers' publisher), wrapped by
   * `liveOnlyPersistence` so chat messages never get a Redis copy per device.
   */
  persistence: unknown;
  /** Where the delivery agent reads stored messages and watermarks. */
  positions: PositionReader;
  /** Live deliveries from the workers to the devices connected here. */
  bus: DeliveryBus;
  /** Records which node each connected device is on. */
  routes: DeviceRoutes;
  /** mqemitter-redis (the cluster bus). */
  mq: object;
  auth: DeviceAuthenticator;
  ingest: IngestSink;
  /** Presence, watches and typing (services/src/live/). */
  live?: LiveSink;
  /** Metrics: publishes, PUBACK times, deliveries, delivered ticks. @defaultValue NO_OBSERVER */
  observer?: BrokerObserver;
  /** Notes each error envelope sent to a device (the dashboard's client look-up). */
  errors?: ClientErrors;
  logger: Logger;
}

export interface BrokerNode {
  readonly aedes: Aedes;
  readonly id: string;
  /** Bound addresses after listen(). */
  readonly mqttPort: number | null;
  readonly wsPort: number | null;
  listen(): Promise<void>;
  /** Closes a device's connection on this node (revocation). */
  disconnect(deviceId: string): boolean;
  connectedClients(): number;
  /** Chat messages handed to connections on this node and not acknowledged yet (read on demand: O(connections)). */
  inFlight(): number;
  close(): Promise<void>;
}

interface Session {
  userId: string;
}

export async function createBrokerNode(deps: BrokerDeps, options: Partial<BrokerOptions> = {}): Promise<BrokerNode> {
  const opts: BrokerOptions = { ...DEFAULT_BROKER_OPTIONS, ...options };
  const log = deps.logger;
  const observer = deps.observer ?? NO_OBSERVER;
  const sessions = new WeakMap<Client, Session>();

  const messages = new Batcher<IngestMessage>((items) => deps.ingest.messages(items), opts.batch);
  const acks = new Batcher<IngestAck>((items) => deps.ingest.acks(items), { ...opts.batch, maxDelayMs: opts.ackDelayMs });
  const reads = new Batcher<IngestRead>((items) => deps.ingest.reads(items), opts.batch);
  const agent = createDeliveryAgent(deps.positions, log, opts.delivery, observer);
  const handlerDeps: HandlerDeps = { messages, reads, agent, live: deps.live, typingGate: new TypingGate(), watchGate: new WatchGate() };
  // Limits (limits.ts): hooked in below at authenticate, authorizePublish, authorizeForward, the
  // `ack` and `clientError` events and aedes.handle.
  const limits = createLimits(opts.limits, () => aedes, log);

  const aedes: Aedes = await Aedes.createBroker({
    ...(opts.id ? { id: opts.id } : {}),
    persistence: deps.persistence,
    mq: filterServerBound(deps.mq),
    connectTimeout: opts.connectTimeoutMs,
    drainTimeout: limits.options.drainTimeoutMs,
    authorizeForward(client, packet) {
      limits.forwarded(client, packet);
      return packet;
    },
    authenticate(client, username, password, done) {
      // The agent takes the client's deliveries over before Aedes restores its subscriptions; live
      // chat messages wait until the catch-up from the store (started on clientReady) is done.
      agent.attach(client);
      const fail = (code: 4 | 5 | 3): void => {
        // Logged without the password; brute force shows up here (and then as code 5).
        log.warn({ clientId: client.id, ip: (client.conn as { remoteAddress?: string } | undefined)?.remoteAddress, returnCode: code }, 'MQTT login refused');
        const err = Object.assign(new Error('not authorized'), { returnCode: code });
        done(err as Parameters<typeof done>[0], null);
      };
      const token = password ? password.toString('utf8') : '';
      // [MQTT-3.1.3-...] the username must name the device the clientId claims to be.
      if (!username || username !== client.id || !token) return fail(4);
      if (!limits.admit(client)) return fail(3);
      const ip = (client.conn as { remoteAddress?: string } | undefined)?.remoteAddress;
      deps.auth.authenticate(client.id, token, ip).then(
        (r) => {
          if (r.ok) {
            sessions.set(client, { userId: r.userId });
            done(null, true);
          } else fail(r.reason === 'unavailable' ? 3 : r.reason === 'limited' ? 5 : 4);
        },
        (err: unknown) => {
          log.error({ err }, 'authenticate failed');
          fail(3);
        },
      );
    },
    authorizeSubscribe(client, sub, done) {
      const d = decideSubscribe(client.id, sub.topic);
      if (!d.allow) {
        log.info({ clientId: client.id, topic: sub.topic }, 'subscribe denied');
        // null -> SUBACK return code 0x80 (Failure) [MQTT-3.9.3]
        return done(null, null);
      }
      // Mutated in place: Aedes persists packet.subscriptions (the same objects), so `live/` is
      // stored at QoS 0 and never queued. Its SUBACK still echoes the requested QoS.
      sub.qos = Math.min(sub.qos, d.qos) as 0 | 1;
      done(null, sub);
    },
    authorizePublish(client, packet, done) {
      if (!client) return done(null); // the broker's own publishes (wills are not used by Parley)
      const session = sessions.get(client);
      if (!session) return done(new Error('no session'));
      // Over its publish rate: disconnected without a PUBACK (limits.ts logs it).
      if (!limits.allowPublish(client)) return done(new Error('publish rate limit exceeded'));
      const decision = decidePublish(client.id, packet.topic);
      packet.retain = false; // nothing a device sends is ever retained
      if (!decision.allow) {
        observer.published('invalid');
        refuse(client, packet, decision.reason, packet.topic);
        return done(null);
      }
      const payload = packet.payload as Buffer;
      if (payload.length > opts.maxPayloadBytes) {
        observer.published('invalid');
        refuse(client, packet, 'E_PAYLOAD_TOO_LARGE', `${payload.length} > ${opts.maxPayloadBytes} bytes`);
        return done(null);
      }
      const inbound: Inbound = { client, userId: session.userId, payload, at: Date.now() };
      let accepted: HandlerResult;
      let kind: string;
      let clientMsgId: string | undefined;
      if (decision.kind === 'receipt') {
        if (payload.length > 0) {
          let env: Envelope | null = null;
          try { env = decode(payload); } catch { /* handled below */ }
          if (!env || env.kind !== 'read') {
            observer.published('invalid');
            refuse(client, packet, 'E_BAD_ENVELOPE', 'receipts carry an empty payload or a read envelope');
            return done(null);
          }
        }
        kind = 'read';
        observer.published(kind);
        accepted = handleRead(handlerDeps, inbound, decision.msgId);
      } else {
        let env: Envelope;
        try {
          env = decode(payload);
        } catch (err) {
          observer.published('invalid');
          refuse(client, packet, 'E_BAD_ENVELOPE', err instanceof ParleyError ? (err.detail ?? 'undecodable') : 'undecodable');
          return done(null);
        }
        kind = env.kind;
        const handler = OUTBOX_HANDLERS[env.kind];
        if (!handler) {
          observer.published('invalid');
          refuse(client, packet, 'E_BAD_ENVELOPE', `a device may not send ${env.kind} envelopes`);
          return done(null);
        }
        observer.published(kind);
        if (env.kind === 'send') {
          // Follow one message: this clientMsgId, then `persist` logs its chatId.seq, then the delivery ack.
          clientMsgId = env.clientMsgId;
          log.debug({ clientId: client.id, clientMsgId, to: env.to }, 'message received');
        }
        accepted = handler(handlerDeps, inbound, env);
      }
      if (accepted === null) {
        // Dealt with at once: PUBACK now, and nothing to route.
        packet.topic = SINK_TOPIC;
        observer.acknowledged(kind, Date.now() - inbound.at);
        return done(null);
      }
      // PUBACK (the sent tick) only once the ingest batch is durable. If that fails the connection
      // is closed without a PUBACK and the client resends with the same clientMsgId.
      accepted.then(
        () => {
          observer.acknowledged(kind, Date.now() - inbound.at);
          if (clientMsgId !== undefined) log.debug({ clientId: client.id, clientMsgId }, 'message accepted (sent tick)');
          done(null);
        },
        (err: unknown) => {
          if (err instanceof BatcherClosedError) log.debug({ clientId: client.id }, 'publish during shutdown; closing connection without PUBACK');
          else log.error({ err, clientId: client.id }, 'ingest failed; closing connection without PUBACK');
          done(err instanceof Error ? err : new Error(String(err)));
        },
      );
    },
  });

  function sendError(clientId: string, code: ErrorCode, detail?: string, ref?: string): void {
    const payload = Buffer.from(encode({ kind: 'error', code, detail, ref }));
    deps.errors?.sent(clientId, code);
    aedes.publish({ cmd: 'publish', topic: inboxTopic(clientId), payload, qos: 1, retain: false, dup: false }, (err) => {
      if (err) log.warn({ err, clientId, code }, 'could not publish error envelope');
    });
  }

  /** Acknowledge and drop: the client gets its PUBACK (so a bad packet is not redelivered forever) and an error envelope. */
  function refuse(client: Client, packet: PublishPacket, code: ErrorCode, detail: string, ref?: string): void {
    packet.topic = SINK_TOPIC;
    packet.retain = false;
    sendError(client.id, code, detail, ref);
  }

  aedes.on('ack', (packet: PublishPacket | PubrelPacket | undefined, client: Client) => {
    limits.acked(client);
    if (!packet || !client || packet.cmd !== 'publish') return;
    const t = parseTopic(packet.topic);
    if (!t || t.kind !== 'inbox') return;
    const pos = peekPosition(packet.payload as Buffer);
    if (!pos) return;
    if (deps.observer) {
      const ts = peekTs(packet.payload as Buffer);
      if (ts !== null) observer.deliveryAcked(ts);
    }
    if (log.isLevelEnabled('debug')) log.debug({ clientId: client.id, msgId: msgIdOf(pos.chatId, pos.seq) }, 'message delivered (device PUBACK)');
    acks.add({ d: client.id, c: pos.chatId, s: pos.seq, t: Date.now() }).catch((err: unknown) => {
      // Lost delivered ticks heal: the delivery stays undelivered and is resent on the next sync
      // (the SDK drops it as a duplicate, and its PUBACK then records the tick). During shutdown
      // Aedes still reports PUBACKs whose session clean-up was under way: expected, not a warning.
      if (err instanceof BatcherClosedError) log.debug({ clientId: client.id }, 'delivery ack after shutdown began; recorded on the next sync');
      else log.warn({ err }, 'could not record delivery ack');
    });
  });

  /** A token per connection, so a late clean-up of an old connection never removes a new route. */
  const connections = new WeakMap<Client, string>();
  let connectionSeq = 0;
  const liveConnection = (client: Client): LiveConnection | null => {
    const s = sessions.get(client);
    const connection = connections.get(client);
    return s && connection !== undefined ? { deviceId: client.id, userId: s.userId, nodeId: aedes.id, connection } : null;
  };
  // Presence holds only while refreshed: a node that dies stops refreshing and its devices go
  // offline when their time is up, wherever the watchers are.
  const liveTimer = deps.live
    ? setInterval(() => {
      const list: LiveConnection[] = [];
      for (const c of connectedClients(aedes)) {
        const l = liveConnection(c);
        if (l) list.push(l);
      }
      void deps.live?.refresh(aedes.id, list);
    }, opts.liveRefreshMs)
    : null;
  liveTimer?.unref();
  const busSubscription = await deps.bus.listen(
    aedes.id,
    (deviceId, payload) => {
      const c = connectedClient(aedes, deviceId);
      if (!c) return;
      const kind = peekKind(payload);
      // Ephemeral kinds go to `live/` (QoS 0): typing, presence, and a device's key pool notice.
      if (kind === 'typing' || kind === 'presence' || kind === 'keys') agent.live(c, payload);
      else agent.deliver(c, payload);
    },
    () => {
      log.warn({ devices: aedes.connectedClients }, 'delivery bus reconnected: the devices connected here catch up from the store');
      // Redis may have restarted and lost recent writes: put back the routes of the devices here
      // that have none (a device that has reconnected elsewhere since keeps its new route).
      for (const c of connectedClients(aedes)) {
        const connection = connections.get(c);
        if (connection !== undefined) {
          deps.routes.restore(c.id, aedes.id, connection).catch((err: unknown) => log.warn({ err, clientId: c.id }, 'could not restore the device route'));
        }
      }
      agent.resyncAll();
    },
  );
  aedes.on('clientReady', (client: Client) => {
    const connection = newConnectionToken(++connectionSeq, Date.now());
    connections.set(client, connection);
    // The route first: once it is in Redis, new deliveries come here, and the catch-up that
    // follows reads everything stored before.
    agent.ready(client, deps.routes.register(client.id, aedes.id, connection));
    const live = liveConnection(client);
    if (live) void deps.live?.connected(live);
  });
  aedes.on('subscribe', (subscriptions: Array<{ topic: string }>, client: Client) => {
    for (const sub of subscriptions) agent.subscribed(client, sub.topic);
  });
  aedes.on('clientDisconnect', (client: Client) => {
    const connection = connections.get(client);
    if (connection !== undefined) {
      deps.routes.unregister(client.id, aedes.id, connection).catch((err: unknown) => log.warn({ err, clientId: client.id }, 'could not remove the device route'));
    }
    const live = liveConnection(client);
    if (live) void deps.live?.disconnected(live);
  });
  aedes.on('clientError', (client: Client, err: Error) => {
    limits.clientError(client, err);
    log.debug({ clientId: client?.id, err: err.message }, 'client error');
  });
  aedes.on('connectionError', (_client: Client, err: Error) => {
    log.debug({ err: err.message }, 'connection error');
  });

  let tcp: TcpServer | null = null;
  let http: HttpServer | null = null;
  let wss: WebSocketServer | null = null;
  let boundMqtt: number | null = null;
  let boundWs: number | null = null;

  const listenOn = (srv: TcpServer | HttpServer, port: number): Promise<number> =>
    new Promise((res, rej) => {
      srv.once('error', rej);
      srv.listen(port, opts.host, () => {
        srv.off('error', rej);
        res((srv.address() as AddressInfo).port);
      });
    });

  const node: BrokerNode = {
    aedes,
    get id() { return aedes.id; },
    get mqttPort() { return boundMqtt; },
    get wsPort() { return boundWs; },
    async listen() {
      if (opts.mqttPort !== null) {
        tcp = createTcpServer((socket) => {
          // Small MQTT packets must not wait for the peer's delayed ACK (Nagle).
          socket.setNoDelay(true);
          aedes.handle(limits.guard(socket));
        });
        boundMqtt = await listenOn(tcp, opts.mqttPort);
      }
      if (opts.wsPort !== null) {
        http = createHttpServer((_req, res) => {
          res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket at /mqtt\n');
        });
        wss = new WebSocketServer({ server: http, path: '/mqtt', maxPayload: opts.maxPayloadBytes + 1024 });
        wss.on('connection', (ws, req) => {
          const stream = createWebSocketStream(ws);
          stream.on('error', () => ws.terminate());
          aedes.handle(limits.guard(stream), req);
        });
        boundWs = await listenOn(http, opts.wsPort);
      }
    },
    disconnect(deviceId) {
      const c = connectedClient(aedes, deviceId);
      if (!c) return false;
      c.close();
      return true;
    },
    connectedClients() {
      return aedes.connectedClients;
    },
    inFlight() {
      let n = 0;
      for (const c of connectedClients(aedes)) n += inFlightMessages(deps.persistence, c);
      return n;
    },
    async close() {
      if (liveTimer) clearInterval(liveTimer);
      // Stop accepting, then close the clients (aedes.close), and only then wait for the servers:
      // net.Server.close() waits for every open connection to end.
      const tcpClosed = new Promise<void>((r) => (tcp ? tcp.close(() => r()) : r()));
      const httpClosed = new Promise<void>((r) => (http ? http.close(() => r()) : r()));
      if (wss) for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((r) => aedes.close(() => r()));
      if (wss) await new Promise<void>((r) => wss!.close(() => r()));
      http?.closeAllConnections();
      await Promise.all([tcpClosed, httpClosed]);
      // In-flight ingest batches still reach Redis: their publishes were not acknowledged, and
      // the clients will resend them with the same clientMsgId, which the store deduplicates.
      await Promise.all([messages.close(), acks.close(), reads.close()]);
      await busSubscription.close();
    },
  };
  return node;
}
