/**
 * Media expiry: an uploaded image (object, thumbnail, row) and an abandoned upload are removed by
 * the cleanup job once past the retention, with the job's clock moved 31 days on.
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { getJson, png, upload } from '../helpers/media.js';
import { createSqliteStore } from '../../services/src/store/sqlite.js';
import { createFsBlobStore } from '../../services/src/media/fs-blob-store.js';
import type { Store } from '../../services/src/store/types.js';
import { processCleanup } from '../../services/src/workers/cleanup.js';
import type { WorkerContext } from '../../services/src/workers/context.js';

let p: TestPlatform;
let alice: Registered;
let store: Store;

beforeAll(async () => {
  p = await startTestPlatform();
  alice = await p.register();
  store = createSqliteStore({ file: join(p.dataDir, 'parley.sqlite') });
  await store.init();
}, 60_000);

afterAll(async () => {
  await store?.close();
  await p?.close();
});

describe('media expiry', () => {
  it('removes expired media (object, thumbnail, row, links) and abandoned uploads; keeps what is younger', async () => {
    const done = await upload(p.httpUrl, alice.token, await png(), { kind: 'image', contentType: 'image/png' });
    const abandoned = await upload(p.httpUrl, alice.token, await png(20, 20), { kind: 'image', contentType: 'image/png' }, { complete: false });
    await until(async () => (await getJson(`${p.httpUrl}/v1/attachments/${done.attachmentId}`, alice.token)).json.state === 'ready', 20_000, 'thumbnail');
    const a = (await store.getAttachment(done.attachmentId!))!;
    const blobs = createFsBlobStore({ root: join(p.dataDir, 'media'), publicUrl: 'http://unused', secret: 'x' });
    expect(await blobs.stat(a.key)).not.toBeNull();
    expect(await blobs.stat(a.thumbKey!)).not.toBeNull();

    const ctx = (now: number): WorkerContext => ({
      store, log: pino({ level: 'silent' }), now: () => now, workerId: 'test', retentionMs: 30 * 86_400_000, fanoutChunk: 128,
      publisher: undefined as never, enqueueFanout: async () => undefined, enqueueStatusFanout: async () => undefined,
      media: { blobs, maxPixels: 1e7, timeoutSec: 5 },
    });
    // A day later: nothing goes.
    await processCleanup(ctx(Date.now() + 86_400_000));
    expect(await store.getAttachment(a.attachmentId)).not.toBeNull();
    // 31 days later: both go, files and rows.
    await processCleanup(ctx(Date.now() + 31 * 86_400_000));
    expect(await store.getAttachment(a.attachmentId)).toBeNull();
    expect(await store.getAttachment(abandoned.attachmentId!)).toBeNull();
    expect(await blobs.stat(a.key)).toBeNull();
    expect(await blobs.stat(a.thumbKey!)).toBeNull();
    expect((await getJson(`${p.httpUrl}/v1/attachments/${a.attachmentId}`, alice.token)).status).toBe(404);
  }, 30_000);
});
