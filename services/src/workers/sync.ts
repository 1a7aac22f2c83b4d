/**
 * `sync`: resends from the store what a device has not acknowledged — after its broker session
 * was lost (CONNACK sessionPresent=0), or to fill a seq gap in one chat. Duplicates this may
 * cause are dropped by the SDK (by seq), never shown twice.
 */
import type { IngestSync } from '../../../broker/src/index.js';
import type { WorkerContext } from './context.js';

const PAGE = 1000;

export async function processSync(ctx: WorkerContext, items: IngestSync[]): Promise<void> {
  for (const s of items) {
    let count = 0;
    if (s.c) {
      let after = s.a ?? 0;
      for (;;) {
        const page = await ctx.store.undelivered(s.d, { chatId: s.c, afterSeq: after, limit: PAGE });
        count += await resend(ctx, s.d, page);
        const last = page.at(-1);
        if (page.length < PAGE || !last) break;
        after = last.seq;
      }
    } else {
      // Every chat, in (chatId, seq) order, a page at a time.
      let after: { chatId: string; seq: number } | undefined;
      for (;;) {
        const page = await ctx.store.undelivered(s.d, { limit: PAGE, ...(after ? { after } : {}) });
        count += await resend(ctx, s.d, page);
        const last = page.at(-1);
        if (page.length < PAGE || !last) break;
        after = { chatId: last.chatId, seq: last.seq };
      }
    }
    await ctx.publisher.publish(s.d, { kind: 'synced', count, ...(s.c ? { chatId: s.c } : {}) });
  }
}

async function resend(
  ctx: WorkerContext,
  deviceId: string,
  page: Awaited<ReturnType<WorkerContext['store']['undelivered']>>,
): Promise<number> {
  await ctx.publisher.publishAll(
    page.map((m) => ({
      deviceId,
      env: { kind: 'msg' as const, chatId: m.chatId, seq: m.seq, from: m.senderUserId, fromDevice: m.senderDeviceId, ts: m.ts, body: m.body },
    })),
  );
  return page.length;
}
