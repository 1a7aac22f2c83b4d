/**
 * `acks` and `reads`: the delivered tick (a device PUBACKed a message on its inbox) and the read
 * tick (a device published receipts/<msgId>). Both move watermarks in the store, then tell the
 * devices that care, once per job however many messages and members it covers:
 * - direct chat: one `receipt` per member watermark move to the other member's devices (without
 *   `by`: it is implied), and for reads also to the reader's other devices (with `by`);
 * - group: one `tally` per sender concerned ("of M other members, D have your messages up to seq
 *   S, R have read them") to that sender's devices, so a 1,024-member group costs its sender a
 *   handful of envelopes per batch instead of one per member; a read also goes to the reader's
 *   other devices as a `receipt`, and to nobody else. The senders concerned are those of the last
 *   TALLY_WINDOW messages up to each watermark that moved, so the work stays bounded.
 */
import { parseMsgId, type Envelope, type ReceiptStatus } from '@parley/client-sdk/protocol';
import type { IngestAck, IngestRead } from '../../../broker/src/index.js';
import type { WatermarkChange } from '../store/types.js';
import type { WorkerContext } from './context.js';
import { groupBy } from '../group-by.js';

/** How far back from a moved watermark a group tally looks for the senders it concerns. */
export const TALLY_WINDOW = 50;

type Out = Array<{ deviceId: string; env: Envelope }>;

async function toUsers(ctx: WorkerContext, out: Out, users: string[], env: Envelope, exceptDevice: string | null): Promise<void> {
  for (const d of await ctx.store.listDevicesOfUsers(users)) if (d.deviceId !== exceptDevice) out.push({ deviceId: d.deviceId, env });
}

async function directReceipts(ctx: WorkerContext, out: Out, c: WatermarkChange, status: ReceiptStatus, readerDevice: string | null): Promise<void> {
  const others = (await ctx.store.getMembers(c.chatId)).map((m) => m.userId).filter((u) => u !== c.userId);
  await toUsers(ctx, out, others, { kind: 'receipt', chatId: c.chatId, seq: c.seq, status, ts: c.at }, null);
  if (status === 'read') await toUsers(ctx, out, [c.userId], { kind: 'receipt', chatId: c.chatId, seq: c.seq, status, ts: c.at, by: c.userId }, readerDevice);
}

async function groupTallies(ctx: WorkerContext, out: Out, chatId: string, changes: WatermarkChange[]): Promise<void> {
  // Each sender's latest message within the window below any watermark that moved.
  const latest = new Map<string, number>();
  for (const seq of new Set(changes.map((c) => c.seq))) {
    const from = Math.max(0, seq - TALLY_WINDOW);
    for (const m of await ctx.store.history(chatId, from, seq - from)) {
      if ((latest.get(m.senderUserId) ?? 0) < m.seq) latest.set(m.senderUserId, m.seq);
    }
  }
  for (const [sender, seq] of latest) {
    const t = await ctx.store.tally(chatId, seq, sender);
    await toUsers(ctx, out, [sender], { kind: 'tally', chatId, seq, delivered: t.delivered, read: t.read, of: t.of }, null);
  }
}

async function announce(ctx: WorkerContext, changes: WatermarkChange[], status: ReceiptStatus, readerDevice: string | null): Promise<void> {
  const out: Out = [];
  for (const [chatId, list] of groupBy(changes, (c) => c.chatId)) {
    const chat = await ctx.store.getChat(chatId);
    if (!chat) continue;
    if (chat.kind === 'direct') {
      for (const c of list) await directReceipts(ctx, out, c, status, readerDevice);
      continue;
    }
    await groupTallies(ctx, out, chatId, list);
    if (status === 'read') {
      for (const c of list) await toUsers(ctx, out, [c.userId], { kind: 'receipt', chatId, seq: c.seq, status, ts: c.at, by: c.userId }, readerDevice);
    }
  }
  await ctx.publisher.publishAll(out);
}

export async function processAcks(ctx: WorkerContext, items: IngestAck[]): Promise<void> {
  // A device gets each chat in order, so its highest ack per chat covers the rest: one watermark
  // move per (device, chat) per job, however many messages the batch acknowledged.
  const top = new Map<string, IngestAck>();
  for (const a of items) {
    const key = `${a.d}|${a.c}`;
    const cur = top.get(key);
    if (!cur || a.s > cur.s) top.set(key, cur && cur.t > a.t ? { ...a, t: cur.t } : a);
    else if (a.t > cur.t) cur.t = a.t;
  }
  const changes = await ctx.store.markDelivered([...top.values()].map((a) => ({ chatId: a.c, seq: a.s, deviceId: a.d, at: a.t })));
  await announce(ctx, changes, 'delivered', null);
}

export async function processReads(ctx: WorkerContext, items: IngestRead[]): Promise<void> {
  for (const r of items) {
    const id = parseMsgId(r.m);
    // A device may only mark read what was meant for it.
    if (!id || !(await ctx.store.isRecipient(r.d, id.chatId, id.seq))) {
      await ctx.publisher.publish(r.d, { kind: 'error', code: 'E_NOT_RECIPIENT', detail: r.m, ref: r.m });
      continue;
    }
    const change = await ctx.store.markRead(id.chatId, r.u, id.seq, r.t);
    if (change) await announce(ctx, [change], 'read', r.d);
  }
}
