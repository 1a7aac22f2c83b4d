/**
 * The account deletion and export parts of the ports: AccountStore.listAllDevices and deleteUser,
 * MediaStore.attachmentsOf. deleteUser forgets every row of the user and keeps, of his messages,
 * exactly those every recipient has (the recipients' copies).
 */
import { describe, expect, it } from 'vitest';
import { newId } from '@parley/client-sdk/protocol';
import type { Attachment } from '../../services/src/store/types.js';
import { newDevice, newGroup, newMessage, newPhone, newUser, useStore, type StoreFactory } from './helpers.js';

export function accountDeletionContract(factory: StoreFactory): void {
  describe('account deletion (AccountStore.deleteUser, listAllDevices; MediaStore.attachmentsOf)', () => {
    const ctx = useStore(factory);

    const attachment = (ownerUserId: string, ownerDeviceId: string, attachmentId = newId('media')): Attachment => ({
      attachmentId, ownerUserId, ownerDeviceId, kind: 'image', contentType: 'image/png', size: 10, sha256: 'ab'.repeat(32),
      key: `media/${attachmentId}`, uploadId: null, state: 'ready', error: null, encrypted: false, thumbKey: null, preview: null,
      width: null, height: null, meta: {}, createdAt: 1_000, expiresAt: 100_000,
    });

    it('listAllDevices lists revoked devices too, oldest first', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const d1 = await newDevice(store, u, 10);
      const d2 = await newDevice(store, u, 20);
      await store.revokeDevice(d1, 30);
      expect((await store.listAllDevices(u)).map((d) => [d.deviceId, d.revokedAt])).toEqual([[d1, 30], [d2, null]]);
      expect((await store.listDevices(u)).map((d) => d.deviceId)).toEqual([d2]);
      expect(await store.listAllDevices(newId('user'))).toEqual([]);
    });

    it('attachmentsOf pages through one owner\'s attachments in id order', async () => {
      const { store } = ctx;
      const u = await newUser(store);
      const d = await newDevice(store, u);
      const other = await newUser(store);
      const ids = Array.from({ length: 5 }, () => newId('media'));
      for (const id of ids) await store.createAttachment(attachment(u, d, id));
      await store.createAttachment(attachment(other, await newDevice(store, other)));
      const sorted = [...ids].sort((x, y) => (x < y ? -1 : 1));
      const first = await store.attachmentsOf(u, '', 3);
      expect(first.map((a) => a.attachmentId)).toEqual(sorted.slice(0, 3));
      expect(first[0]).toEqual(attachment(u, d, sorted[0]));
      const rest = await store.attachmentsOf(u, sorted[2]!, 3);
      expect(rest.map((a) => a.attachmentId)).toEqual(sorted.slice(3));
      expect(await store.attachmentsOf(newId('user'), '', 10)).toEqual([]);
    });

    it('deleteUser forgets the user; his messages stay only where every recipient has them', async () => {
      const { store } = ctx;
      const phone = newPhone();
      const a = (await store.getOrCreateUserByPhone(phone, newId('user'), 1_000)).user.userId;
      const da1 = await newDevice(store, a, 1_001);
      const da2 = await newDevice(store, a, 1_002);
      const b = await newUser(store);
      const db = await newDevice(store, b);
      const c = await newUser(store);
      const dc = await newDevice(store, c);

      // Direct chat with Bob: m1 delivered to him, m2 not; Bob's own message stays anyway.
      const direct = await store.getOrCreateDirectChat(a, b, newId('chat'), 2_000);
      const [m1, m2, mb] = (await store.appendMessages([
        newMessage(direct.chatId, a, da1, 'delivered'), newMessage(direct.chatId, a, da1, 'pending'), newMessage(direct.chatId, b, db, 'from Bob'),
      ])).map((r) => r.message!);
      await store.markDelivered([{ chatId: direct.chatId, seq: m1!.seq, deviceId: db, at: 3_000 }]);
      await store.markRead(direct.chatId, a, mb!.seq, 3_000);
      const media = attachment(a, da1);
      await store.createAttachment(media);
      await store.linkAttachment(media.attachmentId, direct.chatId, m2!.seq, 100_000);
      await store.linkAttachment(media.attachmentId, direct.chatId, m1!.seq, 100_000);

      // A group with Bob and Carol: g1 reached both, g2 only Bob. The `created` message is his and stays.
      const group = await newGroup(store, newId('group'), [{ userId: a, role: 'admin' }, { userId: b, role: 'member' }, { userId: c, role: 'member' }], 2_000);
      const [g1, g2] = (await store.appendMessages([newMessage(group.chatId, a, da2, 'g1'), newMessage(group.chatId, a, da2, 'g2')])).map((r) => r.message!);
      await store.markDelivered([
        { chatId: group.chatId, seq: g2!.seq, deviceId: db, at: 3_000 }, { chatId: group.chatId, seq: g1!.seq, deviceId: dc, at: 3_000 },
      ]);
      // Chats nobody else was ever in: a note to self and a group of one.
      const self = await store.getOrCreateDirectChat(a, a, newId('chat'), 2_000);
      await store.appendMessages([newMessage(self.chatId, a, da1, 'note')]);
      const solo = await newGroup(store, newId('group'), [{ userId: a, role: 'admin' }], 2_000);
      await store.putGrant({ codeHash: 'c'.repeat(64), kind: 'invite', userId: a, deviceId: da1, chatId: solo.chatId, createdAt: 1, expiresAt: 10 ** 13 });
      // A link code he made for an open group, and his phone's pending registration.
      await store.putGrant({ codeHash: 'l'.repeat(64), kind: 'link', userId: a, deviceId: da1, chatId: null, createdAt: 1, expiresAt: 10 ** 13 });
      await store.putPendingRegistration({ phone, codeHash: 'p'.repeat(64), expiresAt: 10 ** 13, attempts: 0, createdAt: 1 });
      await store.revokeDevice(da2, 4_000);

      const done = await store.deleteUser(a);
      expect(done).toEqual({ user: true, devices: 2, messages: 2, chats: 2 });

      expect(await store.getUser(a)).toBeNull();
      expect(await store.getUserByPhone(phone)).toBeNull();
      expect(await store.listAllDevices(a)).toEqual([]);
      for (const d of [da1, da2]) expect(await store.getDevice(d)).toBeNull();
      expect(await store.getPendingRegistration(phone)).toBeNull();
      expect(await store.getGrant('c'.repeat(64), 0)).toBeNull();
      expect(await store.getGrant('l'.repeat(64), 0)).toBeNull();
      expect(await store.listChats(a, 100)).toEqual([]);
      expect(await store.getChat(self.chatId)).toBeNull();
      expect(await store.getChat(solo.chatId)).toBeNull();
      expect(await store.listGrants(solo.chatId, 0)).toEqual([]);
      for (const chatId of [direct.chatId, group.chatId]) {
        expect(await store.getMembership(chatId, a)).toBeNull();
        for (const d of [da1, da2]) expect(await store.progress(d, chatId)).toBeNull();
      }
      // What the others keep: his delivered messages (their copies), their own, his group changes.
      expect((await store.history(direct.chatId, 0, 10)).map((m) => m.body)).toEqual(['delivered', 'from Bob']);
      expect((await store.history(group.chatId, 0, 10)).map((m) => m.event?.type ?? m.body)).toEqual(['created', 'g1']);
      expect((await store.getMembers(group.chatId)).map((m) => m.userId).sort()).toEqual([b, c].sort());
      // The deleted message's attachment link went with it; the kept one's stays (the attachment is the caller's to remove).
      expect(await store.attachmentLinks(media.attachmentId)).toEqual([{ chatId: direct.chatId, seq: m1!.seq }]);
      // Bob's view of his chat is intact.
      expect((await store.getMembership(direct.chatId, b))?.userId).toBe(b);

      // Idempotent.
      expect(await store.deleteUser(a)).toEqual({ user: false, devices: 0, messages: 0, chats: 0 });
      // The direct chat's key (both user ids) is gone: the same pair would get a new chat.
      expect((await store.getOrCreateDirectChat(a, b, newId('chat'), 5_000)).chatId).not.toBe(direct.chatId);
    });
  });
}
