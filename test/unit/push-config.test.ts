/** The push variables of the configuration (services/src/config.ts, docs/CONFIG.md). */
import { describe, expect, it } from 'vitest';
import { ParleyError } from '@parley/client-sdk';
import { parseConfig } from '../../services/src/config.js';
import { generateVapidKeys } from '../../services/src/push/webpush.js';
import { isAllowedWebPushEndpoint, pushKinds } from '../../services/src/push/setup.js';

const configError = (env: Record<string, string>): string => {
  try {
    parseConfig(env);
  } catch (err) {
    if (err instanceof ParleyError && err.code === 'E_CONFIG') return err.detail ?? '';
    throw err;
  }
  return '';
};

describe('push configuration', () => {
  it('defaults: Web Push only, with generated keys and the browsers\' push services', () => {
    const c = parseConfig({}).push;
    expect(c).toMatchObject({
      vapid: { publicKey: undefined, privateKey: undefined, subject: 'mailto:push@parley.invalid' },
      fcm: null, apns: null, minIntervalMs: 3000, concurrency: 16, ttlSec: 86_400, maxAttempts: 5, retryBaseMs: 1000,
    });
    // The browsers' push services only (Chrome's FCM, Firefox's autopush, Edge's WNS, Safari's),
    // not every host of their domains.
    expect(c.webpushOrigins).toEqual([
      'https://fcm.googleapis.com', 'https://updates.push.services.mozilla.com', 'https://*.notify.windows.com', 'https://web.push.apple.com',
    ]);
    expect(isAllowedWebPushEndpoint('https://fcm.googleapis.com/fcm/send/abc', c.webpushOrigins)).toBe(true);
    expect(isAllowedWebPushEndpoint('https://updates.push.services.mozilla.com/wpush/v2/abc', c.webpushOrigins)).toBe(true);
    expect(isAllowedWebPushEndpoint('https://wns2-par02p.notify.windows.com/w/?token=abc', c.webpushOrigins)).toBe(true);
    expect(isAllowedWebPushEndpoint('https://web.push.apple.com/abc', c.webpushOrigins)).toBe(true);
    expect(isAllowedWebPushEndpoint('https://storage.googleapis.com/bucket/x', c.webpushOrigins)).toBe(false);
    expect(isAllowedWebPushEndpoint('https://api.push.apple.com/3/device/abc', c.webpushOrigins)).toBe(false);
    expect(pushKinds(c)).toEqual(['webpush']);
  });

  it('takes a VAPID pair (both or neither), FCM and APNs settings', () => {
    const keys = generateVapidKeys();
    const c = parseConfig({
      PARLEY_VAPID_PUBLIC_KEY: keys.publicKey, PARLEY_VAPID_PRIVATE_KEY: keys.privateKey, PARLEY_VAPID_SUBJECT: 'https://parley.example/contact',
      PARLEY_FCM_SERVICE_ACCOUNT: '/etc/parley/sa.json', PARLEY_FCM_TOKEN_URL: 'http://127.0.0.1:1/token',
      PARLEY_APNS_KEY_FILE: '/etc/parley/AuthKey.p8', PARLEY_APNS_KEY_ID: 'K', PARLEY_APNS_TEAM_ID: 'T', PARLEY_APNS_TOPIC: 'chat.parley.app',
      PARLEY_APNS_ENVIRONMENT: 'development', PARLEY_APNS_PUSH_TYPE: 'alert', PARLEY_WEBPUSH_ORIGINS: 'http://localhost, https://*.example.com:8443',
    }).push;
    expect(c.vapid).toEqual({ ...keys, subject: 'https://parley.example/contact' });
    expect(c.fcm).toEqual({ serviceAccountFile: '/etc/parley/sa.json', projectId: undefined, endpoint: 'https://fcm.googleapis.com', tokenUrl: 'http://127.0.0.1:1/token' });
    expect(c.apns).toMatchObject({ keyId: 'K', teamId: 'T', topic: 'chat.parley.app', environment: 'development', pushType: 'alert', endpoint: undefined });
    expect(c.webpushOrigins).toEqual(['http://localhost', 'https://*.example.com:8443']);
    expect(pushKinds(c)).toEqual(['webpush', 'fcm', 'apns']);
  });

  it('refuses half-given credentials and bad values, naming the variables', () => {
    expect(configError({ PARLEY_VAPID_PUBLIC_KEY: generateVapidKeys().publicKey })).toMatch(/PARLEY_VAPID_PRIVATE_KEY/);
    expect(configError({ PARLEY_VAPID_PUBLIC_KEY: 'short', PARLEY_VAPID_PRIVATE_KEY: 'short' })).toMatch(/PARLEY_VAPID_PUBLIC_KEY/);
    expect(configError({ PARLEY_VAPID_SUBJECT: 'ops@parley.example' })).toMatch(/PARLEY_VAPID_SUBJECT/);
    expect(configError({ PARLEY_APNS_KEY_FILE: '/k.p8', PARLEY_APNS_KEY_ID: 'K' })).toMatch(/PARLEY_APNS_TEAM_ID/);
    expect(configError({ PARLEY_WEBPUSH_ORIGINS: 'https://example.com/path' })).toMatch(/PARLEY_WEBPUSH_ORIGINS/);
    expect(configError({ PARLEY_APNS_ENVIRONMENT: 'staging' })).toMatch(/PARLEY_APNS_ENVIRONMENT/);
    expect(configError({ PARLEY_PUSH_CONCURRENCY: '0' })).toMatch(/PARLEY_PUSH_CONCURRENCY/);
  });
});
