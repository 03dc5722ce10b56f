#!/usr/bin/env bash
# The fleet quota measurement (docs/performance.md, "A fleet sharing one quota"): N worker
# processes behind scripts/fault_proxy.py's account-wide AdminCreateUser quota, alone, with an
# unseen competitor, with a reserve, and with a worker killed mid-run. Prints the figures.
# Starts the local stack itself, like scripts/test.sh. Sizes: FLEET_WORKERS (3), FLEET_QUOTA (8),
# FLEET_SECONDS (30); extra arguments pick tests by name (e.g. `scripts/fleet.sh competitor`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/local-stack.sh start
eval "$(scripts/local-stack.sh env)"
log="$(mktemp -d)/fleet.txt"
status=0
# One test at a time: the figures are rates, so the scenarios should not share the CPU.
cargo test --quiet --test fleet_quota -- --ignored --nocapture --test-threads=1 "$@" >"$log" 2>&1 || status=1
sed -n '/^== FIGURES/,/^== END FIGURES/p' "$log"
grep -E "panicked at" -A2 "$log" || true
echo "(log: $log)"
exit "$status"
