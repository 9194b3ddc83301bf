#!/usr/bin/env bash
# bench/run.sh: acmebroker's DNS answers side by side with three references
# answering the same names with the same values: a bare miekg/dns responder
# (bench/bareresponder), Knot DNS and NSD (rate limiting off in both), at 500
# and at 1,000,000 accounts, all in one run; then the API figures (register,
# update). Prints one Markdown table per account count with every figure and
# ratio; raw outputs go to bench/out/<timestamp>/ (bench/out/latest points at
# the last run). See bench/README.md for what each row means.
#
# Each server runs alone on core 0 (taskset), the load generators on core 1.
# The broker runs as in production: RRL on with its defaults, the bench's own
# source (127.0.0.1) exempted; the fast path and its answer cache on. All
# traffic goes to 127.0.0.1. Exits non-zero only when something failed to
# run; a missed floor is printed as BELOW FLOOR.
#
#   bash bench/run.sh                      # 500 and 1,000,000 accounts, about 15 minutes
#   SIZES=500 bash bench/run.sh            # 500 only, about 3 minutes
#   DURATION=20 SIZES="500 200000" API=0 bash bench/run.sh
#
# Env: SIZES (accounts, "500 1000000"); DURATION (s, 10) of each timed run;
# ROUNDS (1): the four servers are all loaded and measured in turn (the
# others stopped with SIGSTOP), ROUNDS times, and the medians compared: on a
# shared machine, 3 keeps minutes-long swings in its speed from deciding a
# ratio; CONNS and INFLIGHT (8, 16): TCP connections and queries outstanding on each;
# API (1): also measure POST /register and /update (apiload, 500 accounts);
# CACHE_MB: the broker's answer_cache_mb (default: 64, or 1024 from 300,000
# accounts up, so that every answer fits); ACMEBROKER_BIN: measure this binary
# instead of building ./cmd/acmebroker.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-500 1000000}
DURATION=${DURATION:-10}
CONNS=${CONNS:-8}
INFLIGHT=${INFLIGHT:-16}
API=${API:-1}
ROUNDS=${ROUNDS:-1}
for v in DURATION CONNS INFLIGHT ROUNDS; do
  if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then echo "run.sh: $v must be a positive integer, got '${!v}'" >&2; exit 2; fi
done
for n in $SIZES; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: SIZES must be positive integers, got '$SIZES'" >&2; exit 2; }
done

# dnsperf: 4 sockets, 100 queries in flight, one thread, EDNS0 as resolvers
# send. More in flight only overflows a one-core server's socket buffer.
DNSPERF_OPTS=(-c 4 -T 1 -q 100 -t 1 -e)
FLOOR_TXT=0.7    # broker / Knot, challenge TXT over UDP
FLOOR_NX=0.6     # broker / Knot, NXDOMAIN over UDP
FLOOR_TCP=0.5    # broker / Knot, TCP
FLOOR_P99_MS=1   # broker p99 at half its TXT peak
FLOOR_REGISTER=500
FLOOR_UPDATE=1000
ZONE=auth.example.org

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
. bench/lib.sh

# ---------------------------------------------------------------- clean-up
TMP=$(mktemp -d /tmp/acmebroker-bench.XXXXXX)
PIDS=()
stop_pid() { # stop_pid PID: TERM, wait up to 10 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -CONT -- "-$pid" 2>/dev/null || kill -CONT "$pid" 2>/dev/null || true # a stopped server (only) cannot act on TERM
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "process $pid ignored TERM for 10 s: killed"
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
# bounded CMD...: runs CMD in the background and waits for it, so that Ctrl-C
# or a TERM stops the run at once (bash runs traps only between commands).
bounded() {
  "$@" &
  local pid=$!
  PIDS+=("$pid")
  wait "$pid"
}

# ---------------------------------------------------------------- tools
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v knotd >/dev/null || [ -x /usr/sbin/knotd ] || need+=(knot)
command -v nsd >/dev/null || [ -x /usr/sbin/nsd ] || need+=(nsd)
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
KNOTD=$(command -v knotd || echo /usr/sbin/knotd)
NSD=$(command -v nsd || echo /usr/sbin/nsd)

CORE_SERVER=0 CORE_CLIENT=1
if [ "$(nproc)" -lt 2 ]; then
  say "only $(nproc) core: server and client share core 0, figures are not comparable with a 2-core run"
  CORE_CLIENT=0
fi

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$PWD/bench/out/$STAMP
mkdir -p "$OUT"
ln -sfn "$STAMP" bench/out/latest
load1=$(cut -d' ' -f1 /proc/loadavg)
{
  echo "date: $(date -Is)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo none) $(git status --porcelain 2>/dev/null | grep -q . && echo '(dirty)')"
  echo "go: $(go version)"
  echo "kernel: $(uname -sr)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "cores: $(nproc)"
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "knotd: $("$KNOTD" -V 2>&1 | head -1)"
  echo "nsd: $("$NSD" -v 2>&1 | head -1)"
  echo "dnsperf: $(dnsperf -h 2>&1 | grep -i '^Version' || true)"
  echo "SIZES=$SIZES DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS INFLIGHT=$INFLIGHT API=$API CACHE_MB=${CACHE_MB:-}"
  echo "dnsperf options: ${DNSPERF_OPTS[*]} -l $DURATION"
} >"$OUT/env.txt"
if awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }'; then
  say "load average is $load1: something else is running, figures will be noisy"
fi

# ---------------------------------------------------------------- build
BIN=$TMP/bin
mkdir -p "$BIN"
say "building acmebroker and the bench tools"
broker_binary "$BIN" "$OUT/env.txt"
for t in bareresponder apiload bulkload dnsload; do
  go build -o "$BIN/$t" "./bench/$t" || die "go build ./bench/$t failed"
done

# Allocations per answer of the fast path (Go benchmark, no socket).
ALLOCS=$(go test -run '^$' -bench '^BenchmarkFastPath$' -benchmem -benchtime 20000x ./dnsserver 2>/dev/null |
  awk '/^BenchmarkFastPath\// { split($1, n, "/"); sub(/-[0-9]+$/, "", n[2]); for (i = 2; i <= NF; i++) if ($(i) == "allocs/op") printf "%s%s %s", sep, n[2], $(i-1); sep = ", " }')
[ -n "$ALLOCS" ] || ALLOCS="(benchmark failed)"

# ---------------------------------------------------------------- helpers
# free_port VAR: a port free for TCP and UDP on 127.0.0.1, below the
# ephemeral range; starts are retried on a new port should one be taken.
used_ports=" "
free_port() {
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

# wait_ready PID WHAT SECONDS CHECK...: polls CHECK every 0.2 s while PID is
# alive. Returns 0 when ready, 1 when PID died, 2 on timeout.
wait_ready() {
  local pid=$1 what=$2 secs=$3 i
  shift 3
  for ((i = 0; i < secs * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    "$@" && return 0
    sleep 0.2
  done
  say "$what not ready after $secs s"
  return 2
}

# start_server NAME SECONDS: calls launch_NAME (which picks its ports, writes
# its log to $LOG and sets LAUNCHED_PID) until ready_NAME succeeds, at most 3
# tries, a new port each time the old one turned out to be taken.
start_server() {
  local name=$1 secs=$2 try rc
  for ((try = 1; try <= 3; try++)); do
    "launch_$name"
    PIDS+=("$LAUNCHED_PID")
    rc=0
    wait_ready "$LAUNCHED_PID" "$name" "$secs" "ready_$name" || rc=$?
    if ((rc == 0)); then
      SERVER_PID=$LAUNCHED_PID
      return 0
    fi
    stop_pid "$LAUNCHED_PID"
    if ((rc == 1)) && grep -qi 'address already in use\|address in use' "$LOG"; then
      say "$name: port taken, retrying on another"
      continue
    fi
    say "$name failed to start; the end of $LOG:"
    tail -n 20 "$LOG" >&2
    die "$name did not start"
  done
  die "$name: no free port after 3 tries"
}

# cpu_ticks PID: CPU time (user + system, in clock ticks) of the processes
# of PID's process group: the servers are started with setsid, so that
# this counts NSD's server processes too (they are forked, then
# reparented).
cpu_ticks() {
  local p t=0
  for p in $(pgrep -g "$1" || true); do
    # utime and stime are fields 14 and 15; the name (field 2, in
    # parentheses) may hold spaces ("nsd: server 1"): count after it.
    t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0)))
  done
  echo "$t"
}
# wait_idle WHAT: waits (at most 120 s) until the server in SERVER_PID has
# used less than 5% of a core for a second: the broker scans its accounts
# after start-up (legacy key hashes), Knot and NSD finish loading their
# zone in the background; none of that is to be measured.
wait_idle() {
  local prev cur i
  prev=$(cpu_ticks "$SERVER_PID")
  for ((i = 0; i < 120; i++)); do
    sleep 1
    cur=$(cpu_ticks "$SERVER_PID")
    if ((cur - prev < $(getconf CLK_TCK) / 20)); then
      say "$1 idle after ${i}s"
      return 0
    fi
    prev=$cur
  done
  say "$1 still busy after 120 s: measuring anyway"
}

# cpu_per_answer TICKS ANSWERS: microseconds of server CPU per answer.
cpu_per_answer() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "-" }'; }

# dnsperf_run TAG PORT FILE [ARGS...]: dnsperf against 127.0.0.1:PORT (the
# server's pid in SERVER_PID); raw output in $OUT/N/dnsperf-TAG.txt; sets
# QPS, LOST and CPU (server CPU microseconds per answer).
dnsperf_run() {
  local tag=$1 port=$2 file=$3 f=$DIR/dnsperf-$1.txt c0 done
  shift 3
  c0=$(cpu_ticks "$SERVER_PID")
  bounded timeout $((DURATION + 300)) taskset -c "$CORE_CLIENT" dnsperf -s 127.0.0.1 -p "$port" -d "$file" \
    "${DNSPERF_OPTS[@]}" "$@" >"$f" 2>&1 || die "dnsperf ($tag) failed; see $f"
  QPS=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$f")
  LOST=$(awk '/Queries lost:/ { print $3 }' "$f")
  done=$(awk '/Queries completed:/ { print $3 }' "$f")
  CPU=$(cpu_per_answer $(($(cpu_ticks "$SERVER_PID") - c0)) "$done")
  [ -n "$QPS" ] || die "dnsperf ($tag) printed no result; see $f"
  say "$tag: $QPS qps, lost $LOST, $CPU us CPU/answer, $(sed -n 's/^ *Response codes: *//p' "$f")"
}

# dnsload_run TAG PORT ARGS...: bench/dnsload; raw JSON in $OUT/N/dnsload-TAG.json;
# sets CPU as dnsperf_run does.
dnsload_run() {
  local tag=$1 port=$2 f=$DIR/dnsload-$1.json c0
  shift 2
  c0=$(cpu_ticks "$SERVER_PID")
  bounded timeout $((DURATION + 60)) taskset -c "$CORE_CLIENT" "$BIN/dnsload" -s "127.0.0.1:$port" -duration "${DURATION}s" "$@" \
    >"$f" 2>"$DIR/dnsload-$tag.err" || die "dnsload ($tag) failed; see $DIR/dnsload-$tag.err"
  CPU=$(cpu_per_answer $(($(cpu_ticks "$SERVER_PID") - c0)) "$(jq .answered "$f")")
  say "$tag: $(cat "$f") $CPU us CPU/answer"
}
jf() { jq -r "$2" "$1"; }

SERVERS=(broker bare knot nsd)
declare -A PID PORT
# only NAME: NAME's processes run, the other servers' are stopped (SIGSTOP
# to the process group): each is measured alone on core 0, yet all stay
# loaded, so that the rounds of one measure come minutes, not a quarter of
# an hour, apart.
only() {
  local s
  for s in "${SERVERS[@]}"; do
    [ "$s" = "$1" ] || kill -STOP -- "-${PID[$s]}" 2>/dev/null || true
  done
  kill -CONT -- "-${PID[$1]}" 2>/dev/null || true
  SERVER_PID=${PID[$1]}
}
median() {
  printf '%s\n' "$@" | grep -v '^-$' | sort -g | awk '{ v[NR] = $1 } END {
    if (!NR) { print "-"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    if (m >= 100 || m == int(m)) printf "%.0f\n", m; else printf "%.3g\n", m }'
}
# keep NAME KEY VALUE: one round's figure; R_<NAME>_<KEY> becomes the
# median of the rounds and A_<NAME>_<KEY> lists them.
keep() {
  local a="A_$1_$2"
  printf -v "$a" '%s' "${!a:-}${!a:+ }$3"
  # shellcheck disable=SC2086
  printf -v "R_$1_$2" '%s' "$(median ${!a})"
}

# first_passes NAME: from 10,000 names up, one pass over every name, each
# asked once (every answer new to the broker's cache): UDP TXT, UDP
# NXDOMAIN, and TCP TXT (not reported). The rounds after them then find
# the names asked before.
first_passes() {
  local name=$1 port=${PORT[$1]}
  if ((N < 10000)); then
    keep "$name" COLD -; keep "$name" COLDCPU -; keep "$name" NXNEW -; keep "$name" NXNEWCPU -
    return
  fi
  dnsperf_run "$name-first-pass" "$port" "$DIR/txt.txt" -n 1
  keep "$name" COLD "$QPS"; keep "$name" COLDCPU "$CPU"
  dnsperf_run "$name-nx-first-pass" "$port" "$DIR/nx.txt" -n 1
  keep "$name" NXNEW "$QPS"; keep "$name" NXNEWCPU "$CPU"
  bounded timeout 1200 taskset -c "$CORE_CLIENT" "$BIN/dnsload" -s "127.0.0.1:$port" -d "$DIR/txt.txt" -proto tcp \
    -conns "$CONNS" -inflight "$INFLIGHT" -count "$N" -duration 1000s >"$DIR/dnsload-$name-tcp-first-pass.json" 2>&1 ||
    die "dnsload ($name-tcp-first-pass) failed; see $DIR/dnsload-$name-tcp-first-pass.json"
}

# peaks NAME ROUND: the UDP peaks of one server.
peaks() {
  local name=$1 port=${PORT[$1]} r=$2
  dnsperf_run "$name-txt-$r" "$port" "$DIR/txt.txt" -l "$DURATION"
  keep "$name" TXT "$QPS"; keep "$name" TXTLOST "$LOST"; keep "$name" TXTCPU "$CPU"
  dnsperf_run "$name-nx-$r" "$port" "$DIR/nx-again.txt" -l "$DURATION"
  keep "$name" NX "$QPS"; keep "$name" NXLOST "$LOST"; keep "$name" NXCPU "$CPU"
}

# rest NAME ROUND: latency at P99_RATE (half the broker's TXT peak, the
# same rate for every server) and TCP.
rest() {
  local name=$1 port=${PORT[$1]} r=$2 f
  dnsload_run "$name-p99-$r" "$port" -d "$DIR/txt.txt" -proto udp -rate "$P99_RATE" -sockets 4 \
    -series "$DIR/series-$name-p99-$r.tsv" # when the slow answers came (bench/README.md)
  f=$DIR/dnsload-$name-p99-$r.json
  keep "$name" P99 "$(jf "$f" .p99_ms)"; keep "$name" P99LOST "$(jf "$f" .lost)"
  keep "$name" P99USER "$(jf "$f" '.p99_user_ms // .p99_ms')"
  dnsload_run "$name-tcp-$r" "$port" -d "$DIR/txt.txt" -proto tcp -conns "$CONNS" -inflight "$INFLIGHT"
  f=$DIR/dnsload-$name-tcp-$r.json
  keep "$name" TCP "$(jf "$f" '.qps | floor')"; keep "$name" TCPERR "$(jf "$f" .errors)"; keep "$name" TCPCPU "$CPU"
  dnsload_run "$name-tcp1-$r" "$port" -d "$DIR/txt.txt" -proto tcp -conns "$CONNS" -inflight 1 -per-conn 1
  keep "$name" TCP1 "$(jf "$DIR/dnsload-$name-tcp1-$r.json" '.qps | floor')"; keep "$name" TCP1CPU "$CPU"
}

# ---------------------------------------------------------------- servers
launch_broker() {
  free_port API_PORT
  free_port DNS_PORT
  LOG=$DIR/broker.log
  cat >"$DIR/broker.toml" <<EOF
[dns]
listen  = ["127.0.0.1:$DNS_PORT"]
zone    = "$ZONE"
nsname  = "ns1.$ZONE"
nsadmin = "hostmaster.example.org"
records = ["$ZONE. NS ns1.$ZONE.", "ns1.$ZONE. A 127.0.0.1"]
# Every account keeps its 2 newest values, as bulkload made them.
txt_max = 2
# The references have no per-connection query limit either.
tcp_max_queries = 65535
answer_cache_mb = $CACHE
# RRL on (the defaults), as in production; the load comes from 127.0.0.1.
[dns.rrl]
exempt = ["127.0.0.1/32"]
[api]
listen = "127.0.0.1:$API_PORT"
# apiload comes from one address at thousands of requests a second: no rate limits.
register_limit = 0
update_limit = 0
update_source_limit = 0
[storage]
dsn = "$DIR/db/broker.db"
[log]
level = "warn"
EOF
  setsid taskset -c "$CORE_SERVER" "$BIN/acmebroker" serve -config "$DIR/broker.toml" >"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}
ready_broker() { dns_answers "$DNS_PORT" "$FIRST_NAME"; }

launch_bare() {
  free_port BARE_PORT
  LOG=$DIR/bare.log
  setsid taskset -c "$CORE_SERVER" "$BIN/bareresponder" -listen "127.0.0.1:$BARE_PORT" -names "$DIR/db/names.txt" >"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}
ready_bare() { dns_answers "$BARE_PORT" "$FIRST_NAME"; }

launch_knot() {
  free_port KNOT_PORT
  LOG=$DIR/knot.log
  cat >"$DIR/knot/knot.conf" <<EOF
server:
    rundir: "$DIR/knot"
    pidfile: "$DIR/knot/knot.pid"
    user: $(id -un):$(id -gn)
    listen: 127.0.0.1@$KNOT_PORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$DIR/knot"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$DIR/knot"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: $ZONE
    file: "$ZONE.zone"
EOF
  setsid taskset -c "$CORE_SERVER" "$KNOTD" -c "$DIR/knot/knot.conf" >"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}
ready_knot() { dns_answers "$KNOT_PORT" "$FIRST_NAME"; }

launch_nsd() {
  free_port NSD_PORT
  LOG=$DIR/nsd.log
  cat >"$DIR/nsd/nsd.conf" <<EOF
server:
	ip-address: 127.0.0.1@$NSD_PORT
	do-ip6: no
	username: ""
	chroot: ""
	zonesdir: "$DIR/nsd"
	pidfile: "$DIR/nsd/nsd.pid"
	xfrdfile: "$DIR/nsd/xfrd.state"
	zonelistfile: "$DIR/nsd/zone.list"
	database: ""
	server-count: 1
	reuseport: no
	rrl-ratelimit: 0
	tcp-count: 1000
	tcp-query-count: 0
remote-control:
	control-enable: no
zone:
	name: "$ZONE"
	zonefile: "$ZONE.zone"
EOF
  setsid taskset -c "$CORE_SERVER" "$NSD" -d -c "$DIR/nsd/nsd.conf" >"$LOG" 2>&1 &
  LAUNCHED_PID=$!
}
ready_nsd() { dns_answers "$NSD_PORT" "$FIRST_NAME"; }

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "-") printf "%.2f", a / b; else print "-" }'; }
verdict() { # verdict VALUE FLOOR ge|lt
  awk -v v="$1" -v f="$2" -v op="$3" 'BEGIN { if (v == "-") { print "-"; exit } ok = (op == "ge") ? (v >= f) : (v < f); print ok ? "ok" : "**BELOW FLOOR**" }'
}

# ---------------------------------------------------------------- one size
SUMMARY=()
run_size() {
  N=$1
  DIR=$OUT/$N
  mkdir -p "$DIR/db" "$DIR/knot" "$DIR/nsd"
  CACHE=${CACHE_MB:-$((N >= 300000 ? 1024 : 64))}
  say "$N accounts: bulk load (2 TXT values each)"
  bounded taskset -c "$CORE_SERVER" "$BIN/bulkload" -db "$DIR/db/broker.db" -accounts "$N" -creds 0 -zone "$ZONE" 2>"$DIR/bulkload.txt" ||
    die "bulkload failed; see $DIR/bulkload.txt"
  awk '{ print $1, $2 }' "$DIR/db/dnsperf-queries.txt" >"$DIR/txt.txt"
  sed 's/^/nx-/' "$DIR/txt.txt" >"$DIR/nx.txt"
  head -n 100000 "$DIR/nx.txt" >"$DIR/nx-again.txt"
  FIRST_NAME=$(awk 'NR == 1 { print $1 }' "$DIR/txt.txt")
  {
    echo "\$ORIGIN $ZONE."
    echo "\$TTL 1"
    echo "@ SOA ns1.$ZONE. hostmaster.example.org. 1 3600 600 86400 1"
    echo "@ NS ns1.$ZONE."
    echo "ns1 A 127.0.0.1"
    awk '{ printf "%s 1 TXT \"%s\"\n", $1, $2 }' "$DIR/db/names.txt"
  } >"$DIR/knot/$ZONE.zone"
  cp "$DIR/knot/$ZONE.zone" "$DIR/nsd/$ZONE.zone"

  # Every server loaded, one after the other, each left idle before the
  # next starts (the broker scans its accounts for legacy key hashes after
  # start-up; Knot and NSD finish loading in the background).
  local t0 t1 start_s rss srv r
  for v in $(compgen -v | grep -E '^[AR]_(broker|bare|knot|nsd)_'); do unset "$v"; done
  say "$N accounts: the broker on core $CORE_SERVER (answer_cache_mb = $CACHE)"
  t0=$(date +%s.%N)
  start_server broker 300
  t1=$(date +%s.%N)
  start_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  PID[broker]=$SERVER_PID PORT[broker]=$DNS_PORT
  wait_idle broker
  kill -STOP -- "-${PID[broker]}"
  say "$N accounts: the bare miekg/dns responder"
  start_server bare 300
  PID[bare]=$SERVER_PID PORT[bare]=$BARE_PORT
  wait_idle bare
  kill -STOP -- "-${PID[bare]}"
  say "$N accounts: Knot DNS (1 UDP, 1 TCP worker)"
  start_server knot 600
  PID[knot]=$SERVER_PID PORT[knot]=$KNOT_PORT
  wait_idle knot
  kill -STOP -- "-${PID[knot]}"
  say "$N accounts: NSD (1 server process, RRL off)"
  start_server nsd 600
  PID[nsd]=$SERVER_PID PORT[nsd]=$NSD_PORT
  wait_idle nsd

  for srv in "${SERVERS[@]}"; do only "$srv"; first_passes "$srv"; done
  for ((r = 1; r <= ROUNDS; r++)); do
    for srv in "${SERVERS[@]}"; do only "$srv"; say "round $r of $ROUNDS: $srv"; peaks "$srv" "$r"; done
  done
  P99_RATE=$(awk -v q="$R_broker_TXT" 'BEGIN { printf "%d", q / 2 }')
  for ((r = 1; r <= ROUNDS; r++)); do
    for srv in "${SERVERS[@]}"; do only "$srv"; say "round $r of $ROUNDS: $srv"; rest "$srv" "$r"; done
  done
  for srv in "${SERVERS[@]}"; do kill -CONT -- "-${PID[$srv]}" 2>/dev/null || true; done
  kill -0 "${PID[broker]}" 2>/dev/null || die "the broker exited; see $DIR/broker.log"
  rss=$(($(status_kb "${PID[broker]}" VmHWM) / 1024))
  for srv in "${SERVERS[@]}"; do stop_pid "${PID[$srv]}"; done

  local row s t
  row() { # row LABEL VAR FLOORTEXT FLOOR OP: a row of the four servers' VAR and broker/Knot
    local r
    r=$(ratio "$(eval echo "\$R_broker_$2")" "$(eval echo "\$R_knot_$2")")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" \
      "$(eval echo "\$R_broker_$2")" "$(eval echo "\$R_bare_$2")" "$(eval echo "\$R_knot_$2")" "$(eval echo "\$R_nsd_$2")" \
      "$r" "$(ratio "$(eval echo "\$R_broker_$2")" "$(eval echo "\$R_nsd_$2")")" "$3" "$([ -n "$4" ] && verdict "$r" "$4" "$5" || echo)"
  }
  cpurow() { # cpurow LABEL VAR: server CPU per answer; the ratios are Knot's (NSD's) over the broker's, as for qps
    printf '| %s, server CPU per answer, us | %s | %s | %s | %s | %s | %s | | |\n' "$1" \
      "$(eval echo "\$R_broker_$2")" "$(eval echo "\$R_bare_$2")" "$(eval echo "\$R_knot_$2")" "$(eval echo "\$R_nsd_$2")" \
      "$(ratio "$(eval echo "\$R_knot_$2")" "$(eval echo "\$R_broker_$2")")" "$(ratio "$(eval echo "\$R_nsd_$2")" "$(eval echo "\$R_broker_$2")")"
  }
  {
    echo
    echo "## $N accounts, $(date -Is)"
    echo
    echo "Servers alone on core $CORE_SERVER (the others stopped), load on core $CORE_CLIENT; load average at start of the run: $load1."
    echo "Medians of $ROUNDS round(s), the four servers measured in turn in each; every round in $DIR/rounds.txt."
    echo "Broker: RRL on (127.0.0.1 exempt), answer_cache_mb = $CACHE, start-up until DNS answers ${start_s} s, peak RSS $rss MiB."
    echo "UDP: dnsperf ${DNSPERF_OPTS[*]} -l $DURATION over every name (2 TXT each) or as many unregistered ones."
    echo "p99: bench/dnsload at $P99_RATE qps (half the broker's TXT peak) for ${DURATION} s, from the write of each query to the kernel's receipt of its answer on the load generator's socket (SO_TIMESTAMPNS); the next row to the load generator's read. TCP: bench/dnsload, $CONNS connections x $INFLIGHT in flight; and a new connection per query."
    echo
    echo "| measure | broker | bare miekg/dns | Knot | NSD | broker / Knot | broker / NSD | floor (broker / Knot) | verdict |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|---|"
    row "challenge TXT, UDP qps" TXT ">= $FLOOR_TXT" "$FLOOR_TXT" ge
    row "NXDOMAIN, UDP qps ($(wc -l <"$DIR/nx-again.txt") names, asked again and again)" NX ">= $FLOOR_NX" "$FLOOR_NX" ge
    row "TXT, UDP, first pass over every name (a cold cache), qps" COLD "" "" ""
    row "NXDOMAIN, UDP, every name new ($N names once), qps" NXNEW "" "" ""
    printf '| p99 latency at %s qps, ms | %s | %s | %s | %s | | | broker < %s ms | %s |\n' "$P99_RATE" \
      "$R_broker_P99" "$R_bare_P99" "$R_knot_P99" "$R_nsd_P99" "$FLOOR_P99_MS" "$(verdict "$R_broker_P99" "$FLOOR_P99_MS" lt)"
    printf '| p99 to the load generator'"'"'s read (its own scheduling included), ms | %s | %s | %s | %s | | | | |\n' \
      "$R_broker_P99USER" "$R_bare_P99USER" "$R_knot_P99USER" "$R_nsd_P99USER"
    printf '| queries lost at that rate | %s | %s | %s | %s | | | | |\n' "$R_broker_P99LOST" "$R_bare_P99LOST" "$R_knot_P99LOST" "$R_nsd_P99LOST"
    row "TXT over TCP, qps ($CONNS conns x $INFLIGHT in flight)" TCP ">= $FLOOR_TCP" "$FLOOR_TCP" ge
    row "TXT over TCP, a connection per query, qps" TCP1 "" "" ""
    cpurow "challenge TXT, UDP" TXTCPU
    cpurow "NXDOMAIN, UDP" NXCPU
    cpurow "TXT, UDP, first pass" COLDCPU
    cpurow "NXDOMAIN, UDP, every name new" NXNEWCPU
    cpurow "TXT over TCP ($CONNS x $INFLIGHT)" TCPCPU
    cpurow "TXT over TCP, a connection per query" TCP1CPU
    echo
    echo "broker / bare miekg/dns: TXT $(ratio "$R_broker_TXT" "$R_bare_TXT"), NXDOMAIN $(ratio "$R_broker_NX" "$R_bare_NX"), TCP $(ratio "$R_broker_TCP" "$R_bare_TCP")."
    echo "Queries lost (dnsperf): TXT broker $R_broker_TXTLOST, bare $R_bare_TXTLOST, Knot $R_knot_TXTLOST, NSD $R_nsd_TXTLOST; NXDOMAIN broker $R_broker_NXLOST, bare $R_bare_NXLOST, Knot $R_knot_NXLOST, NSD $R_nsd_NXLOST. TCP errors (reconnects): broker $R_broker_TCPERR, Knot $R_knot_TCPERR, NSD $R_nsd_TCPERR."
    echo "Fast path allocations per answer (BenchmarkFastPath): $ALLOCS."
  } | tee "$DIR/summary.md" >&2
  SUMMARY+=("$(cat "$DIR/summary.md")")
  for v in $(compgen -v | grep -E '^A_' | sort); do printf '%s: %s\n' "${v#A_}" "${!v}"; done >"$DIR/rounds.txt"
  rm -f "$DIR/db/broker.db"*
}

for n in $SIZES; do run_size "$n"; done

# ---------------------------------------------------------------- API
if [ "$API" = 1 ]; then
  DIR=$OUT/api
  mkdir -p "$DIR/db"
  CACHE=64
  : >"$DIR/db/names.txt"
  FIRST_NAME=ns1.$ZONE
  ready_broker() { curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$API_PORT/health" 2>/dev/null; }
  say "API: a new broker, apiload on core $CORE_CLIENT (500 accounts, 8 workers, ${DURATION}s of updates)"
  start_server broker 60
  set +e
  bounded timeout $((DURATION + 400)) taskset -c "$CORE_CLIENT" "$BIN/apiload" \
    -api "http://127.0.0.1:$API_PORT" -accounts 500 -concurrency 8 \
    -duration "${DURATION}s" -phase-limit 90s -dns "127.0.0.1:$DNS_PORT" -out "$DIR" \
    >"$DIR/apiload.txt" 2>"$DIR/apiload.err"
  rc=$?
  set -e
  stop_pid "$SERVER_PID"
  ((rc == 0)) || die "apiload failed (exit $rc); see $DIR/apiload.err"
  API_JSON=$(tail -n 1 "$DIR/apiload.txt")
  j() { jq -r "$1" <<<"$API_JSON"; }
  REG=$(j '.register.rps | floor') UPD=$(j '.update.rps | floor')
  {
    echo
    echo "## API, 500 accounts"
    echo
    echo "| measure | result | latency | errors | floor | verdict |"
    echo "|---|---:|---|---|---|---|"
    echo "| POST /register | $REG req/s | p50 $(j .register.p50_ms) ms, p99 $(j .register.p99_ms) ms | $(j .register.errors) | >= $FLOOR_REGISTER req/s | $(verdict "$REG" "$FLOOR_REGISTER" ge) |"
    echo "| POST /update | $UPD req/s | p50 $(j .update.p50_ms) ms, p99 $(j .update.p99_ms) ms | $(j .update.errors) | >= $FLOOR_UPDATE req/s | $(verdict "$UPD" "$FLOOR_UPDATE" ge) |"
    echo
    echo "DNS check after the updates: $(j 'if .dns_check then "\(.dns_check.last_value_served)/\(.dns_check.names) names serve their last value, \(.dns_check.last_value_missing) missing" else "not run" end')."
  } | tee "$DIR/summary.md" >&2
  SUMMARY+=("$(cat "$DIR/summary.md")")
fi

{
  echo "# acmebroker benchmark, $(date -Is)"
  echo
  echo "$(grep -E '^(commit|cpu|cores|kernel|go|knotd|nsd):' "$OUT/env.txt" | tr '\n' ';' | sed 's/;$//; s/;/; /g')."
  for s in "${SUMMARY[@]}"; do echo "$s"; done
  echo
  echo "Raw outputs: $OUT/"
} >"$OUT/summary.md"
echo
cat "$OUT/summary.md"
