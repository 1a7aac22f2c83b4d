/**
 * Status routes: postStatus, the feed, viewStatus, the viewers list and removeStatus. The rules
 * (audience, visibility, limits, delivery) live in services/src/status/status.ts; these routes
 * only authenticate, validate and shape answers.
 */
import type { FastifyRequest } from 'fastify';
import { ParleyError, isStatusId } from '@parley/client-sdk/protocol';
import { schemas } from '@parley/client-sdk/api-types';
import { parse, type RouteContext } from './context.js';

type StatusParams = { Params: { statusId: string } };

function statusIdOf(req: FastifyRequest<StatusParams>): string {
  if (!isStatusId(req.params.statusId)) throw new ParleyError('E_VALIDATION', 'statusId');
  return req.params.statusId;
}

export function registerStatusRoutes(ctx: RouteContext): void {
  const { app, deps, authDevice } = ctx;
  const { status } = deps;

  // postStatus: a text or media post for the caller's contacts (or a chosen audience), for 24 hours.
  app.post('/v1/status', async (req, reply) => {
    const caller = await authDevice(req);
    const body = parse(schemas.postStatus, req.body);
    return reply.status(201).send(await status.post({ userId: caller.userId, deviceId: caller.deviceId }, body));
  });

  // The feed: what the caller may see now, by author, and his own live posts.
  app.get('/v1/status', async (req) => {
    const caller = await authDevice(req);
    return status.feed(caller.userId);
  });

  // viewStatus: idempotent.
  app.post<StatusParams>('/v1/status/:statusId/views', async (req) => {
    const caller = await authDevice(req);
    parse(schemas.viewStatus, req.body ?? {});
    return status.view(caller.userId, statusIdOf(req));
  });

  // Who viewed it (its author only).
  app.get<StatusParams>('/v1/status/:statusId/viewers', async (req) => {
    const caller = await authDevice(req);
    return { viewers: await status.viewers(caller.userId, statusIdOf(req)) };
  });

  // removeStatus (its author): out of every feed, and a removal to the devices it reached.
  app.delete<StatusParams>('/v1/status/:statusId', async (req) => {
    const caller = await authDevice(req);
    return status.remove({ userId: caller.userId, deviceId: caller.deviceId }, statusIdOf(req));
  });
}
