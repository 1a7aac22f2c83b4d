/**
 * Liveness, readiness and the metrics text, for the API's routes and for the small listener of
 * processes without the API role (`PARLEY_METRICS_PORT`). None of them needs a device token and
 * none shows anything secret: check names and a reason, never an address or a credential.
 *
 * - `/healthz`: liveness. The process answers; nothing else is checked (a restart would not help
 *   with Redis away).
 * - `/readyz`: readiness. The roles are started (and not shutting down), Redis answers a PING and
 *   the store a read, each within `timeoutMs`; 503 otherwise.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';

export interface Readiness {
  ready: boolean;
  /** Each check: 'ok', or why not. */
  checks: Record<string, string>;
}

export interface Ops {
  ready(): Promise<Readiness>;
  metrics(): Promise<{ contentType: string; body: string }>;
}

export interface ReadinessChecks {
  /** The roles are up (false while starting and from the start of shutdown). */
  started(): boolean;
  /** Each resolves when its dependency answers. */
  probes: Record<string, () => Promise<unknown>>;
  /** @defaultValue 1000 */
  timeoutMs?: number;
}

export async function checkReadiness(c: ReadinessChecks): Promise<Readiness> {
  const timeoutMs = c.timeoutMs ?? 1000;
  const checks: Record<string, string> = { roles: c.started() ? 'ok' : 'not started' };
  await Promise.all(Object.entries(c.probes).map(async ([name, probe]) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((r) => { timer = setTimeout(() => r(`no answer within ${timeoutMs} ms`), timeoutMs); });
    checks[name] = await Promise.race([probe().then(() => 'ok', () => 'unreachable'), timeout]);
    clearTimeout(timer);
  }));
  return { ready: Object.values(checks).every((v) => v === 'ok'), checks };
}

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** GET /metrics, /healthz and /readyz on their own port (0 = any free port). */
export async function startOpsServer(ops: Ops, host: string, port: number): Promise<OpsServer> {
  const json = (res: import('node:http').ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
  };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { error: 'method not allowed' });
    if (path === '/healthz') return json(res, 200, { ok: true });
    if (path === '/readyz') {
      ops.ready().then((r) => json(res, r.ready ? 200 : 503, r), () => json(res, 503, { ready: false, checks: {} }));
      return;
    }
    if (path === '/metrics') {
      ops.metrics().then(
        (m) => { res.writeHead(200, { 'content-type': m.contentType }).end(m.body); },
        () => json(res, 500, { error: 'metrics unavailable' }),
      );
      return;
    }
    json(res, 404, { error: 'not found' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The API's GET /metrics and /readyz (its /healthz is its own). No device token: nothing here is secret. */
export function opsRoutes(app: FastifyInstance, ops: Ops): void {
  app.get('/readyz', async (_req, reply) => {
    const r = await ops.ready();
    return reply.code(r.ready ? 200 : 503).send(r);
  });
  app.get('/metrics', async (_req, reply) => {
    const m = await ops.metrics();
    return reply.type(m.contentType).send(m.body);
  });
}
