#!/usr/bin/env bash
# Browser tests of the buyer page (e2e/) against the real server binary.
#
#   scripts/e2e.sh               build the debug server, then test it
#   QT_BIN=path scripts/e2e.sh   test that binary instead (no build)
#
# Installs what it needs on a fresh machine: Debian's chromium (Playwright
# never downloads a browser here) and e2e/'s locked npm packages.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
E2E="$ROOT/e2e"
CHROMIUM=/usr/bin/chromium

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x "$CHROMIUM" ]; then
  echo "e2e: installing chromium (Debian package)…"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

command -v node >/dev/null || { echo "e2e: node (>= 20) is required" >&2; exit 1; }
command -v npm >/dev/null || { echo "e2e: npm is required" >&2; exit 1; }

# Reinstall only when the lock file changed since the last install.
lock_hash="$(sha256sum "$E2E/package-lock.json" | cut -d' ' -f1)"
stamp="$E2E/node_modules/.installed-lock.sha256"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  echo "e2e: npm ci…"
  (cd "$E2E" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$lock_hash" >"$stamp"
fi

if [ -n "${QT_BIN:-}" ]; then
  [ -x "$QT_BIN" ] || { echo "e2e: QT_BIN=$QT_BIN is not an executable file" >&2; exit 1; }
  QT_BIN="$(realpath "$QT_BIN")" # the tests run from e2e/
else
  echo "e2e: cargo build -p queueticket…"
  (cd "$ROOT" && cargo build -p queueticket)
  QT_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/queueticket"
  case "$QT_BIN" in /*) ;; *) QT_BIN="$ROOT/$QT_BIN" ;; esac
fi
[ -x "$QT_BIN" ] || { echo "e2e: no server binary at $QT_BIN" >&2; exit 1; }
export QT_BIN CHROMIUM_BIN="$CHROMIUM"

cd "$E2E"
exec node --test "$@"
