/**
 * Headless Chromium for the browser tests (Debian's, installed by scripts/ensure-deps.sh, driven
 * by playwright-core) and a one-file page server for a bundle: the module is imported by the page
 * and exposed as `window[name]`, with `window.ready` set once it loaded.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

export function launchChromium(): Promise<Browser> {
  // playwright gives the browser a fresh temporary profile of its own.
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/** Serves `js` as `/<name>.js` and a page that imports it into `window[name]`. */
export async function serveModule(js: string, name: string): Promise<{ url: string; close(): Promise<void> }> {
  const http: Server = createServer((req, res) => {
    if (req.url === `/${name}.js`) {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(js);
    } else {
      res.writeHead(200, { 'content-type': 'text/html' })
        .end(`<!doctype html><title>parley</title><script type="module">import * as m from "/${name}.js"; window.${name} = m; window.ready = true;</script>`);
    }
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/`,
    close: () => new Promise<void>((r) => http.close(() => r())),
  };
}
