import { describe, expect, it } from 'vitest';
import { decode, encode, type Envelope, ParleyError } from '@parley/client-sdk';

describe('codec', () => {
  it('round-trips a send envelope', () => {
    const env: Envelope = { kind: 'send', clientMsgId: 'abc', to: 'uAAAAAAAAAAAA', body: 'hello' };
    expect(decode(encode(env))).toEqual(env);
  });
  it('rejects garbage', () => {
    expect(() => decode(new Uint8Array([0xff, 0x00]))).toThrow(ParleyError);
  });
});
