/**
 * Schema v5's social step on a database of an earlier release: users that existed before phone
 * hashes get theirs in the migration (computed in JS inside the migration transaction), so
 * contacts discovery finds them; their profile and privacy read as defaults. Works on a copy of
 * test/fixtures/store-v1.sqlite (users +447700900101 and +447700900102).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { hashPhone } from '@parley/client-sdk/protocol';
import { createSqliteStore } from '../services/src/store/sqlite.js';
import { DEFAULT_PRIVACY, type Store } from '../services/src/store/types.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/store-v1.sqlite', import.meta.url));

describe('SQLite store: the v5 social migration', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function migrated(): Promise<Store> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-social-mig-'));
    const file = path.join(dir, 'parley.db');
    fs.copyFileSync(FIXTURE, file);
    const store = createSqliteStore({ file });
    cleanup.push(async () => {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    await store.init();
    return store;
  }

  it("fills in the existing users' phone hashes", async () => {
    const store = await migrated();
    const a = (await store.getUserByPhone('+447700900101'))!;
    const b = (await store.getUserByPhone('+447700900102'))!;
    const found = await store.getUsersByPhoneHashes([await hashPhone('+447700900101'), await hashPhone('+447700900102'), await hashPhone('+447700900103')]);
    expect(found.map((f) => f.userId).sort()).toEqual([a.userId, b.userId].sort());
    expect(await store.getProfile(a.userId)).toBeNull();
    expect(await store.getPrivacy(a.userId)).toEqual(DEFAULT_PRIVACY);
    expect(await store.listContacts(a.userId)).toEqual([]);
  });
});
