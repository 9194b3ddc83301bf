#!/usr/bin/env bash
# bench/profile.sh: a CPU profile of the broker's DNS server under load. The
# broker runs in bench/dnsprofile (broker.Run in process, the Go profiler on)
# pinned to core 0 on ACCOUNTS bulk-loaded accounts, with RRL on and
# 127.0.0.1 exempted as in bench/run.sh; dnsperf on core 1 asks every name
# for DURATION seconds. Prints the top of the profile; the raw profile is
# kept in bench/out/profile-<timestamp>/.
#
#   bash bench/profile.sh                          # 500 accounts, 10 s
#   ACCOUNTS=1000000 DURATION=20 bash bench/profile.sh
#   QUERIES=nx bash bench/profile.sh               # unregistered names (NXDOMAIN)
#   go tool pprof -http=:0 bench/out/profile-*/cpu.pprof   # flame graph in a browser
set -euo pipefail
cd "$(dirname "$0")/.."
ACCOUNTS=${ACCOUNTS:-500}
DURATION=${DURATION:-10}
QUERIES=${QUERIES:-txt}
TOP=${TOP:-35}
ZONE=auth.example.org
for t in dnsperf dig taskset ss; do command -v "$t" >/dev/null || { echo "profile.sh: $t is missing (apt-get install dnsperf dnsutils util-linux iproute2)" >&2; exit 1; }; done
TMP=$(mktemp -d /tmp/acmebroker-profile.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
OUT=bench/out/profile-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
go build -o "$TMP/dnsprofile" ./bench/dnsprofile
go build -o "$TMP/bulkload" ./bench/bulkload
"$TMP/bulkload" -db "$TMP/broker.db" -accounts "$ACCOUNTS" -creds 0 -zone "$ZONE" 2>/dev/null
if [ "$QUERIES" = nx ]; then
  awk '{ printf "nx%s %s\n", $1, $2 }' "$TMP/dnsperf-queries.txt" >"$TMP/q.txt"
else
  cp "$TMP/dnsperf-queries.txt" "$TMP/q.txt"
fi
port() { local p; while :; do p=$((20000 + RANDOM % 12000)); [ -z "$(ss -Hlntu "sport = :$p")" ] && { echo "$p"; return; }; done; }
DNS=$(port) API=$(port)
cat >"$TMP/broker.toml" <<CONF
[dns]
listen  = ["127.0.0.1:$DNS"]
zone    = "$ZONE"
nsname  = "ns1.$ZONE"
nsadmin = "hostmaster.example.org"
records = ["$ZONE. NS ns1.$ZONE.", "ns1.$ZONE. A 127.0.0.1"]
txt_max = 2
[dns.rrl]
enabled = true
exempt = ["127.0.0.1/32"]
[api]
listen = "127.0.0.1:$API"
[storage]
dsn = "$TMP/broker.db"
[log]
level = "warn"
CONF
taskset -c 0 "$TMP/dnsprofile" -config "$TMP/broker.toml" -cpuprofile "$OUT/cpu.pprof" >"$OUT/dnsprofile.log" 2>&1 &
PID=$!
for ((i = 0; i < 600; i++)); do
  grep -q '^ready' "$OUT/dnsprofile.log" && break
  kill -0 "$PID" 2>/dev/null || { cat "$OUT/dnsprofile.log" >&2; exit 1; }
  sleep 0.1
done
taskset -c 1 dnsperf -s 127.0.0.1 -p "$DNS" -d "$TMP/q.txt" -l "$DURATION" -c 4 -T 1 -q 100 -t 1 -e >"$OUT/dnsperf.txt" 2>&1
kill -TERM "$PID"
wait "$PID" || true
PID=
grep -E 'Queries (sent|completed|lost)|Queries per second|Response codes' "$OUT/dnsperf.txt"
go tool pprof -top -nodecount="$TOP" "$OUT/cpu.pprof" 2>/dev/null | tee "$OUT/top.txt"
echo "raw profile: $OUT/cpu.pprof"
