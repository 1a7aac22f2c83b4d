/**
 * Serves the dashboard page: `GET /admin` (page/index.html), its module and style sheet, and
 * uPlot's browser build from node_modules (no CDN). Everything is read once at start-up; a missing
 * file stops the API from starting (a packaging mistake must not go unnoticed).
 *
 * The module is TypeScript (page/dashboard.ts, type-checked with the rest): the build compiles it
 * beside this file (tsc) and `scripts/copy-assets.mjs` copies the HTML and CSS next to it. Run
 * from the sources (tsx: this file is a `.ts`), it is transpiled once with esbuild, a development
 * dependency (tried again on the next request if that failed). The compiled module is served
 * without its source map comment (the map is not served).
 *
 * The page runs under a strict Content-Security-Policy: its own scripts, styles and API only, no
 * inline script or style, no framing.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';

const PAGE_DIR = new URL('./page/', import.meta.url);
const FROM_SOURCES = import.meta.url.endsWith('.ts');

export const DASHBOARD_CSP = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
  "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
].join('; ');

interface Asset {
  type: string;
  body: () => Promise<string | Buffer>;
}

/** `make()` once it succeeds; a failure is not kept (the next call tries again). */
const once = <T>(make: () => Promise<T>): () => Promise<T> => {
  let p: Promise<T> | null = null;
  return () => (p ??= make().catch((err: unknown) => { p = null; throw err; }));
};

/**
 * The compiled module without its `//# sourceMappingURL=` line: tsc writes one (tsconfig.build.json
 * has sourceMap for the server's stack traces), but the map and the sources it names are not
 * served, and a browser's developer tools would ask for them.
 */
export function withoutSourceMap(js: string): string {
  return js.replace(/\n\/\/# sourceMappingURL=[^\n]*\s*$/, '\n');
}

function pageFile(name: string): Buffer {
  const url = new URL(name, PAGE_DIR);
  try {
    return readFileSync(url);
  } catch (err) {
    throw new Error(`the dashboard's ${fileURLToPath(url)} is missing (npm run build copies it): ${(err as Error).message}`, { cause: err });
  }
}

function dashboardScript(): Asset['body'] {
  if (!FROM_SOURCES) {
    const js = withoutSourceMap(pageFile('dashboard.js').toString('utf8'));
    return async () => js;
  }
  const ts = pageFile('dashboard.ts').toString('utf8');
  return once(async () => {
    const { transform } = await import('esbuild');
    return (await transform(ts, { loader: 'ts', format: 'esm', target: 'es2022' })).code;
  });
}

export function registerDashboardPage(app: FastifyInstance): void {
  const require = createRequire(import.meta.url);
  const fixed = (b: Buffer): Asset['body'] => async () => b;
  const assets: Record<string, Asset> = {
    '/admin/dashboard.js': { type: 'text/javascript; charset=utf-8', body: dashboardScript() },
    '/admin/dashboard.css': { type: 'text/css; charset=utf-8', body: fixed(pageFile('dashboard.css')) },
    '/admin/assets/uPlot.iife.min.js': { type: 'text/javascript; charset=utf-8', body: fixed(readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'))) },
    '/admin/assets/uPlot.min.css': { type: 'text/css; charset=utf-8', body: fixed(readFileSync(require.resolve('uplot/dist/uPlot.min.css'))) },
  };
  const html = pageFile('index.html');

  const common = (reply: FastifyReply): FastifyReply => reply
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    // Small files that change with each release: revalidated, never stale.
    .header('cache-control', 'no-cache');

  const page = async (_req: unknown, reply: FastifyReply) => common(reply).type('text/html; charset=utf-8').send(html);
  app.get('/admin', page);
  app.get('/admin/', page);
  for (const [path, asset] of Object.entries(assets)) {
    app.get(path, async (_req, reply) => common(reply).type(asset.type).send(await asset.body()));
  }
}
