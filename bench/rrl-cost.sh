#!/usr/bin/env bash
# bench/rrl-cost.sh: what response rate limiting (dnsserver/rrl) costs an
# answer that is not limited. Counts instructions per query with valgrind
# (cachegrind) for the handler alone and behind the RRL middleware: unlike
# ns/op, the count does not move with the load of a shared machine. Each
# figure is the difference of two runs (N2 and N1 queries) over N2-N1, so
# start-up cancels out. Also prints the Go benchmark's ns/op (noisy).
#
#   bash bench/rrl-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "rrl-cost.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/rrl-cost.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
go test -c -o "$TMP/dns.test" ./dnsserver
N1=20000 N2=120000
irefs() { # irefs BENCH N: instructions executed by N iterations of BENCH
  (cd dnsserver && valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    "$TMP/dns.test" -test.run '^$' -test.bench "$1" -test.benchtime "$2x" -test.cpu 1 2>&1) |
    awk '/I[ ]+refs:/ { gsub(",", "", $4); print $4 }'
}
per_op() { echo $(( ($(irefs "$1" $N2) - $(irefs "$1" $N1)) / (N2 - N1) )); }
printf '| query | handler | handler + RRL | RRL adds |\n|---|---|---|---|\n'
for q in TXT-hit NXDOMAIN; do
  a=$(per_op "BenchmarkRRL/$q/plain\$")
  b=$(per_op "BenchmarkRRL/$q/rrl\$")
  awk -v q="$q" -v a="$a" -v b="$b" 'BEGIN { printf "| %s | %d instr/op | %d instr/op | %+.1f%% |\n", q, a, b, (b - a) * 100 / a }'
done
echo
(cd dnsserver && "$TMP/dns.test" -test.run '^$' -test.bench '^BenchmarkRRL$/' -test.count 3 -test.benchmem) | grep '^Bench'
