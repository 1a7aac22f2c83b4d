/** The Store port, its two adapters, and `openStore` to pick one from configuration. */
import type { Store } from './types.js';
import { createSqliteStore } from './sqlite.js';
import { createMongoStore } from './mongo.js';

export * from './types.js';
export { createSqliteStore } from './sqlite.js';
export { createMongoStore } from './mongo.js';

export type StoreConfig =
  | { kind: 'sqlite'; file: string }
  | { kind: 'mongo'; url: string; dbName: string };

/** Opens the configured store and runs its (idempotent) `init()`; closes it again if that fails. */
export async function openStore(cfg: StoreConfig): Promise<Store> {
  const store = cfg.kind === 'sqlite'
    ? createSqliteStore({ file: cfg.file })
    : await createMongoStore({ url: cfg.url, dbName: cfg.dbName });
  try {
    await store.init();
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
  return store;
}
