#!/usr/bin/env bash
# Ingest throughput and latency: drives POST /jobs with many concurrent clients (wrk) against
# `scanstream ingest` writing to a real local Kafka with acks=all and transactions, then the
# same load against a trivial actix-web handler on the same machine, and prints both.
#
#   bench/ingest.sh [DURATION_SECONDS] [CONNECTIONS]
#
# Needs what scripts/test needs, plus wrk (installed from Debian when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-20}
connections=${2:-64}

scripts/install-deps
if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get install -y -qq wrk >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk; }
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scanstream/target}"
echo "== building (release)"
# One invocation, so shared dependencies are built once with one feature set.
cargo build --locked --release -q -p scanstream -p scanstream-testcontainers -p scanstream-ingest -p scanstream-aggregator --bins --examples
bin="$CARGO_TARGET_DIR/release"

export BENCH_DURATION=$duration BENCH_CONNECTIONS=$connections BENCH_BIN=$bin
exec "$bin/scanstream-testenv" bash bench/ingest-inner.sh
