#!/usr/bin/env bash
# Crash safety: SIGKILLs a real `stockroom serve` under mixed load, again and again, and checks
# after every restart that nothing acknowledged was lost, nothing was applied twice, pending
# payments are released, and `stockroom verify` passes (see tests/crash/crash.py).
#
# Usage: tests/crash/run.sh [crash.py options]     (builds target/release/stockroom first)
#        STOCKROOM_BIN=path/to/stockroom tests/crash/run.sh
#        CRASH_KILLS=5 tests/crash/run.sh           (the short form, for CI; default 20 kills)
# Runs on SQLite, and on PostgreSQL too when STOCKROOM_TEST_POSTGRES_URL names a server (a fresh
# schema is made there with psql, and dropped after a passing run). Exits non-zero if either fails.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
KILLS="${CRASH_KILLS:-20}"

if ! command -v python3 >/dev/null 2>&1; then
  echo "crash test needs python3 (3.11 or later)" >&2
  exit 1
fi

if [[ -z "${STOCKROOM_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p stockroom)
  STOCKROOM_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/stockroom"
fi
if [[ ! -x "$STOCKROOM_BIN" ]]; then
  echo "stockroom binary not found or not executable: $STOCKROOM_BIN" >&2
  exit 1
fi

status=0
echo "== crash test: SQLite, $KILLS kills =="
python3 "$HERE/crash.py" --bin "$STOCKROOM_BIN" --kills "$KILLS" "$@" || status=1

if [[ -n "${STOCKROOM_TEST_POSTGRES_URL:-}" ]]; then
  echo
  echo "== crash test: PostgreSQL, $KILLS kills =="
  python3 "$HERE/crash.py" --bin "$STOCKROOM_BIN" --kills "$KILLS" \
    --database-url "$STOCKROOM_TEST_POSTGRES_URL" "$@" || status=1
else
  echo
  echo "crash test on PostgreSQL skipped: STOCKROOM_TEST_POSTGRES_URL is not set"
fi
exit "$status"
