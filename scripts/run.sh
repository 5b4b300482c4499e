#!/usr/bin/env bash
#   make run: start the whole local stack in the foreground.
#   redis-server (unless HGP_REDIS_URL points at one), hgp-kafka-mock (unless
#   HGP_KAFKA_BROKERS names real brokers; in memory: the log is lost when it
#   stops), hgp-broker, two hgp-counter actors, one hgp-analytics actor and
#   hgp-gateway (HTTP on 127.0.0.1:8080). Logs are prefixed with the process
#   name. Ctrl-C or SIGTERM stops every process this script started, and
#   nothing else.
set -uo pipefail
cd "$(dirname "$0")/.."
export HGP_CONFIG=${HGP_CONFIG:-configs/hgp.cfg}
mkdir -p var/redis
pids=()

stop () {
    trap - INT TERM EXIT
    echo "run: stopping ${#pids[@]} processes"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    echo "run: stopped"
    exit 0
}
trap stop INT TERM EXIT

#   Start "$@" with its output prefixed by name
start () {
    local name=$1; shift
    ( exec "$@" 2>&1 ) > >(sed -u "s/^/[$name] /") &
    pids+=($!)
}

if [ -z "${HGP_REDIS_URL:-}" ]; then
    port=${HGP_REDIS_PORT:-6379}
    export HGP_REDIS_URL="redis://127.0.0.1:$port"
    start redis redis-server --port "$port" --bind 127.0.0.1 --dir var/redis \
        --appendonly yes --appendfsync everysec --save ""
    for _ in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
fi
if [ -z "${HGP_KAFKA_BROKERS:-}" ]; then
    #   The mock picks its own port and writes it here
    rm -f var/kafka.addr
    start kafka bin/hgp-kafka-mock -c "$HGP_CONFIG" --address-file var/kafka.addr
    for _ in $(seq 100); do
        [ -s var/kafka.addr ] && break
        sleep 0.05
    done
    if [ ! -s var/kafka.addr ]; then
        echo "run: hgp-kafka-mock did not start"
        stop
    fi
    export HGP_KAFKA_BROKERS=$(cat var/kafka.addr)
    echo "run: event log in memory at $HGP_KAFKA_BROKERS (lost when this stops;"
    echo "run: set HGP_KAFKA_BROKERS to real brokers for a durable log)"
fi
#   CURVE keys (bus/keys, var/keys by default): created on first start,
#   never overwritten, never committed (README, Key handling)
if ! bin/hgp-keys -c "$HGP_CONFIG" init; then
    echo "run: cannot create the bus keys (bin/hgp-keys init)"
    stop
fi
start broker bin/hgp-broker -c "$HGP_CONFIG"
sleep 0.2
start counter-1 bin/hgp-counter -c "$HGP_CONFIG"
start counter-2 bin/hgp-counter -c "$HGP_CONFIG"
start analytics-1 bin/hgp-analytics -c "$HGP_CONFIG"
start gateway bin/hgp-gateway -c "$HGP_CONFIG"
port=${HGP_GATEWAY_PORT:-8080}
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/api/v1/health" >/dev/null 2>&1 && break
    sleep 0.1
done
echo "run: gateway on http://127.0.0.1:$port, redis at $HGP_REDIS_URL"
echo "run: try  curl -X POST -d '{\"resource_id\":\"post_1\",\"counter_type\":\"like\"}' http://127.0.0.1:$port/api/v1/counter/increment"
echo "run: or   bin/hgp incr post_1 like; bin/hgp top like"
echo "run: for hgp replay in another shell: export HGP_KAFKA_BROKERS=$HGP_KAFKA_BROKERS"
wait -n "${pids[@]}"
echo "run: a process exited; stopping the rest"
stop
