/** The MediaStore contract: attachments, their state machine, their links to messages, and expiry. */
import { describe, expect, it } from 'vitest';
import { newId } from '@parley/client-sdk/protocol';
import { StoreError, type Attachment } from '../../services/src/store/types.js';
import { errorOf, newDevice, newUser, useStore, type StoreFactory } from './helpers.js';

export function mediaStoreContract(factory: StoreFactory): void {
  describe('MediaStore', () => {
    const ctx = useStore(factory);

    async function attachment(over: Partial<Attachment> = {}): Promise<Attachment> {
      const { store } = ctx;
      const user = await newUser(store);
      const device = await newDevice(store, user);
      const id = newId('media');
      return {
        attachmentId: id, ownerUserId: user, ownerDeviceId: device, kind: 'image', contentType: 'image/jpeg', size: 1234,
        sha256: 'ab'.repeat(32), key: `media/${id}`, uploadId: 'upload-1', state: 'uploading', error: null, encrypted: false,
        thumbKey: null, preview: null, width: null, height: null, meta: {}, createdAt: 1_000, expiresAt: 100_000, ...over,
      };
    }

    it('creates and reads an attachment as given; an id is taken once', async () => {
      const { store } = ctx;
      const a = await attachment({ meta: { filename: 'cat.jpg', durationMs: 5, waveform: [1, 2, 255] } });
      await store.createAttachment(a);
      expect(await store.getAttachment(a.attachmentId)).toEqual(a);
      expect(await store.getAttachment(newId('media'))).toBeNull();
      const err = await errorOf(store.createAttachment(a));
      expect(err).toBeInstanceOf(StoreError);
      expect((err as StoreError).code).toBe('DUPLICATE');
    });

    it('moves through its states only from the expected one (one caller wins)', async () => {
      const { store } = ctx;
      const a = await attachment();
      await store.createAttachment(a);
      const processing = await store.updateAttachment(a.attachmentId, 'uploading', { state: 'processing', uploadId: null, contentType: 'image/png' });
      expect(processing).toEqual({ ...a, state: 'processing', uploadId: null, contentType: 'image/png' });
      expect(await store.updateAttachment(a.attachmentId, 'uploading', { state: 'failed', error: 'E_X' })).toBeNull();
      const ready = await store.updateAttachment(a.attachmentId, 'processing', {
        state: 'ready', thumbKey: `media/${a.attachmentId}.thumb`, preview: 'AAAA', width: 640, height: 480, encrypted: false,
      });
      expect(ready).toMatchObject({ state: 'ready', thumbKey: `media/${a.attachmentId}.thumb`, preview: 'AAAA', width: 640, height: 480 });
      expect(await store.getAttachment(a.attachmentId)).toEqual(ready);
      expect(await store.updateAttachment(newId('media'), 'uploading', { state: 'failed' })).toBeNull();
    });

    it('links messages idempotently, lists expired ones oldest first, and deletes rows with their links', async () => {
      const { store } = ctx;
      const old = await attachment({ expiresAt: 10 });
      const older = await attachment({ expiresAt: 5 });
      const fresh = await attachment({ expiresAt: 10_000 });
      for (const a of [old, older, fresh]) await store.createAttachment(a);
      const chat = newId('chat');
      await store.linkAttachment(old.attachmentId, chat, 7, 0);
      await store.linkAttachment(old.attachmentId, chat, 7, 0);
      await store.linkAttachment(old.attachmentId, chat, 3, 0);
      expect(await store.attachmentLinks(old.attachmentId)).toEqual([{ chatId: chat, seq: 3 }, { chatId: chat, seq: 7 }]);
      const expired = await store.expiredAttachments(11, 10);
      expect(expired.map((x) => x.attachmentId)).toEqual([older.attachmentId, old.attachmentId]);
      expect((await store.expiredAttachments(11, 1)).map((x) => x.attachmentId)).toEqual([older.attachmentId]);
      // A link keeps the attachment as long as its message (never shortens it).
      await store.linkAttachment(older.attachmentId, chat, 9, 50);
      await store.linkAttachment(older.attachmentId, chat, 10, 20);
      expect((await store.getAttachment(older.attachmentId))!.expiresAt).toBe(50);
      expect((await store.expiredAttachments(11, 10)).map((x) => x.attachmentId)).toEqual([old.attachmentId]);
      await store.deleteAttachment(old.attachmentId);
      expect(await store.getAttachment(old.attachmentId)).toBeNull();
      expect(await store.attachmentLinks(old.attachmentId)).toEqual([]);
      expect(await store.getAttachment(fresh.attachmentId)).toEqual(fresh);
    });
  });
}
