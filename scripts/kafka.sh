#!/usr/bin/env bash
# Single-node Apache Kafka broker (KRaft, broker+controller in one JVM) for the
# integration tests. No Docker, no tarball download: the broker's jars come from
# Maven Central through scripts/kafka/pom.xml.
#
# Usage: scripts/kafka.sh <command>
#   up       fetch jars if missing, write config, format storage if new, start
#            the broker in the background and wait until it answers metadata.
#            Idempotent: if the broker is already running it only waits/prints.
#   down     stop the broker (SIGTERM, then SIGKILL after a grace period);
#            keeps the data, so a later `up` resumes the same cluster.
#   restart  down + up (same data).
#   kill     SIGKILL the broker (simulated crash); keeps the data.
#   pause    SIGSTOP the broker (it hangs: connections open but no answers).
#   resume   SIGCONT a paused broker and wait until it answers again.
#   reset    down + delete the data dir (next `up` formats a fresh cluster).
#   status   print state; exit 0 if running, 3 if stopped.
#   fetch    only fetch the jars into .kafka/libs.
#   logs     tail the broker log.
#   bootstrap  print the bootstrap address.
#
# Environment:
#   KAFKA_PORT             broker listener port            (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener port  (default 9093)
#   KAFKA_HEAP_OPTS        JVM heap flags                  (default -Xms256m -Xmx512m)
#   KAFKA_START_TIMEOUT    seconds `up` waits for readiness (default 60)
#   KAFKA_STOP_TIMEOUT     seconds `down` waits after SIGTERM (default 30)
#   KAFKA_NO_INSTALL=1     never apt-get install anything (kcat, java, maven)
#
# All state lives in <repo>/.kafka (git-ignored):
#   libs/  jars      data/  KRaft metadata + topic data      server.properties
#   log4j2.properties      broker.log (+ broker.log.1 from the previous run)
#   broker.pid             cluster.id
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
POM="$SCRIPT_DIR/kafka/pom.xml"

KDIR="$ROOT/.kafka"
LIBS="$KDIR/libs"
DATA="$KDIR/data"
PROPS="$KDIR/server.properties"
LOG4J="$KDIR/log4j2.properties"
LOG="$KDIR/broker.log"
PIDFILE="$KDIR/broker.pid"
CLUSTER_ID_FILE="$KDIR/cluster.id"
LOCK="$KDIR/.lock"

HOST=127.0.0.1
PORT="${KAFKA_PORT:-9092}"
CPORT="${KAFKA_CONTROLLER_PORT:-9093}"
BOOTSTRAP="$HOST:$PORT"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --------------------------------------------------------------------------
# prerequisites

can_install() {
  [[ "${KAFKA_NO_INSTALL:-0}" != 1 ]] && command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]
}

apt_install() {
  # apt_install pkg...: install, running `apt-get update` only if needed.
  can_install || return 1
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" </dev/null >/dev/null 2>&1 && return 0
  apt-get update -q </dev/null >/dev/null 2>&1 || true
  apt-get install -y -q "$@" </dev/null >/dev/null 2>&1
}

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    return 1
  fi
}

ensure_java() {
  JAVA="$(java_bin)" && return 0
  log "java not found; installing openjdk-17-jre-headless"
  apt_install openjdk-17-jre-headless || die "no java and could not install it"
  JAVA="$(java_bin)" || die "java still not found"
}

ensure_mvn() {
  command -v mvn >/dev/null 2>&1 && return 0
  log "mvn not found; installing maven"
  apt_install maven || die "no mvn and could not install it"
}

have_kcat() { command -v kcat >/dev/null 2>&1; }

ensure_kcat() {
  have_kcat && return 0
  if can_install; then
    log "kcat not found; trying apt-get install kcat"
    if apt_install kcat && have_kcat; then return 0; fi
  fi
  log "kcat unavailable; readiness will be checked by polling the port"
  return 1
}

# --------------------------------------------------------------------------
# jars

pom_stamp() { sha256sum "$POM" | cut -d' ' -f1; }

fetch_jars() {
  local stamp="$LIBS/.fetched"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$(pom_stamp)" ]] \
     && compgen -G "$LIBS/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  ensure_mvn
  log "fetching Kafka jars from Maven Central (scripts/kafka/pom.xml) ..."
  local t0=$SECONDS tmp="$KDIR/libs.tmp"
  rm -rf "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" </dev/null >"$KDIR/mvn.log" 2>&1; then
    tail -n 40 "$KDIR/mvn.log" >&2
    die "mvn dependency:copy-dependencies failed (full output: $KDIR/mvn.log)"
  fi
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "no kafka_2.13 jar after fetch"
  pom_stamp >"$tmp/.fetched"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  log "fetched $(find "$LIBS" -maxdepth 1 -name '*.jar' | wc -l) jars in $((SECONDS - t0))s"
}

# --------------------------------------------------------------------------
# config

write_config() {
  cat >"$PROPS" <<EOF
# Generated by scripts/kafka.sh (rewritten on every 'up'). Do not edit.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CPORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CPORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA

# single node: every internal topic with one replica
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# test-friendly timings
# After a SIGKILL the restarted broker cannot re-register until the old
# registration's session expires (default 9 s), so keep the session short.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
group.initial.rebalance.delay.ms=0
transaction.abort.timed.out.transaction.cleanup.interval.ms=5000
transaction.remove.expired.transaction.cleanup.interval.ms=60000

# small machine (2 cores)
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.dedupe.buffer.size=33554432
EOF
  # auto.create.topics.enable is left at its default (true) on purpose.

  cat >"$LOG4J" <<'EOF'
# Generated by scripts/kafka.sh. The JVM's stdout is redirected to broker.log.
status = warn
# keep logging until the JVM exits (Kafka logs its own shutdown from a hook)
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
EOF
}

java_opts() {
  # shellcheck disable=SC2206
  JOPTS=($HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20
         -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
         "-Dlog4j2.configurationFile=$LOG4J" "-Dkafka.logs.dir=$KDIR")
}

format_storage() {
  if [[ -f "$DATA/meta.properties" ]]; then
    return 0
  fi
  mkdir -p "$DATA"
  local cid
  if [[ -s "$CLUSTER_ID_FILE" ]]; then
    cid="$(cat "$CLUSTER_ID_FILE")"
  else
    cid="$("$JAVA" -cp "$LIBS/*" "-Dlog4j2.configurationFile=$LOG4J" \
            kafka.tools.StorageTool random-uuid </dev/null 2>/dev/null | tail -n 1)"
    [[ "$cid" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "could not get a cluster id (got: '$cid')"
    echo "$cid" >"$CLUSTER_ID_FILE"
  fi
  log "formatting $DATA (cluster id $cid)"
  # Static quorum (controller.quorum.voters), so no --standalone /
  # --initial-controllers: those are for dynamic quorums and must not be
  # combined with controller.quorum.voters.
  local out
  if ! out="$("$JAVA" -cp "$LIBS/*" "-Dlog4j2.configurationFile=$LOG4J" \
                kafka.tools.StorageTool format --config "$PROPS" \
                --cluster-id "$cid" --ignore-formatted </dev/null 2>&1)"; then
    echo "$out" >&2
    die "kafka.tools.StorageTool format failed"
  fi
}

# --------------------------------------------------------------------------
# process helpers

broker_pid() {
  # Prints the pid if our broker is alive (also when paused); else fails.
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  # guard against pid reuse: must be a JVM running kafka.Kafka on our config
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "kafka.Kafka $PROPS" || return 1
  # a zombie is not alive
  [[ "$(proc_state "$pid")" != Z ]] || return 1
  echo "$pid"
}

proc_state() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true; }

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

broker_ready() {
  if have_kcat; then
    kcat -b "$BOOTSTRAP" -L -m 3 </dev/null 2>/dev/null | grep -q " 1 brokers:"
  else
    port_open "$PORT"
  fi
}

tail_log() {
  if [[ -f "$LOG" ]]; then
    log "---- last 60 lines of $LOG ----"
    tail -n 60 "$LOG" >&2
    log "---- end of log ----"
  fi
}

# --------------------------------------------------------------------------
# commands

cmd_fetch() { ensure_java; fetch_jars; }

cmd_up() {
  local t0=$SECONDS pid
  ensure_java
  fetch_jars
  ensure_kcat || true

  if pid="$(broker_pid)"; then
    if [[ "$(proc_state "$pid")" == T ]]; then
      log "broker $pid is paused; resuming"
      kill -CONT "$pid"
    fi
    log "broker already running (pid $pid)"
  else
    rm -f "$PIDFILE"
    for p in "$PORT" "$CPORT"; do
      if port_open "$p"; then
        die "port $HOST:$p is already in use by another process (not our broker; see: ss -ltnp 'sport = :$p')"
      fi
    done
    write_config
    format_storage
    [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.1"
    java_opts
    # setsid: own session, so a Ctrl-C in the calling terminal or the end of
    # the calling shell does not take the broker with it. Run in a background
    # job (not a process-group leader), setsid execs java without forking, so
    # $! is the JVM's pid.
    setsid "$JAVA" "${JOPTS[@]}" -cp "$LIBS/*" kafka.Kafka "$PROPS" \
      </dev/null >>"$LOG" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$PIDFILE"
    log "started broker pid $pid (log: ${LOG#"$ROOT"/})"
  fi

  wait_ready
  log "ready in $((SECONDS - t0))s"
  echo "$BOOTSTRAP"
}

wait_ready() {
  # Wait until the broker answers metadata listing itself; on failure print the
  # log tail, stop the broker and exit non-zero.
  local deadline=$((SECONDS + START_TIMEOUT))
  until broker_ready; do
    if ! broker_pid >/dev/null; then
      tail_log
      rm -f "$PIDFILE"
      die "broker exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      tail_log
      log "broker not ready after ${START_TIMEOUT}s; stopping it"
      stop_broker
      die "broker failed to start"
    fi
    sleep 0.5
  done
}

stop_broker() {
  local pid
  pid="$(broker_pid)" || { rm -f "$PIDFILE"; return 0; }
  # a stopped (SIGSTOP) JVM cannot handle SIGTERM until continued
  if [[ "$(proc_state "$pid")" == T ]]; then kill -CONT "$pid" 2>/dev/null || true; fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while broker_pid >/dev/null; do
    if ((SECONDS >= deadline)); then
      log "broker $pid did not stop in ${STOP_TIMEOUT}s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$PIDFILE"
  log "broker $pid stopped"
}

cmd_down() { stop_broker; }

cmd_kill() {
  local pid
  pid="$(broker_pid)" || { log "broker not running"; rm -f "$PIDFILE"; return 0; }
  kill -KILL "$pid" 2>/dev/null || true
  while [[ -e "/proc/$pid" && "$(proc_state "$pid")" != Z ]]; do sleep 0.1; done
  rm -f "$PIDFILE"
  log "broker $pid killed (SIGKILL); data kept"
}

cmd_pause() {
  local pid
  pid="$(broker_pid)" || die "broker not running"
  kill -STOP "$pid"
  log "broker $pid paused (SIGSTOP)"
}

cmd_resume() {
  local pid
  pid="$(broker_pid)" || die "broker not running"
  kill -CONT "$pid"
  local t0=$SECONDS
  wait_ready
  log "broker $pid resumed (SIGCONT), answering again after $((SECONDS - t0))s"
}

cmd_reset() {
  stop_broker
  rm -rf "$DATA" "$CLUSTER_ID_FILE"
  log "data deleted (${DATA#"$ROOT"/})"
}

cmd_status() {
  local pid
  if pid="$(broker_pid)"; then
    if [[ "$(proc_state "$pid")" == T ]]; then
      echo "paused pid=$pid bootstrap=$BOOTSTRAP"
    elif broker_ready; then
      echo "running pid=$pid bootstrap=$BOOTSTRAP"
    else
      echo "starting pid=$pid bootstrap=$BOOTSTRAP (not answering yet)"
    fi
    return 0
  fi
  echo "stopped"
  return 3
}

cmd_logs() { [[ -f "$LOG" ]] && tail -n "${1:-100}" "$LOG"; }

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  mkdir -p "$KDIR"
  case "$cmd" in
    up|start|down|stop|restart|kill|reset|fetch)
      # serialize state-changing commands (e.g. tests calling up concurrently)
      exec 9>"$LOCK"
      flock 9
      ;;
  esac
  case "$cmd" in
    up|start) cmd_up ;;
    down|stop) cmd_down ;;
    restart) cmd_down; cmd_up ;;
    kill) cmd_kill ;;
    pause) cmd_pause ;;
    resume) cmd_resume ;;
    reset) cmd_reset ;;
    status) cmd_status ;;
    fetch) cmd_fetch ;;
    logs) cmd_logs "$@" ;;
    bootstrap) echo "$BOOTSTRAP" ;;
    *)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
      [[ -z "$cmd" || "$cmd" == -h || "$cmd" == --help || "$cmd" == help ]] && exit 0
      exit 2
      ;;
  esac
}

main "$@"
