/**
 * Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291), through
 * the `web-push` library. The library builds the request (VAPID JWT, encryption, TTL, Urgency,
 * Topic); it is sent with fetch, because `web-push`'s own sender speaks only https and we also
 * reach local push services (tests, private deployments) over http.
 *
 * Answers: 201/200/202 ok; 404 and 410 the subscription is gone (RFC 8030 §7.3); 429 and 5xx
 * retry (Retry-After honoured); 413 and other 4xx fail.
 */
import webpush from 'web-push';
import type { PushRegistration } from '../store/types.js';
import { failureOutcome, networkOutcome, wakePayload, type PushOutcome, type PushSender, type WakeUp } from './sender.js';

export interface VapidKeys {
  /** Uncompressed P-256 public key, base64url (65 bytes). Browsers pass it as `applicationServerKey`. */
  publicKey: string;
  /** P-256 private key, base64url (32 bytes). */
  privateKey: string;
  /** A `mailto:` or `https:` contact for the push service's operators. */
  subject: string;
}

export interface WebPushOptions {
  vapid: VapidKeys;
  /** Per-request timeout. @defaultValue 10000 */
  timeoutMs?: number;
  /** RFC 8030 §5.3 urgency. @defaultValue 'high' (a message is waiting) */
  urgency?: 'very-low' | 'low' | 'normal' | 'high';
  /**
   * Whether the server may POST to an endpoint (checked again at each send: a registration made
   * before the allowed list was narrowed is "gone"). @defaultValue any
   */
  allowEndpoint?: (endpoint: string) => boolean;
}

export function createWebPushSender(opts: WebPushOptions): PushSender<'webpush'> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return {
    kind: 'webpush',
    async send(reg: Extract<PushRegistration, { kind: 'webpush' }>, wake: WakeUp): Promise<PushOutcome> {
      if (opts.allowEndpoint && !opts.allowEndpoint(reg.endpoint)) return { result: 'gone', reason: 'endpoint no longer allowed' };
      let req: ReturnType<typeof webpush.generateRequestDetails>;
      try {
        req = webpush.generateRequestDetails(
          { endpoint: reg.endpoint, keys: reg.keys },
          JSON.stringify(wakePayload(wake)),
          {
            vapidDetails: opts.vapid,
            TTL: wake.ttlSec,
            contentEncoding: 'aes128gcm',
            urgency: opts.urgency ?? 'high',
            // Topic: 32 characters of the URL-safe base64 alphabet at most (RFC 8030 §5.4); ids are.
            topic: wake.collapseKey,
          },
        );
      } catch (err) {
        // Keys that cannot be used for encryption: this registration can never work.
        return { result: 'gone', reason: `unusable subscription: ${err instanceof Error ? err.message : String(err)}` };
      }
      let res: Response;
      try {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) headers[k] = String(v);
        res = await fetch(req.endpoint, {
          method: 'POST', headers, body: req.body ? new Uint8Array(req.body) : null, signal: AbortSignal.timeout(timeoutMs),
          // A redirect is not followed (it could lead anywhere): it fails the send.
          redirect: 'manual',
        });
        await res.arrayBuffer().catch(() => undefined);
      } catch (err) {
        return networkOutcome(err);
      }
      if (res.status >= 200 && res.status < 300) return { result: 'ok' };
      if (res.status === 404 || res.status === 410) return { result: 'gone', reason: `push service answered ${res.status}` };
      return failureOutcome(res.status, `push service answered ${res.status}`, res.headers.get('retry-after'));
    },
    async close() {},
  };
}

/** A new VAPID key pair (P-256), base64url. */
export function generateVapidKeys(): { publicKey: string; privateKey: string } {
  return webpush.generateVAPIDKeys();
}
