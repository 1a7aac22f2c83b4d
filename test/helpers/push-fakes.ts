/**
 * Push services for tests, on ephemeral ports:
 * - `startWebPushService`: the `web-push-testing` push service (it verifies the VAPID signature
 *   against the subscription's applicationServerKey and decrypts the aes128gcm payload), in this
 *   process, behind a recorder that also checks the VAPID JWT's claims (RFC 8292: aud = the
 *   endpoint's origin, exp within 24 h, sub) and its signature again with `jose`, and can answer
 *   chosen failures (429, 5xx) before the real handler;
 * - `startFcmFake`: Google's OAuth token endpoint and FCM HTTP v1 `messages:send`, checking the
 *   service-account JWT assertion (RS256 with the test's key), the bearer token and the message;
 * - `startApnsFake`: APNs over cleartext HTTP/2, checking the ES256 provider token (test key, kid,
 *   iss), the headers and the body.
 * Every format problem is recorded in `problems` (and answered with an error): tests expect it
 * empty.
 */
import { createRequire } from 'node:module';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { decodeProtectedHeader, importJWK, jwtVerify, type JWTPayload } from 'jose';

const require = createRequire(import.meta.url);

// --- Web Push ------------------------------------------------------------------------------------

export interface WebPushRequest {
  clientHash: string;
  headers: Record<string, string | undefined>;
  /** The VAPID JWT's claims once verified here (null when it did not verify). */
  claims: JWTPayload | null;
  /** What the recorder answered itself (an injected failure), or 0 when it went to the service. */
  injected: number;
  /** When it arrived (epoch ms). */
  at: number;
}

export interface WebPushService {
  url: string;
  origin: string;
  /** A subscription as a browser's `pushManager.subscribe({ applicationServerKey })` gives it. */
  subscribe(applicationServerKey: string): Promise<{ endpoint: string; keys: { p256dh: string; auth: string }; clientHash: string }>;
  /** The decrypted payloads the push service accepted for a subscription. */
  notifications(clientHash: string): string[];
  /** The subscription answers 410 from now on (unsubscribed). */
  expire(clientHash: string): void;
  /** The next requests to that subscription are answered with these (then the service answers). */
  failNext(clientHash: string, ...answers: Array<{ status: number; retryAfter?: string }>): void;
  requests: WebPushRequest[];
  problems: string[];
  close(): Promise<void>;
}

interface PushApiModel {
  notifyUrl: string;
  subscribe(o: Record<string, string>): Promise<{ endpoint: string; keys: { p256dh: string; auth: string }; clientHash: string }>;
  getNotifications(b: { clientHash: string }): { messages: string[] };
  expireSubscription(hash: string): void;
}

/** The P-256 public key (uncompressed point, base64url) as a JWK. */
function p256Jwk(publicKey: string): { kty: 'EC'; crv: 'P-256'; x: string; y: string } {
  const raw = Buffer.from(publicKey, 'base64url');
  return { kty: 'EC', crv: 'P-256', x: raw.subarray(1, 33).toString('base64url'), y: raw.subarray(33, 65).toString('base64url') };
}

export async function startWebPushService(opts: { subject?: string } = {}): Promise<WebPushService> {
  const { PushApiModel: Model } = require('web-push-testing/src/PushApiModel.js') as { PushApiModel: new () => PushApiModel };
  const Server = require('web-push-testing/src/server.js') as new (m: PushApiModel, port: number) => {
    _app: { use(fn: (req: IncomingMessage & { params?: unknown; body?: unknown }, res: ServerResponse, next: () => void) => void): void } & http.RequestListener;
    setRequestHandlers(): void;
  };
  const model = new Model();
  const service = new Server(model, 0);
  const requests: WebPushRequest[] = [];
  const problems: string[] = [];
  const failures = new Map<string, Array<{ status: number; retryAfter?: string }>>();
  const keys = new Map<string, string>();
  let origin = '';

  // Before the service's routes (registered by setRequestHandlers below).
  service._app.use((req, res, next) => {
    const m = /^\/notify\/([0-9a-f]+)$/.exec(req.url ?? '');
    if (req.method !== 'POST' || !m) { next(); return; }
    const clientHash = m[1]!;
    const headers: Record<string, string | undefined> = {};
    for (const h of ['ttl', 'topic', 'urgency', 'authorization', 'x-content-encoding', 'content-type']) {
      const v = req.headers[h];
      headers[h] = Array.isArray(v) ? v.join(',') : v;
    }
    const rec: WebPushRequest = { clientHash, headers, claims: null, injected: 0, at: Date.now() };
    requests.push(rec);
    void (async () => {
      const auth = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(headers.authorization ?? '');
      if (!auth) problems.push(`no VAPID authorization: ${headers.authorization}`);
      else {
        if (auth[2] !== keys.get(clientHash)) problems.push('the VAPID key is not the subscription\'s applicationServerKey');
        try {
          const { payload, protectedHeader } = await jwtVerify(auth[1]!, await importJWK(p256Jwk(auth[2]!), 'ES256'), { audience: origin, algorithms: ['ES256'] });
          if (protectedHeader.typ !== 'JWT') problems.push(`VAPID JWT typ ${protectedHeader.typ}`);
          if (!payload.exp || payload.exp > Date.now() / 1000 + 86_400) problems.push('VAPID JWT exp more than 24 h ahead');
          if (opts.subject && payload.sub !== opts.subject) problems.push(`VAPID sub ${payload.sub}`);
          rec.claims = payload;
        } catch (err) {
          problems.push(`VAPID JWT: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      if (headers['x-content-encoding'] !== 'aes128gcm') problems.push(`content encoding ${headers['x-content-encoding']}`);
      const injected = failures.get(clientHash)?.shift();
      if (injected) {
        rec.injected = injected.status;
        res.writeHead(injected.status, injected.retryAfter ? { 'retry-after': injected.retryAfter } : {});
        res.end();
        return;
      }
      next();
    })();
  });
  service.setRequestHandlers();
  const server = http.createServer(service._app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  origin = `http://localhost:${port}`;
  model.notifyUrl = `${origin}/notify/`;
  return {
    url: origin,
    origin,
    async subscribe(applicationServerKey) {
      const sub = await model.subscribe({ applicationServerKey });
      keys.set(sub.clientHash, applicationServerKey);
      return sub;
    },
    notifications: (clientHash) => model.getNotifications({ clientHash }).messages,
    expire: (clientHash) => model.expireSubscription(clientHash),
    failNext(clientHash, ...answers) {
      failures.set(clientHash, [...(failures.get(clientHash) ?? []), ...answers]);
    },
    requests,
    problems,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

// --- FCM -----------------------------------------------------------------------------------------

/** A behaviour of the FCM fake for one registration token's next sends. */
export type FcmAnswer =
  | 'ok'
  | 'unregistered'
  | 'invalid-argument'
  | 'unauthorized'
  | { status: number; retryAfter?: string };

export interface FcmMessage {
  token: string;
  data: Record<string, string>;
  android: { collapse_key?: string; priority?: string; ttl?: string };
  apns?: { headers?: Record<string, string>; payload?: { aps?: Record<string, unknown> } };
  notification?: unknown;
}

export interface FcmFake {
  url: string;
  tokenUrl: string;
  projectId: string;
  /** A service-account JSON key file's content, with a fresh RSA key. */
  serviceAccount: { type: string; project_id: string; private_key_id: string; private_key: string; client_email: string; token_uri: string };
  /** Messages accepted (200). */
  messages: FcmMessage[];
  /** Every send request (answered anything). */
  sends: number;
  tokenRequests: number;
  /** Seconds an issued access token lives. */
  tokenTtlSec: number;
  answerNext(registrationToken: string, ...answers: FcmAnswer[]): void;
  problems: string[];
  close(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const fcmError = (status: number, s: string, errorCode?: string): object => ({
  error: {
    code: status, message: s, status: s,
    ...(errorCode ? { details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode }] } : {}),
  },
});

export async function startFcmFake(): Promise<FcmFake> {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const projectId = 'parley-test';
  const keyId = randomBytes(8).toString('hex');
  const problems: string[] = [];
  const messages: FcmMessage[] = [];
  const issued = new Map<string, number>();
  const answers = new Map<string, FcmAnswer[]>();
  const fake = {} as FcmFake;

  const server = http.createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      const json = (status: number, value: object): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      if (req.method === 'POST' && req.url === '/token') {
        fake.tokenRequests++;
        const form = new URLSearchParams(body);
        if (req.headers['content-type'] !== 'application/x-www-form-urlencoded') problems.push(`token content-type ${req.headers['content-type']}`);
        if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') problems.push(`grant_type ${form.get('grant_type')}`);
        try {
          const assertion = form.get('assertion') ?? '';
          if (decodeProtectedHeader(assertion).kid !== keyId) problems.push('assertion kid is not the private_key_id');
          const { payload } = await jwtVerify(assertion, publicKey, {
            algorithms: ['RS256'], issuer: fake.serviceAccount.client_email, audience: fake.tokenUrl, maxTokenAge: '1h',
          });
          if (payload.scope !== 'https://www.googleapis.com/auth/firebase.messaging') problems.push(`scope ${String(payload.scope)}`);
          if (!payload.exp || !payload.iat || payload.exp - payload.iat > 3600) problems.push('assertion lives more than an hour');
        } catch (err) {
          problems.push(`assertion: ${err instanceof Error ? err.message : String(err)}`);
          json(400, { error: 'invalid_grant' });
          return;
        }
        const token = `ya29.${randomBytes(12).toString('hex')}`;
        issued.set(token, Date.now() + fake.tokenTtlSec * 1000);
        json(200, { access_token: token, expires_in: fake.tokenTtlSec, token_type: 'Bearer' });
        return;
      }
      if (req.method === 'POST' && req.url === `/v1/projects/${projectId}/messages:send`) {
        fake.sends++;
        const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
        if (!bearer || !((issued.get(bearer) ?? 0) > Date.now())) {
          json(401, fcmError(401, 'UNAUTHENTICATED'));
          return;
        }
        let m: FcmMessage;
        try {
          m = (JSON.parse(body) as { message: FcmMessage }).message;
        } catch {
          problems.push('send body is not JSON');
          json(400, fcmError(400, 'INVALID_ARGUMENT'));
          return;
        }
        const check = (ok: boolean, what: string): void => { if (!ok) problems.push(`${what}: ${body.slice(0, 300)}`); };
        check(typeof m?.token === 'string', 'message.token');
        check(m?.notification === undefined, 'a notification (the wake-up is data-only)');
        check(m?.data?.v === '1' && typeof m.data.chatId === 'string' && Object.keys(m.data).length === 2, 'data is { v: "1", chatId }');
        check(m?.android?.collapse_key === m?.data?.chatId, 'android.collapse_key is the chat');
        check(m?.android?.priority === 'high', 'android.priority high');
        check(m?.apns?.headers?.['apns-collapse-id'] === m?.data?.chatId, 'apns-collapse-id is the chat');
        const next = answers.get(m.token)?.shift() ?? 'ok';
        if (next === 'ok') {
          messages.push(m);
          json(200, { name: `projects/${projectId}/messages/${randomBytes(6).toString('hex')}` });
        } else if (next === 'unregistered') json(404, fcmError(404, 'NOT_FOUND', 'UNREGISTERED'));
        else if (next === 'invalid-argument') json(400, fcmError(400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT'));
        else if (next === 'unauthorized') { issued.delete(bearer); json(401, fcmError(401, 'UNAUTHENTICATED')); }
        else {
          res.writeHead(next.status, { 'content-type': 'application/json', ...(next.retryAfter ? { 'retry-after': next.retryAfter } : {}) });
          res.end(JSON.stringify(fcmError(next.status, next.status === 429 ? 'RESOURCE_EXHAUSTED' : 'UNAVAILABLE')));
        }
        return;
      }
      problems.push(`unexpected ${req.method} ${req.url}`);
      json(404, fcmError(404, 'NOT_FOUND'));
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  Object.assign(fake, {
    url: base,
    tokenUrl: `${base}/token`,
    projectId,
    serviceAccount: {
      type: 'service_account', project_id: projectId, private_key_id: keyId,
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      client_email: `parley@${projectId}.iam.gserviceaccount.com`, token_uri: `${base}/token`,
    },
    messages,
    sends: 0,
    tokenRequests: 0,
    tokenTtlSec: 3600,
    answerNext(token: string, ...a: FcmAnswer[]) { answers.set(token, [...(answers.get(token) ?? []), ...a]); },
    problems,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  } satisfies FcmFake);
  return fake;
}

// --- APNs ----------------------------------------------------------------------------------------

export type ApnsAnswer = 'ok' | 'unregistered' | 'bad-token' | 'expired-provider-token' | 'not-for-topic' | { status: number; reason: string; retryAfter?: string };

export interface ApnsRequest {
  token: string;
  headers: Record<string, string | undefined>;
  body: { aps?: Record<string, unknown>; v?: number; chatId?: string };
  /** The provider token's issued-at (seconds). */
  iat: number;
}

export interface ApnsFake {
  url: string;
  keyId: string;
  teamId: string;
  topic: string;
  /** The .p8 key (PKCS #8 PEM) of a fresh P-256 pair. */
  key: string;
  /** Accepted pushes (200). */
  pushes: ApnsRequest[];
  /** Every request. */
  requests: ApnsRequest[];
  /** The push type expected (what the sender is configured with). */
  expectPushType: 'background' | 'alert';
  answerNext(deviceToken: string, ...answers: ApnsAnswer[]): void;
  problems: string[];
  close(): Promise<void>;
}

export async function startApnsFake(): Promise<ApnsFake> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const problems: string[] = [];
  const pushes: ApnsRequest[] = [];
  const requests: ApnsRequest[] = [];
  const answers = new Map<string, ApnsAnswer[]>();
  const fake = {} as ApnsFake;
  const server = http2.createServer();
  server.on('stream', (stream, h) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      void (async () => {
        const answer = (status: number, reason?: string, extra: Record<string, string> = {}): void => {
          stream.respond({ ':status': status, 'apns-id': randomBytes(16).toString('hex'), ...extra });
          stream.end(reason ? JSON.stringify({ reason, ...(status === 410 ? { timestamp: Date.now() } : {}) }) : undefined);
        };
        const m = /^\/3\/device\/([0-9a-f]+)$/.exec(String(h[':path']));
        if (h[':method'] !== 'POST' || !m) {
          problems.push(`unexpected ${String(h[':method'])} ${String(h[':path'])}`);
          answer(404, 'BadPath');
          return;
        }
        const headers: Record<string, string | undefined> = {};
        for (const k of ['apns-topic', 'apns-push-type', 'apns-priority', 'apns-expiration', 'apns-collapse-id', 'content-type']) {
          const v = h[k];
          headers[k] = Array.isArray(v) ? v.join(',') : v;
        }
        let body: ApnsRequest['body'] = {};
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ApnsRequest['body'];
        } catch {
          problems.push('body is not JSON');
        }
        const jwt = /^bearer (.+)$/.exec(String(h.authorization ?? ''))?.[1] ?? '';
        let iat: number;
        try {
          const { payload, protectedHeader } = await jwtVerify(jwt, publicKey, { algorithms: ['ES256'], issuer: fake.teamId });
          if (protectedHeader.kid !== fake.keyId) problems.push(`provider token kid ${protectedHeader.kid}`);
          iat = payload.iat ?? 0;
          if (Math.abs(Date.now() / 1000 - iat) > 3600) {
            answer(403, 'ExpiredProviderToken');
            return;
          }
        } catch {
          answer(403, 'InvalidProviderToken');
          return;
        }
        const req: ApnsRequest = { token: m[1]!, headers, body, iat };
        requests.push(req);
        const check = (ok: boolean, what: string): void => { if (!ok) problems.push(`${what}: ${JSON.stringify({ headers, body })}`); };
        check(headers['apns-topic'] === fake.topic, 'apns-topic');
        check(headers['apns-push-type'] === fake.expectPushType, 'apns-push-type');
        check(headers['apns-priority'] === (fake.expectPushType === 'alert' ? '10' : '5'), 'apns-priority');
        check(Number(headers['apns-expiration']) > Date.now() / 1000, 'apns-expiration in the future');
        check(headers['apns-collapse-id'] === body.chatId && typeof body.chatId === 'string', 'apns-collapse-id is the chat');
        check(body.v === 1 && Object.keys(body).sort().join() === 'aps,chatId,v', 'body is { aps, v: 1, chatId }');
        if (fake.expectPushType === 'background') check(JSON.stringify(body.aps) === '{"content-available":1}', 'aps content-available only');
        else check(typeof body.aps?.alert === 'object' && body.aps?.['mutable-content'] === 1, 'aps alert + mutable-content');
        const next = answers.get(req.token)?.shift() ?? 'ok';
        switch (next) {
          case 'ok': pushes.push(req); answer(200); return;
          case 'unregistered': answer(410, 'Unregistered'); return;
          case 'bad-token': answer(400, 'BadDeviceToken'); return;
          case 'expired-provider-token': answer(403, 'ExpiredProviderToken'); return;
          case 'not-for-topic': answer(400, 'DeviceTokenNotForTopic'); return;
          default: answer(next.status, next.reason, next.retryAfter ? { 'retry-after': next.retryAfter } : {});
        }
      })();
    });
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => { sessions.add(s); s.on('close', () => sessions.delete(s)); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  Object.assign(fake, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    keyId: 'ABC123DEFG',
    teamId: 'TEAM123456',
    topic: 'chat.parley.app',
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    pushes,
    requests,
    expectPushType: 'background',
    answerNext(token: string, ...a: ApnsAnswer[]) { answers.set(token, [...(answers.get(token) ?? []), ...a]); },
    problems,
    close: () => new Promise<void>((r) => {
      for (const s of sessions) s.destroy();
      server.close(() => r());
    }),
  } satisfies ApnsFake);
  return fake;
}

/** A random APNs device token (32 bytes, hex). */
export const apnsToken = (): string => randomBytes(32).toString('hex');
/** A random FCM-like registration token. */
export const fcmToken = (): string => `${randomBytes(8).toString('base64url')}:APA91b${randomBytes(60).toString('base64url')}`;
