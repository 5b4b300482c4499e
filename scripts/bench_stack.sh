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

#   cost_name PID NAME                    name a process for the cost table
#   cost_begin                            snapshot every named process's CPU
#   cost_table N GEN_NAME GEN_SECONDS     print CPU us per request of each
#                                         named process (over N requests
#                                         since cost_begin), of the load
#                                         generator (GEN_SECONDS of CPU, from
#                                         scripts/cpu_run.py) and the total
#
#   The cost table reads utime + stime (all threads) from /proc/PID/stat,
#   in clock ticks (getconf CLK_TCK, 100 per second here: 10 ms resolution,
#   so runs of a few seconds give 2-3 significant digits).

pids=()
counters=()
declare -A cost_names=()
declare -A cost_start=()

cost_name () { cost_names[$1]=$2; }


cost_ticks () { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

cost_begin () {
    local pid
    for pid in "${!cost_names[@]}"; do cost_start[$pid]=$(cost_ticks "$pid"); done
}

#   "name<TAB>us" per process, the load generator and the total (the
#   rows cost_table and cost_line print)
cost_rows () {
    local n=$1 gen=$2 gen_s=$3 hz pid
    hz=$(getconf CLK_TCK)
    for pid in $(printf "%s\n" "${!cost_names[@]}" | sort -n); do
        [ -n "${cost_start[$pid]:-}" ] || continue
        printf "%s\t%s\n" "${cost_names[$pid]}" $(( $(cost_ticks "$pid") - cost_start[$pid] ))
    done | awk -F'\t' -v hz="$hz" -v n="$n" -v gen="$gen (load)" -v gs="$gen_s" '
        {us = $2 / hz * 1e6 / n; t += us; printf "%s\t%.1f\n", $1, us}
        END {us = gs * 1e6 / n; printf "%s\t%.1f\ntotal\t%.1f\n", gen, us, t + us}'
}

cost_table () {
    printf "    %-22s %10s\n" process "CPU us/req"
    cost_rows "$@" | awk -F'\t' -v c="$(nproc)" '
        $1 == "total" {printf "    %-22s %10s   (%d cores: at most %.0f requests/s)\n",
                       $1, $2, c, ($2 > 0 ? c * 1e6 / $2 : 0); next}
        {printf "    %-22s %10s\n", $1, $2}'
}

#   cost_line N GEN_NAME GEN_SECONDS: the same as cost_table, on one line
cost_line () {
    cost_rows "$@" | awk -F'\t' '{printf "%s%s %s", sep, $1, $2; sep = ", "} END {print ""}'
}

#   Stop the hgp processes first, then the store and the log (pids[0]
#   and [1]): an analytics actor leaving its group needs the mock to answer,
#   and one that cannot is killed after 10 s rather than left running
bench_stack_cleanup () {
    local pid hgp=("${counters[@]}" "${pids[@]:2}") store=("${pids[@]:0:2}")
    for pid in "${hgp[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 100); do
        local alive=0
        for pid in "${hgp[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive -eq 0 ] && break
        sleep 0.1
    done
    for pid in "${hgp[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${hgp[@]}"; do wait "$pid" 2>/dev/null || true; done
    for pid in "${store[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${store[@]}"; do wait "$pid" 2>/dev/null || true; done
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
    #   BENCH_AOF=1: Redis as make run starts it (appendonly, fsync every s)
    local aof=no
    [ "${BENCH_AOF:-0}" = 1 ] && aof=yes
    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly "$aof" \
        --appendfsync everysec --dir "$tmp" > "$tmp/redis.log" 2>&1 &
    pids+=($!)
    cost_name $! redis-server
    for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
    "$bin/hgp-kafka-mock" --address-file "$tmp/kafka.addr" > "$tmp/kafka.log" 2>&1 &
    pids+=($!)
    cost_name $! hgp-kafka-mock
    for _ in $(seq 100); do [ -s "$tmp/kafka.addr" ] && break; sleep 0.05; done
    KAFKA_PARTITIONS="?"
    for _ in $(seq 50); do
        if grep -q ' partitions; in memory' "$tmp/kafka.log"; then
            KAFKA_PARTITIONS=$(sed -n 's/.* with \([0-9]*\) partitions; in memory.*/\1/p' "$tmp/kafka.log")
            break
        fi
        sleep 0.05
    done
    HGP_KAFKA_BROKERS=$(cat "$tmp/kafka.addr")
    export HGP_KAFKA_BROKERS
    "$bin/hgp-broker" > "$tmp/broker.log" 2>&1 &
    pids+=($!)
    cost_name $! hgp-broker
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
        cost_name $! "hgp-counter $i"
    done
    bench_actors_wait "$1" "$2"
    sleep 0.5                       #   let them register with the log
}

bench_counters_stop () {
    for pid in "${counters[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${counters[@]}"; do wait "$pid" 2>/dev/null || true; unset "cost_names[$pid]"; done
    counters=()
    bench_actors_wait "$1" 0
}
