#   Sourced by the bench scripts (bench.sh, bench_http.sh, bench_scaling.sh):
#   the private stack they all measure, on free loopback ports, and the
#   counter actors they start and stop. Nothing here runs by itself.
#
#   bench_stack_up BIN NAME [EXTRA]
#       makes $tmp (/tmp/NAME.XXXXXX), picks 3 + EXTRA distinct free ports
#       (the extra ones in the array $extra_ports), exports HGP_CONFIG and
#       the HGP_* settings of Redis, the broker, the bus keys (made with
#       BIN/hgp-keys in $tmp/keys) and the event log, starts
#       redis-server, BIN/hgp-kafka-mock and BIN/hgp-broker, and traps EXIT
#       to stop everything in $pids and $counters and remove $tmp.
#   bench_counters_start BIN COUNT MODE   COUNT counter actors, event log MODE
#   bench_counters_stop BIN               stop them, wait until the broker
#                                         lists none
#   bench_actors_wait BIN N               until the broker lists N actors

pids=()
counters=()

bench_stack_cleanup () {
    for pid in "${counters[@]}" "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${counters[@]}" "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}

bench_stack_up () {
    local bin=$1 name=$2 nextra=${3:-0} rport cport aport
    tmp=$(mktemp -d "/tmp/$name.XXXXXX")
    trap bench_stack_cleanup EXIT
    local ports
    mapfile -t ports < <(/usr/bin/python3 scripts/free_ports.py $((3 + nextra)))
    rport=${ports[0]}; cport=${ports[1]}; aport=${ports[2]}
    extra_ports=("${ports[@]:3}")
    export HGP_CONFIG=configs/hgp.cfg
    export HGP_DISCOVERY_INTERFACE=""
    export HGP_REDIS_URL="redis://127.0.0.1:$rport"
    export HGP_BROKER_CLIENT_ENDPOINT="tcp://127.0.0.1:$cport"
    export HGP_BROKER_ACTOR_ENDPOINT="tcp://127.0.0.1:$aport"
    #   The bus as deployed: CURVE, with keys of this run only
    export HGP_BUS_KEYS="$tmp/keys"
    "$bin/hgp-keys" init > "$tmp/keys.log" 2>&1 || { cat "$tmp/keys.log" >&2; exit 1; }
    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$tmp" > "$tmp/redis.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
    "$bin/hgp-kafka-mock" --address-file "$tmp/kafka.addr" > "$tmp/kafka.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -s "$tmp/kafka.addr" ] && break; sleep 0.05; done
    HGP_KAFKA_BROKERS=$(cat "$tmp/kafka.addr")
    export HGP_KAFKA_BROKERS
    "$bin/hgp-broker" > "$tmp/broker.log" 2>&1 &
    pids+=($!)
}

bench_actors_wait () {
    for _ in $(seq 150); do
        [ "$("$1/hgp" --json actors 2>/dev/null | grep -o '"distinct_actors":[0-9]*' | cut -d: -f2)" = "$2" ] && return 0
        sleep 0.1
    done
    echo "bench: expected $2 actors" >&2
    tail -n 5 "$tmp"/*.log >&2
    exit 1
}

bench_counters_start () {
    for i in $(seq "$2"); do
        HGP_COUNTER_EVENT_LOG=$3 "$1/hgp-counter" > "$tmp/counter-$3-$2-$i.log" 2>&1 &
        counters+=($!)
    done
    bench_actors_wait "$1" "$2"
    sleep 0.5                       #   let them register with the log
}

bench_counters_stop () {
    for pid in "${counters[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${counters[@]}"; do wait "$pid" 2>/dev/null || true; done
    counters=()
    bench_actors_wait "$1" 0
}
