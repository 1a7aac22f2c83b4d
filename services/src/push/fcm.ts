/**
 * Firebase Cloud Messaging, HTTP v1 API. Authentication is OAuth 2.0 for a service account
 * (RFC 7523): a JWT signed RS256 with the account's private key (`jose`) is exchanged at the
 * token URL for an access token, which is cached until shortly before it expires and shared by
 * concurrent sends. A 401 drops it and the send is tried once more with a fresh one.
 *
 * The message is data-only (the app shows what it fetched itself, nothing comes from the
 * server), high priority on Android so a dozing phone wakes, a background push on iOS, and
 * collapsed per chat. Answers: 200 ok; UNREGISTERED (404) gone; 429, 5xx retry (Retry-After
 * honoured); the rest (INVALID_ARGUMENT, SENDER_ID_MISMATCH, THIRD_PARTY_AUTH_ERROR, ...) fail.
 */
import { SignJWT, importPKCS8, type CryptoKey } from 'jose';
import type { PushRegistration } from '../store/types.js';
import { failureOutcome, networkOutcome, wakePayload, type PushOutcome, type PushSender, type WakeUp } from './sender.js';

/** The fields of a Google service-account JSON key file that are used. */
export interface ServiceAccount {
  project_id?: string;
  private_key_id?: string;
  private_key: string;
  client_email: string;
  token_uri?: string;
}

export interface FcmOptions {
  serviceAccount: ServiceAccount;
  /** @defaultValue the service account's project_id */
  projectId?: string;
  /** @defaultValue 'https://fcm.googleapis.com' */
  endpoint?: string;
  /** @defaultValue the service account's token_uri, else 'https://oauth2.googleapis.com/token' */
  tokenUrl?: string;
  /** Per-request timeout. @defaultValue 10000 */
  timeoutMs?: number;
  now?: () => number;
}

export const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
const DEFAULT_TOKEN_URL = 'https://oauth2.googleapis.com/token';
/** An access token is renewed this long before it expires. */
const TOKEN_MARGIN_MS = 60_000;

interface FcmErrorBody {
  error?: { code?: number; status?: string; message?: string; details?: Array<{ '@type'?: string; errorCode?: string }> };
}

/** A token request that did not produce a token: transient or not. */
class TokenError extends Error {
  constructor(readonly outcome: PushOutcome) {
    super(outcome.result === 'ok' ? 'ok' : outcome.reason);
  }
}

export function createFcmSender(opts: FcmOptions): PushSender<'fcm'> {
  const sa = opts.serviceAccount;
  const projectId = opts.projectId ?? sa.project_id;
  if (!projectId) throw new Error('FCM: no project id (set it, or use a service-account file with project_id)');
  const endpoint = (opts.endpoint ?? 'https://fcm.googleapis.com').replace(/\/+$/, '');
  const tokenUrl = opts.tokenUrl ?? sa.token_uri ?? DEFAULT_TOKEN_URL;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const now = opts.now ?? Date.now;
  const sendUrl = `${endpoint}/v1/projects/${encodeURIComponent(projectId)}/messages:send`;

  let key: Promise<CryptoKey> | null = null;
  let cached: { token: string; expiresAt: number } | null = null;
  let pending: Promise<string> | null = null;

  async function fetchToken(): Promise<string> {
    key ??= importPKCS8(sa.private_key, 'RS256');
    const iat = Math.floor(now() / 1000);
    const assertion = await new SignJWT({ scope: FCM_SCOPE })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', ...(sa.private_key_id ? { kid: sa.private_key_id } : {}) })
      .setIssuer(sa.client_email)
      .setAudience(tokenUrl)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 3600)
      .sign(await key);
    let res: Response;
    let body: { access_token?: unknown; expires_in?: unknown; error?: unknown };
    try {
      res = await fetch(tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }).toString(),
        signal: AbortSignal.timeout(timeoutMs),
      });
      body = (await res.json().catch(() => ({}))) as typeof body;
    } catch (err) {
      throw new TokenError(networkOutcome(err));
    }
    if (!res.ok || typeof body.access_token !== 'string') {
      throw new TokenError(failureOutcome(res.status, `FCM token endpoint answered ${res.status} ${typeof body.error === 'string' ? body.error : ''}`.trim(), res.headers.get('retry-after')));
    }
    const ttlMs = (typeof body.expires_in === 'number' ? body.expires_in : 3600) * 1000;
    cached = { token: body.access_token, expiresAt: now() + ttlMs - TOKEN_MARGIN_MS };
    return body.access_token;
  }

  function accessToken(): Promise<string> {
    if (cached && cached.expiresAt > now()) return Promise.resolve(cached.token);
    pending ??= fetchToken().finally(() => { pending = null; });
    return pending;
  }

  async function post(reg: Extract<PushRegistration, { kind: 'fcm' }>, wake: WakeUp, token: string): Promise<{ res: Response; body: FcmErrorBody }> {
    const data = wakePayload(wake);
    const message = {
      message: {
        token: reg.token,
        // FCM data values are strings.
        data: { v: String(data.v), chatId: data.chatId },
        android: { collapse_key: wake.collapseKey, priority: 'high', ttl: `${wake.ttlSec}s` },
        apns: {
          headers: {
            'apns-collapse-id': wake.collapseKey, 'apns-push-type': 'background', 'apns-priority': '5',
            'apns-expiration': String(Math.floor(now() / 1000) + wake.ttlSec),
          },
          payload: { aps: { 'content-available': 1 } },
        },
        webpush: { headers: { TTL: String(wake.ttlSec), Topic: wake.collapseKey, Urgency: 'high' } },
      },
    };
    const res = await fetch(sendUrl, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify(message),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = res.ok ? {} : ((await res.json().catch(() => ({}))) as FcmErrorBody);
    if (res.ok) await res.arrayBuffer().catch(() => undefined);
    return { res, body };
  }

  return {
    kind: 'fcm',
    async send(reg, wake) {
      try {
        let { res, body } = await post(reg, wake, await accessToken());
        if (res.status === 401) {
          // The access token was revoked or expired early: one more try with a fresh one.
          cached = null;
          ({ res, body } = await post(reg, wake, await accessToken()));
        }
        if (res.ok) return { result: 'ok' };
        const codes = (body.error?.details ?? []).map((d) => d.errorCode).filter(Boolean);
        const reason = `FCM answered ${res.status} ${[body.error?.status, ...codes].filter(Boolean).join(' ')}`.trim();
        if (codes.includes('UNREGISTERED') || res.status === 404) return { result: 'gone', reason };
        return failureOutcome(res.status, reason, res.headers.get('retry-after'));
      } catch (err) {
        if (err instanceof TokenError) return err.outcome;
        return networkOutcome(err);
      }
    },
    async close() {},
  };
}
