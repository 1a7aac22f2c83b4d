/**
 * The SDK's reading of an export archive (ParleyApi.exportAccountRecords): records across chunk
 * boundaries, a header of another format refused, a cut-off archive (no `end`) refused, an error
 * answer turned into its catalogue code. A fetch stub serves the bytes in the chunks given.
 */
import { describe, expect, it } from 'vitest';
import { ParleyApi, type ExportRecord } from '@parley/client-sdk';

function api(chunks: string[], status = 200): ParleyApi {
  const fetchStub: typeof fetch = async () => {
    const enc = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (const ch of chunks) c.enqueue(enc.encode(ch));
        c.close();
      },
    });
    return new Response(body, { status, headers: { 'content-type': status === 200 ? 'application/x-ndjson' : 'application/json' } });
  };
  return new ParleyApi({ baseUrl: 'http://parley.invalid', fetch: fetchStub });
}

async function all(a: ParleyApi): Promise<ExportRecord[]> {
  const out: ExportRecord[] = [];
  for await (const r of a.exportAccountRecords('token')) out.push(r);
  return out;
}

const header = JSON.stringify({ type: 'header', format: 'parley-account-export', version: 1, userId: 'uAbCdEfGhIjKl', exportedAt: 1 });
const contact = JSON.stringify({ type: 'contact', userId: 'uBbCdEfGhIjKl' });
const end = JSON.stringify({ type: 'end', counts: { contact: 1 } });

describe('ParleyApi.exportAccountRecords', () => {
  it('yields the records, whatever the chunking (split lines, a multi-byte character across chunks)', async () => {
    const text = `${header}\n${JSON.stringify({ type: 'profile', name: 'Zoë', about: '', avatar: null, updatedAt: 2 })}\n${contact}\n${end}\n`;
    const bytes = Buffer.from(text);
    // Cut inside the ë (two bytes in UTF-8) and inside lines.
    const cut = bytes.indexOf(Buffer.from('ë')) + 1;
    const chunks = [bytes.subarray(0, 10), bytes.subarray(10, cut), bytes.subarray(cut, cut + 7), bytes.subarray(cut + 7)].map((b) => b.toString('latin1'));
    const a = new ParleyApi({
      baseUrl: 'http://parley.invalid',
      fetch: async () => new Response(new ReadableStream<Uint8Array>({
        start(c) {
          for (const ch of chunks) c.enqueue(Buffer.from(ch, 'latin1'));
          c.close();
        },
      })),
    });
    const records = await all(a);
    expect(records.map((r) => r.type)).toEqual(['header', 'profile', 'contact', 'end']);
    expect(records[1]).toMatchObject({ name: 'Zoë' });
  });

  it('accepts a last line without a newline', async () => {
    expect((await all(api([`${header}\n${end}`]))).map((r) => r.type)).toEqual(['header', 'end']);
  });

  it('refuses another format or version', async () => {
    const other = JSON.stringify({ type: 'header', format: 'something-else', version: 1 });
    await expect(all(api([`${other}\n${end}\n`]))).rejects.toMatchObject({ code: 'E_VALIDATION' });
    const newer = JSON.stringify({ type: 'header', format: 'parley-account-export', version: 2 });
    await expect(all(api([`${newer}\n${end}\n`]))).rejects.toMatchObject({ code: 'E_VALIDATION' });
    await expect(all(api([`${contact}\n${end}\n`]))).rejects.toMatchObject({ code: 'E_VALIDATION' });
  });

  it('refuses a cut-off archive (no end record) after yielding what came', async () => {
    const got: string[] = [];
    const err = await (async () => {
      for await (const r of api([`${header}\n${contact}\n`]).exportAccountRecords('t')) got.push(r.type);
    })().then(() => null, (e: unknown) => e);
    expect(got).toEqual(['header', 'contact']);
    expect(err).toMatchObject({ code: 'E_UNAVAILABLE' });
  });

  it('turns an error answer into its catalogue code', async () => {
    const body = JSON.stringify({ error: { code: 'E_RATE_LIMITED', message: 'Too many requests', detail: 'too many exports' } });
    await expect(all(api([body], 429))).rejects.toMatchObject({ code: 'E_RATE_LIMITED' });
  });
});
