/**
 * `push`: wakes the devices of a chat that were connected nowhere when its new messages were
 * delivered, through their push service, with a content-free wake-up collapsed per chat.
 *
 * The trigger (`queueWakeUps`, called by persist.ts and fanout.ts) finds the devices to wake
 * without a query of its own: the live bus already looked up every recipient's route in one MGET
 * and returns those without one. When every recipient is connected it adds nothing to delivery;
 * when some are away (and receive a message of someone else: never the author's own devices) it
 * adds one awaited BullMQ `addBulk` per batch (one pipelined Redis round trip, one job per chat of
 * the batch), even when none of them has a push registration: that is the job's question, so
 * the delivery path makes no store query for it.
 *
 * The job: one query for the devices' registrations; one MGET of their routes (a device that
 * connected since is catching up and needs no wake-up); one rate-limit claim per device and chat
 * (CLAIM_WAKE, pipelined: at most one wake-up per PARLEY_PUSH_MIN_INTERVAL_MS, a burst of
 * messages is one wake-up); then each device is sent to at once. A "gone" answer removes the registration (only
 * if it is still the one sent to); a retryable failure queues a retry of that device alone after
 * an exponential back-off (or the Retry-After asked for), so a retry never sends again to the
 * devices already done; a permanent failure is logged. Nothing here can hold up or undo a
 * delivery: a failing push job only loses a wake-up, and the device still catches up when it
 * connects.
 */
import { receives, pushAddress, type ChatDevice, type StoredMessage } from '../store/types.js';
import { connectedDevices } from '../delivery/bus.js';
import { MAX_RETRY_AFTER_MS, networkOutcome, sendWith, type PushOutcome, type WakeUp } from '../push/sender.js';
import type { PushJob } from '../queues.js';
import type { WorkerContext } from './context.js';

/**
 * The devices of a chat's fan-out to wake: connected nowhere (`away`) and receiving at least one
 * of these messages from another user.
 */
export function wakeUpsOf(devices: ChatDevice[], messages: StoredMessage[], away: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const d of devices) {
    if (away.has(d.deviceId) && messages.some((m) => m.senderUserId !== d.userId && receives(d, m))) out.push(d.deviceId);
  }
  return out;
}

/**
 * Queues one push job per chat for the devices `away` (returned by publishAll) among each
 * chat's fan-out. Nothing when push is off or everyone was connected. Never throws: a lost
 * wake-up must not fail (and so repeat) a delivery.
 */
export async function queueWakeUps(
  ctx: WorkerContext, away: string[], chats: Iterable<{ chatId: string; devices: ChatDevice[]; messages: StoredMessage[] }>,
): Promise<void> {
  if (!ctx.push || away.length === 0) return;
  const awaySet = new Set(away);
  const jobs: PushJob[] = [];
  for (const c of chats) {
    const deviceIds = wakeUpsOf(c.devices, c.messages, awaySet);
    if (deviceIds.length) jobs.push({ chatId: c.chatId, deviceIds });
  }
  if (!jobs.length) return;
  try {
    await ctx.push.enqueue(jobs);
  } catch (err) {
    ctx.log.warn({ err: err instanceof Error ? err.message : String(err), chats: jobs.length }, 'push jobs not queued');
  }
}

/** What a push job did: the job's return value. */
export interface PushResult {
  /** Devices with a registration. */
  registered: number;
  /** Skipped: connected since, or woken for this chat within the minimum interval. */
  skipped: number;
  sent: number;
  gone: number;
  retried: number;
  failed: number;
  by: string;
}

/**
 * The rate-limit key of a device's wake-ups: one per device (a sorted set, chatId → when it was
 * last woken for that chat), so that account deletion forgets it with one DEL per device and no
 * keyspace scan (services/src/account/redis-account.ts). Not under `<prefix>:push:`, which is the
 * `push` queue's BullMQ namespace.
 */
export const wakeKey = (prefix: string, deviceId: string): string => `${prefix}:wake:${deviceId}`;

/**
 * Claims a device's wake-up for a chat: 1 (and recorded) when it was not woken for that chat in
 * the last ARGV[2] ms, else 0. KEYS[1] the device's wake key, ARGV[1] the chatId, ARGV[2] the
 * interval (PARLEY_PUSH_MIN_INTERVAL_MS). Redis' own clock, as SET NX PX would use; entries older
 * than the interval are dropped first, and the key expires an interval after its last claim, so
 * a device nobody writes to leaves nothing behind.
 */
const CLAIM_WAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

export async function processPush(ctx: WorkerContext, job: PushJob): Promise<PushResult> {
  const result: PushResult = { registered: 0, skipped: 0, sent: 0, gone: 0, retried: 0, failed: 0, by: ctx.workerId };
  const p = ctx.push;
  if (!p || job.deviceIds.length === 0) return result;
  // Everything that can fail and make BullMQ run this job again comes before the first send.
  const regs = await ctx.store.getPushRegistrations(job.deviceIds);
  result.registered = regs.length;
  if (!regs.length) return result;
  const connected = await connectedDevices(p.redis, p.prefix, regs.map((r) => r.deviceId));
  let targets = regs.filter((_, i) => !connected[i]);
  const attempt = job.attempt ?? 0;
  // A retry is the same wake-up: it was counted against the limit when it was first sent.
  if (attempt === 0 && p.minIntervalMs > 0 && targets.length) {
    const claims = p.redis.pipeline();
    for (const r of targets) claims.eval(CLAIM_WAKE, 1, wakeKey(p.prefix, r.deviceId), job.chatId, String(p.minIntervalMs));
    const answers = (await claims.exec()) ?? [];
    targets = targets.filter((_, i) => answers[i]?.[1] === 1);
  }
  result.skipped = regs.length - targets.length;
  const wake: WakeUp = { chatId: job.chatId, collapseKey: job.chatId, ttlSec: p.ttlSec };

  await inParallel(targets, SENDS_PER_JOB, async (r) => {
    let outcome: PushOutcome;
    try {
      const sending = sendWith(p.senders, r.registration, wake);
      outcome = sending ? await sending : { result: 'failed', reason: `${r.registration.kind} is not configured` };
    } catch (err) {
      outcome = networkOutcome(err);
    }
    const log = { deviceId: r.deviceId, chatId: job.chatId, kind: r.registration.kind, attempt };
    try {
      switch (outcome.result) {
        case 'ok':
          result.sent++;
          return;
        case 'gone':
          result.gone++;
          await ctx.store.deletePushRegistration(r.deviceId, pushAddress(r.registration));
          ctx.log.info({ ...log, reason: outcome.reason }, 'push registration gone: removed');
          return;
        case 'failed':
          result.failed++;
          ctx.log.warn({ ...log, reason: outcome.reason }, 'push failed');
          return;
        case 'retry': {
          const next = attempt + 1;
          const delay = Math.max(p.retryBaseMs * 2 ** attempt, outcome.retryAfterMs ?? 0);
          if (next >= p.maxAttempts || delay > MAX_RETRY_AFTER_MS) {
            result.failed++;
            ctx.log.warn({ ...log, reason: outcome.reason }, 'push given up');
            return;
          }
          result.retried++;
          await p.enqueue([{ chatId: job.chatId, deviceIds: [r.deviceId], attempt: next }], delay);
          ctx.log.debug({ ...log, reason: outcome.reason, delay }, 'push retry queued');
          return;
        }
      }
    } catch (err) {
      // After the send: never fail the job (a rerun would send to every device again).
      ctx.log.warn({ ...log, err: err instanceof Error ? err.message : String(err) }, 'push follow-up failed');
    }
  });
  return result;
}

/** Sends under way at once in one job (a fan-out chunk may name a hundred devices). */
const SENDS_PER_JOB = 32;

/** Runs `fn` over `items`, at most `limit` at a time. */
async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}
