# syntax=docker/dockerfile:1.7
# The scanstream image: one binary, every role (`scanstream ingest|scanner|aggregator|scheduler`).
# Build: docker build -t scanstream:dev .
# The build stage compiles with the pinned toolchain; the final stage carries the binary, git
# (the scanner mirrors repositories with it), CA certificates and tini, and no build tools.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# librdkafka is compiled from source (SSL for SASL/SCRAM); the rust image has the C toolchain,
# OpenSSL headers and zlib. Vectorscan (the scanner's keyword prefilter) is compiled from source
# too and linked statically: it needs cmake and the Boost headers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake libboost-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p scanstream --bin scanstream \
    && install -D -m 0755 target/release/scanstream /out/scanstream

FROM debian:${DEBIAN_RELEASE}-slim
ARG DEBIAN_FRONTEND=noninteractive
# git + openssh-client: mirrors over HTTPS and SSH; libssl3/zlib1g: librdkafka's TLS and
# compression; tini: reaps git's children and forwards SIGTERM for the drain.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       ca-certificates git openssh-client libssl3 zlib1g tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 scanstream \
    && useradd --system --uid 10001 --gid scanstream --home-dir /var/lib/scanstream \
       --shell /usr/sbin/nologin scanstream \
    && install -d -o scanstream -g scanstream /var/lib/scanstream /var/lib/scanstream/cache \
       /var/lib/scanstream/store /var/lib/scanstream/tokens
COPY --from=build /out/scanstream /usr/local/bin/scanstream
USER 10001:10001
WORKDIR /var/lib/scanstream
# Git writes nothing under HOME for mirrors, but keep HOME writable with a read-only root
# filesystem: Kubernetes mounts an emptyDir at /tmp.
ENV HOME=/tmp \
    SCANSTREAM__API__LISTEN=0.0.0.0:8080 \
    SCANSTREAM__TELEMETRY__LOG_FORMAT=json \
    SCANSTREAM__SCANNER__CACHE_DIR=/var/lib/scanstream/cache \
    SCANSTREAM__AGGREGATOR__DATA_DIR=/var/lib/scanstream/store
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/scanstream"]
CMD ["--help"]
