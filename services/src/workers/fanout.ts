/**
 * `fanout`: delivers a run of a large chat's messages to one chunk of its devices. A job reads at
 * most `fanoutChunk` devices (by deviceId, after `afterDevice`) and, when the chunk is full, first
 * queues the next chunk, so the chunks of a 1,024-member group run in parallel on every worker
 * and no job, query or publish burst grows with the group. Jobs for one chat may finish in any
 * order: each device's delivery agent puts its messages in seq order (and fills any gap from the
 * store), so order and exactly-once hold per device.
 */
import { msgIdOf } from '@parley/client-sdk/protocol';
import { toMsgEnvelope } from '../../../broker/src/index.js';
import type { FanoutJob } from '../queues.js';
import { receives } from '../store/types.js';
import type { WorkerContext } from './context.js';
import { queueWakeUps } from './push.js';

/** Most messages one fan-out job carries (a retried old message is its own run). */
export const FANOUT_MAX_MESSAGES = 100;

/** The first-chunk jobs for these seqs of a chat: one per contiguous run of at most FANOUT_MAX_MESSAGES. */
export function fanoutJobs(chatId: string, seqs: number[]): FanoutJob[] {
  const sorted = [...new Set(seqs)].sort((a, b) => a - b);
  const jobs: FanoutJob[] = [];
  for (const q of sorted) {
    const cur = jobs.at(-1);
    if (cur && q === cur.toSeq + 1 && q - cur.fromSeq < FANOUT_MAX_MESSAGES) cur.toSeq = q;
    else jobs.push({ chatId, fromSeq: q, toSeq: q, afterDevice: '' });
  }
  return jobs;
}

/** What a fan-out job did: the job's return value. */
export interface FanoutResult {
  devices: number;
  messages: number;
  by: string;
}

export async function processFanout(ctx: WorkerContext, job: FanoutJob): Promise<FanoutResult> {
  const { store } = ctx;
  const devices = await store.chatDevices(job.chatId, job.afterDevice, ctx.fanoutChunk, job.fromSeq);
  const lastDevice = devices.at(-1);
  if (devices.length === ctx.fanoutChunk && lastDevice) {
    await ctx.enqueueFanout([{ ...job, afterDevice: lastDevice.deviceId }]);
  }
  const messages = await store.history(job.chatId, job.fromSeq - 1, job.toSeq - job.fromSeq + 1);
  const out = [];
  for (const m of messages) {
    const env = toMsgEnvelope(m);
    for (const d of devices) if (receives(d, m)) out.push({ deviceId: d.deviceId, env });
  }
  const away = await ctx.publisher.publishAll(out);
  ctx.observer?.fanout('chunk', devices.length);
  await queueWakeUps(ctx, away, [{ chatId: job.chatId, devices, messages }]);
  if (ctx.log.isLevelEnabled('debug')) {
    ctx.log.debug({ msgIds: messages.map((m) => msgIdOf(m.chatId, m.seq)), devices: devices.length }, 'fan-out chunk handed to delivery');
  }
  return { devices: devices.length, messages: messages.length, by: ctx.workerId };
}
