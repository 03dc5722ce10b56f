#!/usr/bin/env bash
# The large versions of the reliability tests (docs/reliability.md): crash safety with 500
# invites and 15 SIGKILLs, 20% Cognito/SES faults and SIGTERM under load with 200 invites, and a
# 60-second Cognito outage; then the secrets check and the dependency audit. Prints every
# test's figures at the end. Starts the local stack itself, like scripts/test.sh.
#
# Sizes can be overridden: RELIABILITY_INVITES, RELIABILITY_KILLS, RELIABILITY_FAULT_INVITES,
# RELIABILITY_OUTAGE_SECONDS, RELIABILITY_SIGNIN_SAMPLE, RELIABILITY_SEED.
# `scripts/reliability.sh --ci` runs the CI sizes instead (the tests' defaults).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--ci" ]; then
  export RELIABILITY_INVITES="${RELIABILITY_INVITES:-500}"
  export RELIABILITY_KILLS="${RELIABILITY_KILLS:-15}"
  export RELIABILITY_FAULT_INVITES="${RELIABILITY_FAULT_INVITES:-200}"
  export RELIABILITY_OUTAGE_SECONDS="${RELIABILITY_OUTAGE_SECONDS:-60}"
fi

scripts/local-stack.sh start
eval "$(scripts/local-stack.sh env)"

out="$(mktemp -d)/reliability"
mkdir -p "$out"
echo "== building" >&2
cargo test --no-run --test reliability_crash --test reliability_faults --test secrets --quiet

status=0
for t in reliability_crash reliability_faults secrets; do
  echo "== cargo test --test $t (log: $out/$t.txt)" >&2
  # One test at a time: the figures are wall times, so the scenarios should not share the CPU.
  if ! cargo test --quiet --test "$t" -- --nocapture --test-threads=1 >"$out/$t.txt" 2>&1; then
    status=1
    echo "   FAILED: $t (see $out/$t.txt)" >&2
    grep -E "panicked at|^thread '" -A3 "$out/$t.txt" | head -20 >&2 || true
  fi
done

echo "== cargo audit (offline snapshot)" >&2
db="${RELIABILITY_ADVISORY_DB:-../shared/advisory-db}"
if command -v cargo-audit >/dev/null && [ -d "$db" ]; then
  cargo audit --db "$db" --no-fetch >"$out/audit.txt" 2>&1 || status=1
else
  echo "cargo-audit or $db not available; skipped" >"$out/audit.txt"
fi

echo
echo "######## figures ########"
for t in reliability_crash reliability_faults secrets; do
  sed -n '/^== FIGURES/,/^== END FIGURES/p' "$out/$t.txt"
done
echo "== cargo audit"
cat "$out/audit.txt"
echo
if [ "$status" -eq 0 ]; then
  echo "all reliability checks passed (logs in $out)"
else
  echo "SOME RELIABILITY CHECKS FAILED (logs in $out)"
fi
exit "$status"
