#!/usr/bin/env bash
# Throughput of a scaled-out group (`kafka.tasks`) of 1 and 2 instances against a bare consumer
# group of the same size on the same topic, and the bytes it writes to its internal topics:
# `cargo run --release --example measure -- group-throughput` (examples/measure/group.rs says
# what it measures).
#
#   bash scripts/kafka.sh up && bash scripts/group-throughput.sh
#
# Environment: BROKERS (127.0.0.1:9092), N (1000000), PARTITIONS (6), TASKS (6),
# INSTANCES (1,2), COMMIT_INTERVAL (1s).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet --bin driftwatch
exec cargo run --release --quiet --example measure -- group-throughput "$@"
