#!/usr/bin/env bash
#   What CURVE costs, measured in one run: scripts/bench.sh (event log sync,
#   windows 1, 16, 128, reads, and a new connection per `hgp ping`) and
#   scripts/bench_http.sh (wrk at BENCH_LEVELS, sync) with bus/curve = 0 and
#   bus/curve = 1, alternating, on the same machine. Prints both outputs and
#   a summary table. Env: as bench.sh and bench_http.sh; BENCH_LEVELS
#   defaults to 1000 here.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/hgp-bench-curve.XXXXXX)
trap 'rm -rf "$out"' EXIT
export BENCH_MODES=sync
export BENCH_LEVELS=${BENCH_LEVELS:-1000}
for curve in 0 1; do
    echo "######## bus/curve = $curve: scripts/bench.sh"
    HGP_BUS_CURVE=$curve scripts/bench.sh 2>&1 | tee "$out/bus-$curve.txt"
done
for curve in 0 1; do
    echo "######## bus/curve = $curve: scripts/bench_http.sh"
    HGP_BUS_CURVE=$curve scripts/bench_http.sh 2>&1 | tee "$out/http-$curve.txt"
done
echo
echo "| bus/curve | hgp bench -w 1 | -w 16 | -w 128 | get -w 128 | connect+ping ms |"
echo "|---|---|---|---|---|---|"
for curve in 0 1; do
    mapfile -t rps < <(awk '/^requests\/s:/ {print $2}' "$out/bus-$curve.txt")
    ping=$(awk '/^connect\+ping ms:/ {print $3}' "$out/bus-$curve.txt")
    echo "| $curve | ${rps[0]:-?} | ${rps[1]:-?} | ${rps[2]:-?} | ${rps[3]:-?} | $ping |"
done
echo
echo "HTTP (scripts/bench_http.sh tables above, bus/curve = 0 first, then 1)"
