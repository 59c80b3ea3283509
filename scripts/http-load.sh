#!/usr/bin/env bash
# Load test of the HTTP API with 10,100 tracked versions (issue #4 item 5):
# `cargo run --release --example measure -- http-load` (examples/measure/http_load.rs says
# what it measures). Needs `hey` (Debian package).
#
#   bash scripts/kafka.sh up && cargo build --release && bash scripts/http-load.sh
#
# Environment: BROKERS (127.0.0.1:9092), RATE (1200), PORT (9471), DURATION (the scenario's
# own: 2,561,448 events).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet --bin driftwatch
exec cargo run --release --quiet --example measure -- http-load "$@"
