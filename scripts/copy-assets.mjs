// The part of `npm run build` that tsc does not do: the dashboard page's HTML and CSS go beside
// its compiled module (services/src/admin/page-routes.ts serves them from there). Usage:
// node scripts/copy-assets.mjs [outDir], outDir `dist` by default (relative to the repository).
import { cpSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { argv } from 'node:process';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = resolve(root, argv[2] ?? 'dist');
const page = 'services/src/admin/page';
for (const name of readdirSync(join(root, page))) {
  if (name.endsWith('.html') || name.endsWith('.css')) cpSync(join(root, page, name), join(outDir, page, name));
}
