#!/usr/bin/env bash
# Installs (once) and starts the local stack on loopback:
#   moto server  (SQS, DynamoDB, SES v2, Cognito)  on $MOTO_PORT  (default 5055)
#   aiosmtpd     (SMTP sink, writes each mail to .stack/mail/)   on $SMTP_PORT  (default 2525)
# Usage: scripts/local-stack.sh start|stop|status|env
# The venv lives in .venv-stack/ inside the checkout; logs and pids in .stack/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${INVITE_STACK_VENV:-$root/.venv-stack}"
state="$root/.stack"
moto_port="${MOTO_PORT:-5055}"
smtp_port="${SMTP_PORT:-2525}"
mkdir -p "$state/mail"

install() {
  if [ ! -x "$venv/bin/moto_server" ] || ! cmp -s "$root/scripts/requirements-stack.txt" "$venv/.requirements"; then
    echo "local-stack: installing pinned moto/aiosmtpd into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/requirements-stack.txt"
    cp "$root/scripts/requirements-stack.txt" "$venv/.requirements"
  fi
}

up() { # port
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

wait_up() { # port name
  for _ in $(seq 1 100); do up "$1" && return 0; sleep 0.2; done
  echo "local-stack: $2 did not start on port $1; see $state/$2.log" >&2
  return 1
}

start() {
  install
  if ! up "$moto_port"; then
    nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$state/moto.log" 2>&1 &
    echo $! >"$state/moto.pid"
  fi
  if ! up "$smtp_port"; then
    nohup "$venv/bin/python" "$root/scripts/smtp_sink.py" --port "$smtp_port" --dir "$state/mail" \
      >"$state/smtp.log" 2>&1 &
    echo $! >"$state/smtp.pid"
  fi
  wait_up "$moto_port" moto
  wait_up "$smtp_port" smtp
  echo "local-stack: moto on http://127.0.0.1:$moto_port, smtp on 127.0.0.1:$smtp_port" >&2
}

stop() {
  for name in moto smtp; do
    if [ -f "$state/$name.pid" ]; then
      kill "$(cat "$state/$name.pid")" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
}

env_vars() {
  cat <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_EC2_METADATA_DISABLED=true
export INVITE_TEST_SMTP_PORT=$smtp_port
export INVITE_TEST_MAIL_DIR=$state/mail
export INVITE_TEST_PYTHON=$venv/bin/python
ENV
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) up "$moto_port" && echo "moto up" || echo "moto down"; up "$smtp_port" && echo "smtp up" || echo "smtp down" ;;
  env) env_vars ;;
  install) install ;;
  *) echo "usage: $0 start|stop|status|env|install" >&2; exit 2 ;;
esac
