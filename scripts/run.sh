#!/usr/bin/env bash
#   make run: start the whole local stack in the foreground.
#   redis-server (unless HGP_REDIS_URL points at one), hgp-kafka-mock (unless
#   HGP_KAFKA_BROKERS names real brokers; in memory: the log is lost when it
#   stops), hgp-broker, two hgp-counter actors, one hgp-analytics actor and
#   hgp-gateway (HTTP on 127.0.0.1:8080). With discovery/interface set
#   (HGP_DISCOVERY_INTERFACE) the broker binds its ports on that interface
#   and beacons there, and the actors and the gateway find it by its beacons:
#   one command, no endpoint to configure. Logs are prefixed with the process
#   name. Ctrl-C or SIGTERM stops every process this script started, and
#   nothing else, and exits 0.
#
#   It never half-starts: every TCP port it needs is checked free before
#   anything starts (a second stack on the same ports would otherwise join
#   the first one's broker), a process that exits during start-up or later
#   is named with its exit status, the rest are stopped and the exit status
#   is 1. The stack counts as started when the gateway's /readyz answers
#   200 (the broker, a counter actor and Redis answer through the bus).
set -uo pipefail
cd "$(dirname "$0")/.."
export HGP_CONFIG=${HGP_CONFIG:-configs/hgp.cfg}
HGP=bin/hgp
START_TIMEOUT=${HGP_RUN_START_TIMEOUT:-30}
#   Redis's files and the mock's address (the tests use their own)
VAR=${HGP_RUN_DIR:-var}
mkdir -p "$VAR/redis"
pids=()
declare -A names=()

stop () {
    local code=${1:-0}
    trap - INT TERM EXIT
    echo "run: stopping ${#pids[@]} processes"
    #   The hgp processes first, then Kafka and Redis (started first): an
    #   analytics actor leaving its consumer group needs the mock to answer
    local i store=()
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        case "${names[${pids[$i]}]}" in
            redis|kafka) store+=("${pids[$i]}") ;;
            *) kill -TERM "${pids[$i]}" 2>/dev/null ;;
        esac
    done
    for pid in "${pids[@]}"; do
        case "${names[$pid]}" in redis|kafka) ;; *) wait "$pid" 2>/dev/null ;; esac
    done
    for pid in "${store[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${store[@]}"; do wait "$pid" 2>/dev/null; done
    echo "run: stopped"
    exit "$code"
}
trap 'stop 0' INT TERM
trap 'stop 1' EXIT

#   Start "$@" with its output prefixed by name
start () {
    local name=$1; shift
    ( exec "$@" 2>&1 ) > >(sed -u "s/^/[$name] /") &
    pids+=($!)
    names[$!]=$name
}

#   Is a process of ours no longer running? Then gone="name (exit N)".
#   (Not in a $(subshell): only this shell can wait for its children.)
exited () {
    local pid state
    for pid in "${pids[@]}"; do
        state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
        if [ -z "$state" ] || [ "$state" = Z ]; then
            wait "$pid" 2>/dev/null
            gone="${names[$pid]} (exit $?)"
            return 0
        fi
    done
    return 1
}

#   Fail unless TCP host:port can be bound: $1 what needs it, $2 host, $3 port
port_free () {
    local host=$2
    [ "$host" = "*" ] && host=0.0.0.0
    if ! python3 - "$host" "$3" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError as e:
    sys.exit(1)
EOF
    then
        echo "run: $1 needs $2:$3, which is in use (another hgp stack or" \
             "server?); stop it or choose another port" >&2
        return 1
    fi
}

#   "tcp://HOST:PORT" -> "HOST PORT"
endpoint_hostport () {
    local rest=${1#tcp://}
    echo "${rest%:*} ${rest##*:}"
}

[ -x "$HGP" ] || { echo "run: $HGP is missing; run make first" >&2; exit 1; }
settings=$($HGP config broker/client_endpoint broker/actor_endpoint \
               gateway/bind gateway/port discovery/interface) || {
    echo "run: cannot read the settings from $HGP_CONFIG" >&2; exit 1; }
mapfile -t setting <<<"$settings"
client_endpoint=${setting[0]} actor_endpoint=${setting[1]}
gateway_bind=${setting[2]} gateway_port=${setting[3]}
interface=${setting[4]:-}

busy=0
if [ -z "${HGP_REDIS_URL:-}" ]; then
    redis_port=${HGP_REDIS_PORT:-6379}
    port_free "redis-server (HGP_REDIS_PORT)" 127.0.0.1 "$redis_port" || busy=1
fi
for e in "broker/client_endpoint $client_endpoint" \
         "broker/actor_endpoint $actor_endpoint"; do
    set -- $e
    case "$2" in
        tcp://*)
            set -- "$1" $(endpoint_hostport "$2")
            #   With discovery/interface the broker binds the port on the
            #   interface's address (or all): it must be free on every one
            [ -n "$interface" ] && set -- "$1" "*" "$3"
            port_free "hgp-broker ($1)" "$2" "$3" || busy=1 ;;
    esac
done
port_free "hgp-gateway (gateway/port)" "$gateway_bind" "$gateway_port" || busy=1
if [ $busy -ne 0 ]; then
    trap - EXIT
    exit 1
fi

if [ -n "${redis_port:-}" ]; then
    export HGP_REDIS_URL="redis://127.0.0.1:$redis_port"
    start redis redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$VAR/redis" \
        --appendonly yes --appendfsync everysec --save ""
    for _ in $(seq 600); do
        #   PONG, not LOADING (redis-cli exits 0 for both): a large AOF
        #   takes seconds to load, and until then nothing can be served
        [ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" = PONG ] && break
        if exited; then
            echo "run: $gone stopped during start-up" >&2
            stop 1
        fi
        sleep 0.1
    done
fi
#   CURVE keys (bus/keys, var/keys by default): created on first start
#   (before the mock: it announces its metrics to the broker as a client),
#   never overwritten, never committed (README, Key handling)
if ! bin/hgp-keys -c "$HGP_CONFIG" init; then
    echo "run: cannot create the bus keys (bin/hgp-keys init)" >&2
    stop 1
fi
if [ -z "${HGP_KAFKA_BROKERS:-}" ]; then
    #   The mock picks its own port and writes it here
    rm -f "$VAR/kafka.addr"
    start kafka bin/hgp-kafka-mock -c "$HGP_CONFIG" --address-file "$VAR/kafka.addr"
    for _ in $(seq 100); do
        [ -s "$VAR/kafka.addr" ] && break
        sleep 0.05
    done
    if [ ! -s "$VAR/kafka.addr" ]; then
        echo "run: hgp-kafka-mock did not start" >&2
        stop 1
    fi
    export HGP_KAFKA_BROKERS=$(cat "$VAR/kafka.addr")
    echo "run: event log in memory at $HGP_KAFKA_BROKERS (lost when this stops;"
    echo "run: set HGP_KAFKA_BROKERS to real brokers for a durable log)"
fi
start broker bin/hgp-broker -c "$HGP_CONFIG"
sleep 0.2
start counter-1 bin/hgp-counter -c "$HGP_CONFIG"
start counter-2 bin/hgp-counter -c "$HGP_CONFIG"
start analytics-1 bin/hgp-analytics -c "$HGP_CONFIG"
start gateway bin/hgp-gateway -c "$HGP_CONFIG"

health="http://$gateway_bind:$gateway_port/readyz"
[ "$gateway_bind" = "0.0.0.0" ] && health="http://127.0.0.1:$gateway_port/readyz"
deadline=$((SECONDS + START_TIMEOUT))
until curl -sf "$health" >/dev/null 2>&1; do
    if exited; then
        echo "run: $gone stopped during start-up; stopping the rest" >&2
        stop 1
    fi
    if [ $SECONDS -ge $deadline ]; then
        echo "run: not healthy after ${START_TIMEOUT}s; $health says:" >&2
        curl -s "$health" >&2; echo >&2
        stop 1
    fi
    sleep 0.2
done
#   Scrape targets for Prometheus (configs/prometheus.yml reads this
#   file): every process the broker sees, again every 10 s
start targets bash -c 'trap "kill \$! 2>/dev/null; exit 0" TERM
    while :; do
        bin/hgp targets > "$1.tmp" 2>/dev/null && mv "$1.tmp" "$1"
        sleep 10 & wait $!
    done' targets "$VAR/targets.json"
echo "run: healthy: gateway on http://$gateway_bind:$gateway_port, redis at $HGP_REDIS_URL"
echo "run: try  curl -X POST -d '{\"resource_id\":\"post_1\",\"counter_type\":\"like\"}' http://127.0.0.1:$gateway_port/api/v1/counter/increment"
echo "run: or   bin/hgp incr post_1 like; bin/hgp top like"
echo "run: metrics: every process's URL is in $VAR/targets.json; prometheus --config.file=configs/prometheus.yml scrapes them"
#   What another shell needs to reach this stack (ports may be overridden)
exports="HGP_BROKER_CLIENT_ENDPOINT=$client_endpoint HGP_KAFKA_BROKERS=$HGP_KAFKA_BROKERS"
[ -n "${HGP_BUS_KEYS:-}" ] && exports="$exports HGP_BUS_KEYS=$HGP_BUS_KEYS"
[ -n "${HGP_CONFIG:-}" ] && exports="$exports HGP_CONFIG=$HGP_CONFIG"
echo "run: in another shell first: export $exports"
wait -n -p gone "${pids[@]}"
code=$?
echo "run: ${names[$gone]:-a process} exited (exit $code); stopping the rest" >&2
stop 1
