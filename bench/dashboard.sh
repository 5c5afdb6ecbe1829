#!/usr/bin/env bash
# Times every dashboard page with 100,000 products in a SQLite database: seeds the products
# (stock through `stockroom import` while the server runs, a catalog record each, a product with
# a long history, paid orders), signs in, then fetches each page once (first) and BENCH_RUNS times
# more, and prints the first, median and slowest answer of each.
#
#   bench/dashboard.sh
#   BENCH_PRODUCTS=20000 BENCH_RUNS=10 bench/dashboard.sh
#
# Settings (environment): BENCH_PRODUCTS (default 100000), BENCH_RUNS (default 20),
# SKIP_BUILD=1 (use target/release/stockroom as it is), STOCKROOM_BIN (another binary),
# BENCH_KEEP=1 (keep the database and print where).
# Exit status 1 if a page failed or a median exceeded 50 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
PRODUCTS=${BENCH_PRODUCTS:-100000}
RUNS=${BENCH_RUNS:-20}
if [[ -z "${STOCKROOM_BIN:-}" ]]; then
  [[ -n "${SKIP_BUILD:-}" ]] || cargo build --release -q -p stockroom
  STOCKROOM_BIN="$PWD/target/release/stockroom"
fi
TMP="$(mktemp -d "${TMPDIR:-/tmp}/stockroom-dashboard.XXXXXX")"
SERVER_PID=""
cleanup() {
  [[ -z "$SERVER_PID" ]] || { kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; }
  if [[ -n "${BENCH_KEEP:-}" ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
DB="sqlite://$TMP/dash.db"
export STOCKROOM_CLIENT_ID=bench-admin STOCKROOM_CLIENT_SECRET="bench-$$-$RANDOM"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
STOCKROOM_LOG=warn "$STOCKROOM_BIN" serve --listen "127.0.0.1:$PORT" --database-url "$DB" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "$BASE/health" && break; sleep 0.1; done

TOKEN=$(curl -sf -d "grant_type=client_credentials&client_id=$STOCKROOM_CLIENT_ID&client_secret=$STOCKROOM_CLIENT_SECRET" \
  "$BASE/oauth/access_token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
api() { curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }
for i in 1 2 3 4; do
  api -d "{\"data\":{\"type\":\"inventory_location\",\"attributes\":{\"name\":\"Warehouse $i\",\"slug\":\"wh-$i\"}}}" \
    "$BASE/v2/inventories/locations"
done

echo "seeding $PRODUCTS products ..."
# Stock: every product at no location, one in five also at a warehouse; levels spread so that
# some are out of stock and some low. The catalog (name, SKU, price) goes straight into its
# table: it has no history and no invariant beyond its own row.
python3 - "$PRODUCTS" "$TMP" <<'PY'
import sqlite3, sys, time
n, tmp = int(sys.argv[1]), sys.argv[2]
with open(f"{tmp}/levels.jsonl", "w") as f:
    for i in range(n):
        f.write('{"product_id":"prod-%06d","total":%d}\n' % (i, (i * 7919) % 400))
        if i % 5 == 0:
            f.write('{"product_id":"prod-%06d","location":"wh-%d","total":%d}\n' % (i, i % 4 + 1, (i * 31) % 90))
now = int(time.time() * 1e6)
db = sqlite3.connect(f"{tmp}/dash.db", timeout=30)
db.executemany(
    "INSERT INTO products (id, sku, name, price_amount, currency, includes_tax, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, 'GBP', 0, ?, ?)",
    (("prod-%06d" % i, "SKU-%06d" % i, "Widget %d %s" % (i, ["red", "blue", "green", "oak"][i % 4]),
      100 + i % 5000, now, now) for i in range(n)))
db.commit()
PY
"$STOCKROOM_BIN" import "$TMP/levels.jsonl" --database-url "$DB" >/dev/null
# A product with a long history (2,000 entries) and 200 paid orders.
seq 1 1000 | xargs -P 8 -I{} curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" \
  -d '{"data":{"type":"stock-transaction","action":"increment","quantity":3,"reason":"delivery"}}' \
  "$BASE/v2/inventories/prod-000001/transactions"
seq 1 1000 | xargs -P 8 -I{} curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" \
  -d '{"data":{"type":"stock-transaction","action":"decrement","quantity":1,"reason":"sold in shop"}}' \
  "$BASE/v2/inventories/prod-000001/transactions"
order() {
  local cart="bench-cart-$1" id
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" \
    -d '{"data":{"type":"cart_item","id":"prod-000001","quantity":1}}' "$BASE/v2/carts/$cart/items"
  id=$(curl -sf -H "Authorization: Bearer $TOKEN" \
    -d '{"data":{"customer":{"email":"a@example.com"},"billing_address":{"line_1":"1 Street"}}}' \
    "$BASE/v2/carts/$cart/checkout" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])')
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" \
    -d '{"data":{"gateway":"manual","method":"purchase"}}' "$BASE/v2/orders/$id/payments"
  echo "$id"
}
export -f order; export TOKEN BASE
seq 1 200 | xargs -P 8 -I{} bash -c 'order {}' >"$TMP/orders.txt"
ORDER=$(head -n1 "$TMP/orders.txt")
# Seeding wrote ~100 MB of WAL at once; a running server checkpoints as it goes, so time the
# pages as a settled database serves them.
python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1], timeout=30).execute("PRAGMA wal_checkpoint(TRUNCATE)")' "$TMP/dash.db"

# Sign in as a browser does.
CSRF=$(curl -sf -c "$TMP/jar" "$BASE/dashboard/sign-in" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p')
curl -sf -o /dev/null -b "$TMP/jar" -c "$TMP/jar" \
  --data-urlencode "csrf=$CSRF" --data-urlencode "client_id=$STOCKROOM_CLIENT_ID" \
  --data-urlencode "client_secret=$STOCKROOM_CLIENT_SECRET" "$BASE/dashboard/sign-in"

printf '\n%-44s %10s %10s %10s\n' "page ($PRODUCTS products, $RUNS runs)" "first" "median" "slowest"
status=0
page() {
  local name=$1 path=$2 times code first
  read -r code first < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -b "$TMP/jar" "$BASE$path")
  if [[ "$code" != 200 ]]; then echo "$name: HTTP $code" >&2; status=1; return; fi
  first=$(awk -v t="$first" 'BEGIN { printf "%.1f", t * 1000 }')
  times=$(for _ in $(seq 1 "$RUNS"); do curl -s -o /dev/null -w '%{time_total}\n' -b "$TMP/jar" "$BASE$path"; done | sort -n)
  local median slowest
  median=$(awk '{ a[NR] = $1 } END { printf "%.1f", a[int((NR + 1) / 2)] * 1000 }' <<<"$times")
  slowest=$(tail -n1 <<<"$times" | awk '{ printf "%.1f", $1 * 1000 }')
  printf '%-44s %7s ms %7s ms %7s ms\n' "$name" "$first" "$median" "$slowest"
  awk -v m="$median" 'BEGIN { exit !(m > 50) }' && status=1
  return 0
}
page "stock, first page" "/dashboard/stock"
page "stock, page after prod-090000" "/dashboard/stock?after=prod-090000"
page "stock, search by name (Widget 4242)" "/dashboard/stock?q=Widget+4242"
page "stock, search by SKU (SKU-07777)" "/dashboard/stock?q=SKU-07777"
page "stock, search matching nothing" "/dashboard/stock?q=no-such-thing"
page "stock, low (<= 10 available)" "/dashboard/stock?level=low&low=10"
page "stock, out of stock" "/dashboard/stock?level=out"
page "stock, at location wh-2" "/dashboard/stock?location=wh-2"
page "product, 2,000-entry history and chart" "/dashboard/products/prod-000001"
page "product, history filtered by action" "/dashboard/products/prod-000001?action=decrement&page=3"
page "product, ordinary" "/dashboard/products/prod-054321"
page "orders" "/dashboard/orders"
page "orders, paid and unfulfilled" "/dashboard/orders?payment=paid&shipping=unfulfilled"
page "order" "/dashboard/orders/$ORDER"
page "locations" "/dashboard/locations"
page "status" "/dashboard/status"
exit $status
