#!/usr/bin/env bash
# Throughput and decision latency of `driftwatch run` on a real broker (issue #3 item 9).
#
#   bash scripts/kafka.sh up && cargo build --release && bash scripts/kafka-throughput.sh
#
# 1. Produces N (default 2,000,000) `mixed` events onto a fresh topic of PARTITIONS partitions
#    (default 1), keyed by service as `driftwatch simulate --brokers` keys them.
# 2. Times two bare consumers reading the whole topic: kcat (librdkafka's C API, partitions
#    assigned directly, no group) and `examples/bare_consumer.rs` (the service's client library and API:
#    rdkafka, one message per poll, a consumer group, read_committed), which only counts.
# 3. Times `driftwatch run` (at-least-once, then exactly-once; fresh group, changelog and output
#    topics each) from start until its committed input position reaches the end of the topic,
#    read from the `positions` record of its changelog (read_committed) as soon as it is
#    readable. Also printed: the same end measured from the moment the service logged its
#    partition assignment (start-up — topic creation, changelog restore, group join — excluded;
#    the final commit included).
# 4. Decision latency: a canary-error stream fed live at RATE lines/s; time from writing the line
#    that triggers the rollback (per `replay`) to the command being readable (read_committed).
#
# Environment: BROKERS (127.0.0.1:9092), N (2000000), PARTITIONS (1), COMMIT_INTERVAL (1s),
# RATE (2000), BIN (target/release/driftwatch).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/driftwatch}"
B="${BROKERS:-127.0.0.1:9092}"
N="${N:-2000000}"
PARTITIONS="${PARTITIONS:-1}"
CI="${COMMIT_INTERVAL:-1s}"
RATE="${RATE:-2000}"
ID="tp$$-$(date +%s)"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
[[ -x "$BIN" ]] || { echo "build first: cargo build --release" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --quiet --example bare_consumer)
BARE_RS="$ROOT/target/release/examples/bare_consumer"
command -v kcat >/dev/null || { echo "kcat is needed" >&2; exit 1; }
source "$ROOT/scripts/measure-lib.sh"


# --- input -------------------------------------------------------------------------------
T="dw.$ID.events"
SCALE=$(awk -v n="$N" 'BEGIN { printf "%.4f", n / 321165 }') # mixed at scale 1 has 321,165 lines
t0=$(now)
"$BIN" simulate --scenario mixed --rate-scale "$SCALE" --brokers "$B" --topic "$T" --partitions "$PARTITIONS" 2>"$WORK/sim.log"
t1=$(now)
TOTAL=0
for ((p = 0; p < PARTITIONS; p++)); do
  TOTAL=$((TOTAL + $(kcat -b "$B" -Q -t "$T:$p:-1" 2>/dev/null | awk '{print $NF}')))
done
printf 'input: %s events (mixed, rate-scale %s) on %s (%s partitions), produced in %.1f s\n' "$TOTAL" "$SCALE" "$T" "$PARTITIONS" "$(echo "$t1 - $t0" | bc)"

# --- bare consumer -----------------------------------------------------------------------
t0=$(now)
kcat -C -b "$B" -t "$T" -o beginning -e -q >/dev/null
t1=$(now)
BARE=$(echo "$t1 - $t0" | bc)
BARE_RATE=$(echo "$TOTAL / $BARE" | bc)
printf 'bare consumer (kcat -C -o beginning -e): %.2f s, %d events/s\n' "$BARE" "$BARE_RATE"
t0=$(now)
"$BARE_RS" "$B" "$T" >"$WORK/bare_rs.out"
t1=$(now)
RS=$(echo "$t1 - $t0" | bc)
printf 'bare rdkafka consumer (examples/bare_consumer.rs): %.2f s, %d events/s; its own clock: %s\n' "$RS" "$(echo "$TOTAL / $RS" | bc)" "$(cat "$WORK/bare_rs.out")"
# its rate from the first message to the last, for the service's own "caught up" rate
RS_STEADY=$(grep -o '[0-9]* events/s$' "$WORK/bare_rs.out" | awk '{print $1}')

# --- driftwatch run ------------------------------------------------------------------------

# Prints the time of the first line of the service log FILE containing TEXT, or nothing.
logged_at() { # logged_at FILE TEXT
  python3 - "$1" "$2" <<'EOF'
import datetime, re, sys
for line in open(sys.argv[1], errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    if sys.argv[2] in line:
        print("%.6f" % datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp())
        break
EOF
}

run_mode() { # run_mode NAME DELIVERY
  local cfg; cfg=$(run_config "$1" "$2" "$T" "$CI")
  local cl="dw.$ID.$1.changelog"
  local t0 t1 ta
  t0=$(now)
  "$BIN" run --config "$cfg" --brokers "$B" 2>"$WORK/$1.log" &
  local pid=$!
  PIDS+=("$pid")
  # wait for the changelog to exist, then follow its positions records
  until kcat -b "$B" -L -t "$cl" 2>/dev/null | grep -q "partition 0"; do sleep 0.1; done
  t1=$(until_positions "$B" "$cl" "$T" "$TOTAL")
  kill -TERM "$pid"
  wait "$pid" || true
  local secs; secs=$(echo "$t1 - $t0" | bc)
  printf '%s (%s, commit_interval %s): %.2f s, %d events/s, %.2f of kcat, %.2f of the rdkafka consumer; %s\n' \
    "driftwatch run" "$2" "$CI" "$secs" "$(echo "$TOTAL / $secs" | bc)" "$(echo "($BARE / $secs)" | bc -l)" \
    "$(echo "($RS / $secs)" | bc -l)" "$(tail -n 1 "$WORK/$1.log")"
  local caught; caught=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/$1.log" | grep -o 'caught up: .*' | head -n 1)
  if [[ -n "$caught" ]]; then
    printf '  its own log, first to last message: %s, %.2f of the rdkafka consumer from its first message\n' "$caught" \
      "$(echo "$(echo "$caught" | grep -o '[0-9]*/s' | tr -d '/s') / $RS_STEADY" | bc -l)"
  fi
  ta=$(logged_at "$WORK/$1.log" "input partitions")
  if [[ -n "$ta" ]]; then
    secs=$(echo "$t1 - $ta" | bc)
    printf '  from partition assignment (%.2f s after start): %.2f s, %d events/s, %.2f of kcat\n' \
      "$(echo "$ta - $t0" | bc)" "$secs" "$(echo "$TOTAL / $secs" | bc)" "$(echo "($BARE / $secs)" | bc -l)"
  fi
}
run_mode alo at_least_once
run_mode eos exactly_once

# --- decision latency --------------------------------------------------------------------
LT="dw.$ID.lat.events"
kcat -b "$B" -L -t "$LT" >/dev/null 2>&1 || true
"$BIN" simulate --scenario canary-error --out "$WORK/canary.jsonl"
cfg=$(run_config lat exactly_once "$LT" "$CI")
TRIGGER=$("$BIN" replay -q --config "$cfg" "$WORK/canary.jsonl" | head -n 1 |
  python3 -c 'import sys, json; c = json.load(sys.stdin); print(list(c["evidence"]["input_offsets"].values())[0])')
LINES=$(wc -l <"$WORK/canary.jsonl")
"$BIN" run --config "$cfg" --brokers "$B" 2>"$WORK/lat.log" &
PIDS+=("$!")
LPID=$!
until grep -q "state restored" "$WORK/lat.log"; do sleep 0.1; done
# The reader waits for the first rollback (read_committed) and prints when it got it.
( kcat -C -b "$B" -t "dw.$ID.lat.rollback" -o beginning -c 1 -q -X isolation.level=read_committed -X topic.metadata.refresh.interval.ms=100 >/dev/null 2>&1; now >"$WORK/got" ) &
PIDS+=("$!")
# Feed at RATE lines/s; note when the triggering line (0-based offset TRIGGER) is written.
python3 - "$WORK/canary.jsonl" "$RATE" "$TRIGGER" "$WORK/sent" <<'EOF' | kcat -P -b "$B" -t "$LT" -p 0 -X linger.ms=5
import sys, time
path, rate, trigger, sent = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
t0 = time.time()
with open(path, "rb") as f:
    for i, line in enumerate(f):
        due = t0 + i / rate
        d = due - time.time()
        if d > 0:
            time.sleep(d)
        sys.stdout.buffer.write(line)
        if i % 100 == 0 or i == trigger:
            sys.stdout.flush()
        if i == trigger:
            open(sent, "w").write("%.6f\n" % time.time())
        if i > trigger + int(rate * 5):
            break  # 5 s past the trigger is enough
EOF
for _ in $(seq 1 300); do [[ -s "$WORK/got" ]] && break; sleep 0.1; done
kill -TERM "$LPID" 2>/dev/null || true
if [[ -s "$WORK/got" ]]; then
  printf 'decision latency (exactly-once, commit_interval %s, feed %s lines/s): %.0f ms from writing line %s of %s to the rollback being readable\n' \
    "$CI" "$RATE" "$(echo "($(cat "$WORK/got") - $(cat "$WORK/sent")) * 1000" | bc)" "$TRIGGER" "$LINES"
else
  echo "decision latency: no rollback seen within 30 s of the trigger"
fi
