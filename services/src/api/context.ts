/**
 * What the API's route modules share: the request context and body/query parsing against the
 * schemas of client-sdk/src/api-types.ts (a failed parse is a catalogue error).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { ParleyError } from '@parley/client-sdk/protocol';
import type { Device } from '../store/types.js';
import type { ApiDeps, ApiOptions } from './app.js';

/** What chat routes share with the rest of the API. */
export interface RouteContext {
  app: FastifyInstance;
  deps: ApiDeps;
  opts: ApiOptions;
  now(): number;
  /** The calling device, from its bearer token (E_AUTH_REQUIRED / E_AUTH_TOKEN otherwise). */
  authDevice(req: FastifyRequest): Promise<Device>;
}

export function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value ?? {});
  if (!r.success) {
    const i = r.error.issues[0];
    if (i?.path[0] === 'phone') throw new ParleyError('E_PHONE_INVALID', i.message);
    throw new ParleyError('E_VALIDATION', i ? `${i.path.join('.') || 'body'}: ${i.message}` : 'invalid');
  }
  return r.data;
}
