/** Verifies device tokens for the broker (MQTT CONNECT) and the HTTP API. */
import type { AuthResult, ClientErrors, DeviceAuthenticator } from '../../../broker/src/index.js';
import type { Store, Device } from '../store/types.js';
import type { RateLimiter } from './rate-limit.js';
import { parseToken, sameHash, sha256 } from './secrets.js';

export interface DeviceAuthOptions {
  /** Failed logins allowed per minute per source address and per device id. */
  failuresPerMin: number;
  /** Notes a refused login (E_AUTH_TOKEN) of an existing device: the dashboard's last error. */
  errors?: ClientErrors;
}

export interface TokenVerifier extends DeviceAuthenticator {
  /** The active device a token belongs to, or null. */
  verifyToken(token: string): Promise<Device | null>;
}

export function createDeviceAuth(store: Store, limiter: RateLimiter, opts: DeviceAuthOptions): TokenVerifier {
  const verifyToken = async (token: string): Promise<Device | null> => {
    const t = parseToken(token);
    if (!t) return null;
    const device = await store.getDevice(t.deviceId);
    if (!device || device.revokedAt !== null) return null;
    return sameHash(device.tokenHash, sha256(t.secret)) ? device : null;
  };
  return {
    verifyToken,
    async authenticate(deviceId, token, ip): Promise<AuthResult> {
      const keys = [`login:dev:${deviceId}`, ...(ip ? [`login:ip:${ip}`] : [])];
      try {
        for (const k of keys) if (await limiter.over(k, opts.failuresPerMin)) return { ok: false, reason: 'limited' };
        const device = await verifyToken(token);
        if (device && device.deviceId === deviceId) return { ok: true, userId: device.userId };
        // A device id that does not exist (made up, or deleted with its account) has no token to
        // guess: its failures count against the address only, and leave no key naming it.
        const known = device?.deviceId === deviceId || (await store.getDevice(deviceId)) !== null;
        for (const k of known ? keys : keys.slice(1)) await limiter.hit(k, opts.failuresPerMin, 60);
        if (known) opts.errors?.sent(deviceId, 'E_AUTH_TOKEN');
        return { ok: false, reason: 'bad' };
      } catch {
        return { ok: false, reason: 'unavailable' };
      }
    },
  };
}
