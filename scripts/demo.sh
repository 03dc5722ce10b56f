#!/usr/bin/env bash
# README command one: on a fresh machine, start the local stack, build, bootstrap the resources,
# enqueue the sample events, run the worker until the queue is idle, and show the result:
# the invites with their statuses, the dead letters, and where to open each rendered email.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/local-stack.sh start
eval "$(scripts/local-stack.sh env)"
export INVITE_WORKER_STATE="${INVITE_WORKER_STATE:-.local/demo-bootstrap.toml}"
# Fresh demo state each run: new resource names so repeated runs show the same story.
run_id="demo-$(date +%s)"
export INVITE_WORKER__QUEUE__NAME="$run_id"
export INVITE_WORKER__TABLE__NAME="$run_id-invites"
export INVITE_WORKER__COGNITO__USER_POOL_NAME="$run_id-pool"
export INVITE_WORKER__FEEDBACK__NAME="$run_id-feedback"
export INVITE_WORKER__LOG__LEVEL="${INVITE_WORKER__LOG__LEVEL:-warn}"
rm -f "$INVITE_WORKER_STATE"
rm -rf .local/mail

echo "== building" >&2
cargo build --quiet --bin invite-worker
bin="${CARGO_TARGET_DIR:-target}/debug/invite-worker"

echo "== bootstrap" >&2
"$bin" bootstrap
echo "== enqueue examples/invites/*.json" >&2
"$bin" enqueue --no-validate examples/invites/*.json
echo "== run --until-idle" >&2
"$bin" run --until-idle
echo
echo "== invites"
"$bin" invites list
echo
# Delivery awareness: in AWS the SES configuration set publishes these to the feedback topic;
# moto does not, so scripts/ses_event.py publishes the documents SES would.
echo "== SES reports back: Max's mailbox does not exist (permanent bounce), Jane's mail arrived"
for pair in "max.mustermann@example.de bounce" "jane.doe@example.com delivery"; do
  set -- $pair
  read -r id gen < <("$bin" invites show "$1" --json | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["invite_id"], v["generation"])')
  "$INVITE_TEST_PYTHON" scripts/ses_event.py --topic-name "$INVITE_WORKER__FEEDBACK__NAME" \
    --kind "$2" --email "$1" --invite-id "$id" --generation "$gen"
done
"$bin" run --until-idle
echo
echo "== invites (after SES's feedback)"
"$bin" invites list
echo
echo "== invites show max.mustermann@example.de"
"$bin" invites show max.mustermann@example.de
echo
echo "== dead letters"
"$bin" dlq list 2>/dev/null || echo "(dlq list not available)"
echo
echo "== emails (open the file:// links in a browser)"
recipients=$("$bin" invites list --json | python3 -c 'import json,sys; print(",".join(i["email"] for i in json.load(sys.stdin)["invites"]))')
python3 scripts/export_mail.py --endpoint "$AWS_ENDPOINT_URL" --smtp-dir "" --out .local/mail --to "$recipients"
