/**
 * Scenario 11: typing and presence. Two devices of two users with a direct chat, both watching it
 * through the SDK; one changes its typing state, the other receives it on `live/` (ping-pong: the
 * next change waits for the last to arrive), and one device connects and disconnects while the
 * other watches (presence). Beside Mosquitto relaying a QoS 0 publish between two mqtt.js clients
 * the same way: the ephemeral path's cost over a bare broker relay.
 */
import mqtt from 'mqtt';
import { ParleyClient, type TypingState } from '@parley/client-sdk';
import { ms, ratio } from '../lib/format.js';
import { Hist, type LatencySummary } from '../lib/hist.js';
import { registerMany } from '../lib/register.js';
import type { Cell, Scenario } from '../lib/types.js';

interface LiveOutcome {
  label: string;
  typing: LatencySummary;
  presence: LatencySummary | null;
  events: number;
}

async function waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

export const live: Scenario = {
  name: 'live',
  title: '11. Typing and presence',
  about:
    'Two users with a direct chat, one device each, both watching the chat through the SDK (QoS 0 on ' +
    '`live/`). **Typing**: one device alternates its typing state (typing / stop: each change passes the ' +
    'SDK\'s throttle) and the next change waits until the other device has the last (ping-pong) and at ' +
    'least 250 ms (the broker takes 5 changes a second per connection), 200 changes (quick: 20); latency ' +
    'from the SDK call to the other device\'s `typing` ' +
    'event: the broker\'s watcher look-up in Redis, the block check in the store and the delivery bus to ' +
    'the watcher\'s node. **Presence**: the watched device connects and disconnects 50 times (quick: 10); ' +
    'latency from `connect()` resolving (CONNACK) and from `close()` to the watcher\'s `presence` event. ' +
    'Mosquitto: two mqtt.js clients, one publishing QoS 0 on a topic the other subscribes to, same ' +
    'ping-pong (there is no presence to compare with).',
  async run(ctx) {
    const n = ctx.pick(200, 20);
    /** Under the broker's 5 typing changes a second per connection (broker/src/handlers/typing.ts). */
    const paceMs = 250;
    const presenceRounds = ctx.pick(50, 10);
    const out: LiveOutcome[] = [];

    ctx.log(' typing ping-pong: mosquitto');
    out.push(await ctx.withTarget('mosquitto', async (t) => {
      const url = `mqtt://${t.host}:${t.port}`;
      const [a, b] = await Promise.all([mqtt.connectAsync(url, { clientId: 'live-a' }), mqtt.connectAsync(url, { clientId: 'live-b' })]);
      try {
        let got = 0;
        b.on('message', () => { got++; });
        await b.subscribeAsync('typing/bench', { qos: 0 });
        const h = new Hist();
        for (let i = 0; i < n; i++) {
          const t0 = performance.now();
          a.publish('typing/bench', Buffer.from([0x84, 0x0a, i & 1]), { qos: 0 });
          await waitFor(() => got > i, 5000, 'relay');
          h.add(performance.now() - t0);
          const rest = paceMs - (performance.now() - t0);
          if (rest > 0) await new Promise((r) => setTimeout(r, rest));
        }
        return { label: 'Mosquitto (QoS 0 relay)', typing: h.summary(), presence: null, events: n };
      } finally {
        await Promise.all([a.endAsync(true), b.endAsync(true)]);
      }
    }));

    ctx.log(' typing ping-pong and presence: parley');
    out.push(await ctx.withTarget('parley', async (t) => {
      const reg = await registerMany(t.httpUrl, ctx.sms, 2, { concurrency: 2, deadlineMs: 30_000 });
      const [da, db] = reg.devices;
      if (!da || !db) throw new Error(`registration failed: ${reg.firstError ?? 'unknown'}`);
      const url = `mqtt://${t.host}:${t.port}`;
      const mk = (d: typeof da): ParleyClient => new ParleyClient({ url, deviceId: d.deviceId, token: d.token, userId: d.userId, apiUrl: t.httpUrl, e2ee: false });
      const a = mk(da);
      const b = mk(db);
      try {
        await Promise.all([a.connect(), b.connect()]);
        const chat = await b.createChat(da.userId);
        let typed = 0;
        const presence: Array<{ online: boolean }> = [];
        b.on('typing', (e) => { if (e.userId === da.userId) typed++; });
        b.on('presence', (p) => { if (p.userId === da.userId) presence.push(p); });
        b.watchChats([chat.chatId]);
        await waitFor(() => presence.at(-1)?.online === true, 10_000, 'first presence');
        const h = new Hist();
        const states: TypingState[] = ['typing', 'stop'];
        for (let i = 0; i < n; i++) {
          const t0 = performance.now();
          a.setTyping(chat.chatId, states[i & 1]!);
          await waitFor(() => typed > i, 5000, 'typing');
          h.add(performance.now() - t0);
          const rest = paceMs - (performance.now() - t0);
          if (rest > 0) await new Promise((r) => setTimeout(r, rest));
        }
        await a.close();
        await waitFor(() => presence.at(-1)?.online === false, 10_000, 'offline');
        const p = new Hist();
        for (let i = 0; i < presenceRounds; i++) {
          const c = mk(da);
          const before = presence.length;
          await c.connect();
          const t0 = performance.now();
          await waitFor(() => presence.length > before && presence.at(-1)!.online, 10_000, 'online');
          p.add(performance.now() - t0);
          const t1 = performance.now();
          await c.close();
          await waitFor(() => presence.at(-1)!.online === false, 10_000, 'offline');
          p.add(performance.now() - t1);
        }
        return { label: 'Parley (typing via watchers)', typing: h.summary(), presence: p.summary(), events: n };
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    }));

    const mosq = out[0]!;
    const parley = out[1]!;
    for (const o of out) ctx.log(`  ${o.label}: p50 ${ms(o.typing.p50)} ms, p99 ${ms(o.typing.p99)} ms`);
    const rows: Cell[][] = out.map((o) => [
      o.label, o.events, ms(o.typing.p50), ms(o.typing.p90), ms(o.typing.p99), ms(o.typing.max), ratio(o.typing.p50, mosq.typing.p50),
      o.presence ? ms(o.presence.p50) : 'n/a', o.presence ? ms(o.presence.p99) : 'n/a',
    ]);
    return {
      summary: out.map((o) => `${o.label}: typing p50 ${ms(o.typing.p50)} ms, p99 ${ms(o.typing.p99)} ms` +
        (o.presence ? `; presence p50 ${ms(o.presence.p50)} ms, p99 ${ms(o.presence.p99)} ms` : '')),
      tables: [{
        title: `${n} typing changes ping-pong, at most one per ${paceMs} ms; presence: ${presenceRounds} connects and disconnects of the watched device`,
        columns: ['path', 'events', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'p50 vs Mosquitto', 'presence p50 ms', 'presence p99 ms'],
        rows,
      }],
      targets: [{
        target: 'typing reaches an online peer within 100 ms (p99)',
        measured: `${ms(parley.typing.p99)} ms (Mosquitto QoS 0 relay ${ms(mosq.typing.p99)} ms)`,
        met: parley.typing.p99 <= 100,
      }],
      data: { outcomes: out },
    };
  },
};
