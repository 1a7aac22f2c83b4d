/**
 * Media routes: createAttachment, fresh part URLs for a resumed upload, completion, the
 * attachment's state, and download URLs. The media rules live in services/src/media/attachments.ts.
 */
import { ParleyError, isAttachmentId } from '@parley/client-sdk/protocol';
import { schemas } from '@parley/client-sdk/api-types';
import { parse, type RouteContext } from './context.js';

type IdParams = { Params: { attachmentId: string } };

const attachmentIdOf = (id: string): string => {
  if (!isAttachmentId(id)) throw new ParleyError('E_VALIDATION', 'attachmentId');
  return id;
};

export function registerMediaRoutes(ctx: RouteContext): void {
  const { app, deps, authDevice } = ctx;
  const { attachments } = deps;

  app.post('/v1/attachments', async (req, reply) => {
    const caller = await authDevice(req);
    const body = parse(schemas.createAttachment, req.body);
    return reply.status(201).send(await attachments.create({ userId: caller.userId, deviceId: caller.deviceId }, body));
  });

  app.post<IdParams>('/v1/attachments/:attachmentId/parts', async (req) => {
    const caller = await authDevice(req);
    const body = parse(schemas.attachmentParts, req.body);
    return attachments.partUrls(caller.userId, attachmentIdOf(req.params.attachmentId), body.parts);
  });

  app.post<IdParams>('/v1/attachments/:attachmentId/complete', async (req) => {
    const caller = await authDevice(req);
    const body = parse(schemas.completeAttachment, req.body);
    return attachments.complete(caller.userId, attachmentIdOf(req.params.attachmentId), body.parts);
  });

  app.get<IdParams>('/v1/attachments/:attachmentId', async (req) => {
    const caller = await authDevice(req);
    return attachments.get(caller.userId, attachmentIdOf(req.params.attachmentId));
  });

  app.get<IdParams>('/v1/attachments/:attachmentId/download', async (req) => {
    const caller = await authDevice(req);
    const q = parse(schemas.download, req.query);
    return attachments.downloadUrl(caller.userId, attachmentIdOf(req.params.attachmentId), q.thumbnail === '1' || q.thumbnail === 'true');
  });
}
