#!/usr/bin/env bash
# The dashboard's overview against a large store: writes JOBS job states and ITEMS inventory
# items (Avro through a real local registry) to a store, builds the in-memory index from it as a
# starting aggregator does, and prints the index build time and the overview's render time
# (median and max of 21), the work of every GET /ui/.
#
#   bench/dashboard.sh [JOBS] [ITEMS]    (defaults 10000 and 50000)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scanstream/target}"
echo "== building (release)"
cargo build --locked --release -q -p scanstream-testcontainers -p scanstream-aggregator --bins --examples
bin="$CARGO_TARGET_DIR/release"
exec "$bin/scanstream-testenv" "$bin/examples/dashboard" "${1:-10000}" "${2:-50000}"
