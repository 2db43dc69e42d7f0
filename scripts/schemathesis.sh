#!/usr/bin/env bash
# Property-based tests of the REST API from its own OpenAPI document:
# schemathesis (from PyPI, kept in .venv-schemathesis/) against the debug
# embedded server on a free port with a fresh data directory, as a guest
# buyer and as the demo seller. Fails on any 5xx, and on any response whose
# status or body the document does not describe.
#
#   scripts/schemathesis.sh               test target/debug/queueticket
#   QT_BIN=path scripts/schemathesis.sh   test that binary instead
#   ST_EXAMPLES=N                         cases per operation (default 100)
#   ST_EXTRA='--report har …'             more `schemathesis run` options
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION=4.32.5
VENV="$ROOT/.venv-schemathesis"
QT_BIN="${QT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/queueticket}"
case "$QT_BIN" in /*) ;; *) QT_BIN="$ROOT/$QT_BIN" ;; esac
[ -x "$QT_BIN" ] || { echo "schemathesis: no server binary at $QT_BIN (cargo build -p queueticket)" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $VERSION"; then
  echo "schemathesis: installing schemathesis $VERSION into $VENV…"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian keeps venv's pip bootstrap in a package of its own.
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi

data="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
"$QT_BIN" --listen "127.0.0.1:$port" --data-dir "$data" >"$data/server.log" 2>&1 &
server=$!
status=1
finish() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  if [ "$status" -ne 0 ] && [ -s "$data/server.log" ]; then
    echo "schemathesis: last lines of the server's log:" >&2
    tail -n 40 "$data/server.log" >&2
  fi
  rm -rf "$data"
}
trap finish EXIT

for _ in $(seq 100); do
  curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "schemathesis: the server exited during start-up" >&2; exit 1; }
  sleep 0.1
done
curl -fsS -o /dev/null "$base/healthz" || { echo "schemathesis: the server did not start" >&2; exit 1; }

QT_BUYER_TOKEN="$(curl -fsS -X POST "$base/api/v1/guest" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
QT_SELLER_TOKEN="$("$QT_BIN" token --role seller --sub s-1 --seller demo --data-dir "$data")"
export QT_BUYER_TOKEN QT_SELLER_TOKEN

# The fuzzing phase is bounded by the number of cases, not by time
# (--max-time would repeat it until the time is spent); `timeout` is only a
# backstop.
cd "$data"
timeout 300 "$VENV/bin/schemathesis" --config-file "$ROOT/scripts/schemathesis.toml" --no-color \
  run "$base/api/v1/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,unsupported_method \
  --phases examples,coverage,fuzzing \
  --max-examples "${ST_EXAMPLES:-100}" \
  --request-timeout 10 \
  --generation-database none ${ST_EXTRA:-}
status=0
