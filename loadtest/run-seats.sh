#!/usr/bin/env bash
# Runs the seat-map benchmark against a fresh release server on loopback and
# stops everything it started afterwards, whatever happens.
#
#   loadtest/run-seats.sh [--mode embedded|redis-kafka] [qt-load seats flags...]
#
#   loadtest/run-seats.sh --watchers 1000 --rate 200
#   loadtest/run-seats.sh --mode redis-kafka --watchers 10000 --rate 2000
#
# embedded:    the server keeps seats in memory and diffs on its in-process bus.
# redis-kafka: seats in the Redis at $REDIS_URL (default redis://127.0.0.1:6379)
#              under a fresh random key prefix, diffs over Kafka; with no
#              broker installed, `qt-load kafka-mock` (librdkafka's mock
#              cluster on loopback) stands in for one. The prefix's keys are
#              deleted afterwards.
#
# Builds (unless NO_BUILD=1) into $CARGO_TARGET_DIR (default: the workspace's
# target/), starts `queueticket` on a fresh data directory at
# 127.0.0.1:$PORT (default 18081) with the per-address upgrade limit lifted
# (plus $SERVER_ARGS; SERVER_BIN=path runs another server build), and
# writes reports to loadtest/reports/. The data
# directory (server.log, kafka-mock.log) is removed afterwards unless KEEP_DATA=1.
set -euo pipefail

MODE=embedded
if [[ "${1:-}" == "--mode" ]]; then
    MODE="${2:?--mode needs embedded or redis-kafka}"
    shift 2
fi
case "$MODE" in embedded | redis-kafka) ;; *) echo "unknown --mode $MODE (embedded or redis-kafka)" >&2; exit 2 ;; esac
PORT="${PORT:-18081}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

if [[ "${NO_BUILD:-0}" != 1 ]]; then
    cargo build --release -p queueticket -p queueticket-loadtest
fi
BIN="$CARGO_TARGET_DIR/release"
SERVER_BIN="${SERVER_BIN:-$BIN/queueticket}"

DATA="$(mktemp -d /tmp/qt-seats-XXXXXX)"
SERVER=""
MOCK=""
PREFIX=""
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
    if [[ "${KEEP_DATA:-0}" == 1 ]]; then echo "server data and logs: $DATA" >&2; else rm -rf "$DATA"; fi
}
trap cleanup EXIT

MODE_ARGS=()
if [[ "$MODE" == redis-kafka ]]; then
    redis-cli -u "$REDIS_URL" ping >/dev/null || { echo "no Redis at $REDIS_URL" >&2; exit 1; }
    PREFIX="qtload-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    mkfifo "$DATA/mock.in"
    exec 3<>"$DATA/mock.in"
    "$BIN/qt-load" kafka-mock --topic qt.seat-diffs --partitions 6 <"$DATA/mock.in" >"$DATA/mock.out" 2>"$DATA/kafka-mock.log" 3>&- &
    MOCK=$!
    BROKERS=""
    for _ in $(seq 1 100); do
        BROKERS="$(head -n1 "$DATA/mock.out" 2>/dev/null || true)"
        [[ -n "$BROKERS" ]] && break
        kill -0 "$MOCK" 2>/dev/null || { cat "$DATA/kafka-mock.log" >&2; exit 1; }
        sleep 0.1
    done
    [[ -n "$BROKERS" ]] || { echo "kafka-mock printed no bootstrap servers" >&2; exit 1; }
    echo "kafka-mock at $BROKERS; redis prefix $PREFIX" >&2
    MODE_ARGS=(--redis-url "$REDIS_URL" --redis-prefix "$PREFIX" --kafka-brokers "$BROKERS"
        --kafka-topic qt.seat-diffs --kafka-partitions 0 --demo true)
fi

echo "mode $MODE; ulimit -n: $(ulimit -n)" >&2
"$SERVER_BIN" --listen "127.0.0.1:$PORT" --data-dir "$DATA" \
    --ws-upgrades-per-min 10000000 --max-connections-per-ip 0 "${MODE_ARGS[@]}" ${SERVER_ARGS:-} >"$DATA/server.log" 2>&1 3>&- &
SERVER=$!

for _ in $(seq 1 150); do
    if [[ -s "$DATA/jwt.secret" ]] && (exec 4<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    kill -0 "$SERVER" 2>/dev/null || { tail -20 "$DATA/server.log" >&2; exit 1; }
    sleep 0.1
done

"$BIN/qt-load" seats --url "http://127.0.0.1:$PORT" --event demo-live \
    --secret-file "$DATA/jwt.secret" --label "$MODE" "$@" 3>&-
