/** `cleanup`: removes messages past the retention period (30 days by default) and stale registrations. */
import type { WorkerContext } from './context.js';

export async function processCleanup(ctx: WorkerContext): Promise<void> {
  const now = ctx.now();
  const r = await ctx.store.expire(now - ctx.retentionMs, now);
  ctx.log.info({ expired: r }, 'cleanup done');
}
