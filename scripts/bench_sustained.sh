#!/usr/bin/env bash
#   make bench-sustained: does the rate hold as the log grows?
#
#   make run's stack (Redis with appendonly, hgp-kafka-mock, the broker, two
#   counter actors with the event log sync, one analytics actor reading the
#   log as it grows), then BENCH_BLOCKS (5) blocks of BENCH_N (100000)
#   increments back to back with `hgp bench -w 128`, each verified exact.
#   Prints each block's rate, p99 and cost table, and checks the targets:
#   the last block's rate >= 0.9 x the first's, its p99 <= 2 x the first's.
#   Exit 1 when a count is not exact; the targets are reported, not enforced.
#   BENCH_USERS=U gives every increment a user_id, the next of U in turn
#   (what the analytics actor's HyperLogLogs of users cost).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_N:-100000}
BLOCKS=${BENCH_BLOCKS:-5}
KEYS=${BENCH_KEYS:-1000}
USERS=()
[ -n "${BENCH_USERS:-}" ] && USERS=(--users "$BENCH_USERS")
export BENCH_AOF=1
#   The analytics actor folds hgp bench's events like anybody's (by default
#   analytics/skip leaves type "bench" out of the rankings)
export HGP_ANALYTICS_SKIP=""
make -s bin/hgp-broker bin/hgp-counter bin/hgp-analytics bin/hgp-kafka-mock bin/hgp bin/hgp-keys
# shellcheck source=scripts/bench_stack.sh
. scripts/bench_stack.sh
bench_stack_up bin hgp-bench-sustained
bench_counters_start bin 2 sync
bin/hgp-analytics > "$tmp/analytics.log" 2>&1 &
pids+=($!)
cost_name $! hgp-analytics
bench_actors_wait bin 3

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m)"
echo "stack: make run's: redis-server (appendonly everysec), hgp-kafka-mock ($KAFKA_PARTITIONS partitions), broker, 2 counters (event log sync), 1 analytics actor; loopback"
declare -a rate p99
for b in $(seq "$BLOCKS"); do
    echo "== block $b: bin/hgp bench -n $N -w 128 -k $KEYS --op incr ${USERS[*]}"
    cost_begin
    /usr/bin/python3 scripts/cpu_run.py "$tmp/gen.cpu" \
        bin/hgp bench -n "$N" -w 128 -k "$KEYS" --op incr "${USERS[@]}" | tee "$tmp/block.out"
    cost_table "$N" "hgp bench" "$(cat "$tmp/gen.cpu")"
    grep -q '^verify: ok' "$tmp/block.out" || { echo "bench_sustained: block $b not exact" >&2; exit 1; }
    rate[$b]=$(awk '/^requests\/s:/ {print $2}' "$tmp/block.out")
    p99[$b]=$(awk '/^latency us:/ {for (i = 1; i <= NF; i++) if ($i == "p99") print $(i + 1)}' "$tmp/block.out")
done
#   The analytics actor must have kept up: its all-time ranking of counter
#   type "bench" (every block's keys) sums to every increment made
rport=${HGP_REDIS_URL##*:}
folded=0
t0=$(date +%s)
for _ in $(seq 120); do
    folded=$(redis-cli -p "$rport" --raw ZRANGE hgp:a:all:bench 0 -1 WITHSCORES \
             | awk 'NR % 2 == 0 {s -= $1} END {printf "%d", s}')
    [ "$folded" -ge $((N * BLOCKS)) ] && break
    sleep 0.5
done
echo
echo "analytics: $folded of $((N * BLOCKS)) increments folded into the all-time ranking, $(( $(date +%s) - t0 )) s after the last block"
if [ "$folded" -ne $((N * BLOCKS)) ]; then
    echo "bench_sustained: analytics folded $folded, want $((N * BLOCKS))" >&2
    tail -n 20 "$tmp/analytics.log" >&2
    exit 1
fi
printf "%-6s %12s %10s\n" block "requests/s" "p99 us"
for b in $(seq "$BLOCKS"); do printf "%-6s %12s %10s\n" "$b" "${rate[$b]}" "${p99[$b]}"; done
awk -v r1="${rate[1]}" -v rn="${rate[$BLOCKS]}" -v p1="${p99[1]}" -v pn="${p99[$BLOCKS]}" -v n="$BLOCKS" 'BEGIN {
    printf "target: block %d rate >= 0.9 x block 1: %.2f, %s\n", n, rn / r1, (rn >= 0.9 * r1) ? "met" : "NOT met"
    printf "target: block %d p99 <= 2 x block 1: %.2f, %s\n", n, pn / p1, (pn <= 2 * p1) ? "met" : "NOT met"
}'
