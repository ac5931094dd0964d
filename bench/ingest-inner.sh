#!/usr/bin/env bash
# Run by bench/ingest.sh inside scanstream-testenv (SCANSTREAM_TEST_BOOTSTRAP/_REGISTRY set).
set -euo pipefail
bin=$BENCH_BIN
work=$(mktemp -d)
cleanup() {
  if [ -n "${ingest_pid:-}" ]; then kill "$ingest_pid" 2>/dev/null || true; fi
  if [ -n "${trivial_pid:-}" ]; then kill "$trivial_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export SCANSTREAM__KAFKA__BOOTSTRAP_SERVERS=$SCANSTREAM_TEST_BOOTSTRAP
export SCANSTREAM__REGISTRY__URL=$SCANSTREAM_TEST_REGISTRY
export SCANSTREAM__TOPICS__REPLICATION_FACTOR=1
export SCANSTREAM__TOPICS__PARTITIONS=6
export SCANSTREAM__API__AUTH_ENABLED=false
export SCANSTREAM__API__LISTEN=127.0.0.1:18181
export SCANSTREAM__TELEMETRY__LOG_FILTER=warn

"$bin/scanstream" topics ensure >/dev/null
"$bin/scanstream" ingest >"$work/ingest.log" 2>&1 &
ingest_pid=$!
for _ in $(seq 1 120); do
  curl -sf http://127.0.0.1:18181/readyz >/dev/null && break
  sleep 0.5
done
curl -sf http://127.0.0.1:18181/readyz >/dev/null || { echo "ingest never became ready"; cat "$work/ingest.log"; exit 1; }

run() { # name url
  wrk -t2 -c"$BENCH_CONNECTIONS" -d"${BENCH_DURATION}s" --latency -s bench/post-jobs.lua "$2" >"$work/$1.txt"
}
summary() { # name
  local f="$work/$1.txt"
  local total non2xx secs p50 p99
  total=$(awk '/requests in/ {print $1}' "$f")
  secs=$(awk '/requests in/ {gsub("s,","",$4); print $4}' "$f")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$f"); non2xx=${non2xx:-0}
  p50=$(awk '$1=="50%" {print $2}' "$f")
  p99=$(awk '$1=="99%" {print $2}' "$f")
  printf '%-28s %12s %10s %10s %10s\n' "$1" "$(awk -v t="$total" -v n="$non2xx" -v s="$secs" 'BEGIN {printf "%.0f", (t - n) / s}')" "$non2xx" "$p50" "$p99"
}

echo "== warm-up"
wrk -t2 -c"$BENCH_CONNECTIONS" -d3s -s bench/post-jobs.lua http://127.0.0.1:18181 >/dev/null
echo "== scanstream ingest (acks=all, transactions) for ${BENCH_DURATION}s with $BENCH_CONNECTIONS connections"
run ingest http://127.0.0.1:18181
kill "$ingest_pid"; wait "$ingest_pid" 2>/dev/null || true; ingest_pid=""

"$bin/examples/trivial_server" 127.0.0.1:18182 &
trivial_pid=$!
sleep 1
echo "== trivial actix-web handler, same load"
run trivial http://127.0.0.1:18182

echo
printf '%-28s %12s %10s %10s %10s\n' "server" "accepted/s" "non-2xx" "p50" "p99"
summary ingest
summary trivial
echo
echo "machine: $(nproc) cores; Kafka, the registry, the server and wrk share them"
