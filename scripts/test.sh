#!/usr/bin/env bash
# `npm test`: static checks (types, lint, import cycles), the whole vitest suite (unit, contract,
# integration, browser, reliability) and the benchmarks' quick smoke run (side by side with
# Mosquitto; figures go to bench/results/, not docs/), ending with the line `N passed, N failed`.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh --test --bench || exit 1

passed=0
failed=0
check() {
  local name=$1; shift
  if "$@" >".test-results/$name.log" 2>&1; then
    echo "check $name: ok"; passed=$((passed + 1))
  else
    echo "check $name: FAILED"; tail -n 40 ".test-results/$name.log"; failed=$((failed + 1))
  fi
}
mkdir -p .test-results
check typecheck npx tsc -p .
check lint npx eslint --max-warnings 0 .
check import-cycles npx dpdm --no-warning --no-tree --exit-code circular:1 -T client-sdk/src/index.ts broker/src/index.ts services/src/main.ts

check bench-smoke node --conditions=parley-source --import tsx bench/run.ts --quick

rm -f .test-results/vitest.json
npx vitest run "$@"
vitest_rc=$?
counts=$(node -e '
  try {
    const r = require("./.test-results/vitest.json");
    const failedSuites = r.testResults.filter((t) => t.status === "failed" && t.assertionResults.length === 0).length;
    console.log(r.numPassedTests, r.numFailedTests + failedSuites);
  } catch { console.log("0 1"); }')
read -r vp vf <<<"$counts"
if [ "$vitest_rc" -ne 0 ] && [ "$vf" -eq 0 ]; then vf=1; fi
passed=$((passed + vp))
failed=$((failed + vf))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
