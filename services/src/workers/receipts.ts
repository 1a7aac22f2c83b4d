/**
 * `acks` and `reads`: the delivered tick (a device PUBACKed a message on its inbox) and the read
 * tick (a device published receipts/<msgId>). Both move per-user watermarks in the store and tell
 * the other members' devices (and, for reads, the reader's other devices) with one `receipt`
 * envelope per watermark move, however many messages it covers.
 */
import { parseMsgId, type Envelope, type ReceiptStatus } from '@parley/client-sdk';
import type { IngestAck, IngestRead } from '../../../broker/src/index.js';
import type { WatermarkChange } from '../store/types.js';
import type { WorkerContext } from './context.js';

async function announce(
  ctx: WorkerContext,
  changes: WatermarkChange[],
  status: ReceiptStatus,
  excludeDevice: (c: WatermarkChange) => string | null,
): Promise<void> {
  const out: Array<{ deviceId: string; env: Envelope }> = [];
  for (const c of changes) {
    const members = await ctx.store.getMembers(c.chatId);
    // delivered: only the others care; read: the reader's other devices sync their unread state too.
    const users = members.map((m) => m.userId).filter((u) => status === 'read' || u !== c.userId);
    const devices = await ctx.store.listDevicesOfUsers(users);
    const skip = excludeDevice(c);
    for (const d of devices) {
      if (d.deviceId === skip) continue;
      out.push({ deviceId: d.deviceId, env: { kind: 'receipt', chatId: c.chatId, seq: c.seq, status, by: c.userId, ts: c.at } });
    }
  }
  await ctx.publisher.publishAll(out);
}

export async function processAcks(ctx: WorkerContext, items: IngestAck[]): Promise<void> {
  const changes = await ctx.store.markDelivered(items.map((a) => ({ chatId: a.c, seq: a.s, deviceId: a.d, at: a.t })));
  await announce(ctx, changes, 'delivered', () => null);
}

export async function processReads(ctx: WorkerContext, items: IngestRead[]): Promise<void> {
  for (const r of items) {
    const id = parseMsgId(r.m);
    const refuse = (): Promise<void> =>
      ctx.publisher.publish(r.d, { kind: 'error', code: 'E_NOT_RECIPIENT', detail: r.m, ref: r.m });
    if (!id) {
      await refuse();
      continue;
    }
    // A device may only mark read what was addressed to it.
    if (!(await ctx.store.hasDelivery({ chatId: id.chatId, seq: id.seq, deviceId: r.d }))) {
      await refuse();
      continue;
    }
    const change = await ctx.store.markRead(id.chatId, r.u, id.seq, r.t);
    if (change) await announce(ctx, [change], 'read', () => r.d);
  }
}
