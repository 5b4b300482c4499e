#!/usr/bin/env bash
#   The HTTP gateway under wrk, side by side with a civetweb hello-world.
#
#   Starts its own redis-server, hgp-kafka-mock, broker, counter actors and
#   bin/hgp-gateway (release build) plus build/bench/hello
#   (gateway/bench/hello.c, same civetweb settings) on free loopback ports,
#   then runs wrk at 50, 500 and 1000 keep-alive connections against:
#     POST /api/v1/counter/increment   (wrk Lua script, BENCH_KEYS keys),
#          once per event-log mode of the counters (BENCH_MODES, default
#          "off sync": without the log, and with the log as it ships, where
#          every increment is in Kafka before it is acknowledged); the
#          counters are restarted in each mode, all else stays up
#     GET  /api/v1/counter/{r}/{t}
#     GET  / on hello-world
#   then the gateway with and without API keys, rate limits and call
#   statistics at the top level (their cost),
#   then an open-loop load at half the top increment rate (latency at a
#   steady load, gateway/bench/http_load.c), and prints requests/s, p99 and increments/hello at each level,
#   and the CPU cost per request of every process in each run. Then it
#   checks the counts are exact: wrk must report zero non-2xx responses and
#   zero socket errors, and the sum of the counters (read back with one
#   POST /batch) must equal the increments the gateway acknowledged (its
#   /metrics), which is wrk's completed count plus the requests still in
#   flight when wrk's clock stopped (wrk does not count those; the server
#   did receive and apply them, so the sum is in [completed, completed +
#   connections]).
#
#   Env: BENCH_SECONDS (per run, default 10), BENCH_LEVELS ("50 500 1000"),
#   BENCH_KEYS (increment keys, default 100), BENCH_ACTORS (2),
#   BENCH_THREADS (wrk threads, default 2), BENCH_MODES ("off sync"),
#   BENCH_PACED_CONNS (50), BENCH_PACED_RATE (default: half the top rate).
#   Exit 1 when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
LEVELS=${BENCH_LEVELS:-"50 500 1000"}
KEYS=${BENCH_KEYS:-100}
ACTORS=${BENCH_ACTORS:-2}
WRK_THREADS=${BENCH_THREADS:-2}
MODES=${BENCH_MODES:-off sync}

for tool in wrk redis-server redis-cli curl webdis; do
    command -v "$tool" >/dev/null || { echo "bench_http: $tool is missing (make deps)" >&2; exit 1; }
done
make -s bin/hgp-broker bin/hgp-counter bin/hgp-gateway bin/hgp-kafka-mock bin/hgp
mkdir -p build/bench
cc -O2 -Wall -Wextra -Werror -Wno-unused-parameter gateway/bench/hello.c \
    -o build/bench/hello -lcivetweb -lpthread
cc -O2 -Wall -Wextra -Werror -Wno-unused-parameter gateway/bench/http_load.c \
    -o build/bench/http_load

# shellcheck source=scripts/bench_stack.sh
. scripts/bench_stack.sh
bench_stack_up bin hgp-bench-http 4
gport=${extra_ports[0]}
hport=${extra_ports[1]}
wport=${extra_ports[2]}         # webdis
wrport=${extra_ports[3]}        # ... and its own redis-server
export HGP_GATEWAY_PORT=$gport

#   (Re)start the counter actors with event log mode $1
start_counters () {
    [ ${#counters[@]} -eq 0 ] || bench_counters_stop bin
    bench_counters_start bin "$ACTORS" "$1"
}
start_counters "${MODES%% *}"
bin/hgp-gateway > "$tmp/gateway.log" 2>&1 &
gw_pid=$!
pids+=($gw_pid)
cost_name $gw_pid hgp-gateway
build/bench/hello "$hport" > "$tmp/hello.log" 2>&1 &
pids+=($!)
cost_name $! hello-world
#   webdis on its own redis-server (scripts/webdis.sh)
# shellcheck source=scripts/webdis.sh
. scripts/webdis.sh
webdis_start "$tmp" "$wport" "$wrport"
pids+=($webdis_redis_pid $webdis_pid)
cost_name $webdis_redis_pid webdis-redis
cost_name $webdis_pid webdis
base="http://127.0.0.1:$gport"
ready=0
for _ in $(seq 100); do
    if curl -sf "$base/api/v1/health" >/dev/null 2>&1 \
    && curl -sf "http://127.0.0.1:$hport/" >/dev/null 2>&1 \
    && curl -sf "http://127.0.0.1:$wport/PING" >/dev/null 2>&1; then
        ready=1; break
    fi
    sleep 0.1
done
if [ $ready -ne 1 ]; then
    echo "bench_http: stack did not come up" >&2
    tail -n 5 "$tmp"/*.log >&2
    exit 1
fi

#   POST increments, round-robin over $KEYS keys named <prefix>_<n>; with
#   $2, each carries the API key $2
post_script () {
    local key_header=""
    [ -n "${2:-}" ] && key_header=", [\"X-API-Key\"] = \"$2\""
    cat > "$tmp/incr.lua" <<EOF
local bodies = {}
local next_body = 1
function init (args)
    for i = 1, $KEYS do
        bodies[i] = wrk.format ("POST", "/api/v1/counter/increment",
            { ["Content-Type"] = "application/json"$key_header },
            '{"resource_id":"$1_' .. i .. '","counter_type":"hit","delta":1}')
    end
end
function request ()
    local r = bodies[next_body]
    next_body = next_body % #bodies + 1
    return r
end
EOF
}

#   webdis INCR, round-robin over $KEYS keys named <prefix>_<n>
webdis_script () {
    cat > "$tmp/webdis.lua" <<EOF
local paths = {}
local next_path = 1
function init (args)
    for i = 1, $KEYS do paths[i] = wrk.format ("GET", "/INCR/$1_" .. i) end
end
function request ()
    local r = paths[next_path]
    next_path = next_path % #paths + 1
    return r
end
EOF
}

#   Sum of webdis's keys <prefix>_1..$KEYS, from its redis-server
webdis_sum () {
    local keys=()
    for i in $(seq "$KEYS"); do keys+=("$1_$i"); done
    redis-cli -p "$wrport" MGET "${keys[@]}" | awk '{n += $1} END {print n + 0}'
}

#   Run wrk; set rps, p99, completed, non2xx, sockerr from its report, and
#   cost: CPU us per request of each process over the run
run_wrk () {
    local out=$tmp/wrk.out
    cost_begin
    /usr/bin/python3 scripts/cpu_run.py "$tmp/wrk.cpu" \
        wrk -t"$WRK_THREADS" -c"$1" -d"${SECONDS_PER_RUN}s" --timeout 10s --latency "${@:2}" > "$out" 2>&1
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    completed=$(awk '/requests in/ {print $1}' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$out")
    non2xx=${non2xx:-0}
    sockerr=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
    sockerr=${sockerr:-0}
    cp "$out" "$tmp/last-wrk.txt"
    cost=$(cost_line "${completed:-1}" wrk "$(cat "$tmp/wrk.cpu")")
}

#   Increments the gateway acknowledged (200) so far, from /metrics
acked () {
    curl -sf "$base/metrics" | awk -F' ' \
        '/^hgp_gateway_http_requests_total\{route="increment",status="200"\}/ {print $2; f=1} END {if (!f) print 0}'
}

#   Sum of the counters <prefix>_1..$KEYS, in one batch request
counter_sum () {
    local body
    body=$(/usr/bin/python3 -c 'import json,sys; print(json.dumps({"queries": [{"resource_id": "%s_%d" % (sys.argv[1], i), "counter_type": "hit"} for i in range(1, int(sys.argv[2]) + 1)]}))' "$1" "$KEYS")
    curl -sf -X POST -H 'Content-Type: application/json' ${BENCH_KEY:+-H "X-API-Key: $BENCH_KEY"} \
        -d "$body" "$base/api/v1/counter/batch" \
        | /usr/bin/python3 -c 'import json,sys; print(sum(r["value"] for r in json.load(sys.stdin)["results"]))'
}

#   Wait until the gateway has nothing in flight (wrk left some behind)
drain () {
    for _ in $(seq 100); do
        local n
        n=$(curl -sf "$base/metrics" | awk '/^hgp_gateway_http_requests_in_flight / {print $2}')
        [ "${n:-1}" -le 1 ] && return 0       # 1: this scrape itself
        sleep 0.1
    done
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m), $(uname -r)"
echo "stack: redis-server $(redis-server --version | grep -o 'v=[0-9.]*'), hgp-kafka-mock (librdkafka $(pkg-config --modversion rdkafka), in memory, $KAFKA_PARTITIONS partitions), broker, $ACTORS counter actors, hgp-gateway (threads $(awk '/^ *threads *=/ {print $3; exit}' configs/hgp.cfg)), civetweb hello-world; all on loopback"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (anything else running skews the numbers)"
echo "wrk: -t$WRK_THREADS -d${SECONDS_PER_RUN}s --timeout 10s --latency; increments spread over $KEYS keys, delta 1; event-log modes: $MODES"
echo
failed=0
declare -A R
first=1
for mode in $MODES; do
    [ $first -eq 1 ] || start_counters "$mode"
    first=0
    for c in $LEVELS; do
        prefix="bench_${mode}_c${c}_$$"
        post_script "$prefix"
        before=$(acked)
        run_wrk "$c" -s "$tmp/incr.lua" "$base/api/v1/counter/increment"
        R[incr_rps_${mode}_$c]=$rps; R[incr_p99_${mode}_$c]=$p99
        R[incr_cost_${mode}_$c]=$cost
        drain
        after=$(acked)
        sum=$(counter_sum "$prefix")
        gw_acked=$((after - before))
        status=ok
        if [ "$non2xx" -ne 0 ] || [ "$sockerr" -ne 0 ]; then status="FAIL: $non2xx non-2xx, $sockerr socket errors"; fi
        if [ "$sum" -ne "$gw_acked" ]; then status="FAIL: counters sum $sum != $gw_acked acknowledged"; fi
        if [ "$sum" -lt "$completed" ] || [ "$sum" -gt $((completed + c)) ]; then
            status="FAIL: counters sum $sum outside [$completed, $((completed + c))]"
        fi
        [ "$status" = ok ] || { failed=1; cat "$tmp/last-wrk.txt"; }
        R[check_${mode}_$c]="wrk completed $completed, gateway acknowledged $gw_acked, counters sum $sum (+$((sum - completed)) in flight at wrk's stop), non-2xx $non2xx, socket errors $sockerr: $status"
    done
done
for c in $LEVELS; do
    run_wrk "$c" "$base/api/v1/counter/bench_${MODES%% *}_c${c}_$$_1/hit"
    R[get_rps_$c]=$rps; R[get_p99_$c]=$p99; R[get_cost_$c]=$cost
    if [ "$non2xx" -ne 0 ] || [ "$sockerr" -ne 0 ]; then
        failed=1; R[get_check_$c]="GET: FAIL $non2xx non-2xx, $sockerr socket errors"
    fi
    drain
    run_wrk "$c" "http://127.0.0.1:$hport/"
    R[hello_rps_$c]=$rps; R[hello_p99_$c]=$p99; R[hello_cost_$c]=$cost
    wprefix="webdis_c${c}_$$"
    webdis_script "$wprefix"
    run_wrk "$c" -s "$tmp/webdis.lua" "http://127.0.0.1:$wport/"
    R[webdis_rps_$c]=$rps; R[webdis_p99_$c]=$p99; R[webdis_cost_$c]=$cost
    sleep 0.2                       # what wrk left in flight lands
    wsum=$(webdis_sum "$wprefix")
    wstatus=ok
    if [ "$non2xx" -ne 0 ] || [ "$sockerr" -ne 0 ]; then wstatus="FAIL: $non2xx non-2xx, $sockerr socket errors"; fi
    if [ "$wsum" -lt "$completed" ] || [ "$wsum" -gt $((completed + c)) ]; then
        wstatus="FAIL: sum $wsum outside [$completed, $((completed + c))]"
    fi
    [ "$wstatus" = ok ] || failed=1
    R[webdis_check_$c]="webdis c=$c: wrk completed $completed, redis sum $wsum: $wstatus"
done

#   Latency at half the top rate, open loop: build/bench/http_load
#   (gateway/bench/http_load.c) sends on a fixed schedule over
#   BENCH_PACED_CONNS (50) keep-alive connections, all increments on one
#   key, and counts each latency from when the request was due, so a stall
#   shows in full in the latencies of every request it held up. It costs a
#   fraction of hey's CPU, which on 2 cores is CPU the stack gets.
#   BENCH_PACED_RATE sets the rate instead (to compare two builds).
paced_mode=${MODES##* }
paced_target=${BENCH_PACED_RATE:-$(awk -v r="${R[incr_rps_${paced_mode}_${LEVELS##* }]}" 'BEGIN {printf "%d", r / 2}')}
paced_conns=${BENCH_PACED_CONNS:-50}
paced_type="paced_$$"
before=$(acked)
cost_begin
paced_rc=0
/usr/bin/python3 scripts/cpu_run.py "$tmp/load.cpu" \
    build/bench/http_load -p "$gport" -c "$paced_conns" -r "$paced_target" \
    -d "$SECONDS_PER_RUN" -k 1 -t "$paced_type" > "$tmp/load.out" 2>&1 || paced_rc=$?
field () { tr ' ' '\n' < "$tmp/load.out" | awk -F= -v k="$1" '$1 == k {print $2}'; }
paced_ok=$(field 2xx); paced_ok=${paced_ok:-0}
paced_cost=$(cost_line "$paced_ok" http_load "$(cat "$tmp/load.cpu")")
paced_rps=$(field rate)
paced_p50=$(field ok_p50)
paced_p99=$(field ok_p99)
paced_p999=$(field ok_p999)
paced_other=$(( $(field answered) - paced_ok ))
drain
paced_sum=$(curl -sf "$base/api/v1/counter/r0/$paced_type" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])')
paced_acked=$(( $(acked) - before ))
paced_status=ok
if [ "$paced_rc" -ne 0 ] || [ "$paced_other" -ne 0 ] || [ "$paced_sum" -ne "$paced_acked" ] || [ "$paced_sum" -ne "$paced_ok" ]; then
    paced_status="FAIL: $paced_other non-2xx, counter $paced_sum, gateway acknowledged $paced_acked, 2xx $paced_ok (http_load exit $paced_rc)"
    failed=1
    cat "$tmp/load.out"
fi

#   Governance on and off, same run, at the top level, event log as the
#   last mode: the gateway restarted without API keys, rate limits and
#   call statistics, then with all three (a key on every request, limits
#   far above the load so nothing is refused: what they cost, not what
#   they refuse)
restart_gateway () {
    kill -TERM "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
    unset "cost_names[$gw_pid]"
    env "$@" bin/hgp-gateway >> "$tmp/gateway.log" 2>&1 &
    gw_pid=$!
    pids+=($gw_pid)
    cost_name $gw_pid hgp-gateway
    for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "bench_http: the gateway did not come back" >&2; exit 1
}
gov_key=bench-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "bench $gov_key" > "$tmp/api_keys"
gov_c=${LEVELS##* }
for gov in off on; do
    if [ $gov = off ]; then
        restart_gateway HGP_GATEWAY_CALL_STATS=0
        BENCH_KEY=""
    else
        restart_gateway HGP_GATEWAY_CALL_STATS=1 HGP_GATEWAY_API_KEYS="$tmp/api_keys" \
            HGP_RATELIMIT_RATE=100000000 HGP_RATELIMIT_BURST=100000000 \
            HGP_RATELIMIT_PER_IP_RATE=100000000 HGP_RATELIMIT_PER_IP_BURST=100000000 \
            HGP_RATELIMIT_PER_KEY_RATE=100000000 HGP_RATELIMIT_PER_KEY_BURST=100000000
        BENCH_KEY=$gov_key
    fi
    prefix="bench_gov${gov}_$$"
    post_script "$prefix" "$BENCH_KEY"
    run_wrk "$gov_c" -s "$tmp/incr.lua" "$base/api/v1/counter/increment"
    R[gov_rps_$gov]=$rps; R[gov_p99_$gov]=$p99; R[gov_cost_$gov]=$cost
    drain
    sum=$(BENCH_KEY=$BENCH_KEY counter_sum "$prefix")
    status=ok
    if [ "$non2xx" -ne 0 ] || [ "$sockerr" -ne 0 ]; then status="FAIL: $non2xx non-2xx, $sockerr socket errors"; fi
    if [ "$sum" -lt "$completed" ] || [ "$sum" -gt $((completed + gov_c)) ]; then
        status="FAIL: counters sum $sum outside [$completed, $((completed + gov_c))]"
    fi
    [ "$status" = ok ] || { failed=1; cat "$tmp/last-wrk.txt"; }
    R[gov_check_$gov]="wrk completed $completed, counters sum $sum, non-2xx $non2xx: $status"
done
sleep 1.5                           # the last call statistics flush
calls=$(curl -sf -H "X-API-Key: $gov_key" "$base/api/v1/counter/key.bench/calls" \
        | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])')
BENCH_KEY=""

header=$(printf "%-6s |" conns)
for mode in $MODES; do header+=$(printf " %17s %9s |" "incr/$mode req/s" p99); done
header+=$(printf " %10s %9s | %11s %9s | %12s %9s |" "get req/s" p99 "hello req/s" p99 "webdis req/s" p99)
for mode in $MODES; do header+=$(printf " %11s" "$mode/hello"); done
for mode in $MODES; do header+=$(printf " %12s" "$mode/webdis"); done
echo "$header"
for c in $LEVELS; do
    line=$(printf "%-6s |" "$c")
    for mode in $MODES; do line+=$(printf " %17s %9s |" "${R[incr_rps_${mode}_$c]}" "${R[incr_p99_${mode}_$c]}"); done
    line+=$(printf " %10s %9s | %11s %9s | %12s %9s |" "${R[get_rps_$c]}" "${R[get_p99_$c]}" "${R[hello_rps_$c]}" "${R[hello_p99_$c]}" "${R[webdis_rps_$c]}" "${R[webdis_p99_$c]}")
    for mode in $MODES; do
        line+=$(awk -v a="${R[incr_rps_${mode}_$c]}" -v b="${R[hello_rps_$c]}" 'BEGIN {printf " %11.2f", (b > 0 ? a / b : 0)}')
    done
    for mode in $MODES; do
        line+=$(awk -v a="${R[incr_rps_${mode}_$c]}" -v b="${R[webdis_rps_$c]}" 'BEGIN {printf " %12.2f", (b > 0 ? a / b : 0)}')
    done
    echo "$line"
done
echo
for mode in $MODES; do
    for c in $LEVELS; do echo "$mode c=$c: ${R[check_${mode}_$c]}"; done
done
for c in $LEVELS; do [ -z "${R[get_check_$c]:-}" ] || echo "c=$c: ${R[get_check_$c]}"; done
for c in $LEVELS; do echo "${R[webdis_check_$c]}"; done
echo
echo "paced (incr/$paced_mode, one key, open loop over $paced_conns connections at $paced_target/s, half of c=${LEVELS##* }): $paced_rps req/s, p50 ${paced_p50} ms, p99 ${paced_p99} ms, p99.9 ${paced_p999} ms (from the scheduled send); check: $paced_status"
echo "paced cost: $paced_cost"
echo
echo "governance at c=$gov_c (incr/${MODES##* }): off (no keys, no limits, no call statistics) ${R[gov_rps_off]} req/s, p99 ${R[gov_p99_off]}; on (API key on every request, global + per-IP + per-key buckets, call statistics) ${R[gov_rps_on]} req/s, p99 ${R[gov_p99_on]}; the key's calls counter reads $calls"
echo "governance checks: off ${R[gov_check_off]}; on ${R[gov_check_on]}"
echo "governance cost off: ${R[gov_cost_off]}"
echo "governance cost on: ${R[gov_cost_on]}"
echo
echo "cost: CPU us per request of each process over each run (/proc/PID/stat, 10 ms ticks; processes idle in a run show ~0)"
for c in $LEVELS; do
    for mode in $MODES; do echo "incr/$mode c=$c: ${R[incr_cost_${mode}_$c]}"; done
    echo "get c=$c: ${R[get_cost_$c]}"
    echo "hello c=$c: ${R[hello_cost_$c]}"
    echo "webdis c=$c: ${R[webdis_cost_$c]}"
done
last=${LEVELS##* }
for mode in $MODES; do
    ratio=$(awk -v a="${R[incr_rps_${mode}_$last]}" -v b="${R[hello_rps_$last]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
    target=$(awk -v r="$ratio" 'BEGIN {print (r >= 0.5) ? "met" : "NOT met"}')
    echo "target: increments (event log $mode) at $last connections >= 0.5 x hello-world: $ratio, $target"
done
ratio=$(awk -v a="${R[get_rps_$last]}" -v b="${R[hello_rps_$last]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
echo "target: GET at $last connections >= 0.7 x hello-world: $ratio, $(awk -v r="$ratio" 'BEGIN {print (r >= 0.7) ? "met" : "NOT met"}')"
#   One process's µs per request out of a cost line ("name value, ...")
cost_of () { tr ',' '\n' <<< "$1" | awk -v n="$2" '{v = $NF; $NF = ""; gsub(/^ +| +$/, ""); if ($0 == n) print v}'; }
gw_cost=$(cost_of "${R[incr_cost_${paced_mode}_$last]}" hgp-gateway)
hello_cost=$(cost_of "${R[hello_cost_$last]}" hello-world)
ratio=$(awk -v a="$gw_cost" -v b="$hello_cost" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
echo "target: gateway CPU per increment ($paced_mode) at $last connections <= 2 x hello-world's: $gw_cost / $hello_cost us = $ratio, $(awk -v r="$ratio" 'BEGIN {print (r > 0 && r <= 2) ? "met" : "NOT met"}')"
ratio=$(awk -v a="${R[gov_rps_on]}" -v b="${R[gov_rps_off]}" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}')
echo "target: governance on costs <= 5 % of the rate at $gov_c connections: on/off = $ratio, $(awk -v r="$ratio" 'BEGIN {print (r >= 0.95) ? "met" : "NOT met"}')"
echo "target: paced p99 <= 5 ms at half the top rate: ${paced_p99} ms, $(awk -v p="$paced_p99" 'BEGIN {print (p != "" && p <= 5) ? "met" : "NOT met"}')"
if [ $failed -ne 0 ]; then
    echo "bench_http: FAILED (counts not exact, see above)"
    exit 1
fi
