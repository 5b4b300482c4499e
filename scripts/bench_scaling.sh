#!/usr/bin/env bash
#   Scaling by launching processes: `hgp bench` (incr, exactly-once check)
#   against one broker with 1, 2 and 4 hgp-counter processes.
#
#   Starts its own redis-server, hgp-kafka-mock and hgp-broker (release
#   build, bin/) on free loopback ports, then for each count starts that many counter actors,
#   waits until the broker lists them, benches, and stops them with SIGTERM
#   before the next count. Static endpoints: nothing is beaconed. Prints one
#   table at the end.
#
#   Env: BENCH_N (requests per run, default 100000), BENCH_WINDOW (128),
#   BENCH_KEYS (1000), BENCH_ACTORS ("1 2 4"), BENCH_BIN (bin),
#   BENCH_EVENT_LOG (counter/event_log: sync, the default, async or off).
#
#   Read the numbers with the machine in mind: broker, Redis, the bench
#   client and every actor share its cores, and Redis executes the Lua
#   script of every batch on one thread. More actors add batching
#   parallelism in front of Redis, not Redis capacity.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_N:-100000}
W=${BENCH_WINDOW:-128}
KEYS=${BENCH_KEYS:-1000}
COUNTS=${BENCH_ACTORS:-"1 2 4"}
BIN=${BENCH_BIN:-bin}
EVENT_LOG=${BENCH_EVENT_LOG:-sync}
# shellcheck source=scripts/bench_stack.sh
. scripts/bench_stack.sh
bench_stack_up "$BIN" hgp-scaling

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "stack: redis-server $(redis-server --version | grep -o 'v=[0-9.]*'), hgp-kafka-mock, 1 broker, N counter processes (event log $EVENT_LOG), loopback, $BIN"
echo "bench: $BIN/hgp bench -n $N -w $W -k $KEYS --op incr"
results=()
for n in $COUNTS; do
    bench_counters_start "$BIN" "$n" "$EVENT_LOG"
    echo "== $n counter actor(s)"
    out=$("$BIN/hgp" bench -n "$N" -w "$W" -k "$KEYS" --op incr)
    echo "$out"
    rps=$(echo "$out" | awk '/^requests\/s:/ {print $2}')
    lat=$(echo "$out" | awk '/^latency us:/ {print $4, $6}')
    verify=$(echo "$out" | awk '/^verify:/ {print $2}')
    results+=("$n $rps $lat $verify")
    bench_counters_stop "$BIN"
done
echo
echo "actors  requests/s  p50_us  p99_us  verify"
base=""
for r in "${results[@]}"; do
    set -- $r
    [ -z "$base" ] && base=$2
    printf "%6s  %10s  %6s  %6s  %s (x%.2f)\n" "$1" "$2" "$3" "$4" "$5" \
        "$(awk -v a="$2" -v b="$base" 'BEGIN { print (b > 0 ? a / b : 0) }')"
done
