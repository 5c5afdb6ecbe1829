#!/usr/bin/env bash
# Partition: one PostgreSQL cluster made here, two `stockroom serve` instances each reaching it
# through a TCP proxy this test controls. Under load the proxies stall for 20 s — they stop
# forwarding and close nothing, as when packets are dropped — and every request must be
# answered (503) within 10 s, none may hang, and both instances must serve writes again within
# 10 s of the path coming back, by themselves; then every acknowledged request must be there
# exactly once and `stockroom verify` must pass. See tests/failover/failover.py.
#
#   tests/failover/partition.sh                        # one 20 s stall of both paths
#   tests/failover/partition.sh --stall-which one      # stall one instance's path only
#   tests/failover/partition.sh --stall 60 --rounds 2  # more options: failover.py --help
#   FAILOVER_KEEP=1 tests/failover/partition.sh        # keep the work folder (diagnostics.log)
#
# Needs what run.sh needs; cleans up the same way.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/failover/common.sh
source "$HERE/common.sh"

failover_setup
failover_run partition --bin "$STOCKROOM_BIN" --work "$WORK" \
  --rounds "${FAILOVER_ROUNDS:-1}" "$@"
