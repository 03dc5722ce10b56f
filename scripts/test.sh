#!/usr/bin/env bash
# README command two: every test. Starts the local stack (moto server + SMTP sink, pinned, in a
# project-local venv) itself, then runs unit, adapter and end-to-end tests, the scripted
# reliability scenarios (which print their figures), and the deployment template lint.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/local-stack.sh start
eval "$(scripts/local-stack.sh env)"

# The scenarios that print figures run on their own, with their output shown.
figures=(hostile_input reliability_crash reliability_faults secrets)
# Measurements that take minutes and several processes run from their own scripts, not here:
# fleet_quota (scripts/fleet.sh, figures in docs/performance.md).
measurements=(fleet_quota)
others=()
for f in tests/*.rs; do
  name=$(basename "$f" .rs)
  [[ " ${figures[*]} ${measurements[*]} " == *" $name "* ]] || others+=(--test "$name")
done

# The tests that need the local stack are #[ignore = "needs the local stack: scripts/test.sh"],
# so a plain `cargo test` reports them as ignored instead of passing them untested; here the
# stack is up, and they run.
echo "== unit, adapter and end-to-end tests" >&2
cargo test --no-fail-fast --lib --bins "${others[@]}" -- --include-ignored 2>&1
echo "== reliability and hostile-input scenarios (figures below)" >&2
fig_args=()
for name in "${figures[@]}"; do fig_args+=(--test "$name"); done
cargo test --no-fail-fast "${fig_args[@]}" -- --include-ignored --nocapture --test-threads=1 2>&1
# Benches are built (so they cannot rot) but not run here: they print figures, see docs/performance.md.
cargo build --benches --quiet
echo "== cfn-lint deploy/cloudformation.yaml" >&2
"${INVITE_STACK_VENV:-.venv-stack}/bin/cfn-lint" deploy/cloudformation.yaml
echo "== all tests passed" >&2
