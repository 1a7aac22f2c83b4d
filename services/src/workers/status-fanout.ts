/**
 * `statusFanout`: delivers a status post (or its removal) to one page of its audience: at most
 * `fanoutChunk` users (by userId, after `afterUser`) and all their active devices, as `status`
 * envelopes through the publisher, which queues them in each device's broker session (QoS 1): a
 * device that is away gets them when it reconnects, and the SDK drops those that expired
 * meanwhile. A full page first queues the next one, so a large audience is delivered in bounded
 * chunks in parallel, as the message fan-out (fanout.ts). The first page also goes to the author's
 * other devices. A post removed or expired before its job runs is not delivered.
 */
import { JOB, type Queues } from '../queues.js';
import type { StatusFanoutJob } from '../status/status.js';
import { statusEnvelope } from '../status/status.js';
import type { WorkerContext } from './context.js';

export type { StatusFanoutJob } from '../status/status.js';

/** The job id: a chunk re-run after a crash queues its successor again, a no-op while it exists. */
export const statusFanoutJobId = (j: StatusFanoutJob): string => `status-${j.statusId}-${j.removed ? 'removed' : 'post'}-${j.afterUser || '0'}`;

/** Queues status fan-out jobs on the fan-out queue (durably: resolves once they are in Redis). */
export async function enqueueStatusFanout(q: Pick<Queues, 'fanout'>, jobs: StatusFanoutJob[]): Promise<void> {
  await q.fanout.addBulk(jobs.map((data) => ({ name: JOB.statusFanout, data, opts: { jobId: statusFanoutJobId(data) } })));
}

/** What a status fan-out job did: the job's return value. */
export interface StatusFanoutResult {
  users: number;
  devices: number;
  by: string;
}

export async function processStatusFanout(ctx: WorkerContext, job: StatusFanoutJob): Promise<StatusFanoutResult> {
  const { store } = ctx;
  const post = await store.getStatus(job.statusId);
  const none = { users: 0, devices: 0, by: ctx.workerId };
  // Expired: every device drops it anyway. A post already removed: its removal follows (or went).
  if (!post || post.expiresAt <= ctx.now() || (!job.removed && post.removedAt !== null)) return none;
  const users = await store.statusAudience(job.statusId, job.afterUser, ctx.fanoutChunk);
  const last = users.at(-1);
  if (users.length === ctx.fanoutChunk && last) await ctx.enqueueStatusFanout([{ ...job, afterUser: last }]);
  const targets = job.afterUser === '' ? [post.authorUserId, ...users] : users;
  if (!targets.length) return none;
  const devices = (await store.listDevicesOfUsers(targets)).filter((d) => d.deviceId !== job.exceptDevice);
  const env = statusEnvelope(post, job.removed);
  await ctx.publisher.publishAll(devices.map((d) => ({ deviceId: d.deviceId, env })));
  ctx.log.debug({ statusId: job.statusId, removed: job.removed, users: users.length, devices: devices.length }, 'status fan-out chunk delivered');
  return { users: users.length, devices: devices.length, by: ctx.workerId };
}
