#!/usr/bin/env bash
# `npm start`: install what is missing, then run every role in one process on embedded defaults
# (private redis-server, SQLite under ./data). Configure with PARLEY_* variables (docs/CONFIG.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
exec node --conditions=parley-source --import tsx services/src/main.ts
