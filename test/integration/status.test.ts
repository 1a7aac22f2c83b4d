/**
 * Status posts through the SDK on a real platform (broker, API, workers, Redis, SQLite):
 * - a post reaches its audience (mutual contacts): the feed, a live `statusPost` event, a device
 *   that was offline (on reconnection) and the author's other device; a non-contact, and a
 *   contact who did not save the author, see nothing (feed, no event, view refused, media refused);
 * - `only` / `except` audiences; a block hides the author's posts at once;
 * - views are idempotent and listed to the author only; removal reaches the devices and the feed;
 * - a media post: the viewer downloads the image;
 * - after 24 hours (the platform's clock, moved by the test) a post is invisible, and the cleanup
 *   job removes it with its views and audience;
 * - bad input and the limits give catalogue errors.
 */
import { join } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParleyError, STATUS_TEXT_MAX, type StatusPostEvent } from '@parley/client-sdk';
import { JOB, QUEUE } from '../../services/src/queues.js';
import { statusFanoutJobId, type StatusFanoutResult } from '../../services/src/workers/status-fanout.js';
import { createSqliteStore } from '../../services/src/store/sqlite.js';
import type { Store } from '../../services/src/store/types.js';
import { startTestPlatform, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, type Recorded } from '../helpers/sdk.js';
import { png, upload } from '../helpers/media.js';

const DAY = 86_400_000;

/** The platform's clock: real time plus an offset the test moves. */
let offset = 0;
const now = (): number => Date.now() + offset;

let p: TestPlatform;
let store: Store;
/** alice posts; bob and henry saved her and she saved them; carol saved alice only; dave is saved by alice only. */
let alice: Registered, bob: Registered, carol: Registered, dave: Registered, henry: Registered, frank: Registered;
let a1: Recorded, a2: Recorded, b1: Recorded, c1: Recorded, d1: Recorded, h1: Recorded, f1: Recorded;
/** bob's second device: connected once (its session exists), then offline while posts are made. */
let bob2: Registered;

const posts = (r: Recorded): StatusPostEvent[] => (r as Recorded & { posts: StatusPostEvent[] }).posts;

function withPosts(r: Recorded): Recorded {
  const list: StatusPostEvent[] = [];
  (r as Recorded & { posts: StatusPostEvent[] }).posts = list;
  r.client.on('statusPost', (e) => list.push(e));
  return r;
}

const open = (r: Registered): Recorded => withPosts(device(p.mqttUrl, r, { apiUrl: p.httpUrl }));

const codeOf = (promise: Promise<unknown>): Promise<string | null> =>
  promise.then(() => null, (e: unknown) => (e instanceof ParleyError ? e.code : `not a ParleyError: ${String(e)}`));

const eventFor = (r: Recorded, statusId: string, removed = false, what = 'status event'): Promise<StatusPostEvent> =>
  until(() => posts(r).some((e) => e.statusId === statusId && e.removed === removed), 15_000, what)
    .then(() => posts(r).find((e) => e.statusId === statusId && e.removed === removed)!);

async function runCleanup(): Promise<void> {
  const u = new URL(p.platform.urls.redis);
  const q = new Queue(QUEUE.maintenance, { connection: { host: u.hostname, port: Number(u.port) }, prefix: 'parley' });
  try {
    await q.add(JOB.cleanup, {});
  } finally {
    await q.close();
  }
}

beforeAll(async () => {
  p = await startTestPlatform({ PARLEY_STATUS_MAX_LIVE: '5', PARLEY_STATUS_POSTS_PER_HOUR: '8' }, undefined, { now });
  store = createSqliteStore({ file: join(p.dataDir, 'parley.sqlite') });
  await store.init();
  [alice, bob, carol, dave, henry, frank] = await Promise.all([p.register(), p.register(), p.register(), p.register(), p.register(), p.register()]);
  const alice2 = await p.linkDevice(alice.token, 'laptop');
  bob2 = await p.linkDevice(bob.token, 'tablet');
  a1 = open(alice);
  a2 = open({ ...alice2, userId: alice.userId });
  [b1, c1, d1, h1, f1] = [open(bob), open(carol), open(dave), open(henry), open(frank)];
  const b2 = open({ ...bob2, userId: bob.userId });
  await Promise.all([a1, a2, b1, b2, c1, d1, h1, f1].map((r) => r.client.connect()));
  // bob's tablet goes away (its broker session stays, as a phone's does when it loses signal).
  await b2.client.close();

  await a1.client.addContacts([bob.userId, dave.userId, henry.userId]);
  await b1.client.addContacts([alice.userId]);
  await h1.client.addContacts([alice.userId]);
  await c1.client.addContacts([alice.userId]);
}, 60_000);

afterAll(async () => {
  await closeAll();
  await store?.close();
  await p?.close();
});

describe('status posts', () => {
  let textId: string;

  it('reach mutual contacts (feed, live event, the offline device on reconnection, the author\'s other device), nobody else', async () => {
    const posted = await a1.client.postStatus({ text: 'at the beach', background: 0x1e90ff, font: 3 });
    textId = posted.statusId;
    expect(posted).toMatchObject({ from: alice.userId, text: 'at the beach', background: 0x1e90ff, font: 3, views: 0 });
    expect(posted.expiresAt - posted.ts).toBe(DAY);

    const live = await eventFor(b1, textId);
    expect(live).toMatchObject({ from: alice.userId, text: 'at the beach', background: 0x1e90ff, font: 3, removed: false, own: false, expiresAt: posted.expiresAt });
    expect(await eventFor(h1, textId)).toMatchObject({ own: false });
    expect(await eventFor(a2, textId)).toMatchObject({ own: true });

    // The device that was away gets it when it comes back.
    const b2 = open({ ...bob2, userId: bob.userId });
    await b2.client.connect();
    expect(await eventFor(b2, textId)).toMatchObject({ text: 'at the beach' });

    const feed = await b1.client.listStatuses();
    expect(feed.authors).toEqual([{ userId: alice.userId, allViewed: false, statuses: [expect.objectContaining({ statusId: textId, text: 'at the beach', viewed: false })] }]);
    // A device linked now, never online, starts from the feed.
    const b3 = await p.linkDevice(bob.token, 'new laptop');
    const fresh = device(p.mqttUrl, { ...b3, userId: bob.userId }, { apiUrl: p.httpUrl });
    expect(await fresh.client.listStatuses()).toEqual(feed);
    expect((await a1.client.listStatuses()).own.map((s) => s.statusId)).toEqual([textId]);

    // carol saved alice, but alice did not save carol; dave is saved by alice but did not save her.
    for (const r of [c1, d1]) {
      expect((await r.client.listStatuses()).authors).toEqual([]);
      expect(await codeOf(r.client.viewStatus(textId))).toBe('E_NOT_FOUND');
      expect(posts(r)).toEqual([]);
    }
    // The posting device gets no echo of its own post.
    expect(posts(a1).filter((e) => e.statusId === textId)).toEqual([]);
  });

  it('records views once and lists them to the author only', async () => {
    await b1.client.viewStatus(textId);
    await b1.client.viewStatus(textId);
    await h1.client.viewStatus(textId);
    await a1.client.viewStatus(textId); // the author's own view is not counted
    const viewers = await a1.client.getStatusViewers(textId);
    expect(viewers.map((v) => v.userId)).toEqual([bob.userId, henry.userId]);
    expect(viewers[0]!.viewedAt).toBeLessThanOrEqual(viewers[1]!.viewedAt);
    expect(await codeOf(b1.client.getStatusViewers(textId))).toBe('E_FORBIDDEN');
    expect(await codeOf(c1.client.getStatusViewers(textId))).toBe('E_NOT_FOUND');
    expect((await b1.client.listStatuses()).authors[0]).toMatchObject({ allViewed: true, statuses: [expect.objectContaining({ viewed: true })] });
    expect((await a1.client.listStatuses()).own).toEqual([expect.objectContaining({ statusId: textId, views: 2 })]);
  });

  it('posts to `only` some contacts, or to all `except` some', async () => {
    const only = await a1.client.postStatus({ text: 'for henry', audience: { only: [henry.userId] } });
    const except = await a1.client.postStatus({ text: 'not for henry', audience: { except: [henry.userId] } });
    await eventFor(h1, only.statusId);
    await eventFor(b1, except.statusId);
    const ids = async (r: Recorded): Promise<string[]> => (await r.client.listStatuses()).authors.flatMap((a) => a.statuses.map((s) => s.statusId));
    expect(await ids(h1)).toEqual([textId, only.statusId]);
    expect(await ids(b1)).toEqual([textId, except.statusId]);
    expect(posts(h1).some((e) => e.statusId === except.statusId)).toBe(false);
    // Only contacts may be chosen.
    expect(await codeOf(a1.client.postStatus({ text: 'x', audience: { only: [carol.userId] } }))).toBe('E_VALIDATION');
    await a1.client.removeStatus(only.statusId);
    await a1.client.removeStatus(except.statusId);
  });

  it('a media post: the audience downloads the image, nobody else', async () => {
    const bytes = await png(80, 60);
    const info = await a1.client.uploadMedia(new Uint8Array(bytes), { kind: 'image', contentType: 'image/png' });
    const posted = await a1.client.postStatus({ media: info.attachmentId, caption: 'sunset' });
    expect(posted.media).toMatchObject({ attachmentId: info.attachmentId, kind: 'image', width: 80, height: 60 });
    const ev = await eventFor(b1, posted.statusId);
    expect(ev).toMatchObject({ text: 'sunset', media: { attachmentId: info.attachmentId } });
    expect(Buffer.from(await b1.client.downloadMedia(ev.media!))).toEqual(bytes);
    expect(await codeOf(c1.client.downloadMedia(posted.media!))).toBe('E_NOT_FOUND');
    // Another user's attachment cannot be posted.
    expect(await codeOf(b1.client.postStatus({ media: info.attachmentId }))).toBe('E_NOT_FOUND');
    await a1.client.removeStatus(posted.statusId);
    // Removed: the audience's access to the media ends with it.
    expect(await codeOf(b1.client.downloadMedia(ev.media!))).toBe('E_NOT_FOUND');
  });

  it('removal reaches the devices that got the post, and the feed', async () => {
    expect(await codeOf(b1.client.removeStatus(textId))).toBe('E_FORBIDDEN');
    await a1.client.removeStatus(textId);
    for (const r of [b1, h1, a2]) {
      const ev = await eventFor(r, textId, true, 'removal');
      expect(ev).toMatchObject({ removed: true, from: alice.userId });
      expect(ev.text).toBeUndefined();
    }
    expect((await b1.client.listStatuses()).authors).toEqual([]);
    expect(await codeOf(b1.client.viewStatus(textId))).toBe('E_NOT_FOUND');
    expect(await codeOf(a1.client.removeStatus(textId))).toBe('E_NOT_FOUND');
    expect(await codeOf(a1.client.getStatusViewers(textId))).toBe('E_NOT_FOUND');
  });

  it('a block hides the author\'s posts at once', async () => {
    const posted = await a1.client.postStatus({ text: 'before the block' });
    await eventFor(h1, posted.statusId);
    await h1.client.blockUser(alice.userId);
    expect((await h1.client.listStatuses()).authors).toEqual([]);
    expect(await codeOf(h1.client.viewStatus(posted.statusId))).toBe('E_NOT_FOUND');
    await h1.client.unblockUser(alice.userId);
    expect((await h1.client.listStatuses()).authors.map((a) => a.userId)).toEqual([alice.userId]);
    await a1.client.removeStatus(posted.statusId);
  });

  it('bad input and the limits give catalogue errors', async () => {
    const api = f1.client;
    const bad: Array<[string, unknown]> = [
      ['text over the limit', { text: 'x'.repeat(STATUS_TEXT_MAX + 1) }],
      ['blank text', { text: '   ' }],
      ['neither text nor media', {}],
      ['both text and media', { text: 'x', media: 'mAAAAAAAAAAAA' }],
      ['a caption on a text post', { text: 'x', caption: 'y' }],
      ['a font on a media post', { media: 'mAAAAAAAAAAAA', font: 1 }],
      ['font out of range', { text: 'x', font: 10 }],
      ['background out of range', { text: 'x', background: 0x1000000 }],
      ['not an attachment id', { media: 'nope' }],
      ['an unknown audience', { text: 'x', audience: { everyone: true } }],
      ['an extra field', { text: 'x', colour: 'red' }],
    ];
    for (const [what, body] of bad) expect(await codeOf(api.postStatus(body as never)), what).toBe('E_VALIDATION');
    expect(await codeOf(api.viewStatus('not-a-status'))).toBe('E_VALIDATION');
    expect(await codeOf(api.viewStatus('sAAAAAAAAAAAA'))).toBe('E_NOT_FOUND');
    expect(await codeOf(api.removeStatus('sAAAAAAAAAAAA'))).toBe('E_NOT_FOUND');
    // An attachment still uploading is not ready.
    const pending = await upload(p.httpUrl, frank.token, await png(10, 10), { kind: 'image', contentType: 'image/png' }, { complete: false });
    expect(await codeOf(api.postStatus({ media: pending.attachmentId! }))).toBe('E_MEDIA_STATE');

    // At most 5 live posts; at most 8 attempts an hour that pass validation (the E_MEDIA_STATE one
    // above was the 1st, these five the 2nd to the 6th).
    const mine: string[] = [];
    for (let i = 0; i < 5; i++) mine.push((await api.postStatus({ text: `post ${i}` })).statusId);
    expect(await codeOf(api.postStatus({ text: 'one too many' }))).toBe('E_STATUS_LIMIT');
    await api.removeStatus(mine[0]!);
    await api.postStatus({ text: 'in its place' });
    expect(await codeOf(api.postStatus({ text: 'over the hourly limit' }))).toBe('E_RATE_LIMITED');
    expect((await api.listStatuses()).own).toHaveLength(5);
  });

  it('an envelope that expired before it reached the device is not emitted', async () => {
    const u = new URL(p.platform.urls.redis);
    const events = new QueueEvents(QUEUE.fanout, { connection: { host: u.hostname, port: Number(u.port) }, prefix: 'parley' });
    const done = new Map<string, StatusFanoutResult>();
    events.on('completed', ({ jobId, returnvalue }) => {
      done.set(jobId, (typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue) as StatusFanoutResult);
    });
    await events.waitUntilReady();
    try {
      // The server's clock a day and a minute behind: the post it makes has expired by real time.
      offset -= DAY + 60_000;
      const stale = await h1.client.postStatus({ text: 'old news' });
      const jobId = statusFanoutJobId({ statusId: stale.statusId, removed: false, afterUser: '', exceptDevice: '' });
      await until(() => done.has(jobId), 15_000, 'the fan-out of the stale post');
      offset += DAY + 60_000;
      // It was delivered to alice's devices...
      expect(done.get(jobId)!.devices).toBeGreaterThanOrEqual(2);
      // ...and a later post on the same inboxes arrives, the stale one never surfaces.
      const fresh = await h1.client.postStatus({ text: 'news' });
      await eventFor(a1, fresh.statusId);
      await eventFor(a2, fresh.statusId);
      expect(posts(a1).some((e) => e.statusId === stale.statusId)).toBe(false);
      expect(posts(a2).some((e) => e.statusId === stale.statusId)).toBe(false);
      await h1.client.removeStatus(fresh.statusId);
    } finally {
      await events.close();
    }
  });

  it('is invisible after 24 hours (the platform clock moved on), and the cleanup job removes it', async () => {
    const bytes = await png(30, 30);
    const info = await a1.client.uploadMedia(new Uint8Array(bytes), { kind: 'image', contentType: 'image/png' });
    const posted = await a1.client.postStatus({ media: info.attachmentId });
    await eventFor(b1, posted.statusId);
    await b1.client.viewStatus(posted.statusId);
    expect((await b1.client.listStatuses()).authors).toHaveLength(1);

    offset += DAY - 60_000;
    expect((await b1.client.listStatuses()).authors).toHaveLength(1);
    offset += 2 * 60_000;
    expect((await b1.client.listStatuses()).authors).toEqual([]);
    expect((await a1.client.listStatuses()).own).toEqual([]);
    expect(await codeOf(b1.client.viewStatus(posted.statusId))).toBe('E_NOT_FOUND');
    expect(await codeOf(a1.client.getStatusViewers(posted.statusId))).toBe('E_NOT_FOUND');
    expect(await codeOf(b1.client.downloadMedia(posted.media!))).toBe('E_NOT_FOUND');
    // Still stored until the cleanup job runs (with the same clock).
    expect(await store.getStatus(posted.statusId)).not.toBeNull();
    await runCleanup();
    await until(async () => (await store.getStatus(posted.statusId)) === null, 15_000, 'cleanup of the expired post');
    expect(await store.statusViewers(posted.statusId)).toEqual([]);
    expect(await store.inStatusAudience(posted.statusId, bob.userId)).toBe(false);
    // Its image stays until its own expiry (media retention), for its owner.
    expect(await store.getAttachment(info.attachmentId)).not.toBeNull();
    expect(Buffer.from(await a1.client.downloadMedia(posted.media!))).toEqual(bytes);
  });
});
