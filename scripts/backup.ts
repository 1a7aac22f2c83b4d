/**
 * Backup and restore of the store. `npm run backup -- --help` prints the usage.
 *
 * SQLite (the default store): an online backup through SQLite's backup API (better-sqlite3's
 * `db.backup`), safe while Parley runs and writes: the copy is taken in one step under one read
 * transaction, so it is a consistent snapshot (every committed transaction before it, nothing
 * after, no half transaction) and writers are not blocked (WAL). The copy is then checked with
 * `PRAGMA integrity_check`.
 *
 * Restore (`--restore FILE`): stop every Parley process that uses the store first. The file is
 * checked, the current store is kept next to it as `<store>.before-restore-<time>`, and the backup
 * is written over the store through the same API (so a leftover -wal file cannot mix old pages
 * into the restored copy).
 *
 * MongoDB (PARLEY_STORE=mongo): use the MongoDB tools, not this script (see docs/RELIABILITY.md):
 *   mongodump --uri "$MONGO_URL" --db parley --gzip --archive=parley.archive.gz --oplog   (replica set)
 *   mongorestore --uri "$MONGO_URL" --gzip --archive=parley.archive.gz --drop --oplogReplay
 *
 * Redis holds what is accepted but not yet stored (BullMQ jobs) and the broker sessions; it is not
 * part of this backup (its AOF under <data>/redis is copied with the data dir when Parley is stopped).
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { ParleyError } from '@parley/client-sdk/protocol';
import { parseConfig } from '../services/src/config.js';

const USAGE = `usage:
  npm run backup -- --out FILE [--file STORE]            online backup of the SQLite store
  npm run backup -- --restore FILE [--file STORE]        restore a backup (stop Parley first)
  npm run backup -- --verify FILE                        check a backup file
STORE defaults to <PARLEY_DATA_DIR>/parley.sqlite (./data/parley.sqlite).
With PARLEY_STORE=mongo use mongodump / mongorestore (docs/RELIABILITY.md).`;

interface Args {
  out?: string;
  restore?: string;
  verify?: string;
  file?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {};
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    const take = (): string => {
      if (v === undefined || v.startsWith('--')) throw new ParleyError('E_VALIDATION', `${k} needs a value`);
      i++;
      return v;
    };
    if (k === '--out') a.out = take();
    else if (k === '--restore') a.restore = take();
    else if (k === '--verify') a.verify = take();
    else if (k === '--file') a.file = take();
    else if (k === '--help' || k === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else throw new ParleyError('E_VALIDATION', `unknown argument ${k}`);
  }
  if ([a.out, a.restore, a.verify].filter(Boolean).length !== 1) throw new ParleyError('E_VALIDATION', 'give exactly one of --out, --restore, --verify');
  return a;
}

/** Runs all pages in one backup step: one read transaction, hence one consistent snapshot. */
const ONE_STEP = 0x7fffffff;

/** integrity_check, and a count of what a Parley store holds. */
function inspect(file: string): { integrity: string; messages: number; chats: number; users: number; schema: number } {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const integrity = (db.pragma('integrity_check', { simple: true }) as string) ?? 'no answer';
    const schema = db.pragma('user_version', { simple: true }) as number;
    const count = (table: string): number => (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { integrity, messages: count('messages'), chats: count('chats'), users: count('users'), schema };
  } finally {
    db.close();
  }
}

async function backup(store: string, out: string): Promise<void> {
  if (!existsSync(store)) throw new ParleyError('E_VALIDATION', `no store at ${store}`);
  const target = resolve(out);
  if (existsSync(target)) throw new ParleyError('E_VALIDATION', `${target} exists; choose a new file`);
  const db = new Database(store, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 10000');
  const t0 = Date.now();
  try {
    await db.backup(target, { progress: () => ONE_STEP });
  } finally {
    db.close();
  }
  const info = inspect(target);
  if (info.integrity !== 'ok') throw new Error(`backup ${target} failed its integrity check: ${info.integrity}`);
  process.stdout.write(JSON.stringify({ backup: target, from: store, bytes: statSync(target).size, ms: Date.now() - t0, ...info }) + '\n');
}

async function restore(from: string, store: string): Promise<void> {
  const source = resolve(from);
  const info = inspect(source);
  if (info.integrity !== 'ok') throw new Error(`${source} failed its integrity check: ${info.integrity}`);
  if (info.schema < 1) throw new Error(`${source} is not a Parley store (user_version ${info.schema})`);
  if (!existsSync(dirname(store))) throw new ParleyError('E_VALIDATION', `no directory for ${store}`);
  let keptAs: string | undefined;
  if (existsSync(store)) {
    keptAs = `${store}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    const cur = new Database(store, { readonly: true, fileMustExist: true });
    try {
      await cur.backup(keptAs, { progress: () => ONE_STEP });
    } finally {
      cur.close();
    }
  }
  const src = new Database(source, { readonly: true, fileMustExist: true });
  try {
    await src.backup(store, { progress: () => ONE_STEP });
  } finally {
    src.close();
  }
  const after = inspect(store);
  if (after.integrity !== 'ok' || after.messages !== info.messages) throw new Error(`restore into ${store} did not verify: ${JSON.stringify(after)}`);
  process.stdout.write(JSON.stringify({ restored: store, from: source, ...(keptAs ? { previousKeptAs: keptAs } : {}), ...after }) + '\n');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.verify) {
    const info = inspect(resolve(args.verify));
    process.stdout.write(JSON.stringify({ verified: resolve(args.verify), ...info }) + '\n');
    if (info.integrity !== 'ok') process.exit(1);
    return;
  }
  const cfg = parseConfig(process.env);
  if (!args.file && cfg.store.kind === 'mongo') {
    throw new ParleyError('E_CONFIG', 'PARLEY_STORE=mongo: use mongodump / mongorestore (docs/RELIABILITY.md)');
  }
  const store = resolve(args.file ?? (cfg.store.kind === 'sqlite' ? cfg.store.file : ''));
  if (args.out) await backup(store, args.out);
  else await restore(args.restore!, store);
}

main().catch((err: unknown) => {
  if (err instanceof ParleyError) process.stderr.write(`parley backup: ${err.detail ?? err.message}\n${err.code === 'E_VALIDATION' ? USAGE + '\n' : ''}`);
  else process.stderr.write(`parley backup: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(err instanceof ParleyError ? 2 : 1);
});
