# hgp on Debian bookworm: one image, every binary; the command picks the role.
# (No Docker engine runs on our build machines, so this file is not exercised
# by CI; `make run` is the supported way to start a local stack.)
FROM debian:bookworm-slim AS build
WORKDIR /src
COPY . .
RUN apt-get update && scripts/deps.sh && make -j2

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libczmq4 libzmq5 libhiredis0.14 libmsgpackc2 librdkafka1 libcivetweb1 libjansson4 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/bin/ /usr/local/bin/
COPY configs/ /etc/hgp/
ENV HGP_CONFIG=/etc/hgp/hgp.cfg
CMD ["hgp-broker"]
