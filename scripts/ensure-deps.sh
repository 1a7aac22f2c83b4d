#!/usr/bin/env bash
# Installs what Parley needs on a Debian machine with Node 20+: npm packages (from the lock file)
# and redis-server (and, with --bench, mosquitto) through apt when missing. Idempotent and quiet
# when everything is there already.
set -euo pipefail
cd "$(dirname "$0")/.."

# --bench also installs mosquitto (the reference broker); --test also installs chromium (the
# browser tests drive Debian's Chromium with playwright-core: no browser download).
want_bench=0
want_test=0
for arg in "$@"; do
  case "$arg" in
    --bench) want_bench=1 ;;
    --test) want_test=1 ;;
  esac
done

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "parley: Node.js 20 or newer is required (found $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "parley: '$1' is missing and this machine has no apt-get; install $1 and retry" >&2
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "parley: '$1' is missing; run as root so it can be installed with apt-get, or install it yourself (apt-get install $*)" >&2
    exit 1
  fi
  echo "parley: installing $* with apt-get ..."
  # Ask apt for the list only once per run.
  if [ -z "${PARLEY_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    export PARLEY_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v redis-server >/dev/null 2>&1 || apt_install redis-server
if [ "$want_bench" = 1 ]; then
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || apt_install mosquitto
fi
if [ "$want_test" = 1 ]; then
  [ -x /usr/bin/chromium ] || apt_install chromium
fi

# npm packages: (re)install when node_modules is missing or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "parley: installing npm packages (better-sqlite3 may compile for ~2 minutes) ..."
  npm ci --no-audit --no-fund --loglevel=error
fi
