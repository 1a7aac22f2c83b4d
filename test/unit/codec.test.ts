import { describe, expect, it } from 'vitest';
import { Encoder } from 'cbor-x';
import { ParleyError } from '@parley/client-sdk';
import { KIND, MAX_STORED_MORE, decode, encode, type Envelope } from '@parley/client-sdk/protocol';

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
