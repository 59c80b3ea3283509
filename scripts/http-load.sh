#!/usr/bin/env bash
# Load test of the HTTP API with 10,100 tracked versions (issue #4 item 5):
#
#   bash scripts/kafka.sh up && cargo build --release && bash scripts/http-load.sh
#
# 1. Produces the `ten-thousand-targets` scenario (2,561,448 events: 9,000 apps, 100 canaries,
#    1,000 models) onto a fresh 1-partition topic of the real broker.
# 2. Unloaded: `driftwatch run --http` (at-least-once) from a fresh group; times the
#    consumption of the whole topic, from /readyz answering 200 to the committed input position
#    (the `positions` record of its changelog, committed every second) reaching the end.
# 3. Loaded: the same with a fresh group while `hey` (Debian package) sends RATE requests/s
#    (default 1200) spread over /metrics (gzip, as Prometheus asks), /v1/targets?limit=100,
#    /v1/alerts and /v1/decisions; prints hey's rates and latencies and the ingestion ratio.
# 4. Capacity: each endpoint alone, unthrottled (8 connections, 10 s), once ingestion is done.
#
# Environment: BROKERS (127.0.0.1:9092), RATE (1200), PORT (9471).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release/driftwatch"
B="${BROKERS:-127.0.0.1:9092}"
RATE="${RATE:-1200}"
PORT="${PORT:-9471}"
ID="load$$-$(date +%s)"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
[[ -x "$BIN" ]] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v hey >/dev/null || { echo "hey is needed: apt-get install hey" >&2; exit 1; }
command -v kcat >/dev/null || { echo "kcat is needed: apt-get install kcat" >&2; exit 1; }
source "$ROOT/scripts/measure-lib.sh"
URL="http://127.0.0.1:$PORT"

T="dw.$ID.events"
kcat -b "$B" -L -t "$T" >/dev/null 2>&1 || true
"$BIN" simulate --scenario ten-thousand-targets --brokers "$B" --topic "$T" 2>"$WORK/sim.log"
TOTAL=$(kcat -b "$B" -Q -t "$T:0:-1" 2>/dev/null | awk '{print $NF}')
echo "input: $TOTAL events of ten-thousand-targets on $T"


# run_once NAME LOAD(0/1): prints the ingestion rate
run_once() {
  local cfg; cfg=$(run_config "$1" at_least_once "$T")
  "$BIN" run --config "$cfg" --brokers "$B" --http "127.0.0.1:$PORT" 2>"$WORK/$1.log" &
  local pid=$!
  PIDS+=("$pid")
  until curl -sf "$URL/readyz" >/dev/null 2>&1; do sleep 0.05; done
  local t0; t0=$(now)
  local hp=()
  if [[ "$2" == 1 ]]; then
    # RATE requests/s: half on /metrics, a quarter on /v1/targets, an eighth each on alerts and decisions.
    local q=$(((RATE + 15) / 16)) # per worker (hey -q is per worker); 8 + 4 + 2 + 2 workers
    hey -z 60s -c 8 -q "$q" -H "Accept-Encoding: gzip" "$URL/metrics" >"$WORK/hey-metrics.txt" 2>&1 & hp+=($!)
    hey -z 60s -c 4 -q "$q" "$URL/v1/targets?limit=100" >"$WORK/hey-targets.txt" 2>&1 & hp+=($!)
    hey -z 60s -c 2 -q "$q" "$URL/v1/alerts" >"$WORK/hey-alerts.txt" 2>&1 & hp+=($!)
    hey -z 60s -c 2 -q "$q" "$URL/v1/decisions?limit=100" >"$WORK/hey-decisions.txt" 2>&1 & hp+=($!)
    PIDS+=("${hp[@]}")
  fi
  # Done when the committed input position (in the changelog's positions record) is the end.
  until kcat -b "$B" -L -t "dw.$ID.$1.changelog" 2>/dev/null | grep -q "partition 0"; do sleep 0.1; done
  local t1; t1=$(until_positions "$B" "dw.$ID.$1.changelog" "$T" "$TOTAL")
  local secs; secs=$(echo "$t1 - $t0" | bc)
  RATE_OUT=$(echo "$TOTAL / $secs" | bc)
  if [[ "$2" == 1 ]]; then
    # Stop the load now: hey prints its summary on SIGINT.
    for p in "${hp[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${hp[@]}"; do wait "$p" 2>/dev/null || true; done
  fi
  printf '%s: %d events in %.2f s: %d events/s\n' "$1" "$TOTAL" "$secs" "$RATE_OUT"
}

summary() { # summary FILE LABEL
  awk -v label="$2" '
    /Requests\/sec/ { rps = $2 }
    /Total:/ && !total { total = $2 }
    /50% in/ { p50 = $3 } /99% in/ { p99 = $3 }
    /\[200\]/ { ok = $2 } /\[[0-9]+\]/ && !/\[200\]/ { bad += $2 }
    END { printf "  %-28s %8.0f req/s  p50 %6.1f ms  p99 %6.1f ms  200s: %s  other: %d\n", label, rps, p50 * 1000, p99 * 1000, ok, bad }' "$1"
}

run_once unloaded 0
UNLOADED=$RATE_OUT
kill -TERM "${PIDS[-1]}" 2>/dev/null; wait "${PIDS[-1]}" 2>/dev/null || true
run_once loaded 1
LOADED=$RATE_OUT
echo "HTTP load during ingestion (target $RATE requests/s in all):"
summary "$WORK/hey-metrics.txt" "/metrics (gzip)"
summary "$WORK/hey-targets.txt" "/v1/targets?limit=100"
summary "$WORK/hey-alerts.txt" "/v1/alerts"
summary "$WORK/hey-decisions.txt" "/v1/decisions?limit=100"
awk '/Requests\/sec/ { s += $2 } END { printf "  total %.0f requests/s\n", s }' "$WORK"/hey-*.txt
printf 'ingestion under load: %d of %d events/s unloaded = %.2f\n' "$LOADED" "$UNLOADED" "$(echo "$LOADED / $UNLOADED" | bc -l)"
echo "targets tracked: $(curl -s "$URL/v1/status" | python3 -c 'import sys, json; print(json.load(sys.stdin)["targets"])')"
echo "capacity once ingestion is done (8 connections, 10 s, unthrottled):"
for path in "/metrics|gzip" "/v1/targets?limit=100|" "/v1/targets?limit=1000|" "/v1/alerts|" "/v1/decisions?limit=100|" "/v1/status|"; do
  p="${path%%|*}"
  if [[ "${path##*|}" == gzip ]]; then
    hey -z 10s -c 8 -H "Accept-Encoding: gzip" "$URL$p" >"$WORK/cap.txt" 2>&1
    summary "$WORK/cap.txt" "$p (gzip)"
  else
    hey -z 10s -c 8 "$URL$p" >"$WORK/cap.txt" 2>&1
    summary "$WORK/cap.txt" "$p"
  fi
done
