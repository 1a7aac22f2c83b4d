/**
 * Contacts discovery through the SDK on a real platform: an address book in mixed formats is
 * normalised and hashed on the device, exactly the registered numbers come back, the server keeps
 * nothing of the upload but the matched users as contacts, and look-ups are refused past the
 * per-user and per-address limits, which hold across two API nodes sharing Redis.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParleyError, hashPhone } from '@parley/client-sdk';
import { startTestPlatform, type Registered, type TestPlatform } from '../helpers/platform.js';
import { closeAll, device } from '../helpers/sdk.js';

let tp: TestPlatform;

beforeAll(async () => {
  tp = await startTestPlatform();
}, 60_000);

afterAll(async () => {
  await closeAll();
  await tp?.close();
});

/** A client of `t`'s API (the MQTT URL only has to be well-formed: these tests never connect). */
const client = (t: TestPlatform, r: Registered) => device('mqtt://127.0.0.1:1', r, { apiUrl: t.httpUrl }).client;
const sorted = (ids: string[]): string[] => [...ids].sort();
const errorOf = (p: Promise<unknown>): Promise<ParleyError | null> => p.then(() => null, (e: unknown) => e as ParleyError);

/** Every byte the platform keeps on disk (the SQLite database and its WAL, the Redis files). */
function diskBytes(dir: string): Buffer {
  const out: Buffer[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(readFileSync(p));
    }
  };
  walk(dir);
  return Buffer.concat(out);
}

describe('contacts discovery', () => {
  it('returns exactly the registered numbers of an address book in mixed formats, and keeps only the matched users', async () => {
    const uk = await tp.register('+447700900123');
    const us = await tp.register('+15550101234');
    const de = await tp.register('+4915112345678');
    const alice = await tp.register('+447700900100');
    const a = client(tp, alice);

    const gb = await a.lookupContacts(
      ['+44 7700 900123', '07700 900123', '+44 (0)7700 900999', '+1 555-010-1234', 'not a number', '12', '0049 151 1234 5678'],
      { defaultCountry: 'GB' },
    );
    expect(gb).toEqual([
      { number: '+44 7700 900123', e164: '+447700900123', userId: uk.userId },
      // The same number in its national form, read as British.
      { number: '07700 900123', e164: '+447700900123', userId: uk.userId },
      { number: '+44 (0)7700 900999', e164: '+447700900999' },
      { number: '+1 555-010-1234', e164: '+15550101234', userId: us.userId },
      // Invalid ones are dropped (not sent) and reported: no e164.
      { number: 'not a number' },
      { number: '12' },
      // An international prefix dialled from the UK.
      { number: '0049 151 1234 5678', e164: '+4915112345678', userId: de.userId },
    ]);
    const usBook = await a.lookupContacts(['(555) 010-1234', '555.010.1234', '(555) 010-9999', '07700 900123'], { defaultCountry: 'US' });
    expect(usBook).toEqual([
      { number: '(555) 010-1234', e164: '+15550101234', userId: us.userId },
      { number: '555.010.1234', e164: '+15550101234', userId: us.userId },
      { number: '(555) 010-9999', e164: '+15550109999' },
      // Not a possible US number: dropped.
      { number: '07700 900123' },
    ]);
    // Without a default country only international numbers can be read.
    expect(await a.lookupContacts(['07700 900123', '+447700900123'])).toEqual([
      { number: '07700 900123' }, { number: '+447700900123', e164: '+447700900123', userId: uk.userId },
    ]);

    // What the server kept: the matched users as contacts (the user himself never), nothing else.
    expect(sorted(await a.listContacts())).toEqual(sorted([uk.userId, us.userId, de.userId]));
    // Neither the numbers that matched nobody nor their hashes are anywhere on disk or in Redis.
    const disk = diskBytes(tp.dataDir);
    for (const n of ['+447700900999', '+15550109999']) {
      expect(disk.includes(Buffer.from(n))).toBe(false);
      expect(disk.includes(Buffer.from(await hashPhone(n)))).toBe(false);
    }
    const redis = new Redis(tp.platform.urls.redis);
    try {
      const keys = await redis.keys('*');
      const dump = (await Promise.all(keys.map(async (k) => `${k} ${await redis.dump(k).catch(() => '')}`))).join('\n');
      for (const n of ['+447700900999', '+15550109999']) {
        expect(dump.includes(n)).toBe(false);
        expect(dump.includes(await hashPhone(n))).toBe(false);
      }
    } finally {
      redis.disconnect();
    }
  });

  it('save: false only looks up; the contacts list is changed by userId too', async () => {
    const bob = await tp.register();
    const carol = await tp.register();
    const dave = await tp.register();
    const b = client(tp, bob);
    expect(await b.lookupContacts([carol.phone], { save: false })).toEqual([{ number: carol.phone, e164: carol.phone, userId: carol.userId }]);
    expect(await b.listContacts()).toEqual([]);
    expect(sorted(await b.addContacts([carol.userId, dave.userId, bob.userId]))).toEqual(sorted([carol.userId, dave.userId]));
    expect(sorted(await b.addContacts([carol.userId]))).toEqual(sorted([carol.userId, dave.userId]));
    expect(await b.removeContacts([carol.userId])).toEqual([dave.userId]);
    expect((await errorOf(b.addContacts(['uZZZZZZZZZZZZ'])))?.code).toBe('E_USER_NOT_FOUND');
    expect((await errorOf(b.addContacts(['nope'])))?.code).toBe('E_VALIDATION');
    // Contacts are one-way: Dave has not saved Bob.
    expect(await client(tp, dave).listContacts()).toEqual([]);
    // A lookup with nothing readable sends nothing and finds nothing.
    expect(await b.lookupContacts(['x', ''])).toEqual([{ number: 'x' }, { number: '' }]);
  });
});

describe('contacts discovery limits', () => {
  let limited: TestPlatform;
  let second: TestPlatform;

  beforeAll(async () => {
    const limits = { PARLEY_CONTACTS_PER_DAY: '10', PARLEY_CONTACTS_REQUESTS_PER_HOUR: '6' };
    limited = await startTestPlatform(limits);
    // A second API node on the same Redis and store.
    second = await startTestPlatform({ ...limits, PARLEY_ROLES: 'api', PARLEY_REDIS_URL: limited.platform.urls.redis }, { dataDir: limited.dataDir });
  }, 60_000);

  afterAll(async () => {
    await closeAll();
    await second?.close();
    await limited?.close();
  });

  it('refuses past the hashes per user per day and the requests per address per hour, across API nodes', async () => {
    const u1 = await limited.register();
    const u2 = await limited.register();
    const book = (n: number, from: number): string[] => Array.from({ length: n }, (_v, i) => `+4477009${String(from + i).padStart(5, '0')}`);
    const on = (t: TestPlatform, r: Registered) => client(t, r);

    // u1: 4 + 4 hashes of 10 a day, on both nodes; 4 more are refused.
    expect(await on(limited, u1).lookupContacts(book(4, 0))).toHaveLength(4);
    expect(await on(second, u1).lookupContacts(book(4, 10))).toHaveLength(4);
    const over = await errorOf(on(limited, u1).lookupContacts(book(4, 20)));
    expect(over?.code).toBe('E_RATE_LIMITED');
    expect(over?.detail).toMatch(/per user: retry after \d+ s/);
    // Over HTTP: 429 with Retry-After (the rest of the day).
    const res = await fetch(`${second.httpUrl}/v1/contacts/lookup`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${u1.token}` },
      body: JSON.stringify({ hashes: [await hashPhone('+447700900001')] }),
    });
    expect(res.status).toBe(429);
    expect((await res.json()).error.code).toBe('E_RATE_LIMITED');
    const retryAfter = Number(res.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(86_000);
    expect(retryAfter).toBeLessThanOrEqual(86_400);

    // u2 has his whole allowance, but this address made 4 of its 6 requests an hour already.
    expect(await on(second, u2).lookupContacts(book(1, 30))).toHaveLength(1);
    expect(await on(limited, u2).lookupContacts(book(1, 31))).toHaveLength(1);
    const byAddress = await errorOf(on(second, u2).lookupContacts(book(1, 32)));
    expect(byAddress?.code).toBe('E_RATE_LIMITED');
    expect(byAddress?.detail).toMatch(/per address: retry after \d+ s/);
  });
});
