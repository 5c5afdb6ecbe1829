#!/usr/bin/env bash
# End-to-end SDK test: starts a real Stockroom server on a free loopback port with a throw-away
# SQLite database and drives it with @elasticpath/js-sdk and @moltin/sdk (tests/sdk/inventory.test.mjs
# for the inventory API, tests/sdk/orders.test.mjs for cart → checkout → pay → ship / cancel,
# tests/sdk/locations.test.mjs for multi-location inventory through @elasticpath/js-sdk's
# MultiLocationInventories, tests/sdk/storefront.test.mjs for carts as resources, custom items,
# customers and legacy products, tests/sdk/payments.test.mjs for gateways, voids and refunds,
# tests/sdk/orders-admin.test.mjs for the order list's filters, sort and includes and order
# updates).
#
# Usage: tests/sdk/run.sh            (builds target/debug/stockroom first)
#        STOCKROOM_BIN=path/to/stockroom tests/sdk/run.sh
# Exits with node's test status; 0 without running anything if node is not installed.
set -euo pipefail

if ! command -v node >/dev/null 2>&1; then
  echo "SDK test skipped: node not found"
  exit 0
fi

SDK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SDK_DIR/../.." && pwd)"

(cd "$SDK_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

if [[ -z "${STOCKROOM_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build -q -p stockroom)
  STOCKROOM_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/stockroom"
fi
if [[ ! -x "$STOCKROOM_BIN" ]]; then
  echo "stockroom binary not found or not executable: $STOCKROOM_BIN" >&2
  exit 1
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/stockroom-sdk.XXXXXX")"
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

# Ports the Fetch standard blocks ("bad ports"); Node's fetch refuses them.
BAD_PORTS=" 0 1 7 9 11 13 15 17 19 20 21 22 23 25 37 42 43 53 69 77 79 87 95 101 102 103 104 109 110 111 113 115 117 119 123 135 137 139 143 161 179 389 427 465 512 513 514 515 526 530 531 532 540 548 554 556 563 587 601 636 989 990 993 995 1719 1720 1723 2049 3659 4045 4190 5060 5061 6000 6566 6665 6666 6667 6668 6669 6679 6697 10080 "

# Prints a loopback TCP port that is free right now and not on the bad-ports list.
pick_port() {
  local port
  for _ in $(seq 1 50); do
    if command -v python3 >/dev/null 2>&1; then
      port="$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')"
    else
      port=$((20000 + RANDOM % 30000))
      # Something answers there: not free.
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        continue
      fi
    fi
    if [[ "$BAD_PORTS" != *" $port "* ]]; then
      echo "$port"
      return 0
    fi
  done
  echo "could not find a free port" >&2
  return 1
}

is_ready() {
  if command -v curl >/dev/null 2>&1; then
    curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$1/health"
  else
    node -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))' \
      "http://127.0.0.1:$1/health"
  fi
}

export STOCKROOM_CLIENT_ID="sdk-test-client"
export STOCKROOM_CLIENT_SECRET="sdk-test-secret-$(date +%s)-$$"

# Another process may take the port between picking it and binding it: then start again.
READY=""
for attempt in 1 2 3; do
  PORT="$(pick_port)"
  STOCKROOM_LOG="${STOCKROOM_LOG:-warn}" "$STOCKROOM_BIN" serve \
    --listen "127.0.0.1:$PORT" \
    --database-url "sqlite://$TMP/sdk.db" \
    >"$TMP/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    if is_ready "$PORT"; then
      READY=1
      break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  [[ -n "$READY" ]] && break
  echo "stockroom did not become ready on port $PORT (attempt $attempt)" >&2
  tail -n 20 "$TMP/server.log" >&2 || true
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
done
if [[ -z "$READY" ]]; then
  echo "stockroom server failed to start" >&2
  exit 1
fi

export STOCKROOM_URL="http://127.0.0.1:$PORT"
cd "$ROOT"
status=0
node --test tests/sdk/inventory.test.mjs tests/sdk/orders.test.mjs tests/sdk/locations.test.mjs tests/sdk/storefront.test.mjs tests/sdk/payments.test.mjs tests/sdk/orders-admin.test.mjs || status=$?
exit "$status"
