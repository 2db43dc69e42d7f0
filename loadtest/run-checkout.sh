#!/usr/bin/env bash
# Runs the checkout-and-pay benchmark against a fresh release server on
# loopback and stops everything it started afterwards, whatever happens.
#
#   loadtest/run-checkout.sh [--mode embedded|redis-kafka] [qt-load checkout flags...]
#
#   loadtest/run-checkout.sh                                 # 1,500 buyers, 1-2 seats, the default mix
#   loadtest/run-checkout.sh --buyers 2000 --mix ok=95,decline=5
#   loadtest/run-checkout.sh --mode redis-kafka
#
# embedded:    orders in the server's SQLite file; payments through the
#              sandbox the server mounts at /pg-sandbox (its ledger in
#              DATA_DIR/pg-sandbox.db), whose ledger the audit reads.
# redis-kafka: a fresh Postgres database on $PG_ADMIN_URL's server (default
#              postgres://postgres@127.0.0.1:5432/postgres), dropped
#              afterwards; seats and the queue in the Redis at $REDIS_URL
#              (default redis://127.0.0.1:6379) under a fresh random key
#              prefix, deleted afterwards; Kafka: `qt-load kafka-mock` with
#              the seat-diff, coupon-claim and order topics; one `queueticket
#              pg-sandbox` on 127.0.0.1:$PG_PORT (default 18093, its own data
#              directory, plus $PG_SANDBOX_ARGS) for every node, given to the
#              server as --pg-base-url and to the audit as --pg-url.
#
# Builds (unless NO_BUILD=1) into $CARGO_TARGET_DIR (default: the workspace's
# target/), starts `queueticket` on a fresh data directory at
# 127.0.0.1:$PORT (default 18083) with the per-address upgrade and connection
# limits lifted (plus $SERVER_ARGS, e.g. SERVER_ARGS="--pg-timeout-ms 5000";
# SERVER_BIN=path runs another server build), and writes reports to
# loadtest/reports/. The data directory (server.log, pg-sandbox.log,
# kafka-mock.log) is removed afterwards unless KEEP_DATA=1. The shared start
# and stop are in lib.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
qt_init qt-checkout 18083 "$@"

AUDIT_ARGS=()
if qt_distributed; then
    qt_redis
    qt_postgres
    qt_kafka_mock qt.seat-diffs qt.coupon-claims qt.order-events
    qt_pg_sandbox
    echo "kafka-mock at $BROKERS; redis prefix $PREFIX; postgres database $PGDB; payment sandbox $PG_BASE_URL" >&2
    MODE_ARGS=(--database-url "$PG_URL" --redis-url "$REDIS_URL" --redis-prefix "$PREFIX" --kafka-brokers "$BROKERS"
        --kafka-topic qt.seat-diffs --kafka-coupon-topic qt.coupon-claims --kafka-order-topic qt.order-events
        --kafka-partitions 0 --pg-base-url "$PG_BASE_URL" --demo true)
    AUDIT_ARGS=(--pg-url "$PG_BASE_URL")
fi

qt_start_server --ws-upgrades-per-min 10000000 --max-connections-per-ip 0

status=0
"$BIN/qt-load" checkout --url "http://127.0.0.1:$PORT" --event demo-live --secret-file "$DATA/jwt.secret" \
    --label "$MODE" "${AUDIT_ARGS[@]}" "${ARGS[@]}" 3>&- || status=$?
qt_finish "$status"
