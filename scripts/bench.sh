#!/usr/bin/env bash
#   make bench: the core bus on this machine, measured with `hgp bench`.
#   Starts its own redis-server, hgp-kafka-mock, broker and counter actors
#   (release build) on free loopback ports. For each event-log mode of the
#   counters (off: no log; async: logged after applying, fire-and-forget;
#   sync: logged and acknowledged by Kafka before applying, the default and
#   the only one with the guarantee) it runs hgp bench at window 1, 16 and
#   128, so the cost of the log is measured in the same run on the same
#   machine. Then reads at window 128. After each run, a cost table: CPU
#   microseconds per request of every process (bench_stack.sh cost_table).
#   Env: BENCH_N (requests per run at windows 16 and 128, default 100000;
#   a tenth at window 1), BENCH_KEYS (1000), BENCH_ACTORS (2),
#   BENCH_MODES ("off async sync").
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_N:-100000}
KEYS=${BENCH_KEYS:-1000}
ACTORS=${BENCH_ACTORS:-2}
MODES=${BENCH_MODES:-off async sync}
# shellcheck source=scripts/bench_stack.sh
. scripts/bench_stack.sh
bench_stack_up bin hgp-bench

#   One hgp bench run, then what it cost each process (bench_stack.sh)
run_bench () {
    cost_begin
    /usr/bin/python3 scripts/cpu_run.py "$tmp/gen.cpu" \
        bin/hgp bench -n "$1" -w "$2" -k "$KEYS" --op "$3"
    cost_table "$1" "hgp bench" "$(cat "$tmp/gen.cpu")"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m)"
echo "stack: redis-server $(redis-server --version | grep -o 'v=[0-9.]*'), hgp-kafka-mock (librdkafka $(pkg-config --modversion rdkafka), in memory, $KAFKA_PARTITIONS partitions), broker, $ACTORS counter actors, all on loopback"
for mode in $MODES; do
    bench_counters_start bin "$ACTORS" "$mode"
    echo "#### counter/event_log = $mode"
    for w in 1 16 128; do
        n=$N
        [ "$w" -eq 1 ] && n=$((N / 10))
        echo "== bin/hgp bench -n $n -w $w -k $KEYS --op incr"
        run_bench "$n" "$w" incr
    done
    bench_counters_stop bin
done
bench_counters_start bin "$ACTORS" sync
echo "== bin/hgp bench -n $N -w 128 -k $KEYS --op get"
run_bench "$N" 128 get
#   Connection set-up: each hgp run is a new connection to the broker (with
#   CURVE, a handshake) and one round trip
PINGS=${BENCH_PINGS:-50}
echo "== $PINGS x bin/hgp ping (a new connection each)"
t0=$(date +%s%N)
for _ in $(seq "$PINGS"); do bin/hgp ping > /dev/null; done
t1=$(date +%s%N)
echo "connect+ping ms: $(awk -v a="$t0" -v b="$t1" -v n="$PINGS" 'BEGIN {printf "%.2f", (b - a) / n / 1e6}')"
