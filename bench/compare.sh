#!/usr/bin/env bash
# One-command comparison (issues 5 and 15): the naive one-transaction-per-allocation baseline,
# driven by pgbench against the local PostgreSQL, then `stockroom bench` for the hot and spread
# scenarios on SQLite and on PostgreSQL at the same client counts (1, 8 and 64), plus checkout
# on SQLite and on PostgreSQL with two instances; prints every figure, the ratios against the
# baseline and the issues' goals.
#
#   bench/compare.sh                  # about 10 s per run, ~6 minutes in all
#   BENCH_SECS=5 bench/compare.sh     # shorter runs
#
# Settings (environment):
#   BENCH_SECS         seconds per run (default 10)
#   BENCH_CLIENTS      client counts (default "1 8 64")
#   BENCH_PRODUCTS     products of Stockroom's spread scenario (default 1000)
#   NAIVE_PRODUCTS     products of the baseline's spread run (default 1000)
#   PGHOST PGPORT PGUSER PGDATABASE   the PostgreSQL server (default 127.0.0.1 5432 postgres test)
#   PGBENCH_ARGS       extra pgbench arguments, e.g. "-M prepared" (default none)
#   BENCH_OUT          folder for the raw results (default target/bench/<date-time>)
#   KEEP_SCHEMAS=1     keep the PostgreSQL schemas of the runs (default: dropped)
#   SKIP_BUILD=1       use target/release/stockroom as it is
# Exit status: 1 if a run failed or one of its correctness checks failed; the goals are reported,
# not enforced.
set -uo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECS:-10}
CLIENTS=${BENCH_CLIENTS:-"1 8 64"}
PRODUCTS=${BENCH_PRODUCTS:-1000}
NAIVE_PRODUCTS=${NAIVE_PRODUCTS:-1000}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export PGDATABASE=${PGDATABASE:-test}
OUT=${BENCH_OUT:-target/bench/$(date +%Y%m%d-%H%M%S)}
BIN=target/release/stockroom
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
failures=0

step() { printf '\n== %s ==\n' "$*" >&2; }
note() { printf '%s\n' "$*" >&2; }

command -v jq >/dev/null || { note "compare.sh needs jq (apt-get install jq)"; exit 2; }

# ---- PostgreSQL and pgbench ------------------------------------------------------------------

PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -n1)
PSQL=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n1)
have_pg=1
if [ -z "$PSQL" ]; then
  note "!! psql not found (Debian: apt-get install postgresql-client): no PostgreSQL runs"
  have_pg=0
elif ! "$PSQL" -Atqc 'select 1' >/dev/null 2>&1; then
  note "!! PostgreSQL at $PGUSER@$PGHOST:$PGPORT/$PGDATABASE does not answer: no PostgreSQL runs"
  have_pg=0
fi
have_pgbench=$have_pg
if [ "$have_pg" = 1 ] && [ -z "$PGBENCH" ]; then
  note "!! pgbench not found (Debian: apt-get install postgresql-contrib, or look in"
  note "!! /usr/lib/postgresql/*/bin): NO NAIVE BASELINE, so no ratios"
  have_pgbench=0
fi
psql_q() { PGOPTIONS="-c client_min_messages=warning" "$PSQL" -v ON_ERROR_STOP=1 -Atqc "$1"; }

declare -A NAIVE_TPS NAIVE_LAT NAIVE_P50
note "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ?)"
step "1. naive baseline (pgbench, one transaction per allocation, ${SECS} s per run, each just before Stockroom's runs of the same scenario and client count)"
if [ "$have_pgbench" = 1 ]; then
  note "pgbench: $PGBENCH ($("$PGBENCH" --version)); server: $(psql_q 'show server_version'), fsync=$(psql_q 'show fsync'), synchronous_commit=$(psql_q 'show synchronous_commit')"
  cat >"$OUT/naive-hot.sql" <<'SQL'
BEGIN;
UPDATE naive_bench.naive_stock SET allocated = allocated + 1 WHERE product_id = 1 AND total - allocated >= 1;
INSERT INTO naive_bench.naive_history (product_id, action, quantity) VALUES (1, 'allocate', 1);
END;
SQL
  cat >"$OUT/naive-spread.sql" <<SQL
\\set pid random(1, $NAIVE_PRODUCTS)
BEGIN;
UPDATE naive_bench.naive_stock SET allocated = allocated + 1 WHERE product_id = :pid AND total - allocated >= 1;
INSERT INTO naive_bench.naive_history (product_id, action, quantity) VALUES (:pid, 'allocate', 1);
END;
SQL
  naive_setup() {
    psql_q "DROP SCHEMA IF EXISTS naive_bench CASCADE;
      CREATE SCHEMA naive_bench;
      CREATE TABLE naive_bench.naive_stock (product_id int PRIMARY KEY, total bigint NOT NULL,
        allocated bigint NOT NULL DEFAULT 0, CHECK (allocated >= 0 AND allocated <= total));
      CREATE TABLE naive_bench.naive_history (id bigserial PRIMARY KEY, product_id int NOT NULL,
        action text NOT NULL, quantity bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
      INSERT INTO naive_bench.naive_stock (product_id, total)
        SELECT g, 1000000000000 FROM generate_series(1, $NAIVE_PRODUCTS) g;" >/dev/null
  }
  # naive_run SCENARIO CLIENTS: one baseline run, just before Stockroom's runs of the same
  # scenario and client count (the machine is shared: figures minutes apart are not comparable).
  naive_run() {
    local scenario=$1 c=$2 log threads logs tps lat sanity
    naive_setup
    log="$OUT/naive-$scenario-$c.log"
    threads=$((c < 2 ? c : 2))
    # One client: log every transaction's latency, for the median (pgbench prints the mean).
    logs=()
    [ "$c" = 1 ] && logs=(-l --log-prefix="$OUT/naive-$scenario-1-tx")
    # shellcheck disable=SC2086
    "$PGBENCH" -n -c "$c" -j "$threads" -T "$SECS" ${PGBENCH_ARGS:-} "${logs[@]}" \
      -f "$OUT/naive-$scenario.sql" "$PGDATABASE" >"$log" 2>&1
    if [ "$c" = 1 ]; then
      # Third column: the transaction's latency in microseconds.
      NAIVE_P50[$scenario]=$(cat "$OUT/naive-$scenario-1-tx".* 2>/dev/null | awk '{print $3}' | sort -n \
        | awk '{v[NR]=$1} END {if (NR) printf "%.3f", v[int((NR+1)/2)]/1000}')
      rm -f "$OUT/naive-$scenario-1-tx".*
    fi
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$log" | head -n1)
    [ -n "$tps" ] && tps=$(printf '%.1f' "$tps")
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$log" | head -n1)
    sanity=$(psql_q "SELECT (SELECT sum(allocated) FROM naive_bench.naive_stock) = (SELECT count(*) FROM naive_bench.naive_history)")
    NAIVE_TPS[$scenario-$c]=${tps:-}
    NAIVE_LAT[$scenario-$c]=${lat:-}
    local p50=""
    [ "$c" = 1 ] && p50=" (p50 ${NAIVE_P50[$scenario]:-?} ms)"
    note "naive $scenario, $c clients: ${tps:-FAILED (see $log)} tps, latency average ${lat:-?} ms$p50 (allocated = history: $sanity)"
  }
else
  naive_run() { :; }
  note "skipped"
fi

# ---- Stockroom ------------------------------------------------------------------------------

step "2. cargo build --release -p stockroom"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p stockroom || { note "build failed"; exit 2; }
fi
[ -x "$BIN" ] || { note "no $BIN"; exit 2; }

RUNS=()
# run NAME BACKEND SCENARIO CLIENTS INSTANCES [EXTRA BENCH ARGUMENTS...]
run() {
  local name=$1 backend=$2 scenario=$3 clients=$4 instances=$5 url="" schema=""
  local args=(bench --scenario "$scenario" --clients "$clients" --duration-secs "$SECS" --json "${@:6}")
  [ "$scenario" = spread ] && args+=(--products "$PRODUCTS")
  if [ "$backend" = postgres ]; then
    schema="bench_${name//-/_}_$$"
    psql_q "CREATE SCHEMA $schema" >/dev/null || { note "cannot create schema $schema"; return; }
    url="postgres://$PGUSER@$PGHOST:$PGPORT/$PGDATABASE?options=-c%20search_path%3D$schema"
    args+=(--database-url "$url" --instances "$instances")
  fi
  note "-- $name: $scenario, $backend, $clients clients, $instances instance(s)"
  "$BIN" "${args[@]}" >"$OUT/$name.json" 2>"$OUT/$name.log"
  local rc=$?
  if ! jq -e . "$OUT/$name.json" >/dev/null 2>&1; then
    note "   FAILED (exit $rc): $(tail -n3 "$OUT/$name.log")"
    failures=$((failures + 1))
  else
    jq -r '"   \(.throughput) ok/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, errors \(.errors), peak RSS \(.server.max_peak_rss_mb) MB, checks \(if .passed then "passed" else "FAILED" end)"' \
      "$OUT/$name.json" >&2
    [ "$rc" = 0 ] || failures=$((failures + 1))
  fi
  if [ -n "$schema" ] && [ "${KEEP_SCHEMAS:-0}" != 1 ]; then
    psql_q "DROP SCHEMA $schema CASCADE" >/dev/null 2>&1
  fi
  RUNS+=("$name")
}

step "3. stockroom bench (${SECS} s per run; results in $OUT), each after its naive run"
for scenario in hot spread; do
  for c in $CLIENTS; do
    naive_run "$scenario" "$c"
    run "sqlite-$scenario-$c" sqlite "$scenario" "$c" 1
    if [ "$have_pg" = 1 ]; then
      run "postgres-$scenario-$c" postgres "$scenario" "$c" 1
      if [ "$scenario" = hot ] && [ "$c" = 64 ]; then
        run "postgres-hot-64-x2" postgres hot 64 2
      fi
    fi
  done
done
[ "$have_pgbench" = 1 ] && psql_q "DROP SCHEMA IF EXISTS naive_bench CASCADE" >/dev/null
run "sqlite-checkout-64" sqlite checkout 64 1
# The cost of the outbox (issue 14): the hot sale with one webhook observing every stock
# transaction, right after the same run without it.
run "sqlite-hot-64-nohook" sqlite hot 64 1
run "sqlite-hot-64-webhook" sqlite hot 64 1 --webhook
if [ "$have_pg" = 1 ]; then
  run "postgres-hot-64-nohook" postgres hot 64 1
  run "postgres-hot-64-webhook" postgres hot 64 1 --webhook
fi
[ "$have_pg" = 1 ] && run "postgres-checkout-64-x2" postgres checkout 64 2

# ---- the table ------------------------------------------------------------------------------

ratio() { # ratio THROUGHPUT BASELINE: "12.34x", or "n/a" without both figures
  if [ -n "$2" ] && [ -n "$1" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; else echo "n/a"; fi
}

step "4. results (naive baseline: pgbench, one transaction per allocation)"
{
  printf '%-22s %9s %10s %9s %9s %9s %9s %8s %7s %9s %7s %6s\n' \
    run ops/s naive/s ratio p50_ms p95_ms p99_ms max_ms errors rss_MB checks load
  if [ "$have_pgbench" = 1 ]; then
    for scenario in hot spread; do
      for c in $CLIENTS; do
        p50=""
        [ "$c" = 1 ] && p50=${NAIVE_P50[$scenario]:-}
        printf '%-22s %9s %10s %9s %9s %9s %9s %8s %7s %9s %7s\n' "naive-pg-$scenario-$c" \
          "${NAIVE_TPS[$scenario-$c]:-?}" "" "" "$p50" "" "" "" "" "" "(avg ${NAIVE_LAT[$scenario-$c]:-?} ms)"
      done
    done
  fi
  for name in "${RUNS[@]}"; do
    f="$OUT/$name.json"
    if ! jq -e . "$f" >/dev/null 2>&1; then
      printf '%-22s %9s\n' "$name" "FAILED"
      continue
    fi
    scenario=$(jq -r .scenario "$f")
    clients=$(jq -r .clients "$f")
    tput=$(jq -r .throughput "$f")
    base_key="$scenario-$clients"
    [ "$scenario" = checkout ] && base_key="hot-$clients"
    base=${NAIVE_TPS[$base_key]:-}
    printf '%-22s %9s %10s %9s %9s %9s %9s %8s %7s %9s %7s %6s\n' "$name" "$tput" "${base:-n/a}" \
      "$(ratio "$tput" "$base")" \
      "$(jq -r .latency_ms.p50 "$f")" "$(jq -r .latency_ms.p95 "$f")" \
      "$(jq -r .latency_ms.p99 "$f")" "$(jq -r .latency_ms.max "$f")" \
      "$(jq -r .errors "$f")" "$(jq -r .server.max_peak_rss_mb "$f")" \
      "$(jq -r 'if .passed then "ok" else "FAIL" end' "$f")" \
      "$(jq -r '.machine.load_average_before[0] // "?"' "$f")"
  done
  echo
  echo "ops/s: successful allocations/s (checkout: paid orders/s, compared with the naive hot figure);"
  echo "latency: per request (checkout: per shopper, add to cart + checkout + pay)."
  echo "Stockroom spread: $PRODUCTS products; naive spread: $NAIVE_PRODUCTS products."
  echo "load: the machine's 1-minute load average when the run started ($(nproc) CPUs); other work skews the figures."
} | tee "$OUT/table.txt"

# ---- the goals ------------------------------------------------------------------------------

fig() { [ -f "$OUT/$1.json" ] && jq -r "$2 // empty" "$OUT/$1.json" 2>/dev/null; }
# verdict CONDITION [FIGURE...]: PASS or MISS, or "no figure" when one of the figures is missing.
verdict() {
  local cond=$1; shift
  for x in "$@"; do case $x in ""|n/a|null|"?") echo "no figure"; return;; esac; done
  if awk "BEGIN { exit !($cond) }" 2>/dev/null; then echo PASS; else echo MISS; fi
}
step "goals (issue 15)"
{
  for c in 8 64; do
    t=$(fig "postgres-spread-$c" .throughput)
    r=$(ratio "$t" "${NAIVE_TPS[spread-$c]:-}")
    goal=$([ "$c" = 8 ] && echo 1.5 || echo 3)
    echo "PostgreSQL spread, $c clients >= ${goal}x naive: $r -> $(verdict "${r%x} >= $goal" "$r")"
  done
  t=$(fig postgres-hot-64-x2 .throughput)
  r=$(ratio "$t" "${NAIVE_TPS[hot-64]:-}")
  echo "PostgreSQL hot, 64 clients, two instances >= 25x naive: $r -> $(verdict "${r%x} >= 25" "$r")"
  t=$(fig postgres-checkout-64-x2 .paid_per_sec); ok=$(fig postgres-checkout-64-x2 .passed)
  echo "PostgreSQL checkout, 64 shoppers, two instances >= 1000 paid orders/s: ${t:-?}/s, checks ${ok:-?} -> $(verdict "$t >= 1000 && \"$ok\" == \"true\"" "$t" "$ok")"
  below=""
  for backend in sqlite postgres; do
    for scenario in hot spread; do
      for c in $CLIENTS; do
        t=$(fig "$backend-$scenario-$c" .throughput)
        r=$(ratio "$t" "${NAIVE_TPS[$scenario-$c]:-}")
        [ "$(verdict "${r%x} >= 1" "$r")" = PASS ] || below="$below $backend-$scenario-$c($r)"
      done
    done
  done
  echo "every scenario, both backends, $CLIENTS clients >= 1x naive: $([ -z "$below" ] && echo PASS || echo "MISS:$below")"
  for backend in sqlite postgres; do
    p50=$(fig "$backend-hot-1" .latency_ms.p50); base=${NAIVE_P50[hot]:-}
    echo "one client, one allocation, $backend p50 <= naive p50 + 0.3 ms: ${p50:-?} ms vs ${base:-?} ms -> $(verdict "$p50 <= $base + 0.3" "$p50" "$base")"
  done
} | tee "$OUT/goals.txt"

step "goals (issue 5)"
{
  t=$(fig sqlite-hot-64 .throughput); p99=$(fig sqlite-hot-64 .latency_ms.p99)
  r=$(ratio "$t" "${NAIVE_TPS[hot-64]:-}")
  echo "hot, SQLite, 64 clients >= 10x naive and p99 < 20 ms: $r, p99 ${p99:-?} ms -> $(verdict "${r%x} >= 10 && $p99 < 20" "$r" "$p99")"
  t=$(fig sqlite-checkout-64 .paid_per_sec); ok=$(fig sqlite-checkout-64 .passed)
  echo "checkout, SQLite, 64 clients >= 3000 paid orders/s, no oversell: ${t:-?}/s, checks ${ok:-?} -> $(verdict "$t >= 3000 && \"$ok\" == \"true\"" "$t" "$ok")"
  rss=$(for name in "${RUNS[@]}"; do fig "$name" .server.max_peak_rss_mb; done | sort -g | tail -n1)
  echo "peak RSS of the server < 150 MB in every run: max ${rss:-?} MB -> $(verdict "$rss < 150" "$rss")"
} | tee -a "$OUT/goals.txt"

step "goals (issue 14)"
{
  for backend in sqlite postgres; do
    t=$(fig "$backend-hot-64-webhook" .throughput); base=$(fig "$backend-hot-64-nohook" .throughput)
    r=$(ratio "$t" "$base")
    lag="p50 $(fig "$backend-hot-64-webhook" .webhook.lag_ms.p50) ms, p99 $(fig "$backend-hot-64-webhook" .webhook.lag_ms.p99) ms"
    n=$(fig "$backend-hot-64-webhook" .webhook.delivered)
    echo "hot, $backend, 64 clients, one webhook >= 70% of the throughput without: $r (${t:-?} vs ${base:-?} ok/s); ${n:-?} events delivered, lag $lag -> $(verdict "${r%x} >= 0.7" "$r")"
  done
} | tee -a "$OUT/goals.txt"

note ""
note "raw results: $OUT (total time ${SECONDS} s)"
if [ "$failures" -gt 0 ]; then
  note "$failures run(s) failed or failed a correctness check"
  exit 1
fi
