#!/usr/bin/env bash
# bench/dnssec.sh: what DNSSEC signing costs the broker's DNS answers. One
# broker with [dns.dnssec] enabled, pinned to one core, answers the same TXT
# queries (every registered name, shuffled) with the DO bit clear (the
# unsigned answers, byte for byte what a broker with signing off sends) and
# set (signed, signatures from the cache as in steady state), in ROUNDS
# pairs of runs (the order flips each round, so drift of a shared machine
# falls on both); then the same for names that do not exist (compact
# NXDOMAIN: an NSEC and its signature per name, made once). Prints a
# Markdown table: queries per second of every run, the median of the
# rounds' ratios signed / unsigned, and the broker's CPU time per answer
# (its ratio is the capacity ratio on a core of its own, the figure that
# holds on a shared machine). Raw outputs go to
# bench/out/dnssec-<timestamp>/.
#
#   bash bench/dnssec.sh
#   DURATION=20 ACCOUNTS=2000 bash bench/dnssec.sh
#
# Env: DURATION (s, default 10) of each dnsperf run; ROUNDS (3); ACCOUNTS
# (500); the algorithm with ALGORITHM=ed25519 (default ecdsap256sha256);
# ACMEBROKER_BIN: measure this binary instead of building ./cmd/acmebroker
# (an older build, for a before/after).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
ACCOUNTS=${ACCOUNTS:-500}
ALGORITHM=${ALGORITHM:-ecdsap256sha256}
for v in DURATION ROUNDS ACCOUNTS; do
  if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then echo "dnssec.sh: $v must be a positive integer, got '${!v}'" >&2; exit 2; fi
done
FLOOR_RATIO=0.5 # issue #17: signed TXT at least half the unsigned queries per second
ZONE=auth.example.org
CORE_SERVER=0
CORE_CLIENT=1
[ "$(nproc)" -ge 2 ] || CORE_CLIENT=0

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'dnssec.sh: %s\n' "$*" >&2; exit 1; }
. bench/lib.sh

TMP=$(mktemp -d /tmp/acmebroker-dnssec-bench.XXXXXX)
PIDS=()
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bounded() {
  "$@" &
  local pid=$!
  PIDS+=("$pid")
  wait "$pid"
}

for tool in dnsperf dig taskset curl; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y dnsperf dnsutils util-linux curl)"
done

OUT=bench/out/dnssec-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
{
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo +dirty)"
  echo "date: $(date -u +%FT%TZ)"
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
  echo "options: DURATION=$DURATION ROUNDS=$ROUNDS ACCOUNTS=$ACCOUNTS ALGORITHM=$ALGORITHM"
} >"$OUT/env.txt"

BIN=$TMP/bin
mkdir -p "$BIN"
say "building acmebroker and apiload"
broker_binary "$BIN" "$OUT/env.txt"
go build -o "$BIN/apiload" ./bench/apiload || die "go build ./bench/apiload failed"

port() { echo $((20000 + RANDOM % 12000)); }
DNS_PORT=$(port)
API_PORT=$(port)
cat >"$TMP/broker.toml" <<EOF
[dns]
listen  = ["127.0.0.1:$DNS_PORT"]
zone    = "$ZONE"
nsname  = "ns1.$ZONE"
nsadmin = "hostmaster.example.org"
records = ["$ZONE. NS ns1.$ZONE.", "ns1.$ZONE. A 127.0.0.1"]
[dns.rrl]
enabled = false
[dns.cookies]
enabled = false
[dns.dnssec]
enabled = true
algorithm = "$ALGORITHM"
[api]
listen = "127.0.0.1:$API_PORT"
register_limit = 0
update_limit = 0
update_source_limit = 0
[storage]
dsn = "$TMP/bench.db"
[log]
level = "warn"
EOF
cp "$TMP/broker.toml" "$OUT/broker.toml"
say "starting the broker (signing on, $ALGORITHM) on core $CORE_SERVER"
taskset -c "$CORE_SERVER" "$BIN/acmebroker" serve -config "$TMP/broker.toml" >"$OUT/broker.log" 2>&1 &
BROKER=$!
PIDS+=("$BROKER")
for ((i = 0; i < 300; i++)); do
  kill -0 "$BROKER" 2>/dev/null || die "the broker exited; see $OUT/broker.log"
  curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$API_PORT/health" 2>/dev/null && break
  sleep 0.1
done

say "registering $ACCOUNTS accounts with a value each (apiload)"
bounded timeout 300 taskset -c "$CORE_CLIENT" "$BIN/apiload" -api "http://127.0.0.1:$API_PORT" -accounts "$ACCOUNTS" \
  -concurrency 8 -duration 1s -phase-limit 90s -dns "127.0.0.1:$DNS_PORT" -out "$OUT" >"$OUT/apiload.txt" 2>"$OUT/apiload.err" ||
  die "apiload failed; see $OUT/apiload.err"
[ -s "$OUT/dnsperf-queries.txt" ] || die "apiload wrote no query file"
awk 'NR <= 5000 { printf "nx%d-%d.%s TXT\n", NR, int(rand() * 1e9), "'"$ZONE"'" }' "$OUT/dnsperf-queries.txt" >"$OUT/nx-queries.txt"

dig +dnssec +norecurse -p "$DNS_PORT" @127.0.0.1 "$(awk 'NR == 1 { print $1 }' "$OUT/dnsperf-queries.txt")" TXT >"$OUT/dig-signed.txt" 2>&1 || true
grep -q 'RRSIG' "$OUT/dig-signed.txt" || die "the broker's answer to DO carries no RRSIG; see $OUT/dig-signed.txt"

# cpu_ticks PID: user + system CPU time the process has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
# run NAME QUERYFILE DNSPERF-FLAG: sets QPS and CPU_US, the broker's CPU time
# per answer in microseconds. On a shared machine the second is the steadier
# figure: other processes on the core lower the queries per second, not the
# CPU an answer costs.
run() {
  local f=$OUT/dnsperf-$1.txt t0 t1 n
  t0=$(cpu_ticks "$BROKER")
  bounded timeout $((DURATION + 30)) taskset -c "$CORE_CLIENT" dnsperf -s 127.0.0.1 -p "$DNS_PORT" -d "$2" \
    -l "$DURATION" -c 4 -T 1 -q 100 -t 1 "$3" >"$f" 2>&1 || die "dnsperf $1 failed; see $f"
  t1=$(cpu_ticks "$BROKER")
  QPS=$(awk '/Queries per second:/ { printf "%d", $4 }' "$f")
  n=$(awk '/Queries completed:/ { print $3 }' "$f")
  [ -n "$QPS" ] && [ -n "$n" ] || die "dnsperf $1 printed no result; see $f"
  CPU_US=$(awk -v t=$((t1 - t0)) -v hz="$TICK" -v n="$n" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
  say "$1: $QPS q/s, ${CPU_US} us CPU per answer"
}
declare -A R C
for ((round = 1; round <= ROUNDS; round++)); do
  for kind in txt nx; do
    file=$OUT/dnsperf-queries.txt
    [ $kind = nx ] && file=$OUT/nx-queries.txt
    order=(unsigned signed)
    ((round % 2 == 0)) && order=(signed unsigned)
    for mode in "${order[@]}"; do
      flag=-e
      [ "$mode" = signed ] && flag=-D
      run "$kind-$mode-$round" "$file" "$flag"
      R[$kind-$mode-$round]=$QPS
      C[$kind-$mode-$round]=$CPU_US
    done
  done
done
kill -0 "$BROKER" 2>/dev/null || die "the broker exited during the runs; see $OUT/broker.log"

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
{
  echo "DNSSEC cost, one broker on one core, $ALGORITHM, $ACCOUNTS names, dnsperf -c 4 -T 1 -q 100 -l $DURATION, $ROUNDS rounds, load before $(cut -d' ' -f1-3 <<<"$(grep '^load' "$OUT/env.txt" | cut -d' ' -f2-)") after $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%F)"
  echo
  echo "| queries | unsigned (DO clear) q/s, per round | signed (DO set) q/s, per round | signed / unsigned q/s, median | CPU per answer unsigned / signed (us), median | capacity ratio (CPU unsigned / signed) |"
  echo "|---|---|---|---|---|---|"
  for kind in txt nx; do
    us="" ss="" ratios="" cus="" css=""
    for ((round = 1; round <= ROUNDS; round++)); do
      us+="${us:+, }${R[$kind-unsigned-$round]}"
      ss+="${ss:+, }${R[$kind-signed-$round]}"
      ratios+="$(awk -v s="${R[$kind-signed-$round]}" -v u="${R[$kind-unsigned-$round]}" 'BEGIN { printf "%.2f", s / u }')"$'\n'
      cus+="${C[$kind-unsigned-$round]}"$'\n'
      css+="${C[$kind-signed-$round]}"$'\n'
    done
    ratio=$(printf '%s' "$ratios" | median)
    cu=$(printf '%s' "$cus" | median)
    cs=$(printf '%s' "$css" | median)
    capacity=$(awk -v u="$cu" -v s="$cs" 'BEGIN { printf "%.2f", u / s }')
    note=""
    if [ $kind = txt ] && awk -v r="$capacity" -v f="$FLOOR_RATIO" 'BEGIN { exit !(r < f) }'; then note=" **BELOW FLOOR $FLOOR_RATIO**"; fi
    label="challenge TXT"
    [ $kind = nx ] && label="no such name (compact NXDOMAIN)"
    echo "| $label | $us | $ss | $ratio | $cu / $cs | $capacity$note |"
  done
} | tee "$OUT/summary.md"
ln -sfn "$(basename "$OUT")" bench/out/dnssec-latest
