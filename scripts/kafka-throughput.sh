#!/usr/bin/env bash
# Throughput and decision latency of `driftwatch run` on a real broker (issue #3 item 9):
# `cargo run --release --example measure -- kafka-throughput` (examples/measure/throughput.rs
# says what it measures).
#
#   bash scripts/kafka.sh up && cargo build --release && bash scripts/kafka-throughput.sh
#
# Environment: BROKERS (127.0.0.1:9092), N (2000000), PARTITIONS (1), COMMIT_INTERVAL (1s),
# RATE (2000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet --bin driftwatch
exec cargo run --release --quiet --example measure -- kafka-throughput "$@"
