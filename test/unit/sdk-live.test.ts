/**
 * The SDK's ephemeral side (client-sdk/src/live.ts) on its own: what it sends for typing and
 * watches, how received typing lapses, and that a late, older presence never replaces a newer one.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { TYPING_REPEAT_MS, TYPING_TTL_MS, WATCH_TTL_MS, decode, type Envelope } from '@parley/client-sdk/protocol';
import type { PresenceInfo, TypingInfo } from '@parley/client-sdk';
import { LiveChannel } from '../../client-sdk/src/live.js';

const CHAT = 'cAAAAAAAAAAAA';
const USER = 'uAAAAAAAAAAAA';

function channel(connected = true): { ch: LiveChannel; sent: Envelope[]; presence: PresenceInfo[]; typing: TypingInfo[] } {
  const sent: Envelope[] = [];
  const presence: PresenceInfo[] = [];
  const typing: TypingInfo[] = [];
  const ch = new LiveChannel({
    send: (p) => { if (connected) sent.push(decode(p)); return connected; },
    presence: (p) => presence.push(p),
    typing: (t) => typing.push(t),
  });
  return { ch, sent, presence, typing };
}

afterEach(() => { vi.useRealTimers(); });

describe('LiveChannel', () => {
  it('sends a typing state once per repeat interval, every change, and stop only after a state', () => {
    const { ch, sent } = channel();
    ch.setTyping(CHAT, 'stop', 0);
    ch.setTyping(CHAT, 'typing', 1000);
    ch.setTyping(CHAT, 'typing', 1000 + TYPING_REPEAT_MS - 1);
    ch.setTyping(CHAT, 'typing', 1000 + TYPING_REPEAT_MS);
    ch.setTyping(CHAT, 'recording', 1000 + TYPING_REPEAT_MS + 1);
    ch.setTyping(CHAT, 'stop', 1000 + TYPING_REPEAT_MS + 2);
    ch.setTyping(CHAT, 'stop', 1000 + TYPING_REPEAT_MS + 3);
    expect(sent.map((e) => (e.kind === 'typing' ? e.state : e.kind))).toEqual(['typing', 'typing', 'recording', 'stop']);
    expect(() => ch.setTyping('nope', 'typing', 0)).toThrow(/chatId/);
  });

  it('ends a received typing state that is not repeated within TYPING_TTL_MS', () => {
    vi.useFakeTimers();
    const { ch, typing } = channel();
    ch.onTyping({ kind: 'typing', chatId: CHAT, state: 'typing', from: USER });
    vi.advanceTimersByTime(TYPING_TTL_MS - 1);
    ch.onTyping({ kind: 'typing', chatId: CHAT, state: 'typing', from: USER }); // repeated: holds on
    vi.advanceTimersByTime(TYPING_TTL_MS - 1);
    expect(typing.map((t) => t.state)).toEqual(['typing', 'typing']);
    vi.advanceTimersByTime(1);
    expect(typing.map((t) => t.state)).toEqual(['typing', 'typing', 'stop']);
    ch.onTyping({ kind: 'typing', chatId: CHAT, state: 'recording', from: USER });
    ch.onTyping({ kind: 'typing', chatId: CHAT, state: 'stop', from: USER });
    vi.advanceTimersByTime(TYPING_TTL_MS * 2);
    expect(typing.map((t) => t.state)).toEqual(['typing', 'typing', 'stop', 'recording', 'stop']);
  });

  it('keeps the newest presence when announcements arrive out of order', () => {
    const { ch, presence } = channel();
    ch.onPresence({ kind: 'presence', userId: USER, online: true, v: 4 });
    ch.onPresence({ kind: 'presence', userId: USER, online: false, lastSeen: 10, v: 3 }); // late and older
    ch.onPresence({ kind: 'presence', userId: USER, online: false, lastSeen: 20, v: 5 });
    expect(presence).toEqual([{ userId: USER, online: true }, { userId: USER, online: false, lastSeen: 20 }]);
  });

  it('repeats the watch while it is set, sends it again on connection, and validates it', () => {
    vi.useFakeTimers();
    const { ch, sent } = channel();
    ch.watch([CHAT, CHAT]);
    expect(sent).toEqual([{ kind: 'watch', chatIds: [CHAT] }]);
    vi.advanceTimersByTime(WATCH_TTL_MS);
    expect(sent).toHaveLength(2);
    ch.connected();
    expect(sent).toHaveLength(3);
    ch.watch([]);
    vi.advanceTimersByTime(WATCH_TTL_MS * 2);
    expect(sent.at(-1)).toEqual({ kind: 'watch', chatIds: [] });
    expect(sent).toHaveLength(4);
    expect(() => ch.watch(Array.from({ length: 65 }, (_, i) => `c${String(i).padStart(12, 'A')}`))).toThrow(/64/);
    ch.close();
  });
});
