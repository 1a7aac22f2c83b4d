/**
 * Push registration routes: a device registers where it can be woken (Web Push subscription, FCM
 * token, APNs token), removes it, and reads what it needs to subscribe (the VAPID public key and
 * the kinds this server sends). The wake-ups themselves are the `push` job's
 * (services/src/workers/push.ts).
 */
import { ParleyError } from '@parley/client-sdk/protocol';
import { schemas, type PushConfigInfo, type PushRegistrationInfo } from '@parley/client-sdk/api-types';
import type { PushRegistration } from '../store/types.js';
import { isAllowedWebPushEndpoint } from '../push/setup.js';
import { parse, type RouteContext } from './context.js';

/** Registrations per device per hour: an app registers on start and when its token rotates. */
const REGISTRATIONS_PER_HOUR = 60;

export function registerPushRoutes(ctx: RouteContext): void {
  const { app, deps, now, authDevice } = ctx;
  const { store, limiter } = deps;
  const cfg = deps.push;

  // Public: a browser needs the key before it can subscribe, and it is public by design.
  app.get('/v1/push/config', async (): Promise<PushConfigInfo> => ({
    vapidPublicKey: cfg?.vapidPublicKey ?? '', kinds: cfg ? [...cfg.kinds] : [],
  }));

  app.put('/v1/push', async (req) => {
    const caller = await authDevice(req);
    const body = parse(schemas.pushRegistration, req.body);
    if (!cfg?.kinds.includes(body.kind)) throw new ParleyError('E_PUSH_UNSUPPORTED', `${body.kind} is not configured on this server`);
    let registration: PushRegistration;
    switch (body.kind) {
      case 'webpush':
        if (!isAllowedWebPushEndpoint(body.endpoint, cfg.webpushOrigins)) throw new ParleyError('E_PUSH_ENDPOINT', new URL(body.endpoint).origin);
        registration = {
          kind: 'webpush', endpoint: body.endpoint,
          keys: { p256dh: body.keys.p256dh.replace(/=+$/, ''), auth: body.keys.auth.replace(/=+$/, '') },
        };
        break;
      case 'fcm':
        registration = { kind: 'fcm', token: body.token };
        break;
      case 'apns': {
        const base = cfg.apnsTopic;
        if (body.topic && base && body.topic !== base && !body.topic.startsWith(`${base}.`)) {
          throw new ParleyError('E_VALIDATION', `topic: ${base} or one of its sub-topics`);
        }
        if (!body.topic && !base) throw new ParleyError('E_VALIDATION', 'topic: required (the server has no default APNs topic)');
        registration = {
          kind: 'apns', token: body.token.toLowerCase(),
          ...(body.environment ? { environment: body.environment } : {}), ...(body.topic ? { topic: body.topic } : {}),
        };
        break;
      }
    }
    if (!(await limiter.hit(`push:reg:${caller.deviceId}`, REGISTRATIONS_PER_HOUR, 3600))) {
      throw new ParleyError('E_RATE_LIMITED', 'too many push registrations');
    }
    await store.putPushRegistration({ deviceId: caller.deviceId, userId: caller.userId, registration, at: now() });
    const answer: { registration: PushRegistrationInfo } = { registration };
    return answer;
  });

  app.get('/v1/push', async (req) => {
    const caller = await authDevice(req);
    const [found] = await store.getPushRegistrations([caller.deviceId]);
    const answer: { registration: PushRegistrationInfo | null } = { registration: found?.registration ?? null };
    return answer;
  });

  app.delete('/v1/push', async (req) => {
    const caller = await authDevice(req);
    return { removed: await store.deletePushRegistration(caller.deviceId) };
  });
}
