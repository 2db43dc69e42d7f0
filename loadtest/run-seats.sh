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
#              cluster on loopback) stands in for one; one `queueticket
#              pg-sandbox` on 127.0.0.1:$PG_PORT (default 18093) as the
#              payment gateway (a Redis-mode server needs one). The prefix's
#              keys are deleted afterwards.
#
# Builds (unless NO_BUILD=1) into $CARGO_TARGET_DIR (default: the workspace's
# target/), starts `queueticket` on a fresh data directory at
# 127.0.0.1:$PORT (default 18081) with the per-address upgrade limit lifted
# (plus $SERVER_ARGS; SERVER_BIN=path runs another server build), and
# writes reports to loadtest/reports/. The data
# directory (server.log, kafka-mock.log) is removed afterwards unless KEEP_DATA=1.
# The shared start and stop are in lib.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
qt_init qt-seats 18081 "$@"

if qt_distributed; then
    qt_redis
    # The server also subscribes to the coupon claims with Kafka set.
    qt_kafka_mock qt.seat-diffs qt.coupon-claims qt.order-events
    qt_pg_sandbox
    echo "kafka-mock at $BROKERS; redis prefix $PREFIX; payment sandbox $PG_BASE_URL" >&2
    MODE_ARGS=(--redis-url "$REDIS_URL" --redis-prefix "$PREFIX" --kafka-brokers "$BROKERS"
        --kafka-topic qt.seat-diffs --kafka-coupon-topic qt.coupon-claims --kafka-order-topic qt.order-events
        --kafka-partitions 0
        --pg-base-url "$PG_BASE_URL" --demo true)
fi

qt_start_server --ws-upgrades-per-min 10000000 --max-connections-per-ip 0

status=0
"$BIN/qt-load" seats --url "http://127.0.0.1:$PORT" --event demo-live \
    --secret-file "$DATA/jwt.secret" --label "$MODE" "${ARGS[@]}" 3>&- || status=$?
qt_finish "$status"
