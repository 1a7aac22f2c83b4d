/**
 * The admin credential of the dashboard: `PARLEY_ADMIN_TOKEN`, or, when unset, a random token
 * generated once into `<data>/admin-token` (mode 0600, like the server secret) and read from there
 * on later starts. Only where it is gets printed, never the token. A candidate is compared by
 * SHA-256 digest with timingSafeEqual: equal lengths whatever was sent, and no early exit.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { linkSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ParleyError } from '@parley/client-sdk/protocol';
import { ADMIN_TOKEN_RE } from '../config.js';

export const ADMIN_TOKEN_FILE = 'admin-token';

export interface AdminToken {
  /** The file it was read from or generated into; null when it came from PARLEY_ADMIN_TOKEN. */
  readonly file: string | null;
  /** Whether `candidate` is the admin token. */
  verify(candidate: string): boolean;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

function fromFile(file: string, log: Logger): string | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  if (!ADMIN_TOKEN_RE.test(text)) throw new ParleyError('E_CONFIG', `${file}: the admin token must be 32 to 512 printable characters without spaces`);
  if ((statSync(file).mode & 0o077) !== 0) log.warn({ file }, 'the admin token file is readable by other users: chmod 600 it');
  return text;
}

/**
 * Generates the token into `file`, or reads the one another process sharing the data dir put
 * there first. Written whole to a temporary file beside it, then hard-linked to its name: the name
 * appears only with the complete token behind it (a reader never sees a half-written file), and
 * the link fails with EEXIST for all but one process, which then read the winner's file.
 */
function generate(file: string, log: Logger): string {
  const fresh = `parley-admin-${randomBytes(32).toString('base64url')}`;
  const temp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(temp, fresh + '\n', { mode: 0o600, flag: 'wx' });
  try {
    linkSync(temp, file);
    log.info({ file }, 'generated the admin token of the dashboard');
    return fresh;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const winner = fromFile(file, log);
    if (winner === null) throw new ParleyError('E_CONFIG', `${file}: could not be read`);
    return winner;
  } finally {
    try { unlinkSync(temp); } catch { /* already gone: nothing to clean */ }
  }
}

export function loadAdminToken(configured: string | undefined, dataDir: string, log: Logger): AdminToken {
  let token = configured;
  let file: string | null = null;
  if (token === undefined) {
    file = join(dataDir, ADMIN_TOKEN_FILE);
    token = fromFile(file, log) ?? undefined;
    token ??= generate(file, log);
  }
  const expected = digest(token);
  return {
    file,
    verify: (candidate) => timingSafeEqual(digest(candidate), expected),
  };
}
