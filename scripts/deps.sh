#!/usr/bin/env bash
#   Install the Debian packages hgp needs, if any are missing.
#   As root it runs apt-get; otherwise it prints the exact command and fails.
#   The list is the one in DEVELOPERS.md; keep the two in step.
#   --build: only what `make all` needs (the Dockerfile's build stage).
#   --compose: also what `make test-compose` needs (Docker engine, compose,
#   debootstrap for the base image).
set -euo pipefail
BUILD=(
    gcc make pkg-config
    libczmq-dev libzmq3-dev libhiredis-dev librdkafka-dev libmsgpack-dev
    libcivetweb-dev libjansson-dev
)
PACKAGES=(
    "${BUILD[@]}" libcmocka-dev
    redis-server kcat wrk hey webdis prometheus gnuplot-nox
    python3 python3-pytest python3-zmq python3-msgpack iproute2 curl
)
case "${1:-}" in
    --build) PACKAGES=("${BUILD[@]}") ;;
    --compose) PACKAGES+=(docker.io docker-compose debootstrap) ;;
esac
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#PACKAGES[@]} packages present"
    exit 0
fi
cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages: ${missing[*]}" >&2
    echo "deps: run as root:  $cmd" >&2
    exit 1
fi
echo "deps: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
