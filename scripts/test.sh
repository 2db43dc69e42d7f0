#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run) and the README shows it:
# format and lint checks, unit and contract tests (memory, Redis, Kafka's
# mock cluster, SQLite, Postgres), integration tests against the real
# server, schemathesis against the OpenAPI document, the web page's pure
# modules under `node --test`, and the browser tests in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

scripts/services.sh

echo "== fmt and clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
# Unit tests mostly wait on Redis, Kafka and Postgres, so four at a time on
# two cores; the integration tests' storms and socket counts keep theirs.
cargo test --workspace --locked --lib --bins -- --test-threads=4
cargo test --workspace --locked --test '*'
cargo test --workspace --locked --doc

echo "== schemathesis (REST API against its OpenAPI document)"
QT_BIN="$PWD/target/debug/queueticket" scripts/schemathesis.sh

echo "== web unit tests"
node --test web/test/

echo "== browser"
QT_BIN="$PWD/target/debug/queueticket" scripts/e2e.sh

echo "== all tests passed"
