/**
 * SQLite adapter of account deletion (AccountStore.deleteUser), on the database of sqlite.ts. One
 * IMMEDIATE transaction: either nothing of the deletion is applied or all of it, and no writer
 * (a persist worker storing a message of a chat he was in) runs in between. Statements are prepared
 * lazily: the tables exist only after the store's init().
 *
 * What a "recipient" of a message is, as in status queries: another user whose membership window
 * covered the message (since_seq < seq, and seq <= left_seq when he left); it has the message when
 * his delivered watermark reached it (at least one of his devices acknowledged it).
 */
import type Database from 'better-sqlite3';
import type { AccountStore, UserDeletion } from './types.js';

export function createSqliteAccountStore(db: Database.Database): Pick<AccountStore, 'deleteUser'> {
  let q: ReturnType<typeof prepare> | null = null;
  const st = (): ReturnType<typeof prepare> => (q ??= prepare());

  function prepare() {
    return {
      user: db.prepare<[string], { phone: string }>('SELECT phone FROM users WHERE user_id = ?'),
      devices: db.prepare<[string], { device_id: string }>('SELECT device_id FROM devices WHERE user_id = ?'),
      chats: db.prepare<[string], { chat_id: string; kind: string }>(
        'SELECT m.chat_id, c.kind FROM members m JOIN chats c ON c.chat_id = m.chat_id WHERE m.user_id = ?'),
      othersEver: db.prepare<[string, string], { one: number }>(
        'SELECT 1 AS one FROM members WHERE chat_id = ? AND user_id <> ? LIMIT 1'),
      // His messages in a chat that some recipient lacks, or that have no recipient at all.
      undelivered: db.prepare<[{ chat: string; user: string }], { seq: number }>(
        `DELETE FROM messages AS g
          WHERE g.chat_id = @chat AND g.sender_user_id = @user AND g.event IS NULL
            AND (NOT EXISTS (SELECT 1 FROM members r WHERE r.chat_id = g.chat_id AND r.user_id <> @user
                               AND r.since_seq < g.seq AND (r.left_seq IS NULL OR r.left_seq >= g.seq))
                 OR EXISTS (SELECT 1 FROM members r WHERE r.chat_id = g.chat_id AND r.user_id <> @user
                               AND r.since_seq < g.seq AND (r.left_seq IS NULL OR r.left_seq >= g.seq)
                               AND r.delivered_seq < g.seq))
          RETURNING seq`),
      delLink: db.prepare<[string, number]>('DELETE FROM attachment_links WHERE chat_id = ? AND seq = ?'),
      // A whole chat (nobody else was ever in it).
      delChatLinks: db.prepare<[string]>('DELETE FROM attachment_links WHERE chat_id = ?'),
      delChatMessages: db.prepare<[string]>('DELETE FROM messages WHERE chat_id = ?'),
      delChatMarks: db.prepare<[string]>('DELETE FROM marks WHERE chat_id = ?'),
      delChatDevices: db.prepare<[string]>('DELETE FROM device_chats WHERE chat_id = ?'),
      delChatGrants: db.prepare<[string]>('DELETE FROM grants WHERE chat_id = ?'),
      delChatMembers: db.prepare<[string]>('DELETE FROM members WHERE chat_id = ?'),
      delChat: db.prepare<[string]>('DELETE FROM chats WHERE chat_id = ?'),
      // A chat others keep.
      clearDirectKey: db.prepare<[string]>('UPDATE chats SET direct_key = NULL WHERE chat_id = ?'),
      delMarks: db.prepare<[string, string]>('DELETE FROM marks WHERE chat_id = ? AND user_id = ?'),
      delMemberDevices: db.prepare<[string, string]>('DELETE FROM device_chats WHERE chat_id = ? AND user_id = ?'),
      delMember: db.prepare<[string, string]>('DELETE FROM members WHERE chat_id = ? AND user_id = ?'),
      // The user himself.
      delDeviceChats: db.prepare<[string]>('DELETE FROM device_chats WHERE device_id = ?'),
      delGrants: db.prepare<[string]>('DELETE FROM grants WHERE user_id = ?'),
      delReg: db.prepare<[string]>('DELETE FROM pending_registrations WHERE phone = ?'),
      delDevices: db.prepare<[string]>('DELETE FROM devices WHERE user_id = ?'),
      delUser: db.prepare<[string]>('DELETE FROM users WHERE user_id = ?'),
    };
  }

  const deleteUser = db.transaction((userId: string): UserDeletion => {
    const s = st();
    const user = s.user.get(userId);
    const deviceIds = s.devices.all(userId).map((r) => r.device_id);
    let messages = 0;
    let chats = 0;
    for (const { chat_id: chatId, kind } of s.chats.all(userId)) {
      if (!s.othersEver.get(chatId, userId)) {
        s.delChatLinks.run(chatId);
        s.delChatMessages.run(chatId);
        s.delChatMarks.run(chatId);
        s.delChatDevices.run(chatId);
        s.delChatGrants.run(chatId);
        s.delChatMembers.run(chatId);
        s.delChat.run(chatId);
        chats++;
        continue;
      }
      // Before his membership goes: it does not count as a recipient, the others' rows decide.
      for (const { seq } of s.undelivered.all({ chat: chatId, user: userId })) {
        s.delLink.run(chatId, seq);
        messages++;
      }
      if (kind === 'direct') s.clearDirectKey.run(chatId);
      s.delMarks.run(chatId, userId);
      s.delMemberDevices.run(chatId, userId);
      s.delMember.run(chatId, userId);
    }
    for (const d of deviceIds) s.delDeviceChats.run(d);
    s.delGrants.run(userId);
    if (user) s.delReg.run(user.phone);
    s.delDevices.run(userId);
    s.delUser.run(userId);
    return { user: user !== undefined, devices: deviceIds.length, messages, chats };
  });

  return {
    async deleteUser(userId) {
      return deleteUser.immediate(userId);
    },
  };
}
