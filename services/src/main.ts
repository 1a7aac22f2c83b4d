/**
 * Process entry: `tsx services/src/main.ts`. Parses the environment once, starts the roles it
 * names, prints where each listens, and shuts down cleanly on SIGINT/SIGTERM (in-flight ingest
 * batches are flushed and Redis writes its AOF before exit, so nothing acknowledged is lost).
 */
import { ParleyError } from '@parley/client-sdk/protocol';
import { parseConfig } from './config.js';
import { createLogger, startPlatform } from './platform.js';

async function main(): Promise<void> {
  let cfg;
  try {
    cfg = parseConfig(process.env);
  } catch (err) {
    if (err instanceof ParleyError) {
      process.stderr.write(`parley: invalid configuration: ${err.detail ?? err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(cfg.logLevel);
  const platform = await startPlatform(cfg, { logger: log });
  const u = platform.urls;
  const lines = [
    `Parley is running (roles: ${cfg.roles.join(', ')}; data in ${cfg.dataDir})`,
    u.mqtt && `  MQTT over TCP        ${u.mqtt}`,
    u.ws && `  MQTT over WebSocket  ${u.ws}`,
    u.http && `  HTTP API             ${u.http}   (health: ${u.http}/healthz)`,
    // Where the admin token is, never the token itself.
    platform.dashboard && `  Dashboard            ${platform.dashboard.url}   (admin token: ${platform.dashboard.tokenFile ?? 'PARLEY_ADMIN_TOKEN'})`,
    u.metrics && `  Metrics and health   ${u.metrics}/metrics   (${u.metrics}/healthz, ${u.metrics}/readyz)`,
    `  Redis                ${u.redis}${platform.redis ? ' (private, AOF on)' : ''}`,
    `  Store                ${cfg.store.kind === 'sqlite' ? cfg.store.file : 'MongoDB'}`,
    'Press Ctrl-C to stop.',
  ].filter(Boolean);
  process.stdout.write(lines.join('\n') + '\n');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      // A second Ctrl-C: stop waiting. Everything acknowledged is already in Redis (AOF) or the store.
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 20_000);
    force.unref();
    platform.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err: unknown) => {
  process.stderr.write(`parley: failed to start: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
