#!/usr/bin/env bash
# bench/scale.sh: the broker holding a million accounts, next to the same
# broker holding 500, measured the same way in one run. Prints a Markdown
# table; raw outputs go to bench/out/scale-<timestamp>/.
#
# For each size: bench/bulkload writes the accounts straight into a new
# SQLite database (two TXT values each, so every name serves two), then the
# script starts `acmebroker serve` pinned to core 0 and measures
#   - start-up: from exec until DNS answers a name from the database;
#   - RSS after start-up and at the end (VmRSS, VmHWM), database size;
#   - DNS TXT qps: dnsperf on core 1 over every name, shuffled;
#   - POST /update req/s: apiload on core 1, random values to CREDS random
#     accounts of the database.
#
#   bash bench/scale.sh                         # 500 vs 1,000,000 accounts
#   LARGE=200000 DURATION=20 bash bench/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL=${SMALL:-500}
LARGE=${LARGE:-1000000}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-8}
CREDS=${CREDS:-20000}
ZONE=auth.example.org
DNSPERF_OPTS=(-c 4 -T 1 -q 100 -t 1 -e)

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'scale.sh: %s\n' "$*" >&2; exit 1; }
for v in SMALL LARGE DURATION CONCURRENCY CREDS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
for t in dnsperf dig taskset ss; do command -v "$t" >/dev/null || die "$t is missing (apt-get install dnsperf dnsutils util-linux iproute2)"; done

TMP=$(mktemp -d /tmp/acmebroker-scale.XXXXXX)
BROKER_PID=
cleanup() {
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=bench/out/scale-$STAMP
mkdir -p "$OUT"
{
  echo "date: $(date -Is)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo none)"
  echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "SMALL=$SMALL LARGE=$LARGE DURATION=$DURATION CONCURRENCY=$CONCURRENCY CREDS=$CREDS"
} >"$OUT/env.txt"

say "building acmebroker, bulkload, apiload"
go build -o "$TMP/acmebroker" ./cmd/acmebroker
go build -o "$TMP/bulkload" ./bench/bulkload
go build -o "$TMP/apiload" ./bench/apiload

free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    [ -z "$(ss -Hlntu "sport = :$p" 2>/dev/null)" ] && { echo "$p"; return 0; }
  done
  die "no free port"
}
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# measure N: fills R_* for N accounts.
measure() {
  local n=$1 dir=$TMP/n$1 name dns api t0 t1 i rc
  mkdir -p "$dir"
  say "$n accounts: bulk load"
  t0=$(date +%s.%N)
  taskset -c 0 "$TMP/bulkload" -db "$dir/broker.db" -accounts "$n" -creds "$((CREDS < n ? CREDS : n))" -zone "$ZONE" 2>"$OUT/bulkload-$n.txt"
  t1=$(date +%s.%N)
  R_LOAD=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  R_DB=$(du -cb "$dir"/broker.db* | awk 'END { printf "%.0f", $1 / 1048576 }')
  name=$(head -n 1 "$dir/dnsperf-queries.txt" | cut -d' ' -f1)
  dns=$(free_port)
  api=$(free_port)
  cat >"$dir/broker.toml" <<EOF
[dns]
listen  = ["127.0.0.1:$dns"]
zone    = "$ZONE"
nsname  = "ns1.$ZONE"
nsadmin = "hostmaster.example.org"
records = ["$ZONE. NS ns1.$ZONE.", "ns1.$ZONE. A 127.0.0.1"]
# dnsperf floods from 127.0.0.1: response rate limiting off, so that the figures
# measure the server and stay comparable with earlier runs (see README, DNS behaviour).
[dns.rrl]
enabled = false
[api]
listen = "127.0.0.1:$api"
# The load comes from one address at thousands of requests a second: no rate limits.
register_limit = 0
update_limit = 0
update_source_limit = 0
[storage]
dsn = "$dir/broker.db"
[log]
level = "warn"
EOF
  say "$n accounts: starting the broker on core 0"
  t0=$(date +%s.%N)
  taskset -c 0 "$TMP/acmebroker" serve -config "$dir/broker.toml" >"$OUT/broker-$n.log" 2>&1 &
  BROKER_PID=$!
  for ((i = 0; i < 1200; i++)); do # 120 s at most
    kill -0 "$BROKER_PID" 2>/dev/null || die "the broker exited; see $OUT/broker-$n.log"
    if dig +time=1 +tries=1 +norecurse -p "$dns" @127.0.0.1 "$name" TXT 2>/dev/null | grep -q 'ANSWER: 2'; then break; fi
    sleep 0.05
  done
  t1=$(date +%s.%N)
  ((i < 1200)) || die "DNS did not answer $name within 120 s"
  R_START=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  R_RSS0=$(($(status_kb "$BROKER_PID" VmRSS) / 1024))

  say "$n accounts: dnsperf over every name, ${DURATION}s"
  timeout $((DURATION + 60)) taskset -c 1 dnsperf -s 127.0.0.1 -p "$dns" -d "$dir/dnsperf-queries.txt" \
    -l "$DURATION" "${DNSPERF_OPTS[@]}" >"$OUT/dnsperf-$n.txt" 2>&1 || die "dnsperf failed; see $OUT/dnsperf-$n.txt"
  R_QPS=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$OUT/dnsperf-$n.txt")
  R_LOST=$(awk '/Queries lost:/ { print $3 " " $4 }' "$OUT/dnsperf-$n.txt")

  say "$n accounts: apiload /update over $((CREDS < n ? CREDS : n)) random accounts, ${DURATION}s"
  set +e
  timeout $((DURATION + 300)) taskset -c 1 "$TMP/apiload" -api "http://127.0.0.1:$api" -accounts-file "$dir/accounts.json" \
    -concurrency "$CONCURRENCY" -duration "${DURATION}s" -phase-limit 240s -out "$dir/apiload" >"$OUT/apiload-$n.txt" 2>&1
  rc=$?
  set -e
  ((rc == 0)) || die "apiload failed; see $OUT/apiload-$n.txt"
  R_UPD=$(tail -n 1 "$OUT/apiload-$n.txt" | sed -n 's/.*"update":{[^}]*"rps":\([0-9.]*\).*/\1/p' | awk '{ printf "%.0f", $1 }')
  R_P99=$(tail -n 1 "$OUT/apiload-$n.txt" | sed -n 's/.*"update":{[^}]*"p99_ms":\([0-9.]*\).*/\1/p')
  R_RSS1=$(($(status_kb "$BROKER_PID" VmRSS) / 1024))
  R_HWM=$(($(status_kb "$BROKER_PID" VmHWM) / 1024))
  kill -TERM "$BROKER_PID"
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=
  rm -rf "$dir"
  printf '%s accounts: load %ss, start-up %ss, RSS %s/%s MiB (peak %s), DB %s MiB, DNS %s qps (lost %s), update %s req/s (p99 %s ms)\n' \
    "$n" "$R_LOAD" "$R_START" "$R_RSS0" "$R_RSS1" "$R_HWM" "$R_DB" "$R_QPS" "$R_LOST" "$R_UPD" "$R_P99" | tee -a "$OUT/raw.txt" >&2
}

measure "$SMALL"
S=("$R_LOAD" "$R_START" "$R_RSS0" "$R_HWM" "$R_DB" "$R_QPS" "$R_UPD" "$R_P99")
measure "$LARGE"
L=("$R_LOAD" "$R_START" "$R_RSS0" "$R_HWM" "$R_DB" "$R_QPS" "$R_UPD" "$R_P99")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }'; }
verdict() { awk -v v="$1" -v f="$2" -v op="$3" 'BEGIN { ok = (op == "ge") ? (v >= f) : (v < f); print ok ? "ok" : "**BELOW FLOOR**" }'; }
{
  echo
  echo "## acmebroker at scale, $(date -Is)"
  echo
  echo "Broker on core 0, load on core 1; load average at start: $(cut -d' ' -f1 /proc/loadavg)."
  echo "dnsperf ${DNSPERF_OPTS[*]} -l $DURATION over every name (2 TXT values each); apiload $CONCURRENCY workers over $CREDS random accounts."
  echo
  echo "| measure | $SMALL accounts | $LARGE accounts | large / small | floor | verdict |"
  echo "|---|---:|---:|---:|---|---|"
  echo "| bulk load (s) | ${S[0]} | ${L[0]} | | | |"
  echo "| start-up until DNS answers (s) | ${S[1]} | ${L[1]} | | < 30 s | $(verdict "${L[1]}" 30 lt) |"
  echo "| RSS after start-up (MiB) | ${S[2]} | ${L[2]} | | | |"
  echo "| peak RSS (MiB) | ${S[3]} | ${L[3]} | | < 1024 MiB | $(verdict "${L[3]}" 1024 lt) |"
  echo "| database size (MiB) | ${S[4]} | ${L[4]} | | | |"
  echo "| DNS TXT qps | ${S[5]} | ${L[5]} | $(ratio "${S[5]}" "${L[5]}") | >= 0.8 | $(verdict "$(ratio "${S[5]}" "${L[5]}")" 0.8 ge) |"
  echo "| POST /update req/s | ${S[6]} | ${L[6]} | $(ratio "${S[6]}" "${L[6]}") | >= 0.8 | $(verdict "$(ratio "${S[6]}" "${L[6]}")" 0.8 ge) |"
  echo "| POST /update p99 (ms) | ${S[7]} | ${L[7]} | | | |"
  echo
  echo "Raw outputs: $OUT/"
} | tee "$OUT/summary.md"
