#!/usr/bin/env bash
# Runs the waiting-room surge benchmark against a fresh release server on
# loopback and stops the server afterwards, whatever happens.
#
#   loadtest/run-surge.sh [SOCKETS] [extra qt-load surge flags...]
#
# Builds (unless NO_BUILD=1) into $CARGO_TARGET_DIR (default: the
# workspace's target/),
# starts `queueticket` on a fresh data directory at 127.0.0.1:$PORT (default
# 18080) with the per-address upgrade limit lifted (plus $SERVER_ARGS, e.g.
# SERVER_ARGS="--notify-tick-ms 250"), and writes reports to
# loadtest/reports/. The data directory (with server.log) is removed
# afterwards unless KEEP_DATA=1.
set -euo pipefail

SOCKETS="${1:-15000}"
shift || true
PORT="${PORT:-18080}"
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

# NO_BUILD=1 reuses the binaries already in $CARGO_TARGET_DIR (e.g. while
# the server tree is mid-edit and does not compile).
if [[ "${NO_BUILD:-0}" != 1 ]]; then
    cargo build --release -p queueticket -p queueticket-loadtest
fi
BIN="$CARGO_TARGET_DIR/release"

echo "ulimit -n: $(ulimit -n); ports: $(cat /proc/sys/net/ipv4/ip_local_port_range)" >&2
DATA="$(mktemp -d /tmp/qt-surge-XXXXXX)"
"$BIN/queueticket" --listen "127.0.0.1:$PORT" --data-dir "$DATA" \
    --ws-upgrades-per-min 10000000 --max-connections-per-ip 0 ${SERVER_ARGS:-} >"$DATA/server.log" 2>&1 &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    if [[ "${KEEP_DATA:-0}" == 1 ]]; then echo "server data and log: $DATA" >&2; else rm -rf "$DATA"; fi
}
trap cleanup EXIT

# Wait (bounded) for the server to answer and write its secret.
for _ in $(seq 1 100); do
    if [[ -s "$DATA/jwt.secret" ]] && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    sleep 0.1
done
# The server needs one descriptor per socket too.
grep 'open files' "/proc/$SERVER/limits" >&2 || true

"$BIN/qt-load" surge --url "http://127.0.0.1:$PORT" --event demo-live \
    --sockets "$SOCKETS" --secret-file "$DATA/jwt.secret" "$@"
