#!/usr/bin/env bash
# Venue creation benchmark: a 50,000-seat venue created over REST by JSON
# and by CSV against a fresh release server, ROUNDS times each (default 5),
# with the body sizes and every round's wall time (curl's, from the first
# byte sent to the last received), then the median of each.
#
#   loadtest/run-venue.sh [--mode embedded|redis-kafka] [SEATS]
#
# Target: under 2 s per creation. Environment as lib.sh says, plus ROUNDS.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
qt_init qt-venue 18084 "$@"
SEATS="${ARGS[0]:-50000}"
ROUNDS="${ROUNDS:-5}"

if qt_distributed; then
    qt_redis
    qt_postgres
    qt_kafka_mock qt.seat-diffs qt.coupon-claims qt.order-events
    qt_pg_sandbox
    MODE_ARGS=(--database-url "$PG_URL" --redis-url "$REDIS_URL" --redis-prefix "$PREFIX" --kafka-brokers "$BROKERS"
        --kafka-topic qt.seat-diffs --kafka-coupon-topic qt.coupon-claims --kafka-order-topic qt.order-events
        --kafka-partitions 0 --pg-base-url "$PG_BASE_URL" --demo true)
fi
qt_start_server
TOKEN="$("$SERVER_BIN" token --role seller --sub bench --seller bench --data-dir "$DATA")"

# The bodies: SEATS seats in sections of 25 rows of 100.
CSV="$DATA/venue.csv"
JSON="$DATA/venue.json"
awk -v n="$SEATS" 'BEGIN { print "section,row,number,x,y";
    for (i = 0; i < n; i++) printf "S%d,%d,%d,%d,%d\n", int(i / 2500), int(i % 2500 / 100), i % 100, i % 100, int(i / 100) }' >"$CSV"
awk -v n="$SEATS" 'BEGIN { printf "{\"name\":\"Bench arena\",\"seats\":[";
    for (i = 0; i < n; i++) printf "%s{\"section\":\"S%d\",\"row\":\"%d\",\"number\":%d,\"x\":%d,\"y\":%d}",
        (i ? "," : ""), int(i / 2500), int(i % 2500 / 100), i % 100, i % 100, int(i / 100); print "]}" }' >"$JSON"
echo "bodies: CSV $(wc -c <"$CSV") bytes, JSON $(wc -c <"$JSON") bytes, $SEATS seats" >&2

post() { # post KIND ROUND: prints the seconds one creation took
    local kind="$1" round="$2" type file query=""
    if [[ "$kind" == csv ]]; then type=text/csv file="$CSV" query="?id=bench-csv-$round&name=Bench"; else
        type=application/json file="$JSON"; fi
    local out code
    out="$(curl -sS -o "$DATA/reply.json" -w '%{http_code} %{time_total}' -X POST \
        -H "authorization: Bearer $TOKEN" -H "content-type: $type" --data-binary "@$file" \
        "http://127.0.0.1:$PORT/api/v1/seller/venues$query")"
    code="${out%% *}"
    if [[ "$code" != 201 ]]; then echo "$kind round $round answered $code: $(head -c 300 "$DATA/reply.json")" >&2; return 1; fi
    echo "${out#* }"
}

status=0
for kind in json csv; do
    times=()
    for round in $(seq 1 "$ROUNDS"); do
        t="$(post "$kind" "$round")" || { status=1; break; }
        times+=("$t")
    done
    if [[ "${#times[@]}" -ne "$ROUNDS" ]]; then
        echo "[MISS] $MODE $kind: only ${#times[@]} of $ROUNDS rounds created the venue"
        continue
    fi
    median="$(printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')"
    verdict="$(awk -v m="$median" 'BEGIN { print (m < 2) ? "PASS" : "MISS" }')"
    echo "[$verdict] $MODE $kind: $SEATS seats, median ${median} s over ${#times[@]} rounds (${times[*]}) (goal < 2 s)"
done
qt_finish "$status"
