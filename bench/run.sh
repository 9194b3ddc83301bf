#!/usr/bin/env bash
# bench/run.sh: measures acmebroker's API (register, update) and its DNS TXT
# answers, next to two references answering the same names: a bare miekg/dns
# responder (bench/bareresponder) and Knot DNS. Prints a Markdown table; raw
# outputs go to bench/out/<timestamp>/ (bench/out/latest points at the last run).
#
# Servers run on core 0, load generators on core 1 (taskset), so the server is
# measured, not the client. All traffic goes to 127.0.0.1. Exits non-zero only
# when something failed to run; a missed floor is printed as BELOW FLOOR.
#
#   bash bench/run.sh                       # defaults
#   DURATION=20 ACCOUNTS=2000 CONCURRENCY=16 bash bench/run.sh
#
# Env: DURATION (s, default 10) of the update phase and of each dnsperf run;
# ACCOUNTS (500); CONCURRENCY (8) HTTP workers; REF_NAMES=served (default: the
# references serve every value the broker serves for each name, so answers are
# the same size) or last (one TXT per name: the last value posted);
# ACMEBROKER_BIN: measure this binary instead of building ./cmd/acmebroker.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ACCOUNTS=${ACCOUNTS:-500}
CONCURRENCY=${CONCURRENCY:-8}
REF_NAMES=${REF_NAMES:-served}
for v in DURATION ACCOUNTS CONCURRENCY; do
  if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then echo "run.sh: $v must be a positive integer, got '${!v}'" >&2; exit 2; fi
done
case $REF_NAMES in served | last) ;; *) echo "run.sh: REF_NAMES must be served or last" >&2; exit 2 ;; esac

# dnsperf: 4 sockets, 100 queries in flight, one thread. More in flight only
# overflows the server's socket buffer (lost queries, each stalling a slot for
# the timeout) without raising throughput on one server core.
DNSPERF_OPTS=(-c 4 -T 1 -q 100 -t 1 -e)
FLOOR_REGISTER=500
FLOOR_UPDATE=1000
FLOOR_DNS_RATIO=0.7
ZONE=auth.example.org

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- clean-up
TMP=$(mktemp -d /tmp/acmebroker-bench.XXXXXX)
PIDS=()
stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "process $pid ignored TERM for 5 s: killed"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# bounded CMD...: runs CMD in the background and waits for it. Bash runs a trap
# only once a foreground command has finished, and ignores Ctrl-C altogether
# when that command does not die of it; "wait" is interrupted at once, so
# Ctrl-C or a TERM stops the run now, and the clean-up stops CMD too.
bounded() {
  "$@" &
  local pid=$!
  PIDS+=("$pid")
  wait "$pid"
}

# ---------------------------------------------------------------- tools
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v knotd >/dev/null || need+=(knot)
command -v dig >/dev/null || need+=(dnsutils)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v taskset >/dev/null || need+=(util-linux)
command -v ss >/dev/null || need+=(iproute2)
if ((${#need[@]})); then
  say "installing ${need[*]}"
  [ "$(id -u)" = 0 ] || die "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v go >/dev/null || die "go is not on PATH"

CORE_SERVER=0 CORE_CLIENT=1
if [ "$(nproc)" -lt 2 ]; then
  say "only $(nproc) core: server and client share core 0, figures are not comparable with a 2-core run"
  CORE_CLIENT=0
fi

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=bench/out/$STAMP
mkdir -p "$OUT"
ln -sfn "$STAMP" bench/out/latest
{
  echo "date: $(date -Is)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo none) $(git status --porcelain 2>/dev/null | grep -q . && echo '(dirty)')"
  echo "go: $(go version)"
  echo "kernel: $(uname -sr)"
  echo "cores: $(nproc)"
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "knotd: $(knotd -V 2>&1 | head -1)"
  echo "dnsperf: $(dnsperf -h 2>&1 | grep -i '^Version' || true)"
  echo "DURATION=$DURATION ACCOUNTS=$ACCOUNTS CONCURRENCY=$CONCURRENCY REF_NAMES=$REF_NAMES"
  echo "dnsperf options: ${DNSPERF_OPTS[*]} -l $DURATION"
} >"$OUT/env.txt"
load1=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }'; then
  say "load average is $load1: something else is running, figures will be noisy"
fi

# ---------------------------------------------------------------- build
BIN=$TMP/bin
mkdir -p "$BIN"
say "building acmebroker, bareresponder, apiload"
if [ -n "${ACMEBROKER_BIN:-}" ]; then
  [ -x "$ACMEBROKER_BIN" ] || die "ACMEBROKER_BIN=$ACMEBROKER_BIN is not an executable"
  cp "$ACMEBROKER_BIN" "$BIN/acmebroker"
  echo "acmebroker: $ACMEBROKER_BIN (not built from this tree)" >>"$OUT/env.txt"
else
  go build -o "$BIN/acmebroker" ./cmd/acmebroker || die "go build ./cmd/acmebroker failed"
fi
go build -o "$BIN/bareresponder" ./bench/bareresponder || die "go build ./bench/bareresponder failed"
go build -o "$BIN/apiload" ./bench/apiload || die "go build ./bench/apiload failed"

# ---------------------------------------------------------------- helpers
# free_port: a port free for TCP and UDP on 127.0.0.1, picked at random below
# the kernel's ephemeral range so that no outgoing connection takes it. Starts
# are retried on a new port anyway (see start_server), should one be taken.
used_ports=" "
free_port() { # free_port VAR: sets VAR to the port
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    case $used_ports in *" $p "*) continue ;; esac
    if [ -z "$(ss -Hlntu "sport = :$p" 2>/dev/null)" ]; then
      used_ports+="$p "
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  die "no free port found"
}

# dns_answers PORT NAME: true if the server answers NAME TXT with NOERROR and an answer.
dns_answers() {
  local out
  out=$(dig +time=1 +tries=1 +norecurse -p "$1" @127.0.0.1 "$2" TXT 2>/dev/null) || return 1
  grep -q 'status: NOERROR' <<<"$out" && grep -q 'ANSWER: [1-9]' <<<"$out"
}

# wait_ready PID WHAT CHECK...: polls CHECK every 0.1 s for at most 30 s while
# PID is alive. Returns 0 when ready, 1 when PID died, 2 on timeout.
wait_ready() {
  local pid=$1 what=$2 i
  shift 2
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    "$@" && return 0
    sleep 0.1
  done
  say "$what not ready after 30 s"
  return 2
}

# start_server NAME CHECK_FN: calls launch_NAME PORT... with fresh ports until
# the server is ready (at most 3 tries, a new port each time the old one turned
# out to be taken). Sets SERVER_PID. The launch function writes its log to
# $OUT/NAME.log and sets LAUNCHED_PID.
start_server() {
  local name=$1 try rc
  for ((try = 1; try <= 3; try++)); do
    "launch_$name"
    PIDS+=("$LAUNCHED_PID")
    rc=0
    wait_ready "$LAUNCHED_PID" "$name" "ready_$name" || rc=$?
    if ((rc == 0)); then
      SERVER_PID=$LAUNCHED_PID
      return 0
    fi
    stop_pid "$LAUNCHED_PID"
    if ((rc == 1)) && grep -qi 'address already in use' "$OUT/$name.log"; then
      say "$name: port taken, retrying on another"
      continue
    fi
    say "$name failed to start; the end of $OUT/$name.log:"
    tail -n 20 "$OUT/$name.log" >&2
    die "$name did not start"
  done
  die "$name: no free port after 3 tries"
}

# dnsperf_run NAME PORT: runs dnsperf against 127.0.0.1:PORT; raw output in
# $OUT/dnsperf-NAME.txt; sets QPS, LAT_MS, LOST, RCODES.
dnsperf_run() {
  local name=$1 port=$2 f=$OUT/dnsperf-$1.txt
  say "dnsperf against $name (127.0.0.1:$port, ${DURATION}s)"
  bounded timeout $((DURATION + 30)) taskset -c "$CORE_CLIENT" dnsperf -s 127.0.0.1 -p "$port" \
    -d "$OUT/dnsperf-queries.txt" -l "$DURATION" "${DNSPERF_OPTS[@]}" >"$f" 2>&1 ||
    die "dnsperf against $name failed; see $f"
  QPS=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$f")
  LAT_MS=$(awk '/Average Latency \(s\):/ { printf "%.3f", $4 * 1000 }' "$f")
  LOST=$(awk '/Queries lost:/ { print $3 " " $4 }' "$f")
  RCODES=$(sed -n 's/^ *Response codes: *//p' "$f")
  [ -n "$QPS" ] || die "dnsperf against $name printed no result; see $f"
  printf '%s: %s QPS, %s ms average, lost %s, %s\n' "$name" "$QPS" "$LAT_MS" "$LOST" "$RCODES" >&2
}

# ---------------------------------------------------------------- broker
launch_broker() {
  free_port API_PORT
  free_port DNS_PORT
  cat >"$TMP/broker.toml" <<EOF
[dns]
listen  = ["127.0.0.1:$DNS_PORT"]
zone    = "$ZONE"
nsname  = "ns1.$ZONE"
nsadmin = "hostmaster.example.org"
records = ["$ZONE. NS ns1.$ZONE.", "ns1.$ZONE. A 127.0.0.1"]
# dnsperf floods from 127.0.0.1: response rate limiting off, so that the figures
# measure the server and stay comparable with earlier runs (see docs/dns.md, rate limiting).
[dns.rrl]
enabled = false
[api]
listen = "127.0.0.1:$API_PORT"
# The load comes from one address at thousands of requests a second: no rate limits.
register_limit = 0
update_limit = 0
update_source_limit = 0
[storage]
engine = "sqlite"
dsn    = "$TMP/bench.db"
[log]
level = "warn"
EOF
  cp "$TMP/broker.toml" "$OUT/broker.toml"
  rm -f "$TMP"/bench.db*
  taskset -c "$CORE_SERVER" "$BIN/acmebroker" serve -config "$TMP/broker.toml" >"$OUT/broker.log" 2>&1 &
  LAUNCHED_PID=$!
}
ready_broker() {
  local soa
  curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$API_PORT/health" 2>/dev/null || return 1
  soa=$(dig +time=1 +tries=1 +norecurse -p "$DNS_PORT" @127.0.0.1 "$ZONE" SOA 2>/dev/null) || return 1
  grep -q 'status: NOERROR' <<<"$soa"
}

say "starting acmebroker on core $CORE_SERVER"
start_server broker
BROKER_PID=$SERVER_PID
say "broker ready: api 127.0.0.1:$API_PORT, dns 127.0.0.1:$DNS_PORT"

say "apiload on core $CORE_CLIENT: $ACCOUNTS accounts, $CONCURRENCY workers, ${DURATION}s of updates"
set +e
bounded timeout $((DURATION + 400)) taskset -c "$CORE_CLIENT" "$BIN/apiload" \
  -api "http://127.0.0.1:$API_PORT" -accounts "$ACCOUNTS" -concurrency "$CONCURRENCY" \
  -duration "${DURATION}s" -phase-limit 90s -dns "127.0.0.1:$DNS_PORT" -out "$OUT" \
  >"$OUT/apiload.txt" 2>"$OUT/apiload.err"
rc=$?
set -e
cat "$OUT/apiload.err" >&2
((rc == 0)) || { kill -0 "$BROKER_PID" 2>/dev/null || say "the broker exited; see $OUT/broker.log"; die "apiload failed (exit $rc)"; }
head -n -1 "$OUT/apiload.txt" >&2
API_JSON=$(tail -n 1 "$OUT/apiload.txt")
jq -e . >/dev/null <<<"$API_JSON" || die "apiload printed no JSON result; see $OUT/apiload.txt"

kill -0 "$BROKER_PID" 2>/dev/null || die "the broker exited during apiload; see $OUT/broker.log"
FIRST_NAME=$(awk 'NR == 1 { print $1 }' "$OUT/dnsperf-queries.txt")
dns_answers "$DNS_PORT" "$FIRST_NAME" || say "the broker does not answer $FIRST_NAME TXT (measuring anyway; see the response codes)"
dnsperf_run broker "$DNS_PORT"
B_QPS=$QPS B_LAT=$LAT_MS B_LOST=$LOST B_RC=$RCODES
kill -0 "$BROKER_PID" 2>/dev/null || die "the broker exited during dnsperf; see $OUT/broker.log"
# Free core 0 for the references.
stop_pid "$BROKER_PID"

# The references answer the same names with the same values.
NAMES=$OUT/names.txt
if [ "$REF_NAMES" = served ]; then
  if [ -s "$OUT/names-served.txt" ]; then
    NAMES=$OUT/names-served.txt
  else
    say "no names-served.txt (the broker answered nothing): references serve names.txt"
  fi
fi
TXT_PER_NAME=$(awk '{ n[$1]++ } END { if (length(n)) printf "%.1f", NR / length(n); else print 0 }' "$NAMES")

# ---------------------------------------------------------------- bare responder
launch_bare() {
  free_port BARE_PORT
  taskset -c "$CORE_SERVER" "$BIN/bareresponder" -listen "127.0.0.1:$BARE_PORT" -names "$NAMES" >"$OUT/bare.log" 2>&1 &
  LAUNCHED_PID=$!
}
ready_bare() { dns_answers "$BARE_PORT" "$FIRST_NAME"; }
say "starting the bare responder on core $CORE_SERVER"
start_server bare
dnsperf_run bare "$BARE_PORT"
R_QPS=$QPS R_LAT=$LAT_MS R_LOST=$LOST R_RC=$RCODES
stop_pid "$SERVER_PID"

# ---------------------------------------------------------------- knot
KNOT_DIR=$TMP/knot
mkdir -p "$KNOT_DIR"
{
  echo "\$ORIGIN $ZONE."
  echo "\$TTL 1"
  echo "@ SOA ns1.$ZONE. hostmaster.example.org. 1 3600 600 86400 1"
  echo "@ NS ns1.$ZONE."
  echo "ns1 A 127.0.0.1"
  awk '{ printf "%s 1 TXT \"%s\"\n", $1, $2 }' "$NAMES"
} >"$KNOT_DIR/$ZONE.zone"
cp "$KNOT_DIR/$ZONE.zone" "$OUT/knot.zone"
launch_knot() {
  free_port KNOT_PORT
  cat >"$KNOT_DIR/knot.conf" <<EOF
server:
    rundir: "$KNOT_DIR"
    pidfile: "$KNOT_DIR/knot.pid"
    user: $(id -un):$(id -gn)
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$KNOT_DIR"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$KNOT_DIR"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: $ZONE
    file: "$ZONE.zone"
EOF
  cp "$KNOT_DIR/knot.conf" "$OUT/knot.conf"
  taskset -c "$CORE_SERVER" knotd -c "$KNOT_DIR/knot.conf" >"$OUT/knot.log" 2>&1 &
  LAUNCHED_PID=$!
}
ready_knot() { dns_answers "$KNOT_PORT" "$FIRST_NAME"; }
say "starting knotd on core $CORE_SERVER"
start_server knot
dnsperf_run knot "$KNOT_PORT"
K_QPS=$QPS K_LAT=$LAT_MS K_LOST=$LOST K_RC=$RCODES
stop_pid "$SERVER_PID"

# ---------------------------------------------------------------- table
j() { jq -r "$1" <<<"$API_JSON"; }
verdict() { # verdict VALUE FLOOR
  if awk -v v="$1" -v f="$2" 'BEGIN { exit !(v >= f) }'; then echo ok; else echo "**BELOW FLOOR**"; fi
}
errs() { # errs PHASE: "0" or "N (status: n, ...)"
  local n
  n=$(j ".$1.errors")
  if [ "$n" = 0 ]; then echo 0; else echo "$n ($(j ".$1.errors_by_status | to_entries | map(\"\(.key): \(.value)\") | join(\", \")"))"; fi
}
REG_RPS=$(j '.register.rps | floor')
UPD_RPS=$(j '.update.rps | floor')
RATIO=$(awk -v b="$B_QPS" -v r="$R_QPS" 'BEGIN { if (r > 0) printf "%.2f", b / r; else print 0 }')
DNS_FLOOR=$(awk -v r="$R_QPS" -v f="$FLOOR_DNS_RATIO" 'BEGIN { printf "%.0f", r * f }')
REG_ERR=$(errs register)
UPD_ERR=$(errs update)
REG_V=$(verdict "$REG_RPS" "$FLOOR_REGISTER")
UPD_V=$(verdict "$UPD_RPS" "$FLOOR_UPDATE")
DNS_V=$(verdict "$RATIO" "$FLOOR_DNS_RATIO")
[ "$(j '.register.errors')" = 0 ] || REG_V+=" (errors)"
[ "$(j '.update.errors')" = 0 ] || UPD_V+=" (errors)"
CHECK=$(j 'if .dns_check then "\(.dns_check.last_value_served)/\(.dns_check.names) names serve their last value, \(.dns_check.last_value_missing) missing, \(.dns_check.query_failed) failed" else "not run" end')

{
  echo
  echo "## acmebroker benchmark, $(date -Is)"
  echo
  echo "Servers on core $CORE_SERVER, clients on core $CORE_CLIENT; load average at start: $load1."
  echo "$ACCOUNTS accounts, $CONCURRENCY HTTP workers, ${DURATION}s of updates; dnsperf ${DNSPERF_OPTS[*]} -l $DURATION over ${TXT_PER_NAME} TXT per name."
  echo
  echo "| measure | result | latency | errors / lost | floor | verdict |"
  echo "|---|---:|---|---|---|---|"
  echo "| broker POST /register | $REG_RPS req/s | p50 $(j .register.p50_ms) ms, p99 $(j .register.p99_ms) ms | $REG_ERR | >= $FLOOR_REGISTER req/s | $REG_V |"
  echo "| broker POST /update | $UPD_RPS req/s | p50 $(j .update.p50_ms) ms, p99 $(j .update.p99_ms) ms | $UPD_ERR | >= $FLOOR_UPDATE req/s | $UPD_V |"
  echo "| DNS TXT, broker | $B_QPS QPS | avg $B_LAT ms | $B_LOST | >= $DNS_FLOOR QPS (0.7 x bare) | $DNS_V |"
  echo "| DNS TXT, bare miekg/dns responder | $R_QPS QPS | avg $R_LAT ms | $R_LOST | reference | |"
  echo "| DNS TXT, Knot DNS (1 UDP worker) | $K_QPS QPS | avg $K_LAT ms | $K_LOST | reference | |"
  echo "| ratio broker / bare | $RATIO | | | >= $FLOOR_DNS_RATIO | $DNS_V |"
  echo
  echo "Response codes: broker $B_RC; bare $R_RC; knot $K_RC."
  echo "DNS check of the broker after the updates: $CHECK."
  echo "Raw outputs: $OUT/"
} | tee "$OUT/summary.md"
