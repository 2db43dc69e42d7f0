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
#              with the seat-diff, coupon-claim and order topics; one
#              `queueticket pg-sandbox` on 127.0.0.1:$PG_PORT (default 18093)
#              as the payment gateway (a Redis-mode server needs one). The
#              audit reads Postgres and Redis.
#
# Builds (unless NO_BUILD=1) into $CARGO_TARGET_DIR (default: the workspace's
# target/), starts `queueticket` on a fresh data directory at
# 127.0.0.1:$PORT (default 18082) with the per-address upgrade and connection
# limits lifted and --ws-msgs-per-s 1000 (plus $SERVER_ARGS; SERVER_BIN=path
# runs another server build), and writes reports to loadtest/reports/. The
# data directory (server.log, kafka-mock.log) is removed afterwards unless
# KEEP_DATA=1. The server's pid is in $DATA/server.pid while it runs (for
# `perf record -g -p`). The shared start and stop are in lib.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
qt_init qt-claims 18082 "$@"

AUDIT_ARGS=(--db "sqlite://$DATA/queueticket.db")
if qt_distributed; then
    qt_redis
    qt_postgres
    qt_kafka_mock qt.seat-diffs qt.coupon-claims qt.order-events
    qt_pg_sandbox
    echo "kafka-mock at $BROKERS; redis prefix $PREFIX; postgres database $PGDB; payment sandbox $PG_BASE_URL" >&2
    MODE_ARGS=(--database-url "$PG_URL" --redis-url "$REDIS_URL" --redis-prefix "$PREFIX" --kafka-brokers "$BROKERS"
        --kafka-topic qt.seat-diffs --kafka-coupon-topic qt.coupon-claims --kafka-order-topic qt.order-events
        --kafka-partitions 0 --pg-base-url "$PG_BASE_URL" --demo true)
    AUDIT_ARGS=(--db "$PG_URL" --redis-url "$REDIS_URL" --redis-prefix "$PREFIX")
fi

qt_start_server --ws-upgrades-per-min 10000000 --max-connections-per-ip 0 --ws-msgs-per-s 1000

status=0
"$BIN/qt-load" claims --url "http://127.0.0.1:$PORT" --secret-file "$DATA/jwt.secret" --label "$MODE" \
    "${AUDIT_ARGS[@]}" "${ARGS[@]}" 3>&- || status=$?
qt_finish "$status"
