#!/usr/bin/env bash
# Command-engine overhead: what running an engine through scanstream costs besides the engine's
# own work, on a mid-size repository (a git repository made once from crates' sources in the
# cargo registry: N files, about 60 MB; cached under ~/.cache/scanstream/bench).
#
#   bench/engines.sh [FILES]      (default 4000 files)
#
# Prints medians of 3 runs (release build), each with a fresh cache folder:
#   worktree   writing the scanned commit's files out of the mirror (EngineCompleted-side
#              `worktree_ms` of `scanstream scan --format json`)
#   noop       an engine that prints an empty SARIF log: process start, SARIF read, clean-up
#   gitleaks, semgrep (tools/engines) on the same worktree, for scale; and the built-in engine;
#   and, for the disk's own speed, `git archive HEAD | tar -x` of the same commit.
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-4000}
cache="${SCANSTREAM_CACHE:-$HOME/.cache/scanstream}"
repo="$cache/bench/engines-repo-$files"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}

cargo build --release --locked -q -p scanstream
bin="$CARGO_TARGET_DIR/release/scanstream"
mapfile -t engines < <(tools/engines)
gitleaks=${engines[0]#gitleaks }
semgrep=${engines[1]#semgrep }

if [ ! -d "$repo/.git" ] || [ -z "$(ls "$repo/.git/objects/pack" 2>/dev/null)" ]; then
  echo "== making $repo from the cargo registry's sources ($files files)"
  rm -rf "$repo.tmp"
  mkdir -p "$repo.tmp"
  registry=$(find "$HOME/.cargo/registry/src" -mindepth 1 -maxdepth 1 -type d | head -1)
  # (Listed whole, then cut: `head` ending a pipe early fails it under pipefail.)
  (cd "$registry" && find . -type f \( -name '*.rs' -o -name '*.toml' -o -name '*.md' -o -name '*.json' \) \
    | sort) > "$repo.list"
  sed -n "1,${files}p" "$repo.list" > "$repo.list.head"
  (cd "$registry" && tar -cf - -T "$repo.list.head") | tar -xf - -C "$repo.tmp"
  rm -f "$repo.list" "$repo.list.head"
  git -C "$repo.tmp" init -q -b main
  git -C "$repo.tmp" add -A
  git -C "$repo.tmp" -c user.name=bench -c user.email=bench@example.com commit -q -m sources
  # Packed, as a fetched mirror is.
  git -C "$repo.tmp" repack -adq
  git -C "$repo.tmp" prune
  mv "$repo.tmp" "$repo"
fi
echo "repository: $repo: $(git -C "$repo" ls-files | wc -l) files, $(du -sh --exclude=.git "$repo" | cut -f1)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rules="$work/rules.yaml"
cat > "$rules" <<'RULES'
rules:
  - id: hardcoded-password
    languages: [python]
    severity: ERROR
    message: a password literal
    pattern: password = "..."
RULES
config="$work/scanstream.toml"
cat > "$config" <<TOML
[engines.noop]
command = ["sh", "-c", "echo '{\"version\": \"2.1.0\", \"runs\": []}'", "{worktree}"]
[engines.gitleaks]
preset = "gitleaks"
env = { PATH = "$(dirname "$gitleaks"):/usr/bin:/bin" }
[engines.semgrep]
preset = "semgrep"
config = "$rules"
env = { PATH = "$(dirname "$semgrep"):/usr/bin:/bin" }
TOML

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# One engine, 3 runs with fresh caches: "<worktree ms> <engine ms> <wall ms>" medians.
measure() { # engine
  local w=() e=() t=() out t0 t1 wt ms _
  for _ in 1 2 3; do
    rm -rf "$work/cache"
    t0=$(date +%s%N)
    out=$("$bin" scan --config "$config" --engines "$1" --ref HEAD --cache-dir "$work/cache" \
      --no-progress --format json "$repo" || true)
    t1=$(date +%s%N)
    read -r wt ms < <(python3 -c 'import json, sys
run = [e for e in json.load(sys.stdin)["summary"]["engines"] if e["engine"] == sys.argv[1]][0]
print(run.get("worktree_ms", 0), run["duration_ms"])' "$1" <<< "$out")
    w+=("$wt")
    e+=("$ms")
    t+=($(((t1 - t0) / 1000000)))
  done
  echo "$(printf '%s\n' "${w[@]}" | median) $(printf '%s\n' "${e[@]}" | median) $(printf '%s\n' "${t[@]}" | median)"
}

printf '%-10s %12s %12s %12s\n' engine worktree_ms engine_ms wall_ms
for engine in noop secrets gitleaks semgrep; do
  read -r w e t < <(measure "$engine")
  printf '%-10s %12s %12s %12s\n' "$engine" "$w" "$e" "$t"
done
times=()
for _ in 1 2 3; do
  rm -rf "$work/tar"
  mkdir "$work/tar"
  t0=$(date +%s%N)
  git -C "$repo" archive HEAD | tar -xf - -C "$work/tar"
  t1=$(date +%s%N)
  times+=($(((t1 - t0) / 1000000)))
done
printf '%-10s %12s %12s %12s\n' "tar -x" "$(printf '%s\n' "${times[@]}" | median)" - -
