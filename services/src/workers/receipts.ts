/**
 * `acks` and `reads`: the delivered tick (a device PUBACKed a message on its inbox) and the read
 * tick (a device published receipts/<msgId>). Both move watermarks in the store and tell the
 * devices that care with one `receipt` envelope per member watermark move, however many messages
 * it covers: in a direct chat the other member; in a group the senders of the messages it covers
 * (looked up among the last RECENT_SENDERS messages up to it, so the work stays bounded in a
 * 1,024-member group); for reads also the reader's other devices.
 */
import { parseMsgId, type Envelope, type ReceiptStatus } from '@parley/client-sdk';
import type { IngestAck, IngestRead } from '../../../broker/src/index.js';
import type { WatermarkChange } from '../store/types.js';
import type { WorkerContext } from './context.js';

/** How far back a group receipt looks for the senders it concerns. */
const RECENT_SENDERS = 50;

async function audience(ctx: WorkerContext, c: WatermarkChange, status: ReceiptStatus): Promise<string[]> {
  const chat = await ctx.store.getChat(c.chatId);
  if (!chat) return [];
  const users = new Set<string>();
  if (chat.kind === 'direct') {
    for (const m of await ctx.store.getMembers(c.chatId)) users.add(m.userId);
  } else {
    const from = Math.max(0, c.seq - RECENT_SENDERS);
    for (const m of await ctx.store.history(c.chatId, from, c.seq - from)) users.add(m.senderUserId);
    users.add(c.userId);
  }
  // delivered: only the others care; read: the reader's other devices sync their unread state too.
  if (status === 'delivered') users.delete(c.userId);
  return [...users];
}

async function announce(
  ctx: WorkerContext,
  changes: WatermarkChange[],
  status: ReceiptStatus,
  excludeDevice: string | null,
): Promise<void> {
  const out: Array<{ deviceId: string; env: Envelope }> = [];
  for (const c of changes) {
    const devices = await ctx.store.listDevicesOfUsers(await audience(ctx, c, status));
    for (const d of devices) {
      if (d.deviceId === excludeDevice) continue;
      out.push({ deviceId: d.deviceId, env: { kind: 'receipt', chatId: c.chatId, seq: c.seq, status, by: c.userId, ts: c.at } });
    }
  }
  await ctx.publisher.publishAll(out);
}

export async function processAcks(ctx: WorkerContext, items: IngestAck[]): Promise<void> {
  const changes = await ctx.store.markDelivered(items.map((a) => ({ chatId: a.c, seq: a.s, deviceId: a.d, at: a.t })));
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
