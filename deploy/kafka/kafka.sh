#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) broker for Warden dev and tests.
#
# Usage: kafka.sh start | stop [--wipe] | restart | status | wipe | classpath
#
#   start      resolve jars (Maven, once; cached), format storage if needed,
#              start kafka.Kafka in the background and wait until it serves.
#              A no-op if already running.
#   stop       SIGTERM, wait up to 30 s, then SIGKILL. Data is kept, so a later
#              `start` resumes the same topics/offsets. `stop --wipe` also
#              deletes the state dir.
#   restart    stop + start (data kept).
#   status     exit 0 and print "running pid N port P" if up, else exit 1.
#   wipe       stop (if running) and delete the state dir.
#   classpath  print the resolved classpath (for debugging).
#
# Environment:
#   WARDEN_KAFKA_PORT             broker port (default 9092)
#   WARDEN_KAFKA_CONTROLLER_PORT  KRaft controller port (default 9093)
#   WARDEN_KAFKA_DIR              state/log dir (default /tmp/warden-kafka-$PORT)
#   WARDEN_KAFKA_HEAP             JVM heap flags (default "-Xmx512m -Xms256m")
#   WARDEN_KAFKA_START_TIMEOUT    seconds to wait for the broker (default 90)
#   JAVA_HOME / JAVA              java to use (default: java on PATH)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$SCRIPT_DIR/pom.xml"
TEMPLATE="$SCRIPT_DIR/server.properties"
LOG4J_CONF="$SCRIPT_DIR/log4j2.xml"

PORT="${WARDEN_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${WARDEN_KAFKA_CONTROLLER_PORT:-9093}"
STATE_DIR="${WARDEN_KAFKA_DIR:-/tmp/warden-kafka-$PORT}"
HEAP="${WARDEN_KAFKA_HEAP:--Xmx512m -Xms256m}"
START_TIMEOUT="${WARDEN_KAFKA_START_TIMEOUT:-90}"

DATA_DIR="$STATE_DIR/data"
LOG_DIR="$STATE_DIR/logs"
PID_FILE="$STATE_DIR/kafka.pid"
OUT_LOG="$STATE_DIR/kafka.out"
PROPS="$STATE_DIR/server.properties"
CLUSTER_ID_FILE="$STATE_DIR/cluster.id"

CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/warden"

if [[ -n "${JAVA:-}" ]]; then
  JAVA_BIN="$JAVA"
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA_BIN="$JAVA_HOME/bin/java"
else
  JAVA_BIN="java"
fi

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --------------------------------------------------------------------------
# Classpath: resolved with Maven once per pom.xml content, cached outside the
# repo. A cached file whose jars have vanished from ~/.m2 is re-resolved.
# --------------------------------------------------------------------------
classpath_file() {
  local hash
  hash="$(sha256sum "$POM" | cut -c1-16)"
  printf '%s/kafka-classpath-%s.txt' "$CACHE_DIR" "$hash"
}

classpath_valid() {
  local file="$1" jar
  [[ -s "$file" ]] || return 1
  local -a jars
  IFS=':' read -r -a jars < "$file"
  ((${#jars[@]} > 0)) || return 1
  for jar in "${jars[@]}"; do
    [[ -f "$jar" ]] || return 1
  done
}

resolve_classpath() {
  local file tmp
  file="$(classpath_file)"
  if ! classpath_valid "$file"; then
    command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to resolve Kafka jars)"
    mkdir -p "$CACHE_DIR"
    tmp="$file.tmp.$$"
    log "resolving Kafka classpath with Maven (one-time) ..."
    if ! mvn -B -q -f "$POM" -Dstyle.color=never dependency:build-classpath \
        -Dmdep.outputFile="$tmp" -Dmdep.includeScope=runtime > "$tmp.log" 2>&1; then
      cat "$tmp.log" >&2
      rm -f "$tmp" "$tmp.log"
      die "mvn dependency:build-classpath failed"
    fi
    rm -f "$tmp.log"
    mv -f "$tmp" "$file"
    classpath_valid "$file" || die "resolved classpath $file is empty or incomplete"
  fi
  cat "$file"
}

# --------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------
# Print the broker pid if our broker is running (pid file + live process whose
# command line is kafka.Kafka with our rendered config), else return 1.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(<"$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    local cmdline
    cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline")"
    [[ "$cmdline" == *kafka.Kafka*"$PROPS"* ]] || return 1
  fi
  printf '%s' "$pid"
}

port_open() {
  # bash /dev/tcp; the subshell keeps the fd from leaking.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

render_props() {
  local text
  text="$(<"$TEMPLATE")"
  text="${text//@PORT@/$PORT}"
  text="${text//@CONTROLLER_PORT@/$CONTROLLER_PORT}"
  text="${text//@DATA_DIR@/$DATA_DIR}"
  printf '%s\n' "$text" > "$PROPS.tmp"
  mv -f "$PROPS.tmp" "$PROPS"
}

java_common() {
  # Args shared by StorageTool and the broker.
  printf '%s\n' \
    "-Dlog4j2.configurationFile=$LOG4J_CONF" \
    "-Dkafka.logs.dir=$LOG_DIR" \
    "-Djava.awt.headless=true"
}

format_storage() {
  local cp="$1" cluster_id
  if [[ -f "$DATA_DIR/meta.properties" ]]; then
    return 0
  fi
  local -a common
  mapfile -t common < <(java_common)
  if [[ -s "$CLUSTER_ID_FILE" ]]; then
    cluster_id="$(<"$CLUSTER_ID_FILE")"
  else
    cluster_id="$("$JAVA_BIN" "${common[@]}" -cp "$cp" kafka.tools.StorageTool random-uuid | tail -n1)"
    [[ -n "$cluster_id" ]] || die "could not generate a cluster id"
    printf '%s\n' "$cluster_id" > "$CLUSTER_ID_FILE"
  fi
  log "formatting storage in $DATA_DIR (cluster id $cluster_id)"
  "$JAVA_BIN" "${common[@]}" -cp "$cp" kafka.tools.StorageTool format \
    --standalone -t "$cluster_id" -c "$PROPS" >> "$OUT_LOG" 2>&1 \
    || { tail -n 30 "$OUT_LOG" >&2; die "storage format failed"; }
}

file_size() {
  if [[ -f "$1" ]]; then wc -c < "$1" | tr -d ' '; else echo 0; fi
}

# True once server.log (past byte offset $1) says the server started.
server_started_since() {
  local offset="$1" log_file="$LOG_DIR/server.log"
  [[ -f "$log_file" ]] || return 1
  if (($(file_size "$log_file") < offset)); then
    offset=0 # rolled over
  fi
  tail -c "+$((offset + 1))" "$log_file" | grep -q 'Kafka Server started'
}

# Tail of this start attempt's logs: stdout/stderr (WARN+, JVM errors) and
# the part of server.log written since byte offset $1.
print_start_logs() {
  local offset="$1" log_file="$LOG_DIR/server.log"
  echo "--- $OUT_LOG (tail) ---" >&2
  tail -n 40 "$OUT_LOG" >&2 || true
  if [[ -f "$log_file" ]] && (($(file_size "$log_file") > offset)); then
    echo "--- $log_file (tail, this attempt) ---" >&2
    tail -c "+$((offset + 1))" "$log_file" | tail -n 40 >&2 || true
  fi
}

# --------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------
cmd_start() {
  mkdir -p "$STATE_DIR"
  # Serialize concurrent `start`s on the same state dir (e.g. parallel tests).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$STATE_DIR/.start.lock"
    flock -w "$((START_TIMEOUT + 60))" 9 || die "timed out waiting for another start to finish"
  fi
  local pid
  if pid="$(running_pid)"; then
    log "already running (pid $pid, port $PORT)"
    return 0
  fi
  local p
  for p in "$PORT" "$CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "port $p is already in use by another process (set WARDEN_KAFKA_PORT / WARDEN_KAFKA_CONTROLLER_PORT)"
    fi
  done
  command -v "$JAVA_BIN" >/dev/null 2>&1 || die "java not found"

  mkdir -p "$DATA_DIR" "$LOG_DIR"
  rm -f "$PID_FILE"
  local cp
  cp="$(resolve_classpath)"
  render_props
  format_storage "$cp"

  local -a heap common
  read -r -a heap <<< "$HEAP"
  mapfile -t common < <(java_common)
  local log_offset
  log_offset="$(file_size "$LOG_DIR/server.log")"

  printf '\n===== start %s =====\n' "$(date '+%F %T')" >> "$OUT_LOG"
  # 9>&-: the broker must not inherit the start lock, or every later `start` waits for it to exit.
  nohup "$JAVA_BIN" "${heap[@]}" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    "${common[@]}" \
    -cp "$cp" kafka.Kafka "$PROPS" >> "$OUT_LOG" 2>&1 < /dev/null 9>&- &
  pid=$!
  printf '%s\n' "$pid" > "$PID_FILE"

  local deadline=$((SECONDS + START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      log "broker exited during startup; last log lines:"
      print_start_logs "$log_offset"
      exit 1
    fi
    if port_open "$PORT" && server_started_since "$log_offset"; then
      log "started (pid $pid, port $PORT, dir $STATE_DIR)"
      return 0
    fi
    sleep 0.5
  done

  log "broker did not answer on port $PORT within ${START_TIMEOUT}s; last log lines:"
  print_start_logs "$log_offset"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
  exit 1
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    log "not running (port $PORT)"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "broker (pid $pid) did not stop within 30s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  log "stopped (pid $pid)"
}

cmd_wipe() {
  cmd_stop
  case "$STATE_DIR" in
    "" | "/" | "$HOME" | "$HOME/") die "refusing to delete '$STATE_DIR'" ;;
  esac
  if [[ -d "$STATE_DIR" ]]; then
    rm -rf -- "$STATE_DIR"
    log "wiped $STATE_DIR"
  fi
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    echo "running pid $pid port $PORT"
    return 0
  fi
  echo "not running port $PORT"
  return 1
}

usage() {
  sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    start) cmd_start ;;
    stop)
      if [[ "${1:-}" == "--wipe" ]]; then cmd_wipe; else cmd_stop; fi
      ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    wipe) cmd_wipe ;;
    classpath) resolve_classpath; echo ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"
