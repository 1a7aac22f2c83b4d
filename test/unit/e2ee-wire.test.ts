/**
 * The end-to-end body format (client-sdk/src/e2ee/wire.ts) and MLS through the SDK's wrapper
 * (mls.ts): round trips, every malformed body refused with E_BAD_ENVELOPE (never another
 * exception: a peer's bytes must not crash a device), and messages decrypted out of order.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ParleyError } from '@parley/client-sdk';
import { MlsGroup, decodeE2ee, encodeE2ee, isE2eeBody, newIdentity, newKeyPackage } from '@parley/client-sdk/protocol';
import { PAD_TO, decodeContent, encodeContent, type E2eeBody } from '../../client-sdk/src/e2ee/wire.js';

const samples: E2eeBody[] = [
  { type: 'app', mls: randomBytes(200) },
  { type: 'handshake', commit: randomBytes(500), welcome: null },
  { type: 'handshake', commit: null, welcome: randomBytes(700) },
  { type: 'handshake', commit: randomBytes(90), welcome: randomBytes(90) },
  { type: 'rejoin', keyPackage: randomBytes(324) },
  { type: 'resend', seqs: [1, 2, 99] },
  { type: 'external', groupId: randomBytes(20), epoch: 7 },
  { type: 'external', groupId: null, epoch: null },
];

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return err instanceof ParleyError ? err.code : `not a ParleyError: ${String(err)}`;
  }
};

describe('end-to-end bodies', () => {
  it('round-trip every type and are recognised by their magic bytes', () => {
    for (const b of samples) {
      const bytes = encodeE2ee(b);
      expect(isE2eeBody(bytes)).toBe(true);
      expect(decodeE2ee(bytes)).toEqual(JSON.parse(JSON.stringify(b), (_k, v) => (v?.type === 'Buffer' ? new Uint8Array(v.data) : v)));
    }
    expect(isE2eeBody(new TextEncoder().encode('hello'))).toBe(false);
    expect(isE2eeBody('hello')).toBe(false);
  });

  it('refuses malformed bodies with E_BAD_ENVELOPE only (random, truncated, mutated)', () => {
    const bodies: Uint8Array[] = [new Uint8Array([0xe2, 0xee, 1]), new Uint8Array([0xe2, 0xee, 1, 0xff])];
    for (let i = 0; i < 300; i++) bodies.push(Buffer.concat([Buffer.from([0xe2, 0xee, 1]), randomBytes(1 + (i % 40))]));
    for (const s of samples) {
      const ok = encodeE2ee(s);
      for (let i = 0; i < 60; i++) {
        const m = Buffer.from(ok);
        m[3 + Math.floor(Math.random() * (m.length - 3))] = Math.floor(Math.random() * 256);
        bodies.push(m);
        bodies.push(m.subarray(0, 3 + Math.floor(Math.random() * (m.length - 3))));
      }
    }
    for (const b of bodies) expect(['ok', 'E_BAD_ENVELOPE']).toContain(codeOf(() => decodeE2ee(b)));
    // Specific refusals.
    expect(codeOf(() => decodeE2ee(encodeE2ee({ type: 'resend', seqs: [] })))).toBe('E_BAD_ENVELOPE');
    expect(codeOf(() => decodeE2ee(encodeE2ee({ type: 'resend', seqs: Array.from({ length: 101 }, (_, i) => i + 1) })))).toBe('E_BAD_ENVELOPE');
    expect(codeOf(() => decodeE2ee(encodeE2ee({ type: 'handshake', commit: null, welcome: null })))).toBe('E_BAD_ENVELOPE');
    expect(codeOf(() => decodeContent(randomBytes(30)))).toMatch(/^(ok|E_BAD_ENVELOPE)$/);
    expect(codeOf(() => decodeContent(encodeContent({ d: 'dX', t: 'hi' })))).toBe('ok');
  });

  it('MLS garbage is refused by the wrapper without other exceptions', async () => {
    for (let i = 0; i < 50; i++) {
      expect(['E_BAD_ENVELOPE']).toContain(codeOf(() => MlsGroup.messageEpoch(randomBytes(1 + i * 7))));
      expect(['E_BAD_ENVELOPE']).toContain(codeOf(() => MlsGroup.welcomeRefs(randomBytes(1 + i * 7))));
    }
  });
});

describe('padding', () => {
  it('pads every content to a multiple of PAD_TO bytes, and the padding is dropped on decoding', () => {
    for (let n = 0; n < 2000; n += 7) {
      const c = { d: 'dAbcdefgh123', t: 'é'.repeat(n >> 1) + 'x'.repeat(n & 1), k: n % 3 === 0 ? new Uint8Array(randomBytes(83)) : undefined };
      const bytes = encodeContent(c);
      expect(bytes.length % PAD_TO).toBe(0);
      expect(bytes.length).toBeLessThanOrEqual(Math.ceil((Buffer.byteLength(c.t) + 200) / PAD_TO) * PAD_TO + PAD_TO);
      const back = decodeContent(bytes);
      expect({ ...back, k: back.k && new Uint8Array(back.k) }).toEqual({ d: c.d, t: c.t, b: undefined, k: c.k, tk: undefined, r: undefined });
    }
  });
});

describe('MLS through the wrapper', () => {
  it('decrypts 100 messages delivered in any order, and never one twice', async () => {
    const a = await newIdentity({ userId: 'uAlice', deviceId: 'dAlice' });
    const b = await newIdentity({ userId: 'uBob', deviceId: 'dBob' });
    const bKp = await newKeyPackage(b);
    let ga = await MlsGroup.create(new TextEncoder().encode('chat'), await newKeyPackage(a));
    const r = await ga.commit({ add: [bKp.data] });
    ga = r.group;
    let gb = await MlsGroup.join(r.welcome!, bKp);
    const sent: Array<{ text: string; message: Uint8Array }> = [];
    for (let i = 0; i < 100; i++) {
      const e = await ga.encrypt(new TextEncoder().encode(`m${i}`));
      ga = e.group;
      sent.push({ text: `m${i}`, message: e.message });
    }
    const shuffled = [...sent].sort(() => Math.random() - 0.5);
    const got: string[] = [];
    for (const s of shuffled) {
      const d = await gb.decrypt(s.message);
      gb = d.group;
      got.push(new TextDecoder().decode(d.plaintext));
    }
    expect(got.sort()).toEqual(sent.map((s) => s.text).sort());
    // The signing leaf's device comes out of decryption: what the SDK checks against the server's fromDevice.
    const fromBob = await gb.encrypt(new TextEncoder().encode('from bob'));
    gb = fromBob.group;
    const read = await ga.decrypt(fromBob.message);
    expect(read.sender).toEqual({ userId: 'uBob', deviceId: 'dBob' });
    // A replay of an already decrypted message is refused (its key is gone).
    await expect(gb.decrypt(sent[0]!.message)).rejects.toBeDefined();
  }, 60_000);
});
