/**
 * A 1,024-member group (members made in bulk through the store ports, the group through the API),
 * one device each; 50 devices connected over real MQTT through the SDK, the rest offline. Every
 * connected device gets each message exactly once and in order, every offline one gets them when
 * it comes back, and the fan-out runs in bounded chunks (read from the fanout queue's completed
 * jobs, whose return value says how many devices each served).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueueEvents } from 'bullmq';
import type { ChatMessage, ChatUpdate } from '@parley/client-sdk';
import { startTestPlatform, until, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, type Recorded } from '../helpers/sdk.js';
import { createGroupOverApi, createMembers, type Member } from '../helpers/members.js';
import { createSqliteStore } from '../../services/src/store/sqlite.js';
import type { Store } from '../../services/src/store/types.js';
import type { FanoutResult } from '../../services/src/workers/fanout.js';

const MEMBERS = 1024;
const CONNECTED = 50;
const CHUNK = 128;

describe('group fan-out', () => {
  let p: TestPlatform;
  let store: Store;
  let events: QueueEvents;
  const chunks: FanoutResult[] = [];
  const members: Member[] = [];
  let chatId: string;

  beforeAll(async () => {
    p = await startTestPlatform({ PARLEY_FANOUT_CHUNK: String(CHUNK) });
    // A second handle on the platform's SQLite file (WAL: several processes may open it).
    store = createSqliteStore({ file: join(p.dataDir, 'parley.sqlite') });
    await store.init();
    members.push(...await createMembers(store, MEMBERS, '79'));
    events = new QueueEvents('fanout', { connection: { url: p.platform.urls.redis }, prefix: 'parley' });
    events.on('completed', ({ returnvalue }) => chunks.push(returnvalue as unknown as FanoutResult));
    await events.waitUntilReady();
    // Made through the API (createChat): its `created` message (seq 1) is fanned out too.
    chatId = await createGroupOverApi(p.httpUrl, members[0]!.token, members.slice(1).map((m) => m.userId));
  }, 120_000);

  afterAll(async () => {
    await closeAll();
    await events?.close();
    await store?.close();
    await p?.close();
  });

  /** The chat messages a device got (the group's `created` event apart). */
  const msgs = (r: Recorded): ChatMessage[] => r.messages.filter((m) => !m.event);
  const texts = (r: Recorded): string[] => msgs(r).map((m) => String(m.text));

  it('delivers each message once and in order to every connected device, and to every offline one when it returns, in bounded chunks', async () => {
    const online = members.slice(0, CONNECTED).map((m) => device(p.mqttUrl, m));
    await Promise.all(online.map((d) => d.client.connect()));
    const [sender, ...receivers] = online;

    const tallies: Array<Extract<ChatUpdate, { type: 'tally' }>> = [];
    sender!.client.on('chatUpdate', (u) => { if (u.type === 'tally') tallies.push(u); });
    const sent = ['g1', 'g2', 'g3'];
    for (const t of sent) await sender!.client.send(chatId, t);
    await until(() => receivers.every((r) => msgs(r).length >= sent.length), 30_000, 'every connected member has the three messages');
    for (const r of receivers) {
      expect(texts(r)).toEqual(sent);
      expect(r.messages.map((m) => m.seq)).toEqual([1, 2, 3, 4]);
      expect(r.messages[0]!.event).toMatchObject({ type: 'created', members: members.map((m) => m.userId) });
      expect(msgs(r).every((m) => m.chatId === chatId && m.from === members[0]!.userId)).toBe(true);
    }
    expect(msgs(sender!)).toEqual([]); // the sending device does not get its own messages

    // Chunked: no job served more than CHUNK devices, and the chunks of each run cover every
    // device but the sender's (1,023) exactly once.
    // Each chunk reports devices x messages; the sender's device is counted (and skipped).
    const covered = (): number => chunks.reduce((n, c) => n + c.messages * c.devices, 0);
    // The `created` message goes to every device (no device sent it), the three to all but one.
    await until(() => covered() >= MEMBERS * (sent.length + 1), 10_000, 'fan-out chunks reported');
    expect(covered()).toBe(MEMBERS * (sent.length + 1));
    expect(chunks.length).toBeGreaterThanOrEqual(Math.ceil(MEMBERS / CHUNK));
    expect(chunks.every((c) => c.devices <= CHUNK)).toBe(true);

    // The sender learns "delivered to N of 1,023" from tallies, not from one receipt per member.
    const best = (): (typeof tallies)[number] | undefined => tallies.filter((t) => t.seq === 4).sort((a, b) => b.delivered - a.delivered)[0];
    await until(() => (best()?.delivered ?? 0) >= receivers.length, 15_000, 'a tally covering every connected member');
    expect(best()).toMatchObject({ chatId, seq: 4, of: MEMBERS - 1, read: 0, deliveredToAll: false });
    expect(tallies.length).toBeLessThan(receivers.length);
    // Ten members read up to the last message: one read each, and the sender's tally counts them.
    for (const r of receivers.slice(0, 10)) await r.client.markRead(msgs(r)[2]!.msgId);
    await until(() => tallies.some((t) => t.seq === 4 && t.read >= 10), 15_000, 'a tally with ten reads');
    expect(sender!.statuses.some((st) => st.status === 'delivered')).toBe(false); // not everyone has it

    // Offline members come back: each gets all three, once, in order.
    const later = members.slice(CONNECTED, CONNECTED + 40).map((m) => device(p.mqttUrl, m));
    await Promise.all(later.map((d) => d.client.connect()));
    await until(() => later.every((r) => msgs(r).length >= sent.length), 30_000, 'offline members caught up');
    for (const r of later) expect(texts(r)).toEqual(sent);

    // And nothing more arrives: a sentinel closes the stream, then everyone has exactly four.
    await sender!.client.send(chatId, 'end');
    const all = [...receivers, ...later];
    await until(() => all.every((r) => msgs(r).length >= 4), 30_000, 'sentinel everywhere');
    for (const r of all) expect(texts(r)).toEqual([...sent, 'end']);
  }, 120_000);
});
