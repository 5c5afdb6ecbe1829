#!/usr/bin/env bash
# The dashboard in a real headless Chromium: starts a Stockroom server on a free loopback port
# with a throw-away SQLite database, an administrator and a shopper credential, and drives
# /dashboard with playwright-core (dashboard.test.mjs) through Debian's chromium.
#
# Usage: tests/browser/run.sh                 (builds target/debug/stockroom first)
#        STOCKROOM_BIN=path/to/stockroom tests/browser/run.sh
#        SCREENSHOT_DIR=docs/screenshots tests/browser/run.sh   (also refreshes the screenshots)
# Needs node (20+) and /usr/bin/chromium (.ci/run installs the chromium package when missing).
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DIR/../.." && pwd)"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
  echo "chromium not found at $CHROMIUM (apt-get install chromium)" >&2
  exit 1
fi

(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

if [[ -z "${STOCKROOM_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build -q -p stockroom)
  STOCKROOM_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/stockroom"
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/stockroom-browser.XXXXXX")"
SERVER_PID=""
cleanup() {
  local status=$?
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -s "$TMP/server.log" ]]; then
    echo "--- stockroom server log (last 40 lines) ---" >&2
    tail -n 40 "$TMP/server.log" >&2 || true
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

DB="sqlite://$TMP/browser.db"
export STOCKROOM_CLIENT_ID="browser-admin"
export STOCKROOM_CLIENT_SECRET="browser-secret-$(date +%s)-$$"
# The shopper credential, made in the same database before the server starts.
SHOPPER="$("$STOCKROOM_BIN" keys create --name browser-shopper --role shopper --database-url "$DB")"
export STOCKROOM_SHOPPER_ID="$(sed -n 's/^client_id: *//p' <<<"$SHOPPER")"
export STOCKROOM_SHOPPER_SECRET="$(sed -n 's/^client_secret: *//p' <<<"$SHOPPER")"

READY=""
for attempt in 1 2 3; do
  PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  STOCKROOM_LOG="${STOCKROOM_LOG:-warn}" "$STOCKROOM_BIN" serve --listen "127.0.0.1:$PORT" \
    --database-url "$DB" >"$TMP/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    if curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/health"; then
      READY=1
      break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  [[ -n "$READY" ]] && break
  echo "stockroom did not become ready on port $PORT (attempt $attempt)" >&2
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
done
[[ -n "$READY" ]] || { echo "stockroom server failed to start" >&2; exit 1; }

export STOCKROOM_URL="http://127.0.0.1:$PORT"
export CHROMIUM
if [[ -n "${SCREENSHOT_DIR:-}" ]]; then
  mkdir -p "$SCREENSHOT_DIR"
  SCREENSHOT_DIR="$(cd "$SCREENSHOT_DIR" && pwd)"
  export SCREENSHOT_DIR
fi
cd "$DIR"
node --test --test-concurrency=1 dashboard.test.mjs
