#!/usr/bin/env bash
# Runs the coupon-claim storm against a fresh release server on loopback and
# stops everything it started afterwards, whatever happens.
#
#   loadtest/run-claims.sh [--mode embedded|redis-kafka] [qt-load claims flags...]
#
#   loadtest/run-claims.sh                                   # stock 300, 2,000 buyers, 5,000 claims
#   loadtest/run-claims.sh --stock 1000000 --claims 50000 --buyers 15000
#   loadtest/run-claims.sh --mode redis-kafka
#
# embedded:    coupons in the server's SQLite file (DATA_DIR/queueticket.db),
#              which the audit reads (read only).
# redis-kafka: a fresh Postgres database on $PG_ADMIN_URL's server (default
#              postgres://postgres@127.0.0.1:5432/postgres), dropped
#              afterwards; the Redis at $REDIS_URL (default
#              redis://127.0.0.1:6379) under a fresh random key prefix, whose
#              keys are deleted afterwards; Kafka: with no broker installed,
#              `qt-load kafka-mock` (librdkafka's mock cluster on loopback)
#              with the seat-diff and coupon-claim topics. The audit reads
#              Postgres and Redis.
#
# Builds (unless NO_BUILD=1) into $CARGO_TARGET_DIR (default: the workspace's
# target/), starts `queueticket` on a fresh data directory at
# 127.0.0.1:$PORT (default 18082) with the per-address upgrade and connection
# limits lifted and --ws-msgs-per-s 1000 (plus $SERVER_ARGS; SERVER_BIN=path
# runs another server build), and writes reports to loadtest/reports/. The
# data directory (server.log, kafka-mock.log) is removed afterwards unless
# KEEP_DATA=1. The server's pid is in $DATA/server.pid while it runs (for
# `perf record -g -p`).
set -euo pipefail

MODE=embedded
if [[ "${1:-}" == "--mode" ]]; then
    MODE="${2:?--mode needs embedded or redis-kafka}"
    shift 2
fi
case "$MODE" in embedded | redis-kafka) ;; *) echo "unknown --mode $MODE (embedded or redis-kafka)" >&2; exit 2 ;; esac
PORT="${PORT:-18082}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

if [[ "${NO_BUILD:-0}" != 1 ]]; then
    cargo build --release -p queueticket -p queueticket-loadtest
fi
BIN="$CARGO_TARGET_DIR/release"
SERVER_BIN="${SERVER_BIN:-$BIN/queueticket}"

DATA="$(mktemp -d /tmp/qt-claims-XXXXXX)"
SERVER=""
MOCK=""
PREFIX=""
PGDB=""
cleanup() {
    if [[ -n "$SERVER" ]]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    if [[ -n "$MOCK" ]]; then
        exec 3>&- || true # its stdin closes: it stops
        for _ in $(seq 1 50); do kill -0 "$MOCK" 2>/dev/null || break; sleep 0.1; done
        kill "$MOCK" 2>/dev/null || true
        wait "$MOCK" 2>/dev/null || true
    fi
    if [[ -n "$PREFIX" ]]; then
        # Only this run's keys: the prefix is fresh and random.
        redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX:*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null || true
        left="$(redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX:*" | wc -l)"
        echo "redis: deleted the keys of prefix $PREFIX ($left left)" >&2
    fi
    if [[ -n "$PGDB" ]]; then
        if [[ "${KEEP_DATA:-0}" == 1 ]]; then
            echo "postgres database kept: $PGDB" >&2
        else
            psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null || true
            echo "postgres: dropped $PGDB" >&2
        fi
    fi
    if [[ "${KEEP_DATA:-0}" == 1 ]]; then echo "server data and logs: $DATA" >&2; else rm -rf "$DATA"; fi
}
trap cleanup EXIT

MODE_ARGS=()
AUDIT_ARGS=(--db "sqlite://$DATA/queueticket.db")
if [[ "$MODE" == redis-kafka ]]; then
    redis-cli -u "$REDIS_URL" ping >/dev/null || { echo "no Redis at $REDIS_URL" >&2; exit 1; }
    PREFIX="qtload-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    name="qtload_$(date +%s)_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $name" >/dev/null || { echo "cannot create a database at $PG_ADMIN_URL" >&2; exit 1; }
    PGDB="$name"
    PG_URL="${PG_ADMIN_URL%/*}/$PGDB"
    mkfifo "$DATA/mock.in"
    exec 3<>"$DATA/mock.in"
    "$BIN/qt-load" kafka-mock --topic qt.seat-diffs --topic qt.coupon-claims --partitions 6 \
        <"$DATA/mock.in" >"$DATA/mock.out" 2>"$DATA/kafka-mock.log" 3>&- &
    MOCK=$!
    BROKERS=""
    for _ in $(seq 1 100); do
        BROKERS="$(head -n1 "$DATA/mock.out" 2>/dev/null || true)"
        [[ -n "$BROKERS" ]] && break
        kill -0 "$MOCK" 2>/dev/null || { cat "$DATA/kafka-mock.log" >&2; exit 1; }
        sleep 0.1
    done
    [[ -n "$BROKERS" ]] || { echo "kafka-mock printed no bootstrap servers" >&2; exit 1; }
    echo "kafka-mock at $BROKERS; redis prefix $PREFIX; postgres database $PGDB" >&2
    MODE_ARGS=(--database-url "$PG_URL" --redis-url "$REDIS_URL" --redis-prefix "$PREFIX" --kafka-brokers "$BROKERS"
        --kafka-topic qt.seat-diffs --kafka-coupon-topic qt.coupon-claims --kafka-partitions 0 --demo true)
    AUDIT_ARGS=(--db "$PG_URL" --redis-url "$REDIS_URL" --redis-prefix "$PREFIX")
fi

echo "mode $MODE; ulimit -n: $(ulimit -n)" >&2
"$SERVER_BIN" --listen "127.0.0.1:$PORT" --data-dir "$DATA" \
    --ws-upgrades-per-min 10000000 --max-connections-per-ip 0 --ws-msgs-per-s 1000 \
    "${MODE_ARGS[@]}" ${SERVER_ARGS:-} >"$DATA/server.log" 2>&1 3>&- &
SERVER=$!
echo "$SERVER" >"$DATA/server.pid"

for _ in $(seq 1 300); do
    if [[ -s "$DATA/jwt.secret" ]] && (exec 4<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    kill -0 "$SERVER" 2>/dev/null || { tail -20 "$DATA/server.log" >&2; exit 1; }
    sleep 0.1
done
echo "server pid $SERVER ($DATA/server.pid)" >&2

status=0
"$BIN/qt-load" claims --url "http://127.0.0.1:$PORT" --secret-file "$DATA/jwt.secret" --label "$MODE" \
    "${AUDIT_ARGS[@]}" "$@" 3>&- || status=$?
# A server that died during the run is a finding, not a detail.
if ! kill -0 "$SERVER" 2>/dev/null; then
    echo "the server is gone; the end of its log:" >&2
    tail -30 "$DATA/server.log" >&2
    SERVER=""
    status=1
fi
# The log is coloured; its level follows the timestamp.
if sed 's/\x1b\[[0-9;]*m//g' "$DATA/server.log" | grep -qE '^[^ ]+ +(ERROR|WARN) '; then
    echo "server warnings and errors (first 20):" >&2
    sed 's/\x1b\[[0-9;]*m//g' "$DATA/server.log" | grep -E '^[^ ]+ +(ERROR|WARN) ' | head -20 >&2
fi
exit "$status"
