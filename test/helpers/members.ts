/**
 * Users with one device each, made in bulk directly through the store ports (a thousand SMS
 * registrations would only test the rate limits), with the device tokens to connect them over
 * MQTT; groups of them are made through the public API. Phones are unique per process and `prefix`.
 */
import { newId } from '@parley/client-sdk/protocol';
import type { AccountStore } from '../../services/src/store/types.js';
import { newDeviceToken } from '../../services/src/auth/secrets.js';

export interface Member { userId: string; deviceId: string; token: string }

const counters = new Map<string, number>();

/** `prefix`: a few digits that keep one file's phones apart from another's (e.g. '79', '78'). */
export async function createMembers(store: AccountStore, n: number, prefix: string): Promise<Member[]> {
  const out: Member[] = [];
  for (let i = 0; i < n; i++) {
    const seq = (counters.get(prefix) ?? 0) + 1;
    counters.set(prefix, seq);
    const phone = `+44${prefix}${String(process.pid % 1000).padStart(3, '0')}${String(seq).padStart(5, '0')}`;
    const { user } = await store.getOrCreateUserByPhone(phone, newId('user'), Date.now());
    const deviceId = newId('device');
    const { token, tokenHash } = newDeviceToken(deviceId);
    await store.addDevice({ deviceId, userId: user.userId, tokenHash, name: `member ${seq}`, createdAt: Date.now() }, { maxActive: 5, historyDepth: 0 });
    out.push({ userId: user.userId, deviceId, token });
  }
  return out;
}

/** createChat over HTTP: a group of `members` made by the owner of `token` (its creator and admin). */
export async function createGroupOverApi(httpUrl: string, token: string, members: string[], name = 'group'): Promise<string> {
  const res = await fetch(`${httpUrl}/v1/chats`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ name, members }),
  });
  const json = await res.json() as { chatId?: string };
  if (res.status !== 201 || !json.chatId) throw new Error(`createChat failed: ${res.status} ${JSON.stringify(json)}`);
  return json.chatId;
}
