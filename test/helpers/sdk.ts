/** SDK clients for tests: they record everything they emit and are closed by `closeAll`. */
import { ParleyClient, type ChatMessage, type ChatUpdate, type ParleyError, type StatusUpdate, type SyncedInfo } from '@parley/client-sdk';
import type { Registered } from './platform.js';

export interface Recorded {
  client: ParleyClient;
  messages: ChatMessage[];
  statuses: StatusUpdate[];
  errors: ParleyError[];
  synced: SyncedInfo[];
  updates: ChatUpdate[];
}

const open = new Set<ParleyClient>();

export function device(url: string, r: Pick<Registered, 'deviceId' | 'token' | 'userId'>, extra: Partial<ConstructorParameters<typeof ParleyClient>[0]> = {}): Recorded {
  // End-to-end encryption is off unless a test asks for it (extra.e2ee): most tests look at the server's side of the bodies.
  const client = new ParleyClient({ url, deviceId: r.deviceId, token: r.token, userId: r.userId, reconnectPeriodMs: 100, maxReconnectPeriodMs: 1000, connectTimeoutMs: 30_000, e2ee: false, ...extra });
  open.add(client);
  const rec: Recorded = { client, messages: [], statuses: [], errors: [], synced: [], updates: [] };
  client.on('newMessage', (m) => rec.messages.push(m));
  client.on('status', (s) => rec.statuses.push(s));
  client.on('error', (e) => rec.errors.push(e));
  client.on('synced', (s) => rec.synced.push(s));
  client.on('chatUpdate', (u) => rec.updates.push(u));
  return rec;
}

export async function closeAll(): Promise<void> {
  await Promise.all([...open].map((c) => c.close().catch(() => undefined)));
  open.clear();
}

export function statusOf(rec: Recorded, msgId: string): string | undefined {
  const order = ['sent', 'delivered', 'read'];
  let best: string | undefined;
  for (const s of rec.statuses) {
    if (s.msgId === msgId && (best === undefined || order.indexOf(s.status) > order.indexOf(best))) best = s.status;
  }
  return best;
}
