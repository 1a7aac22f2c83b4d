/**
 * Apple Push Notification service over HTTP/2 (node:http2) with token-based authentication: an
 * ES256 provider token signed with the team's .p8 key (`jose`; header `kid` = key id, claim `iss`
 * = team id, `iat`), reused for about 50 minutes (Apple refuses tokens older than an hour and
 * throttles refreshes more frequent than every 20 minutes). One HTTP/2 connection per APNs host
 * (production, development), kept open and re-opened after it closes.
 *
 * The push is `background` by default (`content-available: 1`, priority 5): the app wakes and
 * connects. `alert` sends a fixed localisable alert (`loc-key` PARLEY_NEW_MESSAGE, nothing from
 * the message) with `mutable-content`, priority 10, for apps whose notification service
 * extension fetches the content itself. Answers: 200 ok; 410, BadDeviceToken, Unregistered gone;
 * an expired or invalid provider token is renewed once; 429 and 5xx retry (Retry-After
 * honoured); the rest fail.
 */
import http2 from 'node:http2';
import { SignJWT, importPKCS8 } from 'jose';
import type { PushRegistration } from '../store/types.js';
import { failureOutcome, networkOutcome, wakePayload, type PushOutcome, type PushSender, type WakeUp } from './sender.js';

export type ApnsEnvironment = 'production' | 'development';

export const APNS_HOSTS: Readonly<Record<ApnsEnvironment, string>> = Object.freeze({
  production: 'https://api.push.apple.com',
  development: 'https://api.sandbox.push.apple.com',
});

export interface ApnsOptions {
  /** The .p8 signing key (PKCS #8 PEM). */
  key: string;
  keyId: string;
  teamId: string;
  /** The app's bundle id; a registration may name its own. */
  topic?: string;
  /** The environment of registrations that do not name one. @defaultValue 'production' */
  environment?: ApnsEnvironment;
  /** One origin for every environment (tests, a proxy), e.g. `http://127.0.0.1:2197` (h2c). */
  endpoint?: string;
  /** @defaultValue 'background' */
  pushType?: 'background' | 'alert';
  /** Per-request timeout. @defaultValue 10000 */
  timeoutMs?: number;
  now?: () => number;
}

/** Provider tokens are renewed after this long. */
export const PROVIDER_TOKEN_TTL_MS = 50 * 60_000;

interface Answer { status: number; reason: string | undefined; retryAfter: string | undefined }

export function createApnsSender(opts: ApnsOptions): PushSender<'apns'> {
  const now = opts.now ?? Date.now;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const pushType = opts.pushType ?? 'background';
  const key = importPKCS8(opts.key, 'ES256');
  // Fails at start, not on the first push, when the key is not an ES256 key.
  key.catch(() => undefined);
  let token: { jwt: string; at: number } | null = null;
  const sessions = new Map<string, http2.ClientHttp2Session>();
  let closed = false;

  async function providerToken(): Promise<string> {
    if (token && now() - token.at < PROVIDER_TOKEN_TTL_MS) return token.jwt;
    const at = now();
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: opts.keyId })
      .setIssuer(opts.teamId)
      .setIssuedAt(Math.floor(at / 1000))
      .sign(await key);
    token = { jwt, at };
    return jwt;
  }

  function session(origin: string): http2.ClientHttp2Session {
    const existing = sessions.get(origin);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    const s = http2.connect(origin);
    const forget = (): void => { if (sessions.get(origin) === s) sessions.delete(origin); };
    s.on('error', forget);
    s.on('close', forget);
    s.on('goaway', forget);
    // An idle connection does not keep the process alive.
    s.unref();
    sessions.set(origin, s);
    return s;
  }

  function request(origin: string, headers: http2.OutgoingHttpHeaders, body: string): Promise<Answer> {
    return new Promise((resolve, reject) => {
      let req: http2.ClientHttp2Stream;
      try {
        req = session(origin).request(headers);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      let status = 0;
      let retryAfter: string | undefined;
      const chunks: Buffer[] = [];
      req.setTimeout(timeoutMs, () => req.close(http2.constants.NGHTTP2_CANCEL));
      req.on('response', (h) => {
        status = Number(h[':status']);
        const ra = h['retry-after'];
        retryAfter = Array.isArray(ra) ? ra[0] : ra;
      });
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let reason: string | undefined;
        const text = Buffer.concat(chunks).toString('utf8');
        if (text) {
          try {
            reason = (JSON.parse(text) as { reason?: string }).reason;
          } catch { /* not JSON: no reason */ }
        }
        resolve({ status, reason, retryAfter });
      });
      req.on('error', reject);
      req.on('close', () => { if (!status) reject(new Error(`APNs stream closed (${req.rstCode ?? 'no answer'})`)); });
      req.end(body);
    });
  }

  return {
    kind: 'apns',
    async send(reg: Extract<PushRegistration, { kind: 'apns' }>, wake: WakeUp): Promise<PushOutcome> {
      if (closed) return { result: 'retry', reason: 'APNs sender closed' };
      const topic = reg.topic ?? opts.topic;
      if (!topic) return { result: 'failed', reason: 'no APNs topic (bundle id) configured or registered' };
      const origin = opts.endpoint ?? APNS_HOSTS[reg.environment ?? opts.environment ?? 'production'];
      const data = wakePayload(wake);
      const aps = pushType === 'alert'
        ? { alert: { 'loc-key': 'PARLEY_NEW_MESSAGE' }, 'mutable-content': 1, sound: 'default', 'thread-id': wake.collapseKey }
        : { 'content-available': 1 };
      const body = JSON.stringify({ aps, ...data });
      try {
        let answer: Answer | null = null;
        for (let attempt = 0; attempt < 2; attempt++) {
          answer = await request(origin, {
            ':method': 'POST',
            ':path': `/3/device/${encodeURIComponent(reg.token)}`,
            authorization: `bearer ${await providerToken()}`,
            'apns-topic': topic,
            'apns-push-type': pushType,
            'apns-priority': pushType === 'alert' ? '10' : '5',
            'apns-expiration': String(Math.floor(now() / 1000) + wake.ttlSec),
            'apns-collapse-id': wake.collapseKey,
            'content-type': 'application/json',
          }, body);
          if (answer.status === 403 && (answer.reason === 'ExpiredProviderToken' || answer.reason === 'InvalidProviderToken')) {
            token = null; // renewed once, then the answer stands
            continue;
          }
          break;
        }
        const a = answer!;
        const reason = `APNs answered ${a.status}${a.reason ? ` ${a.reason}` : ''}`;
        if (a.status === 200) return { result: 'ok' };
        if (a.status === 410 || a.reason === 'BadDeviceToken' || a.reason === 'Unregistered') return { result: 'gone', reason };
        return failureOutcome(a.status, reason, a.retryAfter);
      } catch (err) {
        return networkOutcome(err);
      }
    },
    async close() {
      closed = true;
      await Promise.all([...sessions.values()].map((s) => new Promise<void>((r) => {
        if (s.closed || s.destroyed) { r(); return; }
        s.close(() => r());
        setTimeout(() => { s.destroy(); r(); }, 1000).unref();
      })));
      sessions.clear();
    },
  };
}
