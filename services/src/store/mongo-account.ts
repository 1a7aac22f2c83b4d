/**
 * MongoDB adapter of account deletion (AccountStore.deleteUser), on the collections of mongo.ts.
 *
 * Without a transaction, the steps are ordered so that an interrupted deletion is finished by
 * running it again (the account service does, and the call is idempotent): within a chat, what
 * the membership leads to goes before the membership itself; the user's own documents go after
 * every chat, and the user document last (it holds the phone whose pending registration goes too).
 * A chat nobody else was ever in is removed with everything in it, its chat document before its
 * memberships. Same semantics as sqlite-account.ts otherwise.
 */
import type { Db, Filter } from 'mongodb';
import type { AccountStore, UserDeletion } from './types.js';

interface MemberLike { _id: string; chatId: string; userId: string; sinceSeq?: number; leftSeq?: number | null; deliveredSeq: number }
interface MessageLike { chatId: string; seq: number; senderUserId: string; event?: unknown }

export function createMongoAccount(db: Db): { store: Pick<AccountStore, 'deleteUser'>; indexes(): Promise<unknown> } {
  const users = db.collection<{ _id: string; phone: string }>('users');
  const devices = db.collection<{ _id: string; userId: string }>('devices');
  const deviceCounts = db.collection<{ _id: string }>('deviceCounts');
  const regs = db.collection<{ _id: string }>('pendingRegistrations');
  // The write concern mongo.ts gives these collections (majority): a deletion rolled back by a
  // failover would bring back messages the user was told are gone.
  const majority = { writeConcern: { w: 'majority' as const } };
  const chats = db.collection<{ _id: string; kind: string; directKey?: string }>('chats', majority);
  const members = db.collection<MemberLike>('members');
  const messages = db.collection<MessageLike>('messages', majority);
  const deviceChats = db.collection<{ _id: string; deviceId: string; chatId: string; userId: string }>('deviceChats', majority);
  const marks = db.collection<{ _id: string; chatId: string; userId: string }>('marks', majority);
  const grants = db.collection<{ _id: string; userId: string; chatId: string | null }>('grants');
  const attachments = db.collection<{ _id: string; ownerUserId: string }>('attachments');
  const attachmentLinks = db.collection<{ attachmentId: string; chatId: string; seq: number }>('attachment_links');

  /** Whether `m` was a recipient of seq (its window covered it). */
  const covers = (m: MemberLike, seq: number): boolean =>
    (m.sinceSeq ?? 0) < seq && (m.leftSeq === null || m.leftSeq === undefined || m.leftSeq >= seq);

  async function deleteUser(userId: string): Promise<UserDeletion> {
    const user = await users.findOne({ _id: userId });
    const deviceIds = (await devices.find({ userId }, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
    let removedMessages = 0;
    let removedChats = 0;
    for (const mine of await members.find({ userId }).toArray()) {
      const chatId = mine.chatId;
      const chat = await chats.findOne({ _id: chatId });
      const others = await members.find({ chatId, userId: { $ne: userId } }).toArray();
      if (others.length === 0) {
        await attachmentLinks.deleteMany({ chatId });
        await messages.deleteMany({ chatId });
        await marks.deleteMany({ chatId });
        await deviceChats.deleteMany({ chatId });
        await grants.deleteMany({ chatId });
        await chats.deleteOne({ _id: chatId });
        await members.deleteMany({ chatId });
        removedChats++;
        continue;
      }
      // His messages (not system messages) that some recipient lacks, or that have none.
      const gone: number[] = [];
      const his = messages.find({ chatId, senderUserId: userId, event: null } as Filter<MessageLike>, { projection: { seq: 1 } });
      for await (const m of his) {
        const recipients = others.filter((o) => covers(o, m.seq));
        if (recipients.length === 0 || recipients.some((o) => o.deliveredSeq < m.seq)) gone.push(m.seq);
      }
      for (let i = 0; i < gone.length; i += 500) {
        const seqs = gone.slice(i, i + 500);
        await attachmentLinks.deleteMany({ chatId, seq: { $in: seqs } });
        removedMessages += (await messages.deleteMany({ chatId, seq: { $in: seqs } })).deletedCount;
      }
      if (chat?.kind === 'direct') await chats.updateOne({ _id: chatId }, { $unset: { directKey: '' } });
      await marks.deleteMany({ chatId, userId });
      await deviceChats.deleteMany({ chatId, userId });
      await members.deleteOne({ _id: mine._id });
    }
    if (deviceIds.length) await deviceChats.deleteMany({ deviceId: { $in: deviceIds } });
    await grants.deleteMany({ userId });
    if (user) await regs.deleteOne({ _id: user.phone });
    await devices.deleteMany({ userId });
    await deviceCounts.deleteOne({ _id: userId });
    await users.deleteOne({ _id: userId });
    return { user: user !== null, devices: deviceIds.length, messages: removedMessages, chats: removedChats };
  }

  return {
    store: { deleteUser },
    indexes: () => Promise.all([
      // attachmentsOf(): a user's attachments by id.
      attachments.createIndexes([{ key: { ownerUserId: 1, _id: 1 }, name: 'owner' }]),
      grants.createIndexes([{ key: { userId: 1 }, name: 'user' }]),
      // deleteUser(): a chat's links (attachment_chat_seq_unique leads with attachmentId, so it cannot serve these).
      attachmentLinks.createIndexes([{ key: { chatId: 1, seq: 1 }, name: 'chat_seq' }]),
    ]),
  };
}
