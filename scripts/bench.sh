#!/usr/bin/env bash
#   make bench: the core bus on this machine, measured with `hgp bench`.
#   Starts its own redis-server, hgp-kafka-mock, broker and counter actors
#   (release build) on free loopback ports. For each event-log mode of the
#   counters (off: no log; async: logged after applying, fire-and-forget;
#   sync: logged and acknowledged by Kafka before applying, the default and
#   the only one with the guarantee) it runs hgp bench at window 1, 16 and
#   128, so the cost of the log is measured in the same run on the same
#   machine. Then reads at window 128.
#   Env: BENCH_N (requests per run at windows 16 and 128, default 100000;
#   a tenth at window 1), BENCH_KEYS (1000), BENCH_ACTORS (2),
#   BENCH_MODES ("off async sync").
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_N:-100000}
KEYS=${BENCH_KEYS:-1000}
ACTORS=${BENCH_ACTORS:-2}
MODES=${BENCH_MODES:-off async sync}
tmp=$(mktemp -d /tmp/hgp-bench.XXXXXX)
read -r rport cport aport <<< "$(/usr/bin/python3 scripts/free_ports.py 3 | tr '\n' ' ')"
export HGP_REDIS_URL="redis://127.0.0.1:$rport"
export HGP_BROKER_CLIENT_ENDPOINT="tcp://127.0.0.1:$cport"
export HGP_BROKER_ACTOR_ENDPOINT="tcp://127.0.0.1:$aport"
pids=()
counters=()
cleanup () {
    for pid in "${counters[@]}" "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$tmp" > "$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
bin/hgp-kafka-mock -c configs/hgp.cfg --address-file "$tmp/kafka.addr" > "$tmp/kafka.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/kafka.addr" ] && break; sleep 0.05; done
export HGP_KAFKA_BROKERS=$(cat "$tmp/kafka.addr")
bin/hgp-broker -c configs/hgp.cfg > "$tmp/broker.log" 2>&1 &
pids+=($!)

wait_actors () {
    for _ in $(seq 100); do
        [ "$(bin/hgp --json actors 2>/dev/null | grep -o '"distinct_actors":[0-9]*' | cut -d: -f2)" = "$1" ] && return
        sleep 0.1
    done
    echo "bench: expected $1 actors" >&2
    exit 1
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m)"
echo "stack: redis-server $(redis-server --version | grep -o 'v=[0-9.]*'), hgp-kafka-mock (librdkafka $(pkg-config --modversion rdkafka), in memory, 8 partitions), broker, $ACTORS counter actors, all on loopback"
for mode in $MODES; do
    for i in $(seq "$ACTORS"); do
        HGP_COUNTER_EVENT_LOG=$mode bin/hgp-counter -c configs/hgp.cfg \
            > "$tmp/counter-$mode-$i.log" 2>&1 &
        counters+=($!)
    done
    wait_actors "$ACTORS"
    sleep 0.5                       #   let them register with the log
    echo "#### counter/event_log = $mode"
    for w in 1 16 128; do
        n=$N
        [ "$w" -eq 1 ] && n=$((N / 10))
        echo "== bin/hgp bench -n $n -w $w -k $KEYS --op incr"
        bin/hgp bench -n "$n" -w "$w" -k "$KEYS" --op incr
    done
    for pid in "${counters[@]}"; do kill -TERM "$pid"; wait "$pid" || true; done
    counters=()
    wait_actors 0
done
for i in $(seq "$ACTORS"); do
    bin/hgp-counter -c configs/hgp.cfg > "$tmp/counter-read-$i.log" 2>&1 &
    counters+=($!)
done
wait_actors "$ACTORS"
echo "== bin/hgp bench -n $N -w 128 -k $KEYS --op get"
bin/hgp bench -n "$N" -w 128 -k "$KEYS" --op get
