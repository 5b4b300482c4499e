#!/bin/sh
#   hgp-entry: the containers' entry point (Dockerfile, docker-compose.yml).
#   Runs "$@" (an hgp binary, redis-server, ...) after two things a
#   container cannot say in a static config:
#
#   - HGP_DISCOVERY_VIA=HOST: beacons go on the interface that reaches HOST
#     (a service on the compose bus network), so a container on several
#     networks (the gateway: bus + the one its port is published from)
#     beacons and listens on the bus only. Sets HGP_DISCOVERY_INTERFACE.
#   - HGP_KAFKA_MOCK_FILE=FILE (test stack only, docker-compose.test.yml):
#     the log is bin/hgp-kafka-mock, whose broker listens on 127.0.0.1 and
#     advertises 127.0.0.1:PORT (librdkafka's mock has no listen setting).
#     The mock's container writes its address to FILE on a shared volume
#     and forwards its own address:PORT to 127.0.0.1:PORT (role kafka-mock
#     below); each Kafka client here forwards 127.0.0.1:PORT to the mock's
#     container (HGP_KAFKA_MOCK_HOST) with socat, so the advertised address
#     is right in every container. Sets HGP_KAFKA_BROKERS.
#
#   `hgp-entry kafka-mock`: run hgp-kafka-mock that way.
set -eu

wait_file () {
    i=0
    until [ -s "$1" ]; do
        i=$((i + 1))
        [ $i -gt 600 ] && { echo "hgp-entry: no $1 after 60 s" >&2; exit 1; }
        sleep 0.1
    done
}

if [ "${1:-}" = kafka-mock ]; then
    file=${HGP_KAFKA_MOCK_FILE:?HGP_KAFKA_MOCK_FILE names the address file}
    rm -f "$file"
    hgp-kafka-mock --address-file "$file" &
    mock=$!
    trap 'kill -TERM $mock 2>/dev/null' TERM INT
    wait_file "$file"
    port=$(sed 's/.*://' "$file")
    self=$(hostname -i | awk '{print $1}')
    socat "TCP-LISTEN:$port,bind=$self,fork,reuseaddr" "TCP:127.0.0.1:$port" &
    echo "hgp-entry: kafka mock at 127.0.0.1:$port, reachable at $self:$port" >&2
    rc=0
    wait $mock || rc=$?
    if [ $rc -gt 128 ]; then            #   the trap ran: the mock is stopping
        rc=0
        wait $mock || rc=$?
    fi
    exit $rc
fi

if [ -n "${HGP_DISCOVERY_VIA:-}" ]; then
    i=0
    until addr=$(getent hosts "$HGP_DISCOVERY_VIA" | awk '{print $1; exit}') \
          && [ -n "$addr" ]; do
        i=$((i + 1))
        [ $i -gt 300 ] && { echo "hgp-entry: cannot resolve $HGP_DISCOVERY_VIA" >&2; exit 1; }
        sleep 0.1
    done
    dev=$(ip -o -4 route get "$addr" | sed -n 's/.* dev \([^ ]*\).*/\1/p')
    export HGP_DISCOVERY_INTERFACE="$dev"
    echo "hgp-entry: beacons on $dev (the interface that reaches $HGP_DISCOVERY_VIA)" >&2
fi

if [ -n "${HGP_KAFKA_MOCK_FILE:-}" ]; then
    wait_file "$HGP_KAFKA_MOCK_FILE"
    port=$(sed 's/.*://' "$HGP_KAFKA_MOCK_FILE")
    socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" \
          "TCP:${HGP_KAFKA_MOCK_HOST:-kafka}:$port" &
    export HGP_KAFKA_BROKERS="127.0.0.1:$port"
fi

exec "$@"
