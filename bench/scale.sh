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
# Both brokers stay up and are measured in turns (small, large) for ROUNDS
# rounds; the table compares the medians, so that the drift of a shared
# VM's speed (two runs of one size differed by 1.5x here) hits both alike.
#
#   bash bench/scale.sh                         # 500 vs 1,000,000 accounts
#   LARGE=200000 DURATION=20 ROUNDS=5 bash bench/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL=${SMALL:-500}
LARGE=${LARGE:-1000000}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-8}
CREDS=${CREDS:-20000}
ROUNDS=${ROUNDS:-3}
ZONE=auth.example.org
DNSPERF_OPTS=(-c 4 -T 1 -q 100 -t 1 -e)

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'scale.sh: %s\n' "$*" >&2; exit 1; }
for v in SMALL LARGE DURATION CONCURRENCY CREDS ROUNDS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
for t in dnsperf dig taskset ss; do command -v "$t" >/dev/null || die "$t is missing (apt-get install dnsperf dnsutils util-linux iproute2)"; done

TMP=$(mktemp -d /tmp/acmebroker-scale.XXXXXX)
BROKER_PIDS=()
cleanup() {
  local p
  for p in "${BROKER_PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
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
  echo "SMALL=$SMALL LARGE=$LARGE DURATION=$DURATION CONCURRENCY=$CONCURRENCY CREDS=$CREDS ROUNDS=$ROUNDS"
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

# start N: bulk-loads N accounts and starts a broker on them; fills the
# start-up figures into R_* and remembers the broker's ports and pid.
declare -A PID DNSPORT APIPORT DIR
start() {
  local n=$1 dir=$TMP/n$1 name dns api t0 t1 i
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
# Every account keeps its 2 newest values only, as bulkload made them: with
# the default window the 500 accounts, updated 70 times each a round, would
# soon hold 16 values (more rows per update, 16-record answers) while the
# million, updated once or twice, keep 2; the sizes would not compare.
txt_max = 2
# dnsperf floods from 127.0.0.1: response rate limiting off, so that the figures
# measure the server and stay comparable with earlier runs (see docs/dns.md, rate limiting).
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
  PID[$n]=$!
  BROKER_PIDS+=("$!")
  for ((i = 0; i < 1200; i++)); do # 120 s at most
    kill -0 "${PID[$n]}" 2>/dev/null || die "the broker exited; see $OUT/broker-$n.log"
    if dig +time=1 +tries=1 +norecurse -p "$dns" @127.0.0.1 "$name" TXT 2>/dev/null | grep -q 'ANSWER: 2'; then break; fi
    sleep 0.05
  done
  t1=$(date +%s.%N)
  ((i < 1200)) || die "DNS did not answer $name within 120 s"
  R_START=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  R_RSS0=$(($(status_kb "${PID[$n]}" VmRSS) / 1024))
  DNSPORT[$n]=$dns APIPORT[$n]=$api DIR[$n]=$dir
}

# dnsrun N ROUND: dnsperf over every name of broker N; prints qps.
dnsrun() {
  local n=$1 r=$2 f=$OUT/dnsperf-$1-$2.txt
  say "$n accounts, round $r: dnsperf over every name, ${DURATION}s"
  timeout $((DURATION + 60)) taskset -c 1 dnsperf -s 127.0.0.1 -p "${DNSPORT[$n]}" -d "${DIR[$n]}/dnsperf-queries.txt" \
    -l "$DURATION" "${DNSPERF_OPTS[@]}" >"$f" 2>&1 || die "dnsperf failed; see $f"
  grep -q 'Queries lost: *0 ' "$f" || say "$n accounts, round $r: dnsperf lost queries: $(awk '/Queries lost:/ { print $3, $4 }' "$f")"
  awk '/Queries per second:/ { printf "%.0f", $4 }' "$f"
}

# apirun N ROUND: /update load on broker N; prints "req/s p99_ms".
apirun() {
  local n=$1 r=$2 f=$OUT/apiload-$1-$2.txt rc
  say "$n accounts, round $r: apiload /update over $((CREDS < n ? CREDS : n)) random accounts, ${DURATION}s"
  set +e
  timeout $((DURATION + 300)) taskset -c 1 "$TMP/apiload" -api "http://127.0.0.1:${APIPORT[$n]}" -accounts-file "${DIR[$n]}/accounts.json" \
    -concurrency "$CONCURRENCY" -duration "${DURATION}s" -phase-limit 240s -out "${DIR[$n]}/apiload-$r" >"$f" 2>&1
  rc=$?
  set -e
  ((rc == 0)) || die "apiload failed; see $f"
  tail -n 1 "$f" | sed -n 's/.*"update":{[^}]*"rps":\([0-9.]*\)[^}]*"p99_ms":\([0-9.]*\).*/\1 \2/p' | awk '{ printf "%.0f %s", $1, $2 }'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

start "$SMALL"
S=("$R_LOAD" "$R_START" "$R_RSS0" "" "$R_DB")
start "$LARGE"
L=("$R_LOAD" "$R_START" "$R_RSS0" "" "$R_DB")

# Both brokers stay up and are measured in turns, small then large, ROUNDS
# times: drift in the speed of the machine (a shared VM) hits both sizes
# alike, and the medians of the rounds are compared. Every DNS round comes
# before the first update: updates add values (the 500 accounts soon hold
# txt_max values each, and DNS answers 16 records instead of 2).
declare -a SQ LQ SU LU SP LP
for ((r = 1; r <= ROUNDS; r++)); do
  SQ+=("$(dnsrun "$SMALL" "$r")")
  LQ+=("$(dnsrun "$LARGE" "$r")")
  printf 'round %d: DNS qps %s / %s\n' "$r" "${SQ[-1]}" "${LQ[-1]}" | tee -a "$OUT/raw.txt" >&2
done
for ((r = 1; r <= ROUNDS; r++)); do
  read -r u p <<<"$(apirun "$SMALL" "$r")"
  SU+=("$u") SP+=("$p")
  read -r u p <<<"$(apirun "$LARGE" "$r")"
  LU+=("$u") LP+=("$p")
  printf 'round %d: update req/s %s / %s (p99 %s / %s ms)\n' "$r" "${SU[-1]}" "${LU[-1]}" "${SP[-1]}" "${LP[-1]}" | tee -a "$OUT/raw.txt" >&2
done
S[3]=$(($(status_kb "${PID[$SMALL]}" VmHWM) / 1024))
L[3]=$(($(status_kb "${PID[$LARGE]}" VmHWM) / 1024))
S+=("$(median "${SQ[@]}")" "$(median "${SU[@]}")" "$(median "${SP[@]}")")
L+=("$(median "${LQ[@]}")" "$(median "${LU[@]}")" "$(median "${LP[@]}")")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }'; }
verdict() { awk -v v="$1" -v f="$2" -v op="$3" 'BEGIN { ok = (op == "ge") ? (v >= f) : (v < f); print ok ? "ok" : "**BELOW FLOOR**" }'; }
{
  echo
  echo "## acmebroker at scale, $(date -Is)"
  echo
  echo "Broker on core 0, load on core 1; load average at start: $(cut -d' ' -f1 /proc/loadavg)."
  echo "dnsperf ${DNSPERF_OPTS[*]} -l $DURATION over every name (2 TXT values each); apiload $CONCURRENCY workers over $CREDS random accounts."
  echo "Both brokers up at once, measured in turns (small, then large) for $ROUNDS rounds; the table gives the medians."
  echo "Rounds: DNS qps small ${SQ[*]} / large ${LQ[*]}; update req/s small ${SU[*]} / large ${LU[*]}."
  echo
  echo "| measure | $SMALL accounts | $LARGE accounts | large / small | floor | verdict |"
  echo "|---|---:|---:|---:|---|---|"
  echo "| bulk load (s) | ${S[0]} | ${L[0]} | | | |"
  echo "| start-up until DNS answers (s) | ${S[1]} | ${L[1]} | | < 30 s | $(verdict "${L[1]}" 30 lt) |"
  echo "| RSS after start-up (MiB) | ${S[2]} | ${L[2]} | | | |"
  echo "| peak RSS (MiB) | ${S[3]} | ${L[3]} | | < 1024 MiB | $(verdict "${L[3]}" 1024 lt) |"
  echo "| database size (MiB) | ${S[4]} | ${L[4]} | | | |"
  echo "| DNS TXT qps, median | ${S[5]} | ${L[5]} | $(ratio "${S[5]}" "${L[5]}") | >= 0.8 | $(verdict "$(ratio "${S[5]}" "${L[5]}")" 0.8 ge) |"
  echo "| POST /update req/s, median | ${S[6]} | ${L[6]} | $(ratio "${S[6]}" "${L[6]}") | >= 0.8 | $(verdict "$(ratio "${S[6]}" "${L[6]}")" 0.8 ge) |"
  echo "| POST /update p99 (ms), median | ${S[7]} | ${L[7]} | | | |"
  echo
  echo "Raw outputs: $OUT/"
} | tee "$OUT/summary.md"
