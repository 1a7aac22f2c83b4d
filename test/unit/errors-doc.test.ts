import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '@parley/client-sdk';

describe('error catalogue', () => {
  const doc = readFileSync(new URL('../../docs/ERRORS.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| (E_[A-Z_]+) \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])] as const);

  it('documents every code with its HTTP status, and nothing else', () => {
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(Object.entries(ERRORS).map(([k, v]) => [k, v.status])));
  });
});
