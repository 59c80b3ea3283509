# Sourced by the measurement scripts: a clock, a `driftwatch run` config per run, and the
# moment a run's committed input position reaches the end of its input.
# Needs WORK (a scratch directory) and ID (unique per script run).

now() { date +%s.%N; }

# run_config NAME DELIVERY INPUT_TOPIC [COMMIT_INTERVAL] → path of a config whose group,
# transactional id and topics are fresh (named after ID and NAME).
run_config() {
  local f="$WORK/$1.toml" interval=""
  [[ -n "${4:-}" ]] && interval="commit_interval = \"$4\""
  cat >"$f" <<CONF
[kafka]
group_id = "dw-$ID-$1"
transactional_id = "dw-$ID-$1-tx"
delivery = "$2"
partitions = 1
$interval
[kafka.topics]
events = ["$3"]
rollback = "dw.$ID.$1.rollback"
retrain = "dw.$ID.$1.retrain"
review = "dw.$ID.$1.review"
promote = "dw.$ID.$1.promote"
decisions = "dw.$ID.$1.decisions"
deadletter = "dw.$ID.$1.deadletter"
changelog = "dw.$ID.$1.changelog"
CONF
  echo "$f"
}

# Follows the changelog CHANGELOG (read_committed) and prints the time at which a positions record
# says the input is read up to TOTAL messages (summed over the topic's partitions). Lines are handled as they arrive (awk may wait
# for a full input buffer), and the follower does not wait for kcat to exit.
until_positions() { # until_positions BROKERS CHANGELOG TOPIC TOTAL
  python3 - "$@" <<'EOF'
import json, subprocess, sys, time
brokers, changelog, topic, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
kcat = subprocess.Popen(["kcat", "-C", "-b", brokers, "-t", changelog, "-o", "beginning", "-u", "-q",
                         "-X", "isolation.level=read_committed", "-f", "%k\t%s\n"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
for line in kcat.stdout:
    if line.startswith(b"positions\t"):
        try:
            done = sum(o for t, _, o in json.loads(line[10:]) if t == topic) >= total
        except ValueError:
            continue
        if done:
            print("%.6f" % time.time())
            break
kcat.kill()
EOF
}
