# Shared parts of the run scripts (run-seats.sh, run-claims.sh,
# run-checkout.sh): sourced, not run. They start a fresh release server on
# loopback (and, for `--mode redis-kafka`, what it needs) and stop all of it
# afterwards, whatever happens.
#
#   source "$(dirname "$0")/lib.sh"
#   qt_init qt-name 18082 "$@"        # --mode, build, $DATA, cleanup trap; the rest in ARGS
#   if qt_distributed; then qt_redis; qt_postgres; qt_kafka_mock TOPIC...; qt_pg_sandbox; fi
#   qt_start_server --flag ...        # plus $SERVER_ARGS; waits until it answers
#   status=0; "$BIN/qt-load" ... "${ARGS[@]}" 3>&- || status=$?
#   qt_finish "$status"               # a dead server fails; prints its warnings
#
# Environment: PORT (the server's), PG_PORT (a standalone payment sandbox's),
# REDIS_URL (default redis://127.0.0.1:6379), PG_ADMIN_URL (default
# postgres://postgres@127.0.0.1:5432/postgres), CARGO_TARGET_DIR (default:
# the workspace's target/), NO_BUILD=1 (reuse the binaries), SERVER_BIN (another
# server build), SERVER_ARGS (more server flags), PG_SANDBOX_ARGS (more
# `pg-sandbox` flags), KEEP_DATA=1 (keep the data directory with the logs, and
# the Postgres database).
#
# What it starts, it stops: the server, the payment sandbox, the Kafka
# stand-in (its stdin, fd 3, closes), this run's Redis keys (a fresh random
# prefix), this run's Postgres database, the data directory.

# qt_init NAME DEFAULT_PORT ARGS...: reads `--mode embedded|redis-kafka`
# (first), builds, makes the data directory, sets the trap. Sets MODE, PORT,
# REDIS_URL, PG_ADMIN_URL, BIN, SERVER_BIN, DATA and ARGS (the rest).
qt_init() {
    local name="$1" default_port="$2"
    shift 2
    MODE=embedded
    if [[ "${1:-}" == "--mode" ]]; then
        MODE="${2:?--mode needs embedded or redis-kafka}"
        shift 2
    fi
    case "$MODE" in embedded | redis-kafka) ;; *) echo "unknown --mode $MODE (embedded or redis-kafka)" >&2; exit 2 ;; esac
    ARGS=("$@")
    PORT="${PORT:-$default_port}"
    REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
    PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
    cd "$QT_LIB_DIR/.."
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
    if [[ "${NO_BUILD:-0}" != 1 ]]; then
        cargo build --release -p queueticket -p queueticket-loadtest
    fi
    BIN="$CARGO_TARGET_DIR/release"
    SERVER_BIN="${SERVER_BIN:-$BIN/queueticket}"
    DATA="$(mktemp -d "/tmp/$name-XXXXXX")"
    SERVER=""
    PGSB=""
    MOCK=""
    PREFIX=""
    PGDB=""
    MODE_ARGS=()
    trap qt_cleanup EXIT
}

QT_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

qt_distributed() {
    [[ "$MODE" == redis-kafka ]]
}

# Stops a child of ours by its pid (SIGTERM: it shuts down gracefully) and
# waits for it.
qt_stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

qt_cleanup() {
    if [[ -n "$SERVER" ]]; then qt_stop "$SERVER"; fi
    if [[ -n "$PGSB" ]]; then qt_stop "$PGSB"; fi
    if [[ -n "$MOCK" ]]; then
        exec 3>&- || true # its stdin closes: it stops
        for _ in $(seq 1 50); do kill -0 "$MOCK" 2>/dev/null || break; sleep 0.1; done
        kill "$MOCK" 2>/dev/null || true
        wait "$MOCK" 2>/dev/null || true
    fi
    if [[ -n "$PREFIX" ]]; then
        # Only this run's keys: the prefix is fresh and random.
        redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX:*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null || true
        local left
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

# A random hex string of N bytes.
qt_random() {
    od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}

# qt_redis: checks the Redis at $REDIS_URL; a fresh key prefix in PREFIX.
qt_redis() {
    redis-cli -u "$REDIS_URL" ping >/dev/null || { echo "no Redis at $REDIS_URL" >&2; exit 1; }
    PREFIX="qtload-$(qt_random 6)"
}

# qt_postgres: a fresh database on $PG_ADMIN_URL's server; PGDB, PG_URL.
qt_postgres() {
    local name
    name="qtload_$(date +%s)_$(qt_random 4)"
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $name" >/dev/null || { echo "cannot create a database at $PG_ADMIN_URL" >&2; exit 1; }
    PGDB="$name"
    PG_URL="${PG_ADMIN_URL%/*}/$PGDB"
}

# qt_kafka_mock TOPIC...: `qt-load kafka-mock` with these topics (6
# partitions each), fed by fd 3 so that it stops when we do; BROKERS.
qt_kafka_mock() {
    local topics=()
    for t in "$@"; do topics+=(--topic "$t"); done
    mkfifo "$DATA/mock.in"
    exec 3<>"$DATA/mock.in"
    "$BIN/qt-load" kafka-mock "${topics[@]}" --partitions 6 \
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
}

# qt_wait_listening PID PORT LOG [FILE]: until 127.0.0.1:PORT accepts (and
# FILE is written), bounded; fails with the log's end when PID dies.
qt_wait_listening() {
    local pid="$1" port="$2" log="$3" file="${4:-}"
    for _ in $(seq 1 300); do
        if { [[ -z "$file" ]] || [[ -s "$file" ]]; } && (exec 4<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; exit 1; }
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$port after 30 s; the end of $log:" >&2
    tail -20 "$log" >&2
    exit 1
}

# qt_pg_sandbox: one `queueticket pg-sandbox` for every node, on
# 127.0.0.1:$PG_PORT (default 18093) with its own data directory (plus
# $PG_SANDBOX_ARGS); PG_BASE_URL.
qt_pg_sandbox() {
    PG_PORT="${PG_PORT:-18093}"
    mkdir -p "$DATA/pg-sandbox"
    # shellcheck disable=SC2086 # PG_SANDBOX_ARGS is a list of flags
    "$SERVER_BIN" pg-sandbox --listen "127.0.0.1:$PG_PORT" --data-dir "$DATA/pg-sandbox" ${PG_SANDBOX_ARGS:-} \
        >"$DATA/pg-sandbox.log" 2>&1 3>&- &
    PGSB=$!
    qt_wait_listening "$PGSB" "$PG_PORT" "$DATA/pg-sandbox.log"
    PG_BASE_URL="http://127.0.0.1:$PG_PORT"
}

# qt_start_server FLAGS...: the server on a fresh data directory at
# 127.0.0.1:$PORT with these flags, $MODE_ARGS and $SERVER_ARGS; waits until
# it answers and has written its secret. SERVER, and $DATA/server.pid (for
# `perf record -g -p`).
qt_start_server() {
    echo "mode $MODE; ulimit -n: $(ulimit -n)" >&2
    # shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
    "$SERVER_BIN" --listen "127.0.0.1:$PORT" --data-dir "$DATA" "$@" "${MODE_ARGS[@]}" ${SERVER_ARGS:-} \
        >"$DATA/server.log" 2>&1 3>&- &
    SERVER=$!
    echo "$SERVER" >"$DATA/server.pid"
    qt_wait_listening "$SERVER" "$PORT" "$DATA/server.log" "$DATA/jwt.secret"
    echo "server pid $SERVER ($DATA/server.pid)" >&2
}

# Prints the first 20 warnings and errors of a (coloured) log.
qt_warnings() {
    local log="$1" what="$2" found
    # The log is coloured; its level follows the timestamp. Read to the end
    # (no grep -q: under pipefail an early exit fails the pipe on a large log).
    found="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^[^ ]+ +(ERROR|WARN) ' || true)"
    if [[ -n "$found" ]]; then
        echo "$what warnings and errors ($(wc -l <<<"$found") lines; the first 20):" >&2
        head -20 <<<"$found" >&2
    fi
}

# qt_finish STATUS: exits with STATUS, or 1 when the server (or the
# sandbox) died during the run (a finding, not a detail); prints their
# warnings and errors.
qt_finish() {
    local status="$1"
    if [[ -n "$SERVER" ]] && ! kill -0 "$SERVER" 2>/dev/null; then
        echo "the server is gone; the end of its log:" >&2
        tail -30 "$DATA/server.log" >&2
        SERVER=""
        status=1
    fi
    if [[ -n "$PGSB" ]] && ! kill -0 "$PGSB" 2>/dev/null; then
        echo "the payment sandbox is gone; the end of its log:" >&2
        tail -30 "$DATA/pg-sandbox.log" >&2
        PGSB=""
        status=1
    fi
    qt_warnings "$DATA/server.log" server
    if [[ -n "$PGSB" ]]; then qt_warnings "$DATA/pg-sandbox.log" "payment sandbox"; fi
    exit "$status"
}
