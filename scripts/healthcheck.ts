/**
 * The container health check (Dockerfile HEALTHCHECK): asks this process's own /healthz, on the
 * API port when it runs the API role, else on its metrics port. Exit 0 = healthy.
 */
const env = process.env;
const roles = (env.PARLEY_ROLES ?? 'all').split(',').map((r) => r.trim());
const hasApi = roles.includes('all') || roles.includes('api');
const port = hasApi ? (env.PARLEY_HTTP_PORT ?? '8080') : env.PARLEY_METRICS_PORT;
if (!port) {
  console.error('no health endpoint: set PARLEY_METRICS_PORT for a process without the api role');
  process.exit(1);
}
fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2500) }).then(
  (r) => process.exit(r.ok ? 0 : 1),
  () => process.exit(1),
);
