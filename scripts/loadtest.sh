#!/usr/bin/env bash
#   make loadtest: the seed's five-level load test (1k requests at 10
#   connections, 5k at 50, 10k at 100, 50k at 500, 100k at 1000) against
#   make run's own stack (scripts/run.sh: Redis with AOF, the Kafka mock,
#   the broker, two counters, analytics, the gateway; event log sync),
#   and beside it, at the same levels, a civetweb hello-world
#   (gateway/bench/hello.c) and webdis (Debian's, GET /INCR/key on its own
#   redis-server). After each level the counts are checked exactly: hgp's
#   counters of that level (mget) and webdis's key equal the 2xx answers,
#   and every request was answered.
#
#   Closed loop (each connection sends its next request when the last one
#   is answered, build/bench/http_load -n): throughput is what the system
#   did with that many clients, not what it can do at a given rate. The
#   report puts Little's law's mean (connections / throughput) beside the
#   measured mean as a sanity check of the two.
#
#   Writes loadtest/report.md (a table per level and system) and
#   loadtest/report.png (gnuplot: throughput and p99 per level, a line per
#   system). Ports are free ones; the stack's files are under a temporary
#   directory. Exit 1 if a count is off or a system failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${LOADTEST_DIR:-loadtest}
LEVELS=${LOADTEST_LEVELS:-"1000:10 5000:50 10000:100 50000:500 100000:1000"}
KEYS=100
mkdir -p "$OUT" build/bench
for tool in redis-server webdis gnuplot curl; do
    command -v "$tool" >/dev/null || { echo "loadtest: $tool is missing (make deps)" >&2; exit 1; }
done
cc -O2 -Wall -Wextra -Werror -Wno-unused-parameter gateway/bench/hello.c \
    -o build/bench/hello -lcivetweb -lpthread || exit 1
cc -O2 -Wall -Wextra -Werror -Wno-unused-parameter gateway/bench/http_load.c \
    -o build/bench/http_load || exit 1

tmp=$(mktemp -d /tmp/hgp-loadtest.XXXXXX)
mapfile -t ports < <(/usr/bin/python3 scripts/free_ports.py 7)
gport=${ports[0]} hport=${ports[4]} wport=${ports[5]} wrport=${ports[6]}
export HGP_RUN_DIR=$tmp/run HGP_BUS_KEYS=$tmp/run/keys
export HGP_REDIS_PORT=${ports[1]} HGP_GATEWAY_PORT=$gport
export HGP_BROKER_CLIENT_ENDPOINT=tcp://127.0.0.1:${ports[2]}
export HGP_BROKER_ACTOR_ENDPOINT=tcp://127.0.0.1:${ports[3]}
pids=()
cleanup () {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

setsid bash scripts/run.sh > "$tmp/run.log" 2>&1 &
pids+=($!)
build/bench/hello "$hport" > "$tmp/hello.log" 2>&1 &
pids+=($!)
# shellcheck source=scripts/webdis.sh
. scripts/webdis.sh
webdis_start "$tmp" "$wport" "$wrport"
pids+=($webdis_redis_pid $webdis_pid)
for _ in $(seq 300); do
    grep -q "run: healthy" "$tmp/run.log" \
    && curl -sf "http://127.0.0.1:$hport/" >/dev/null 2>&1 \
    && curl -sf "http://127.0.0.1:$wport/PING" >/dev/null 2>&1 && break
    sleep 0.2
done
grep -q "run: healthy" "$tmp/run.log" || {
    echo "loadtest: the stack did not start:" >&2; tail -20 "$tmp/run.log" >&2; exit 1; }

#   One run of http_load; sets the variables of its key=value line
load () {
    local line
    line=$(build/bench/http_load "$@") || true
    for kv in $line; do eval "L_${kv%%=*}=${kv#*=}"; done
}

#   hgp's counters of type $1 over the KEYS resources r0.., summed
hgp_sum () {
    local args=() i
    for ((i = 0; i < KEYS; i++)); do args+=("r$i:$1"); done
    bin/hgp mget "${args[@]}" | awk '{s += $3} END {print s + 0}'
}

machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -m), $(. /etc/os-release; echo "$PRETTY_NAME")"
fail=0
: > "$OUT/report.dat"
{
    echo "# hgp load test: five levels, three systems"
    echo
    echo "Machine: $machine; everything on loopback. Command: \`make loadtest\` ($(date -u +%Y-%m-%d))."
    echo "hgp is \`make run\`'s stack (event log sync, two counters, analytics, call statistics on);"
    echo "hello-world is civetweb answering a constant; webdis is \`GET /INCR/key\` on its own redis-server."
    echo "POST increments for hgp over $KEYS keys, one key for webdis. **Closed loop**: each connection"
    echo "sends its next request when the last one is answered (build/bench/http_load -n), so the"
    echo "throughput is what the system did with that many clients. Little's law: mean latency ="
    echo "connections / throughput; it should be close to the measured mean. Latencies in ms."
    echo
    echo "| level | system | requests | conns | req/s | p50 | p99 | p99.9 | mean | Little mean | errors | exact count |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$OUT/report.md"
level=0
for spec in $LEVELS; do
    level=$((level + 1))
    n=${spec%%:*} c=${spec##*:}
    row="$level $n $c"
    for system in hgp hello webdis; do
        case $system in
            hgp)   load -p "$gport" -n "$n" -c "$c" -k "$KEYS" -t "lt$level" ;;
            hello) load -p "$hport" -n "$n" -c "$c" -m GET -u / ;;
            webdis) load -p "$wport" -n "$n" -c "$c" -m GET -u "/INCR/lt$level" ;;
        esac
        errors=$((n - L_2xx + L_failed))      #   not 2xx, unanswered, failed
        case $system in
            hgp)    got=$(hgp_sum "lt$level") ;;
            hello)  got=$L_2xx ;;
            webdis) got=$(redis-cli -p "$wrport" get "lt$level") ;;
        esac
        if [ "$got" = "$L_2xx" ] && [ "$L_2xx" = "$n" ]; then
            exact="ok ($got)"
        else
            exact="FAILED: counted $got, 2xx $L_2xx of $n"
            fail=1
        fi
        little=$(awk -v c="$c" -v r="$L_rate" 'BEGIN {printf "%.2f", (r > 0 ? 1000 * c / r : 0)}')
        printf "| %d | %s | %d | %d | %.0f | %.2f | %.2f | %.2f | %.2f | %s | %d | %s |\n" \
            "$level" "$system" "$n" "$c" "$L_rate" "$L_ok_p50" "$L_ok_p99" "$L_ok_p999" \
            "$L_ok_mean" "$little" "$errors" "$exact" >> "$OUT/report.md"
        row="$row $L_rate $L_ok_p99"
        echo "loadtest: level $level ($n at $c) $system: $L_rate req/s, p99 $L_ok_p99 ms, $exact" >&2
    done
    echo "$row" >> "$OUT/report.dat"
done
{
    echo
    echo "The plot (report.png) has throughput and p99 per level, a line per system."
    [ $fail -eq 0 ] && echo "Every count is exact." || echo "**A count is off: see the table.**"
} >> "$OUT/report.md"

gnuplot <<EOF
set terminal pngcairo size 1200,500 font ",10" noenhanced
set output "$OUT/report.png"
set multiplot layout 1,2 title "hgp load test (closed loop, $machine)"
set xlabel "level (requests @ connections)"
set xtics ("1k@10" 1, "5k@50" 2, "10k@100" 3, "50k@500" 4, "100k@1000" 5)
set xrange [0.7:5.3]
set key top left
set grid
set title "throughput"
set ylabel "requests/s"
plot "$OUT/report.dat" using 1:4 with linespoints title "hgp", \
     "" using 1:6 with linespoints title "hello-world", \
     "" using 1:8 with linespoints title "webdis"
set title "p99 latency"
set ylabel "ms"
plot "$OUT/report.dat" using 1:5 with linespoints title "hgp", \
     "" using 1:7 with linespoints title "hello-world", \
     "" using 1:9 with linespoints title "webdis"
unset multiplot
EOF
[ -s "$OUT/report.png" ] || { echo "loadtest: gnuplot made no $OUT/report.png" >&2; fail=1; }
echo "loadtest: wrote $OUT/report.md and $OUT/report.png" >&2
exit $fail
