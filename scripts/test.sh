#!/usr/bin/env bash
# README command two: every test. Starts the local stack (moto server + SMTP sink, pinned, in a
# project-local venv) itself, then runs unit, adapter and end-to-end tests and the deployment
# template lint.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/local-stack.sh start
eval "$(scripts/local-stack.sh env)"
echo "== cargo test" >&2
# Benches are built (so they cannot rot) but not run here: they print figures, see docs/performance.md.
cargo test --lib --bins --tests --examples 2>&1
cargo build --benches --quiet
if [ -f deploy/cloudformation.yaml ]; then
  echo "== cfn-lint deploy/cloudformation.yaml" >&2
  "${INVITE_STACK_VENV:-.venv-stack}/bin/cfn-lint" deploy/cloudformation.yaml
fi
