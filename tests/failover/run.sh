#!/usr/bin/env bash
# Failover: a PostgreSQL primary and a synchronous standby (two clusters made here, on their
# own ports), two `stockroom serve` instances under load; the primary crashes, the standby is
# promoted, and every acknowledged request must be there exactly once, `stockroom verify` must
# pass and both instances must serve writes again within 10 s without a restart. Then the old
# primary is rebuilt as a standby (pg_rewind) and the next round fails back. Prints how long
# writes were refused and what was answered meanwhile. See tests/failover/failover.py.
#
#   tests/failover/run.sh                          # 2 rounds (there and back), multi-host URL
#   FAILOVER_ROUNDS=1 tests/failover/run.sh        # the short form, for CI (~1 minute)
#   FAILOVER_URL_STYLE=single tests/failover/run.sh  # URL names the first primary only
#   FAILOVER_URL_STYLE=proxy tests/failover/run.sh   # a TCP proxy moved to the new primary
#   FAILOVER_SYNC=0 tests/failover/run.sh          # asynchronous standby
#   FAILOVER_KEEP=1 tests/failover/run.sh          # keep the work folder (logs, diagnostics)
#   STOCKROOM_BIN=path/to/stockroom tests/failover/run.sh   # else builds target/release
#   tests/failover/run.sh --seed 42 --workers 4    # more options: failover.py --help
#
# Needs PostgreSQL's server binaries (initdb, pg_ctl, pg_basebackup, pg_rewind; PG_BINDIR or
# pg_config finds them) and python3 (3.11); run as root (clusters then run as `postgres`) or as
# a user who may run them. Nothing is registered system-wide, and every cluster, proxy and
# process it starts is stopped on exit, failure or interrupt.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/failover/common.sh
source "$HERE/common.sh"

failover_setup
failover_run failover --bin "$STOCKROOM_BIN" --work "$WORK" \
  --rounds "${FAILOVER_ROUNDS:-2}" --url-style "${FAILOVER_URL_STYLE:-multi}" \
  --sync "${FAILOVER_SYNC:-1}" "$@"
