/**
 * Parley's version as node reports show it: the `version` of the repository's package.json, found
 * by walking up from this module (services/src/admin/ in the sources, dist/services/src/admin/ in
 * the image, whose package.json sits beside dist/).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function parleyVersion(): string {
  if (cached !== undefined) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'parley' && typeof pkg.version === 'string') return (cached = pkg.version);
      } catch { /* not ours: keep looking */ }
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return (cached = 'unknown');
}
