#!/usr/bin/env bash
# Imports 1,000,000 stock records into an empty SQLite database with `stockroom import`, then
# the same file again (nothing to change), then verifies; prints the time of each.
#
#   bench/import.sh                     # 1,000,000 records
#   IMPORT_RECORDS=200000 bench/import.sh
#
# Settings (environment): IMPORT_RECORDS (default 1000000), SKIP_BUILD=1 (use
# target/release/stockroom as it is), STOCKROOM_BIN (another binary).
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${IMPORT_RECORDS:-1000000}
if [[ -z "${STOCKROOM_BIN:-}" ]]; then
  [[ -n "${SKIP_BUILD:-}" ]] || cargo build --release -q -p stockroom
  STOCKROOM_BIN="$PWD/target/release/stockroom"
fi
TMP="$(mktemp -d "${TMPDIR:-/tmp}/stockroom-import.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
DB="sqlite://$TMP/import.db"

# Levels as a shop's ERP would send them: every product at no location, one in 20 at 0.
python3 - "$RECORDS" "$TMP/levels.jsonl" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n):
        total = 0 if i % 20 == 0 else (i * 7919) % 5000 + 1
        f.write('{"product_id":"sku-%07d","location":"","total":%d}\n' % (i, total))
PY
echo "file: $RECORDS records, $(du -h "$TMP/levels.jsonl" | cut -f1)"

timed() {
  local start=$EPOCHREALTIME
  "$@"
  awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "  %.1f s\n", b - a }'
}
echo "first import (empty database):"
timed "$STOCKROOM_BIN" import "$TMP/levels.jsonl" --database-url "$DB"
echo "second import (same file):"
timed "$STOCKROOM_BIN" import "$TMP/levels.jsonl" --database-url "$DB"
echo "verify:"
timed "$STOCKROOM_BIN" verify --database-url "$DB"
echo "export:"
timed "$STOCKROOM_BIN" export --database-url "$DB" --output "$TMP/out.jsonl"
echo "database: $(du -h "$TMP/import.db" | cut -f1)"
