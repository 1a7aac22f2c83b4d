/**
 * Media messages through the SDK: sendMedia to a 1:1 chat and to a group; recipients get the
 * ThumbHash preview inline in `newMessage`, download the thumbnail and the original (checked
 * against the SHA-256 in the message), the thumbnail carries no EXIF; a video with its poster and
 * a PDF; someone outside the chat cannot download; a media message naming an attachment that is
 * not ready or not the sender's is refused.
 */
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParleyError, type ChatMessage } from '@parley/client-sdk';
import { stripJpegGps } from '@parley/client-sdk/protocol';
import { startTestPlatform, until, type Registered, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, type Recorded } from '../helpers/sdk.js';
import { hasGps, jpegWithExif, png, sha256, tinyMp4, tinyPdf, webp } from '../helpers/media.js';

let p: TestPlatform;
let alice: Registered;
let bob: Registered;
let carol: Registered;
let da: Recorded;
let db: Recorded;
let dc: Recorded;

beforeAll(async () => {
  p = await startTestPlatform({ PARLEY_CODE_RATE_PER_IP: '1000' });
  [alice, bob, carol] = [await p.register(), await p.register(), await p.register()];
  [da, db, dc] = [alice, bob, carol].map((u) => device(p.mqttUrl, u, { apiUrl: p.httpUrl })) as [Recorded, Recorded, Recorded];
  await Promise.all([da, db, dc].map((d) => d.client.connect()));
}, 60_000);

afterAll(async () => {
  await closeAll();
  await p?.close();
});

const media = (r: Recorded): ChatMessage[] => r.messages.filter((m) => m.media);

describe('media messages', () => {
  it('images 1:1 and to a group: preview inline, thumbnail and original downloaded and verified, no EXIF in the thumbnail', async () => {
    const group = await da.client.createChat({ name: 'Photos', members: [bob.userId, carol.userId] });
    const files = [
      { bytes: await jpegWithExif(1200, 900), contentType: 'image/jpeg' },
      { bytes: await png(300, 200), contentType: 'image/png' },
      { bytes: await webp(400, 300), contentType: 'image/webp' },
    ];
    const progress: number[] = [];
    for (const f of files) {
      await da.client.sendMedia(bob.userId, f.bytes, { kind: 'image', contentType: f.contentType, caption: `1:1 ${f.contentType}` }, {
        onProgress: (done) => progress.push(done),
      });
      await da.client.sendMedia(group.chatId, f.bytes, { kind: 'image', contentType: f.contentType, caption: `group ${f.contentType}` });
    }
    expect(progress.at(-1)).toBe(files.at(-1)!.bytes.length);
    await until(() => media(db).length >= 6 && media(dc).length >= 3, 20_000, 'media messages delivered');
    for (const [i, m] of media(db).entries()) {
      const f = files[Math.floor(i / 2)]!;
      // What was sent: the file, less a JPEG's GPS position (removed by the SDK before the upload).
      const sentBytes = Buffer.from(stripJpegGps(f.bytes));
      expect(m.media).toMatchObject({ kind: 'image', contentType: f.contentType, size: sentBytes.length, sha256: sha256(sentBytes) });
      expect(m.media!.preview!.length).toBeGreaterThan(10); // inline: before any download
      const original = await db.client.downloadMedia(m);
      expect(sha256(Buffer.from(original))).toBe(sha256(sentBytes));
      expect(await hasGps(original)).toBe(false);
      const thumb = await db.client.downloadMedia(m, { thumbnail: true });
      const meta = await sharp(thumb).metadata();
      expect(meta.format).toBe('webp');
      expect(meta.exif).toBeUndefined();
      expect(await hasGps(thumb)).toBe(false);
    }
    // The JPEG had a GPS position; what others download has none, and keeps its orientation and camera.
    expect(await hasGps(files[0]!.bytes)).toBe(true);
    const received = await sharp(await db.client.downloadMedia(media(db)[0]!)).metadata();
    expect(received.orientation).toBe(6);
    expect(received.exif?.includes(Buffer.from('TestCam'))).toBe(true);
    expect(media(db).map((m) => m.text)).toEqual(files.flatMap((f) => [`1:1 ${f.contentType}`, `group ${f.contentType}`]));
    // The JPEG was sent turned (EXIF orientation 6): its size is as shown.
    expect(media(db)[0]!.media).toMatchObject({ width: 900, height: 1200 });
    // Carol is in the group, not in the 1:1 chat.
    expect(media(dc).map((m) => m.chatId)).toEqual([group.chatId, group.chatId, group.chatId]);
    await expect(dc.client.downloadMedia(media(db)[0]!)).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
    expect(sha256(Buffer.from(await dc.client.downloadMedia(media(dc)[0]!)))).toBe(sha256(Buffer.from(stripJpegGps(files[0]!.bytes))));
  }, 60_000);

  it('a short video with its poster, a PDF document and a 6000×4000 photo, 1:1 and to a group', async () => {
    const group = await da.client.createChat({ name: 'Files', members: [bob.userId, carol.userId] });
    const poster = await da.client.uploadMedia(await png(320, 180), { kind: 'image', contentType: 'image/png' });
    const video = tinyMp4();
    const pdf = tinyPdf();
    const photo = await sharp({ create: { width: 6000, height: 4000, channels: 3, background: { r: 90, g: 140, b: 60 } } }).jpeg({ quality: 60 }).toBuffer();
    for (const to of [bob.userId, group.chatId]) {
      await da.client.sendMedia(to, video, { kind: 'video', contentType: 'video/mp4', durationMs: 4200, poster: poster.attachmentId, caption: 'clip' });
      // A stream, as a file read from disk would come.
      await da.client.sendMedia(to, Readable.from([pdf.subarray(0, 500), pdf.subarray(500)]), { kind: 'document', contentType: 'application/pdf', filename: 'terms.pdf' });
      await da.client.sendMedia(to, photo, { kind: 'image', contentType: 'image/jpeg' });
    }
    await until(() => media(dc).filter((m) => m.chatId === group.chatId).length >= 3, 20_000, 'video, pdf and photo in the group');
    const inGroup = media(dc).filter((m) => m.chatId === group.chatId);
    expect(inGroup.map((m) => m.media!.kind)).toEqual(['video', 'document', 'image']);
    expect(inGroup[2]!.media).toMatchObject({ width: 6000, height: 4000, size: photo.length });
    expect(sha256(Buffer.from(await dc.client.downloadMedia(inGroup[2]!)))).toBe(sha256(photo));
    expect((await sharp(await dc.client.downloadMedia(inGroup[2]!, { thumbnail: true })).metadata()).width).toBe(320);
    await until(() => media(db).filter((m) => m.chatId !== group.chatId).some((m) => m.media?.kind === 'document'), 20_000, 'video and pdf delivered');
    const v = media(db).find((m) => m.media?.kind === 'video')!;
    expect(v.media).toMatchObject({ contentType: 'video/mp4', durationMs: 4200, poster: poster.attachmentId, size: video.length });
    expect(sha256(Buffer.from(await db.client.downloadMedia(v)))).toBe(sha256(video));
    // The poster is downloadable by the recipient through the video's message.
    expect((await db.client.downloadMedia({ ...v.media!, attachmentId: poster.attachmentId, sha256: poster.sha256 })).length).toBe(poster.size);
    const d = media(db).find((m) => m.media?.kind === 'document')!;
    expect(d.media).toMatchObject({ contentType: 'application/pdf', filename: 'terms.pdf' });
    expect(sha256(Buffer.from(await db.client.downloadMedia(d)))).toBe(sha256(pdf));
  }, 60_000);

  it('client-encrypted media: no sniffing, no thumbnail; its client-made thumbnail goes along as the poster', async () => {
    const ciphertext = Buffer.from(Array.from({ length: 5000 }, (_v, i) => (i * 7919) % 251));
    const clientThumb = await da.client.uploadMedia(Buffer.from(Array.from({ length: 300 }, (_v, i) => i % 256)), { kind: 'image', contentType: 'image/jpeg', encrypted: true });
    expect(clientThumb).toMatchObject({ state: 'ready', hasThumbnail: false, preview: null, encrypted: true });
    // The key and digest would travel in the body (bytes the server cannot read); here a caption.
    const sent = await da.client.sendMedia(bob.userId, ciphertext, { kind: 'image', contentType: 'image/jpeg', encrypted: true, poster: clientThumb.attachmentId });
    await until(() => media(db).some((m) => m.msgId === sent.msgId), 20_000, 'encrypted media delivered');
    const m = media(db).find((x) => x.msgId === sent.msgId)!;
    expect(m.media).toMatchObject({ encrypted: true, poster: clientThumb.attachmentId, size: ciphertext.length });
    expect(m.media!.preview).toBeUndefined();
    expect(sha256(Buffer.from(await db.client.downloadMedia(m)))).toBe(sha256(ciphertext));
  });

  it('an upload paused half way resumes without sending a stored byte twice', async () => {
    const doc = Buffer.from(Array.from({ length: 12 * 1024 * 1024 + 99 }, (_v, i) => (i * 31) % 256));
    let putBytes = 0;
    const realFetch = globalThis.fetch;
    globalThis.fetch = async (input, init) => {
      if (init?.method === 'PUT' && init.body instanceof Uint8Array) putBytes += init.body.length;
      return realFetch(input, init);
    };
    try {
      const pause = new AbortController();
      const first = da.client.uploadMedia(doc, { kind: 'document', contentType: 'application/octet-stream', filename: 'big.bin' }, {
        signal: pause.signal, onProgress: (done) => { if (done > 0) pause.abort(); },
      });
      await expect(first).rejects.toMatchObject({ code: 'E_CLOSED' });
      const afterPause = putBytes;
      expect(afterPause).toBeGreaterThan(0);
      expect(afterPause).toBeLessThan(doc.length);
      const done = await da.client.uploadMedia(doc, { kind: 'document', contentType: 'application/octet-stream', filename: 'big.bin' });
      expect(done).toMatchObject({ state: 'ready', size: doc.length });
      expect(putBytes).toBe(doc.length);
    } finally {
      globalThis.fetch = realFetch;
    }
  }, 60_000);

  it('a member added after a media message cannot download it', async () => {
    const group = await da.client.createChat({ name: 'Before you', members: [bob.userId] });
    const sent = await da.client.sendMedia(group.chatId, await png(30, 30), { kind: 'image', contentType: 'image/png' });
    await until(() => media(db).some((m) => m.msgId === sent.msgId), 20_000, 'delivered to bob');
    const m = media(db).find((x) => x.msgId === sent.msgId)!;
    await da.client.addUserToGroup(group.chatId, carol.userId);
    await expect(dc.client.downloadMedia(m)).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
    expect((await db.client.downloadMedia(m)).length).toBe(m.media!.size);
  });

  it('refuses a media message for an attachment that is not ready, or not the sender\'s', async () => {
    const mine = await db.client.uploadMedia(await png(10, 10), { kind: 'image', contentType: 'image/png' });
    await expect(da.client.sendMessage(bob.userId, 'stolen', { media: mine.attachmentId })).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
    await expect(da.client.sendMessage(bob.userId, 'unknown', { media: 'mAAAAAAAAAAAA' })).rejects.toBeInstanceOf(ParleyError);
  });
});
