# hgp on Debian bookworm: one image, every binary; the command picks the role
# (docker-compose.yml). Debian packages only: the build stage installs the
# build dependencies with scripts/deps.sh --build and runs make; the runtime
# stage has the shared libraries, redis-server (the test stack's store,
# docker-compose.test.yml), socat (reaching the Kafka mock, scripts/
# docker-entry.sh), iproute2 (which interface beacons), curl (health) and
# prometheus (the compose stack's monitoring profile).
FROM debian:bookworm-slim AS build
WORKDIR /src
COPY scripts/deps.sh scripts/deps.sh
RUN scripts/deps.sh --build
COPY . .
RUN make -j2 all

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libczmq4 libzmq5 libhiredis0.14 libmsgpackc2 librdkafka1 libcivetweb1 libjansson4 \
        redis-server socat iproute2 curl prometheus \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/bin/ /usr/local/bin/
COPY scripts/docker-entry.sh /usr/local/bin/hgp-entry
COPY configs/ /etc/hgp/
ENV HGP_CONFIG=/etc/hgp/hgp.cfg
ENTRYPOINT ["hgp-entry"]
CMD ["hgp-broker"]
