import { describe, expect, it } from 'vitest';
import { Encoder } from 'cbor-x';
import { ParleyError } from '@parley/client-sdk';
import { CHAT_EVENT, KIND, MAX_STORED_MORE, STATUS_TEXT_MAX, decode, encode, peekKind, type Envelope } from '@parley/client-sdk/protocol';

const cbor = new Encoder({ useRecords: false, tagUint8Array: false });
const CHAT = 'cAAAAAAAAAAAA';

describe('codec', () => {
  it('round-trips a send envelope', () => {
    const env: Envelope = { kind: 'send', clientMsgId: 'abc', to: 'uAAAAAAAAAAAA', body: 'hello' };
    expect(decode(encode(env))).toEqual(env);
  });
  it('rejects garbage', () => {
    expect(() => decode(new Uint8Array([0xff, 0x00]))).toThrow(ParleyError);
  });

  describe('stored', () => {
    it('round-trips one message, in the five positional fields of v1', () => {
      const env: Envelope = { kind: 'stored', clientMsgId: 'k1', chatId: CHAT, seq: 7, ts: 1000 };
      const bytes = encode(env);
      expect(decode(bytes)).toEqual(env);
      expect([...bytes]).toEqual([...cbor.encode([KIND.stored, 'k1', CHAT, 7, 1000])]);
    });
    it('round-trips a batch answered in one envelope (`more`)', () => {
      const env: Envelope = {
        kind: 'stored', clientMsgId: 'k1', chatId: CHAT, seq: 7, ts: 1000,
        more: [{ clientMsgId: 'k2', seq: 8 }, { clientMsgId: 'k3', seq: 10 }],
      };
      expect(decode(encode(env))).toEqual(env);
      // Each further message costs its id and seq only.
      const single = encode({ kind: 'stored', clientMsgId: 'k1', chatId: CHAT, seq: 7, ts: 1000 }).length;
      expect(encode(env).length).toBeLessThan(single + 2 * 6);
    });
    it('rejects a malformed `more`', () => {
      const bad = (more: unknown): Uint8Array => new Uint8Array(cbor.encode([KIND.stored, 'k1', CHAT, 7, 1000, more]));
      for (const more of [[], ['k2'], ['k2', 0], ['k2', -1], ['', 3], [5, 'k2'], 'k2', { k2: 3 },
        Array.from({ length: MAX_STORED_MORE + 1 }, (_, i) => [`k${i}`, i + 1]).flat()]) {
        expect(() => decode(bad(more)), JSON.stringify(more).slice(0, 40)).toThrow(ParleyError);
      }
    });
  });

  describe('receipt', () => {
    it('puts `by` last and leaves it out when the receiver knows it (a direct chat\'s other member)', () => {
      const implied: Envelope = { kind: 'receipt', chatId: CHAT, seq: 9, status: 'delivered', ts: 1000 };
      expect(decode(encode(implied))).toEqual(implied);
      expect([...encode(implied)]).toEqual([...cbor.encode([KIND.receipt, CHAT, 9, 1, 1000])]);
      const named: Envelope = { ...implied, status: 'read', by: 'uAAAAAAAAAAAA' };
      expect(decode(encode(named))).toEqual(named);
      expect(encode(named).length - encode(implied).length).toBe(14);
    });
    it('rejects a receipt whose `by` is not a user id', () => {
      expect(() => decode(new Uint8Array(cbor.encode([KIND.receipt, CHAT, 9, 1, 1000, 'dAAAAAAAAAAAA'])))).toThrow(ParleyError);
    });
  });

  describe('tally', () => {
    it('round-trips, and refuses counts above the member count or not whole', () => {
      const env: Envelope = { kind: 'tally', chatId: CHAT, seq: 3, delivered: 1000, read: 12, of: 1023 };
      expect(decode(encode(env))).toEqual(env);
      for (const fields of [[CHAT, 3, 1024, 0, 1023], [CHAT, 3, 0, 2, 1], [CHAT, 3, -1, 0, 5], [CHAT, 3, 1.5, 0, 5], [CHAT, 0, 0, 0, 0], [CHAT, 3, 0, 0]]) {
        expect(() => decode(new Uint8Array(cbor.encode([KIND.tally, ...fields]))), JSON.stringify(fields)).toThrow(ParleyError);
      }
    });
  });

  describe('typing, watch and presence (ephemeral, on live/)', () => {
    it('round-trip in a few bytes', () => {
      const envs: Envelope[] = [
        { kind: 'typing', chatId: CHAT, state: 'typing' },
        { kind: 'typing', chatId: CHAT, state: 'recording', from: 'uAAAAAAAAAAAA' },
        { kind: 'typing', chatId: CHAT, state: 'stop' },
        { kind: 'watch', chatIds: [CHAT, 'gAAAAAAAAAAAA'] },
        { kind: 'watch', chatIds: [] },
        { kind: 'presence', userId: 'uAAAAAAAAAAAA', online: true },
        { kind: 'presence', userId: 'uAAAAAAAAAAAA', online: false, lastSeen: 1_700_000_000_000 },
        { kind: 'presence', userId: 'uAAAAAAAAAAAA', online: true, v: 7 },
        { kind: 'presence', userId: 'uAAAAAAAAAAAA', online: false, lastSeen: 5, v: 8 },
      ];
      for (const env of envs) expect(decode(encode(env))).toEqual(env);
      // A typing event from the device: kind, chatId, state.
      expect(encode({ kind: 'typing', chatId: CHAT, state: 'typing' }).length).toBeLessThanOrEqual(17);
    });

    it('reject bad states, ids, duplicates beyond the limit and malformed presence', () => {
      const bad: unknown[][] = [
        [KIND.typing, CHAT, 3], [KIND.typing, CHAT, -1], [KIND.typing, 'uAAAAAAAAAAAA', 1], [KIND.typing, CHAT, 1, 'dAAAAAAAAAAAA'],
        [KIND.watch, CHAT], [KIND.watch, [CHAT, 'nope']], [KIND.watch, Array.from({ length: 65 }, () => CHAT)],
        [KIND.presence, 'uAAAAAAAAAAAA', 2], [KIND.presence, CHAT, 1], [KIND.presence, 'uAAAAAAAAAAAA', 0, -5],
      ];
      for (const fields of bad) expect(() => decode(new Uint8Array(cbor.encode(fields))), JSON.stringify(fields)).toThrow(ParleyError);
      // The same chat twice counts once.
      expect(decode(new Uint8Array(cbor.encode([KIND.watch, [CHAT, CHAT]])))).toEqual({ kind: 'watch', chatIds: [CHAT] });
    });
  });
});

describe('peekPosition', () => {
  it('reads the chat and seq of a msg without decoding it, for every width of seq', async () => {
    const { peekPosition } = await import('@parley/client-sdk/protocol');
    for (const seq of [1, 23, 24, 255, 256, 65_535, 65_536, 2 ** 32 - 1]) {
      const bytes = encode({ kind: 'msg', chatId: CHAT, seq, from: 'uAAAAAAAAAAAA', ts: 1_700_000_000_000, body: 'x', fromDevice: 'dAAAAAAAAAAAA' });
      expect(peekPosition(bytes), String(seq)).toEqual({ chatId: CHAT, seq });
    }
  });
  it('is null for anything else', async () => {
    const { peekPosition } = await import('@parley/client-sdk/protocol');
    expect(peekPosition(encode({ kind: 'stored', clientMsgId: 'k', chatId: CHAT, seq: 1, ts: 1 }))).toBeNull();
    expect(peekPosition(new Uint8Array([0x87, 2]))).toBeNull();
    expect(peekPosition(new Uint8Array(cbor.encode([KIND.msg, 'not a chat id', 1])))).toBeNull();
    expect(peekPosition(new Uint8Array(cbor.encode([KIND.msg, CHAT, 0, 'uAAAAAAAAAAAA', 1, 'x', 'dAAAAAAAAAAAA'])))).toBeNull();
  });
});

describe('peekTs', () => {
  it('reads the ts of a msg without decoding it, whatever the widths before it and the size of ts', async () => {
    const { peekTs } = await import('@parley/client-sdk/protocol');
    for (const seq of [1, 24, 256, 65_536]) {
      for (const ts of [5, 70_000, 1_700_000_000_000, Date.now()]) {
        const env = { kind: 'msg' as const, chatId: CHAT, seq, from: 'uAAAAAAAAAAAA', ts, body: 'x'.repeat(300), fromDevice: 'dAAAAAAAAAAAA' };
        expect(peekTs(encode(env)), `${seq} ${ts}`).toBe(ts);
        expect(peekTs(encode({ ...env, fromDevice: '', event: { type: 'joined' } }))).toBe(ts);
      }
    }
  });
  it('is null for anything else and for truncated payloads', async () => {
    const { peekTs } = await import('@parley/client-sdk/protocol');
    expect(peekTs(encode({ kind: 'stored', clientMsgId: 'k', chatId: CHAT, seq: 1, ts: 1 }))).toBeNull();
    const bytes = encode({ kind: 'msg', chatId: CHAT, seq: 1, from: 'uAAAAAAAAAAAA', ts: 1_700_000_000_000, body: 'x', fromDevice: 'dAAAAAAAAAAAA' });
    for (let n = 0; n < 40; n++) expect(peekTs(bytes.subarray(0, n)), String(n)).toBeNull();
    expect(peekTs(new Uint8Array(cbor.encode([KIND.msg, CHAT, 1, 42, 1, 'x'])))).toBeNull();
  });
});

describe('codec: group events in msg envelopes', () => {
  const base = { kind: 'msg' as const, chatId: 'gAAAAAAAAAAAA', seq: 3, from: 'uAAAAAAAAAAAA', ts: 5, body: '', fromDevice: '' };
  const users = ['uBBBBBBBBBBBB', 'uCCCCCCCCCCCC'];
  it('round-trips every event type, without a fromDevice', () => {
    const events = [
      { type: 'created', name: 'Trip', members: users, admins: users.slice(0, 1) },
      { type: 'added', users }, { type: 'removed', users }, { type: 'joined' }, { type: 'left' }, { type: 'left', promoted: users.slice(1) },
      { type: 'promoted', users }, { type: 'demoted', users }, { type: 'updated', name: 'New' }, { type: 'updated', description: '', avatar: 'm1' },
      { type: 'deleted' },
    ] as const;
    for (const event of events) expect(decode(encode({ ...base, event } as Envelope))).toEqual({ ...base, event });
  });
  it('rejects malformed events with E_BAD_ENVELOPE', () => {
    const enc = new Encoder({ useRecords: false, tagUint8Array: false });
    for (const ev of [[], [99], [2, []], [2, ['x']], [1, 'n'.repeat(101), users, users], [8, 5], 'x', [3, users.concat(['bad'])]]) {
      const bytes = enc.encode([KIND.msg, base.chatId, 3, base.from, 5, '', null, ev]);
      expect(() => decode(bytes)).toThrowError(expect.objectContaining({ code: 'E_BAD_ENVELOPE' }) as unknown as Error);
    }
    // Without an event, fromDevice is required.
    expect(() => decode(enc.encode([KIND.msg, base.chatId, 3, base.from, 5, 'hi', null]))).toThrow(ParleyError);
  });
});

describe('codec: status (13)', () => {
  const head = { kind: 'status' as const, statusId: 'sAAAAAAAAAAAA', from: 'uAAAAAAAAAAAA', ts: 1_000, expiresAt: 86_401_000 };
  const media = { attachmentId: 'mAAAAAAAAAAAA', kind: 'image' as const, contentType: 'image/png', size: 123, sha256: 'ab'.repeat(32), preview: 'AAAA', width: 64, height: 48 };
  it('round-trips a text post, a media post with and without a caption, and a removal', () => {
    const posts: Envelope[] = [
      { ...head, text: 'hello ☃', background: 0x336699, font: 3 },
      { ...head, text: 'x'.repeat(STATUS_TEXT_MAX) },
      { ...head, text: 'caption', media },
      { ...head, media },
      { ...head, removed: true },
    ];
    for (const env of posts) expect(decode(encode(env))).toEqual(env);
    // A removal carries no content, whatever the sender put in.
    expect(decode(encode({ ...head, removed: true, text: 'gone' }))).toEqual({ ...head, removed: true });
    expect([...encode({ ...head, removed: true })]).toEqual([...cbor.encode([KIND.status, head.statusId, head.from, head.ts, head.expiresAt, 1])]);
  });
  it('rejects malformed status envelopes with E_BAD_ENVELOPE', () => {
    const ok = [KIND.status, head.statusId, head.from, head.ts, head.expiresAt, 0, 'hi'];
    expect(decode(new Uint8Array(cbor.encode(ok)))).toEqual({ ...head, text: 'hi' });
    const cases: unknown[][] = [
      [KIND.status, 'mAAAAAAAAAAAA', head.from, 1, 2, 0, 'hi'], // not a status id
      [KIND.status, head.statusId, 'dAAAAAAAAAAAA', 1, 2, 0, 'hi'], // not a user id
      [KIND.status, head.statusId, head.from, -1, 2, 0, 'hi'],
      [KIND.status, head.statusId, head.from, 1, 'x', 0, 'hi'],
      [KIND.status, head.statusId, head.from, 1, 2, 2, 'hi'], // removed is 0 or 1
      [KIND.status, head.statusId, head.from, 1, 2, 0], // no content
      [KIND.status, head.statusId, head.from, 1, 2, 0, null, 5, 1], // colours without content
      [KIND.status, head.statusId, head.from, 1, 2, 0, 'x'.repeat(STATUS_TEXT_MAX + 1)],
      [KIND.status, head.statusId, head.from, 1, 2, 0, 'hi', 0x1000000],
      [KIND.status, head.statusId, head.from, 1, 2, 0, 'hi', -1],
      [KIND.status, head.statusId, head.from, 1, 2, 0, 'hi', 1.5],
      [KIND.status, head.statusId, head.from, 1, 2, 0, 'hi', 0, 10],
      [KIND.status, head.statusId, head.from, 1, 2, 0, 5],
      [KIND.status, head.statusId, head.from, 1, 2, 0, null, null, null, 'not media'],
      [KIND.status, head.statusId, head.from, 1, 2, 0, null, null, null, ['mAAAAAAAAAAAA']],
      [KIND.status, head.statusId, head.from, 1, 2],
    ];
    for (const fields of cases) {
      expect(() => decode(new Uint8Array(cbor.encode(fields))), JSON.stringify(fields).slice(0, 80))
        .toThrowError(expect.objectContaining({ code: 'E_BAD_ENVELOPE' }) as unknown as Error);
    }
  });
});

describe('codec: identity events (10) in msg envelopes', () => {
  const DEVICE = 'dAAAAAAAAAAAA';
  it('round-trips each change, in a direct chat and in a group, as [10, deviceId, change (0-2)]', () => {
    for (const chatId of ['cAAAAAAAAAAAA', 'gAAAAAAAAAAAA']) {
      const base = { kind: 'msg' as const, chatId, seq: 4, from: 'uAAAAAAAAAAAA', ts: 5, body: '', fromDevice: '' };
      for (const [i, change] of (['added', 'changed', 'removed'] as const).entries()) {
        const env: Envelope = { ...base, event: { type: 'identity', device: DEVICE, change } };
        expect(decode(encode(env))).toEqual(env);
        expect([...encode(env)]).toEqual([...cbor.encode([KIND.msg, chatId, 4, base.from, 5, '', null, [CHAT_EVENT.identity, DEVICE, i]])]);
      }
    }
  });
  it('rejects malformed identity events with E_BAD_ENVELOPE', () => {
    for (const ev of [[10], [10, DEVICE], [10, 'uAAAAAAAAAAAA', 0], [10, 'nope', 0], [10, DEVICE, 3], [10, DEVICE, -1], [10, DEVICE, 'added'], [10, DEVICE, 0.5]]) {
      const bytes = cbor.encode([KIND.msg, 'gAAAAAAAAAAAA', 3, 'uAAAAAAAAAAAA', 5, '', null, ev]);
      expect(() => decode(bytes), JSON.stringify(ev)).toThrowError(expect.objectContaining({ code: 'E_BAD_ENVELOPE' }) as unknown as Error);
    }
  });
});

describe('codec: keys (14)', () => {
  it('round-trips as [14, count, low (0/1)], and the broker sees its kind without decoding', () => {
    for (const env of [{ kind: 'keys', count: 3, low: true }, { kind: 'keys', count: 0, low: true }, { kind: 'keys', count: 100, low: false }] as Envelope[]) {
      expect(decode(encode(env))).toEqual(env);
      expect(peekKind(encode(env))).toBe('keys');
    }
    expect([...encode({ kind: 'keys', count: 2, low: true })]).toEqual([...cbor.encode([KIND.keys, 2, 1])]);
  });
  it('rejects malformed keys envelopes with E_BAD_ENVELOPE', () => {
    for (const fields of [[KIND.keys], [KIND.keys, 1], [KIND.keys, -1, 1], [KIND.keys, 1.5, 0], [KIND.keys, '3', 1], [KIND.keys, 3, 2], [KIND.keys, 3, true]]) {
      expect(() => decode(new Uint8Array(cbor.encode(fields))), JSON.stringify(fields))
        .toThrowError(expect.objectContaining({ code: 'E_BAD_ENVELOPE' }) as unknown as Error);
    }
  });
});
