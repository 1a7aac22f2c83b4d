/**
 * The regression test of a bug the chaos scenario found: when a device with a persistent session
 * reconnects, Aedes wrote messages published during the replay of its queue (or just before it
 * started) *ahead of* the older queued ones; a device that knew nothing yet of the chat took the
 * first seq it saw as the start and dropped the older ones for good. broker/src/ordered-replay.ts
 * holds live deliveries until the replay is written. In the chaos run the replay was slow because
 * the machine was loaded; here the broker's queue reads are slowed down on purpose (300 ms before
 * the replay starts), so that live messages surely arrive first, and Bob reconnects 6 times while
 * Alice keeps sending.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPlatform, until, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device, statusOf } from '../helpers/sdk.js';
import { sleep } from './helpers.js';

let tp: TestPlatform;
beforeAll(async () => {
  tp = await startTestPlatform();
  // A slow queue replay, as under load: the reconnecting device's queued packets come 300 ms late.
  const persistence = (tp.platform.broker!.aedes as unknown as { persistence: { outgoingStream(c: unknown): AsyncIterable<unknown> } }).persistence;
  const original = persistence.outgoingStream.bind(persistence);
  persistence.outgoingStream = (client) => (async function* slow() {
    await sleep(300);
    yield* original(client);
  })();
});
afterAll(async () => {
  await closeAll();
  await tp?.close();
});

describe('reconnecting with a queue while new messages arrive', () => {
  it('a device with fresh SDK state gets the queued messages, then the new ones, in order, none dropped (6 slow reconnects)', async () => {
    const alice = await tp.register();
    const bob = await tp.register();
    // Bob's broker session exists from the start. (A device's very first connection has no
    // session: what was sent before comes from the store through `sync`, which is another path;
    // see "Known gaps" in docs/RELIABILITY.md.)
    const first = device(tp.mqttUrl, bob);
    await first.client.connect();
    await first.client.close();
    const a = device(tp.mqttUrl, alice);
    await a.client.connect();
    let next = 0;
    /** Highest seq Bob has been shown so far (across his SDK instances). */
    let shown = 0;
    const problems: string[] = [];
    for (let cycle = 0; cycle < 6; cycle++) {
      // Bob is away; messages queue up for him.
      const queued = await Promise.all(Array.from({ length: 30 }, () => a.client.send(bob.userId, `m${next++}`)));
      await Promise.all(queued.map((s) => a.client.waitStored(s.clientMsgId)));
      // Alice keeps sending while Bob comes back with a new SDK instance (no state for the chat).
      let sending = true;
      const sender = (async () => {
        while (sending) {
          void a.client.send(bob.userId, `m${next++}`);
          await sleep(1);
        }
      })();
      const b = device(tp.mqttUrl, bob);
      await b.client.connect();
      await until(() => b.messages.length >= 40, 20_000, 'queued and live messages at bob');
      sending = false;
      await sender;
      const last = (await a.client.waitStored((await a.client.send(bob.userId, `m${next++}`)).clientMsgId)).seq;
      await until(() => b.messages.at(-1)?.seq === last, 20_000, `bob reaches seq ${last}`);
      const seqs = b.messages.map((m) => m.seq);
      const want = Array.from({ length: last - shown }, (_, i) => shown + 1 + i);
      if (JSON.stringify(seqs) !== JSON.stringify(want)) problems.push(`cycle ${cycle}: expected ${shown + 1}..${last}, shown ${seqs[0]}..${seqs.at(-1)} (${seqs.length})`);
      shown = last;
      // Close only once the broker has processed Bob's PUBACK of the last message (Alice sees it
      // delivered): a message whose PUBACK is still in flight at close is rightly redelivered,
      // and a new SDK instance with no state would show it again.
      const lastId = b.messages.at(-1)!.msgId;
      await until(() => ['delivered', 'read'].includes(statusOf(a, lastId) ?? ''), 20_000, 'delivered tick of the last message');
      await b.client.close();
    }
    expect(problems).toEqual([]);
  }, 120_000);
});
