# syntax=docker/dockerfile:1
#
# driftwatch: the Kafka service (`driftwatch run`) and its tools (`simulate`, `replay`,
# `baseline`) in one image. The entrypoint is the binary, so a container's command is the
# subcommand and its flags:
#
#   docker build -t driftwatch .
#   docker run --rm driftwatch simulate --list
#   docker run --rm -v "$PWD/deploy:/etc/driftwatch:ro" -e DRIFTWATCH_BROKERS=broker:9092 \
#       driftwatch run --config /etc/driftwatch/driftwatch.toml
#
# docker-compose.yml runs it next to a single-node Apache Kafka broker.

# --- build ------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build

# librdkafka is built from source by rdkafka's `cmake-build` feature; it links the system's
# OpenSSL, libcurl, zlib and zstd.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        cmake pkg-config libssl-dev libcurl4-openssl-dev zlib1g-dev libzstd-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what the build needs (see .dockerignore): a change to tests/ does not rebuild.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples

# The registry and target caches survive between builds (BuildKit), so a rebuild after a
# source change recompiles driftwatch, not its dependencies and librdkafka.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin driftwatch \
 && install -m 0755 target/release/driftwatch /usr/local/bin/driftwatch

# --- runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        ca-certificates libssl3 libcurl4 zlib1g libzstd1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 driftwatch \
 && useradd --system --uid 10001 --gid driftwatch --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin driftwatch

COPY --from=build /usr/local/bin/driftwatch /usr/local/bin/driftwatch

# State lives in Kafka (the changelog topic), not on disk: nothing to mount but the config.
USER 10001:10001
ENV RUST_LOG=driftwatch=info,rdkafka=warn
EXPOSE 9464
ENTRYPOINT ["driftwatch"]
CMD ["--help"]
