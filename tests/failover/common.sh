# Shared by run.sh and partition.sh: the binary, the work folder, and the clean-up that runs
# however the script ends (even if failover.py itself is killed).

ROOT="$(cd "$HERE/../.." && pwd)"

failover_cleanup() {
  local status=$?
  # The driver first, so that it starts nothing more while we clean up.
  if [[ -n "${DRIVER_PID:-}" ]] && kill -0 "$DRIVER_PID" 2>/dev/null; then
    kill -TERM "$DRIVER_PID" 2>/dev/null || true
    wait "$DRIVER_PID" 2>/dev/null || true
  fi
  # Stockroom instances failover.py started (it writes their pids here).
  for f in "$WORK"/pids/*; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f")"
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == stockroom* ]]; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  # Clusters under the work folder.
  for pidfile in "$WORK"/pg/*/postmaster.pid; do
    [[ -f "$pidfile" ]] || continue
    data="$(dirname "$pidfile")"
    if [[ "$(id -u)" == 0 ]]; then
      runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    else
      "$PG_BINDIR/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    # Still there (pg_ctl failed): the postmaster's pid is the file's first line.
    if [[ -f "$pidfile" ]]; then
      kill -KILL "$(head -n1 "$pidfile")" 2>/dev/null || true
    fi
  done
  if [[ "${FAILOVER_KEEP:-0}" == 1 ]]; then
    echo "work folder kept: $WORK" >&2
  elif [[ $status -ne 0 ]]; then
    # Keep the logs and diagnostics of a failed run, not the clusters' data.
    find "$WORK/pg" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} + 2>/dev/null || true
    echo "logs kept: $WORK (FAILOVER_KEEP=1 keeps the clusters' data too)" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}

failover_setup() {
  if ! command -v python3 >/dev/null 2>&1; then
    echo "needs python3 (3.11 or later)" >&2
    exit 1
  fi
  PG_BINDIR="${PG_BINDIR:-$(pg_config --bindir 2>/dev/null || true)}"
  if [[ ! -x "$PG_BINDIR/pg_ctl" ]]; then
    PG_BINDIR="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  fi
  if [[ ! -x "$PG_BINDIR/pg_ctl" ]]; then
    echo "PostgreSQL's server binaries (pg_ctl) not found; set PG_BINDIR" >&2
    exit 1
  fi
  export PG_BINDIR
  if [[ -z "${STOCKROOM_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release -q -p stockroom)
    STOCKROOM_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/stockroom"
  fi
  if [[ ! -x "$STOCKROOM_BIN" ]]; then
    echo "stockroom binary not found or not executable: $STOCKROOM_BIN" >&2
    exit 1
  fi
  WORK="$(mktemp -d /tmp/stockroom-failover.XXXXXX)"
  mkdir -p "$WORK/pids"
  # PostgreSQL runs as `postgres` when we are root: it must reach its folders.
  if [[ "$(id -u)" == 0 ]]; then
    chown postgres: "$WORK"
  fi
  trap failover_cleanup EXIT
  trap 'exit 130' INT TERM
}

# Runs failover.py in the background and waits for it, so that a signal to this script runs the
# clean-up at once (bash runs traps only between commands, never during a foreground one).
failover_run() {
  python3 "$HERE/failover.py" "$@" &
  DRIVER_PID=$!
  wait "$DRIVER_PID"
}
