#!/usr/bin/env bash
# Aggregator throughput: produces one event for each of JOBS jobs to a real local Kafka, folds
# them with the exactly-once processor (transactions on) into an empty store and prints
# events/s, then restores an empty store from the changelog and prints records/s.
#
#   bench/aggregator.sh [JOBS]    (default 1000000)
#   bench/aggregator.sh N inventory   the inventory fold instead: N secrets (one SecretSeen each)
#                                     in 1000 repositories, folded into N items
#   BENCH_PROCESSORS=2 bench/aggregator.sh   folds with two processors in the group, as two
#                                            aggregator instances would
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scanstream/target}"
echo "== building (release)"
cargo build --locked --release -q -p scanstream -p scanstream-testcontainers -p scanstream-ingest -p scanstream-aggregator --bins --examples
bin="$CARGO_TARGET_DIR/release"
exec "$bin/scanstream-testenv" "$bin/examples/bench" "${1:-1000000}" ${2:+"$2"}
