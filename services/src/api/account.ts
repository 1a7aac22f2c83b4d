/**
 * Account routes: deleteAccount, confirmed with a fresh SMS code (asked for with
 * `POST /v1/account/deletion-code`, given to `POST /v1/account/delete`), and the export archive
 * (`GET /v1/account/export`, NDJSON streamed as it is read). The deletion itself is
 * services/src/account/delete-account.ts, the archive services/src/account/export.ts.
 *
 * The code is a registration-style code (6 digits, HMAC-stored: auth/secrets.ts hashCode) bound
 * to the user and to this purpose, so neither a registration code nor a code of another account
 * deletes anything. It lives in Redis only for its short TTL, allows `codeMaxAttempts` wrong
 * tries, and is single use; requests for it are rate-limited per user.
 */
import { Readable } from 'node:stream';
import { ParleyError } from '@parley/client-sdk/protocol';
import { schemas, type AccountDeleted, type DeletionCodeSent } from '@parley/client-sdk/api-types';
import { hashCode, newCode, sameHash } from '../auth/secrets.js';
import { deleteAccount } from '../account/delete-account.js';
import { exportRecords } from '../account/export.js';
import { parse, type RouteContext } from './context.js';

/** What the code's HMAC binds: the purpose and the user (registration codes bind the phone alone). */
const deletionSubject = (userId: string): string => `delete-account:${userId}`;

export function registerAccountRoutes(ctx: RouteContext): void {
  const { app, deps, opts, now, authDevice } = ctx;
  const { store, limiter } = deps;
  const accountRedis = deps.account.redis;

  // requestAccountDeletion: a fresh code by SMS to the account's phone.
  app.post('/v1/account/deletion-code', async (req, reply) => {
    const caller = await authDevice(req);
    parse(schemas.deletionCode, req.body ?? {});
    if (!(await limiter.hit(`delcode:${caller.userId}`, opts.codeRatePerPhone, opts.rateWindowSec))) {
      throw new ParleyError('E_RATE_LIMITED', 'too many deletion codes requested');
    }
    const user = await store.getUser(caller.userId);
    if (!user) throw new ParleyError('E_USER_NOT_FOUND', caller.userId);
    const code = newCode();
    await accountRedis.putDeletionCode(caller.userId, hashCode(deps.secret, deletionSubject(caller.userId), code), opts.deletionCodeTtlMs);
    const minutes = Math.max(1, Math.round(opts.deletionCodeTtlMs / 60000));
    try {
      await deps.sms.send(user.phone, `Your Parley code to DELETE your account is ${code}. It expires in ${minutes} minutes. If you did not ask for it, ignore this message.`);
    } catch (err) {
      req.log.error({ err: err instanceof Error ? err.message : String(err) }, 'SMS provider failed');
      await accountRedis.takeDeletionCode(caller.userId);
      throw new ParleyError('E_UNAVAILABLE', 'the SMS provider did not accept the message; retry later');
    }
    const answer: DeletionCodeSent = { expiresInSec: Math.round(opts.deletionCodeTtlMs / 1000) };
    return reply.status(202).send(answer);
  });

  // deleteAccount: the code, then everything goes (delete-account.ts). The answer comes once it is done.
  app.post('/v1/account/delete', async (req) => {
    const caller = await authDevice(req);
    const { code } = parse(schemas.deleteAccount, req.body);
    const pending = await accountRedis.getDeletionCode(caller.userId);
    if (!pending) throw new ParleyError('E_CODE_EXPIRED', 'ask for a deletion code first');
    if (pending.attempts >= opts.codeMaxAttempts) throw new ParleyError('E_CODE_ATTEMPTS');
    if (!sameHash(pending.codeHash, hashCode(deps.secret, deletionSubject(caller.userId), code))) {
      const attempts = await accountRedis.bumpDeletionAttempts(caller.userId);
      req.log.warn({ ip: req.ip, attempts }, 'wrong account deletion code');
      throw new ParleyError(attempts >= opts.codeMaxAttempts ? 'E_CODE_ATTEMPTS' : 'E_CODE_INVALID');
    }
    // Single use: of two requests racing with one code, one deletes.
    if (!(await accountRedis.takeDeletionCode(caller.userId))) throw new ParleyError('E_CODE_EXPIRED');
    await deleteAccount({
      store, blobs: deps.account.blobs, groups: deps.groups, redis: accountRedis, revoke: deps.revoke, forgetLive: deps.forgetLive,
      ...(deps.account.extraRedisKeys ? { extraRedisKeys: deps.account.extraRedisKeys } : {}),
      log: req.log as typeof deps.log, now,
    }, caller.userId);
    const answer: AccountDeleted = { deleted: true, userId: caller.userId };
    return answer;
  });

  // exportAccount: NDJSON, one record per line, written as it is read.
  app.get('/v1/account/export', async (req, reply) => {
    const caller = await authDevice(req);
    parse(schemas.exportAccount, req.query);
    if (!(await limiter.hit(`export:${caller.userId}`, opts.exportsPerHour, 3600))) throw new ParleyError('E_RATE_LIMITED', 'too many exports');
    const records = exportRecords({ store, attachments: deps.attachments, now }, caller.userId);
    // The first records (header, account) are read before answering: a store that fails at once
    // still gets a proper error answer.
    const head = [await records.next(), await records.next()];
    async function* lines(): AsyncGenerator<string> {
      for (const r of head) if (!r.done) yield JSON.stringify(r.value) + '\n';
      try {
        for await (const r of records) yield JSON.stringify(r) + '\n';
      } catch (err) {
        // Headers are sent: the archive ends without its `end` record, which readers treat as cut off.
        req.log.error({ err }, 'account export failed part-way');
        throw err;
      }
    }
    return reply
      .type('application/x-ndjson; charset=utf-8')
      .header('content-disposition', `attachment; filename="parley-export-${caller.userId}.ndjson"`)
      .header('cache-control', 'no-store')
      .send(Readable.from(lines()));
  });
}
