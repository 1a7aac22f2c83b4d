/**
 * `acks` and `reads`: the delivered tick (a device PUBACKed a message on its inbox) and the read
 * tick (a device published receipts/<msgId>). Both move watermarks in the store, then tell the
 * devices that care, once per job however many messages and members it covers:
 * - direct chat: one `receipt` per member watermark move to the other member's devices (without
 *   `by`: it is implied), and for reads also to the reader's other devices (with `by`). Read
 *   receipts off (privacy, either of the two): no read receipt between them (one privacy look-up
 *   per job of reads; acks never look);
 * - group: one `tally` per sender concerned ("of M other members, D have your messages up to seq
 *   S, R have read them") to that sender's devices, so a 1,024-member group costs its sender a
 *   handful of envelopes per batch instead of one per member; a read also goes to the reader's
 *   other devices as a `receipt`, and to nobody else. Read receipts are always counted in groups
 *   (WhatsApp's rule), whatever the members' setting. The senders concerned are those of the last
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

/** A watermark move, and for a read the device that read (it needs no receipt of its own read). */
type Change = WatermarkChange & { device?: string };

/**
 * Of these users, those with read receipts off (privacy): one look-up for the whole job. In a 1:1
 * chat such a user neither sends nor receives read receipts (WhatsApp's rule); his own devices
 * still learn his reads, and delivered receipts are not affected. Groups always have them.
 */
async function receiptsOff(ctx: WorkerContext, users: string[]): Promise<Set<string>> {
  const off = new Set<string>();
  if (users.length === 0) return off;
  for (const [u, p] of await ctx.store.getPrivacies([...new Set(users)])) if (!p.readReceipts) off.add(u);
  return off;
}

async function announce(ctx: WorkerContext, changes: Change[], status: ReceiptStatus): Promise<void> {
  const out: Out = [];
  const direct: Array<{ c: Change; others: string[] }> = [];
  for (const [chatId, list] of groupBy(changes, (c) => c.chatId)) {
    const chat = await ctx.store.getChat(chatId);
    if (!chat) continue;
    if (chat.kind === 'direct') {
      const members = (await ctx.store.getMembers(chatId)).map((m) => m.userId);
      for (const c of list) direct.push({ c, others: members.filter((u) => u !== c.userId) });
      continue;
    }
    await groupTallies(ctx, out, chatId, list);
    if (status === 'read') {
      for (const c of list) await toUsers(ctx, out, [c.userId], { kind: 'receipt', chatId, seq: c.seq, status, ts: c.at, by: c.userId }, c.device ?? null);
    }
  }
  // Direct chats: one receipt per member watermark move to the other member's devices (none for a
  // read when either of the two has read receipts off), and for reads also to the reader's other
  // devices (with `by`).
  const off = status === 'read' ? await receiptsOff(ctx, direct.flatMap(({ c, others }) => [c.userId, ...others])) : new Set<string>();
  for (const { c, others } of direct) {
    const to = off.has(c.userId) ? [] : others.filter((u) => !off.has(u));
    if (to.length) await toUsers(ctx, out, to, { kind: 'receipt', chatId: c.chatId, seq: c.seq, status, ts: c.at }, null);
    if (status === 'read') await toUsers(ctx, out, [c.userId], { kind: 'receipt', chatId: c.chatId, seq: c.seq, status, ts: c.at, by: c.userId }, c.device ?? null);
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
  await announce(ctx, changes, 'delivered');
}

export async function processReads(ctx: WorkerContext, items: IngestRead[]): Promise<void> {
  const changes: Change[] = [];
  for (const r of items) {
    const id = parseMsgId(r.m);
    // A device may only mark read what was meant for it.
    if (!id || !(await ctx.store.isRecipient(r.d, id.chatId, id.seq))) {
      await ctx.publisher.publish(r.d, { kind: 'error', code: 'E_NOT_RECIPIENT', detail: r.m, ref: r.m });
      continue;
    }
    const change = await ctx.store.markRead(id.chatId, r.u, id.seq, r.t);
    if (change) changes.push({ ...change, device: r.d });
  }
  // Announced once for the job: one privacy look-up however many reads it holds.
  if (changes.length) await announce(ctx, changes, 'read');
}
