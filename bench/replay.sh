#!/usr/bin/env bash
# Replay throughput: produces EVENTS events to a real local Kafka (6 partitions), then replays
# them all as JSON lines, as the audit's digest, into an Avro container file and into a copy
# topic, printing records/s for each.
#
#   bench/replay.sh [EVENTS]    (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scanstream/target}"
echo "== building (release)"
cargo build --locked --release -q -p scanstream -p scanstream-testcontainers --bins --examples
bin="$CARGO_TARGET_DIR/release"
exec "$bin/scanstream-testenv" "$bin/examples/replay_bench" "${1:-1000000}"
