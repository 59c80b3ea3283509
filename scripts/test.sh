#!/usr/bin/env bash
# Runs every test: installs what the build and the tests need, starts a real Apache Kafka
# broker (KRaft, 127.0.0.1), runs the unit, integration, property and broker tests, and stops
# the broker again. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

source scripts/packages.sh
ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
# The status page's browser test: playwright-core (no browser download) drives Debian's chromium.
npm ci --prefix tests/browser --no-audit --no-fund
# The generated-clients test: schemathesis, pinned with its dependencies, in a venv of its own.
VENV="$ROOT/target/schemathesis-venv"
if ! cmp -s tests/schemathesis/requirements.txt "$VENV/installed.txt" 2>/dev/null; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/schemathesis/requirements.txt
  cp tests/schemathesis/requirements.txt "$VENV/installed.txt"
fi

bash scripts/kafka.sh reset >/dev/null 2>&1 || true
bash scripts/kafka.sh up
trap 'bash scripts/kafka.sh down >/dev/null 2>&1 || true' EXIT
export DRIFTWATCH_TEST_BROKERS="$(bash scripts/kafka.sh bootstrap)"

cargo test --release "$@"
