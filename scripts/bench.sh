#!/usr/bin/env bash
#   make bench: the core bus on this machine, measured with `hgp bench`.
#   Starts its own redis-server, broker and 2 counter actors (release build)
#   on free loopback ports, then runs hgp bench at window 1, 16 and 128.
#   Env: BENCH_N (requests per run, default 200000), BENCH_KEYS (1000),
#   BENCH_ACTORS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_N:-200000}
KEYS=${BENCH_KEYS:-1000}
ACTORS=${BENCH_ACTORS:-2}
tmp=$(mktemp -d /tmp/hgp-bench.XXXXXX)
read -r rport cport aport <<< "$(/usr/bin/python3 scripts/free_ports.py 3 | tr '\n' ' ')"
export HGP_REDIS_URL="redis://127.0.0.1:$rport"
export HGP_BROKER_CLIENT_ENDPOINT="tcp://127.0.0.1:$cport"
export HGP_BROKER_ACTOR_ENDPOINT="tcp://127.0.0.1:$aport"
pids=()
cleanup () {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$tmp" > "$tmp/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
bin/hgp-broker -c configs/hgp.cfg > "$tmp/broker.log" 2>&1 &
pids+=($!)
for i in $(seq "$ACTORS"); do
    bin/hgp-counter -c configs/hgp.cfg > "$tmp/counter-$i.log" 2>&1 &
    pids+=($!)
done
for _ in $(seq 50); do
    [ "$(bin/hgp --json actors 2>/dev/null | grep -o '"actor_id"' | wc -l)" -ge "$ACTORS" ] && break
    sleep 0.1
done
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m)"
echo "stack: redis-server $(redis-server --version | grep -o 'v=[0-9.]*'), broker, $ACTORS counter actors, all on loopback"
for w in 1 16 128; do
    n=$N
    [ "$w" -eq 1 ] && n=$((N / 10))
    echo "== bin/hgp bench -n $n -w $w -k $KEYS --op incr"
    bin/hgp bench -n "$n" -w "$w" -k "$KEYS" --op incr
done
echo "== bin/hgp bench -n $N -w 128 -k $KEYS --op get"
bin/hgp bench -n "$N" -w 128 -k "$KEYS" --op get
