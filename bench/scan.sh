#!/usr/bin/env bash
# `scanstream scan` throughput against kingfisher and gitleaks on the same machine, in the same
# run, and against the keyword floor: ripgrep searching the built-in pack's keywords:
#   - tree: a large real source tree (default: the cargo registry sources), MB/s of
#     `scanstream scan TREE` (on every core and on one, in turn), `kingfisher scan TREE`,
#     `gitleaks dir TREE`, `rg -uu -c -i -F -f KEYWORDS TREE` and a six-keyword
#     `rg -uu -c -i 'key|token|secret|password|api|auth' TREE` (on every core and on one,
#     in turn, for the machine's own gain from more threads), page cache warmed first;
#   - history: wall time of `scanstream scan REPO --history` (cold: no --cache-dir, so no
#     result cache; on every core and on one, in turn; then a rescan after one new commit), `kingfisher scan REPO` (its full history) and `gitleaks git REPO` on a
#     repository of successive releases of a real crate (default: the last 80 stable tokio 1.x
#     releases from crates.io, one commit each, in version order), built once and kept under
#     ~/.cache/scanstream/bench with a commit-graph, as `git gc` and scanner mirrors leave one;
#     and `git cat-file --batch-all-objects --batch | rg …` on it, every object inflated and
#     searched once.
# Prints each figure and scanstream's ratio to each peer, then a summary block.
#
#   bench/scan.sh [TREE]           (default TREE: ~/.cargo/registry/src)
#   bench/scan.sh --prepare-only   installs gitleaks and builds the history repository, then
#                                  exits (no cargo build, no scan)
#
#   HISTORY_RELEASES=N   releases (commits) in the history repository (default 80); a cached
#                        repository is reused as is: delete it to rebuild with another N
#   HISTORY_CRATE=NAME   crate for the history repository (default tokio); its stable
#                        releases of the newest major version are used
#   HISTORY_SYNTHETIC=N  instead, a synthetic history of N commits over 3,000 files
#                        (bench/synthetic-history.py: each commit edits two files, every 500th
#                        adds a token), for more commits than releases give
#   SKIP_GITLEAKS=1      no gitleaks (neither installed nor run)
#   SKIP_KINGFISHER=1    no kingfisher (neither installed nor run)
#   SKIP_RG=1            no ripgrep keyword pass (neither installed nor run)
#   SKIP_HISTORY=1       tree benchmark only
#   RUNS=N               runs of scanstream and kingfisher per figure, median printed (default 5)
#   GITLEAKS_RUNS=N      runs of gitleaks per figure (default 1: it takes minutes on the tree)
#
# gitleaks: the one on the PATH, else ~/.cache/scanstream/bin/gitleaks, else installed there
# with `go install` (v8.30.1, from $GOPROXY, default https://proxy.golang.org) when go is
# present; without it the comparisons are skipped. kingfisher: kingfisher-bin==2.14.0 in the venv
# ~/.cache/scanstream/venv (pip-installed there if missing), run with --no-validate
# --no-update-check. Reports are kept in a /tmp folder that is
# printed at the end. Needs git, curl, python3; cargo for the build.
set -euo pipefail

prepare_only=0
if [ "${1:-}" = "--prepare-only" ]; then
  prepare_only=1
  shift
fi
tree=${1:-$HOME/.cargo/registry/src}
# Resolved before the cd below, so a relative TREE means relative to the caller's folder.
[ "$prepare_only" = 1 ] || tree=$(cd "$tree" && pwd)
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scanstream/target}"
cache=$HOME/.cache/scanstream
bench_cache=$cache/bench
gitleaks_version=v8.30.1
kingfisher_version=2.14.0
history_releases=${HISTORY_RELEASES:-80}
history_crate=${HISTORY_CRATE:-tokio}
history_repo=$bench_cache/history-$history_crate.git
if [ -n "${HISTORY_SYNTHETIC:-}" ]; then
  history_crate="synthetic-$HISTORY_SYNTHETIC"
  history_repo=$bench_cache/history-$history_crate.git
fi
runs=${RUNS:-5}
gitleaks_runs=${GITLEAKS_RUNS:-1}

# timed, find_gitleaks
# shellcheck source=bench/lib.sh
source bench/lib.sh

# find_gitleaks unless SKIP_GITLEAKS=1.
gitleaks_unless_skipped() {
  gitleaks=""
  if [ "${SKIP_GITLEAKS:-0}" = 1 ]; then
    echo "gitleaks: skipped (SKIP_GITLEAKS=1)"
  else
    find_gitleaks
  fi
}
# find_kingfisher unless SKIP_KINGFISHER=1.
kingfisher_unless_skipped() {
  kingfisher=""
  if [ "${SKIP_KINGFISHER:-0}" = 1 ]; then
    echo "kingfisher: skipped (SKIP_KINGFISHER=1)"
  else
    find_kingfisher
  fi
}
rg_unless_skipped() {
  rg=""
  if [ "${SKIP_RG:-0}" = 1 ]; then
    echo "rg: skipped (SKIP_RG=1)"
  else
    find_rg
  fi
}
mbs() { # megabytes seconds
  awk -v m="$1" -v s="$2" 'BEGIN { if (s <= 0) s = 0.05; printf "%.1f\n", m / s }'
}
# "15.0x faster" when a (seconds) is below b, "2.0x slower" otherwise.
ratio() { # scanstream-seconds peer-seconds
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a <= 0) a = 0.05
    if (b >= a) printf "%.1fx faster\n", b / a; else printf "%.1fx slower\n", a / b }'
}
json_count() { # file python-expression-on-d
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# The crates.io sparse index path of a crate name.
index_path() {
  local n=${1,,}
  case ${#n} in
    1) echo "1/$n" ;;
    2) echo "2/$n" ;;
    3) echo "3/${n:0:1}/$n" ;;
    *) echo "${n:0:2}/${n:2:2}/$n" ;;
  esac
}

# Builds $history_repo (bare) once: one commit per release, oldest first, each commit the
# release's whole source as published (files gone from a release are deleted). Crate files
# are downloaded to $bench_cache/crates once and checked against the index's sha256.
build_history_repo() {
  if [ -d "$history_repo" ]; then
    echo "== history repository: reusing $history_repo"
    commit_graph "$history_repo"
    return
  fi
  if [ -n "${HISTORY_SYNTHETIC:-}" ]; then
    echo "== building the synthetic history repository $history_repo ($HISTORY_SYNTHETIC commits)"
    local tmp=$history_repo.tmp.$$
    rm -rf "$tmp"
    git init -q --bare "$tmp"
    python3 bench/synthetic-history.py "$HISTORY_SYNTHETIC" 3000 | git -C "$tmp" fast-import --quiet
    git -C "$tmp" symbolic-ref HEAD refs/heads/main
    git -C "$tmp" repack -adq
    commit_graph "$tmp"
    mv "$tmp" "$history_repo"
    return
  fi
  echo "== building the history repository $history_repo ($history_releases releases of $history_crate)"
  local downloads=$bench_cache/crates/$history_crate
  mkdir -p "$downloads"
  local releases
  releases=$(curl -sS --fail --retry 3 "https://index.crates.io/$(index_path "$history_crate")" | python3 -c '
import json, re, sys
n = int(sys.argv[1])
stable = []
for line in sys.stdin:
    if not line.strip():
        continue
    r = json.loads(line)
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", r["vers"])
    if m and not r.get("yanked"):
        stable.append((tuple(map(int, m.groups())), r["vers"], r["cksum"]))
if not stable:
    sys.exit("no stable releases in the index")
stable.sort()
major = stable[-1][0][0]
for _, vers, cksum in [s for s in stable if s[0][0] == major][-n:]:
    print(vers, cksum)
' "$history_releases")
  local tmp=$history_repo.tmp.$$ work
  work=$(mktemp -d)
  rm -rf "$tmp"
  git init -q --bare "$tmp"
  # The user's global settings (hooks, excludes, signing, line endings) must not matter.
  local -a g=(git -c core.hooksPath=/dev/null -c core.excludesFile=/dev/null -c commit.gpgSign=false
              -c core.autocrlf=false -c core.safecrlf=false --git-dir="$tmp" --work-tree="$work")
  export GIT_AUTHOR_NAME="scanstream bench" GIT_AUTHOR_EMAIL="bench@scanstream.invalid"
  export GIT_COMMITTER_NAME="scanstream bench" GIT_COMMITTER_EMAIL="bench@scanstream.invalid"
  local i=0 vers cksum file when
  while read -r vers cksum; do
    file=$downloads/$history_crate-$vers.crate
    if [ ! -f "$file" ]; then
      curl -sS --fail --retry 3 -o "$file.part" "https://static.crates.io/crates/$history_crate/$history_crate-$vers.crate"
      mv "$file.part" "$file"
    fi
    if ! echo "$cksum  $file" | sha256sum -c --status; then
      rm -f "$file"
      echo "$file: sha256 does not match the index (removed; run again)" >&2
      exit 1
    fi
    find "$work" -mindepth 1 -delete
    tar xzf "$file" -C "$work" --strip-components=1 --no-same-owner
    # -f: a release's own .gitignore files must not leave published files out.
    "${g[@]}" add -A -f .
    when="$((1600000000 + i * 86400)) +0000"
    GIT_AUTHOR_DATE=$when GIT_COMMITTER_DATE=$when "${g[@]}" commit -q --allow-empty -m "$history_crate $vers"
    i=$((i + 1))
    printf '\r   %d/%d %s' "$i" "$history_releases" "$vers"
  done <<<"$releases"
  echo
  "${g[@]}" gc -q
  commit_graph "$tmp"
  rm -rf "$work"
  mv "$tmp" "$history_repo"
}

# Adds a repository's commits to its commit-graph, as `git gc` and every scanner mirror do
# (scanstream and kingfisher read the same repository).
commit_graph() { # repository
  git -C "$1" commit-graph write --reachable --split --no-progress
}

# Sets history_commits, history_blobs, history_mb.
history_stats() {
  history_commits=$(git --git-dir="$history_repo" rev-list --count --all)
  read -r history_blobs history_mb < <(git --git-dir="$history_repo" rev-list --objects --all |
    git --git-dir="$history_repo" cat-file --batch-check='%(objecttype) %(objectsize) %(rest)' |
    awk '$1 == "blob" { n++; s += $2 } END { printf "%d %.1f\n", n, s / 1e6 }')
  echo "history   : $history_crate, $history_commits commits, $history_blobs unique blobs, $history_mb MB"
}

mkdir -p "$bench_cache"
if [ "$prepare_only" = 1 ]; then
  gitleaks_unless_skipped
  kingfisher_unless_skipped
  if [ "${SKIP_HISTORY:-0}" != 1 ]; then
    build_history_repo
    history_stats
  fi
  exit 0
fi

out=$(mktemp -d /tmp/scanstream-bench.XXXXXX)
echo "== building (release)"
cargo build --locked --release -q -p scanstream
scanstream=$CARGO_TARGET_DIR/release/scanstream
gitleaks_unless_skipped
kingfisher_unless_skipped
rg_unless_skipped

# The keyword floor: ripgrep searching every keyword of the built-in rule pack (fixed strings,
# any case) is what a keyword prefilter costs at least; scanstream also runs the rules' regexes,
# decodes encoded regions and writes a report.
keywords=$out/keywords.txt
python3 - "$keywords" services/scanner/rules/*.toml services/scanner/rules/families/*.toml <<'PY'
import sys, tomllib
words = set()
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        for rule in tomllib.load(f).get("rules", []):
            words.update(k.lower() for k in rule.get("keywords", []))
with open(sys.argv[1], "w") as out:
    out.write("".join(w + "\n" for w in sorted(words)))
PY
echo "keywords: $(wc -l <"$keywords") of the built-in pack in $keywords"
run_rg() { # name command... (rg's counts go to $out/NAME-rg.txt)
  local name=$1
  shift
  timed_runs "$runs" "$@" >"$out/$name-rg.txt"
  rg_ran
  rg_secs=$elapsed
}
run_rg_once() { # name command... (one run; its time in `elapsed`)
  local name=$1
  shift
  timed "$@" >"$out/$name-rg.txt"
  rg_ran
}
# Stops the bench when the last rg run failed (exit 1 only means no match).
rg_ran() {
  if [ "$status" -gt 1 ]; then
    echo "rg failed (exit $status)" >&2
    exit 1
  fi
}

# Runs scanstream scan with the arguments given, on every core and on one thread
# (RAYON_NUM_THREADS=1) in turn, `runs` times each: a change in the machine's speed while it runs
# touches both figures alike. Exit 1 only means findings. Sets ss_secs and ss1_secs (medians) and
# ss_findings.
run_scanstream() { # name args...
  local name=$1 i all=() one=()
  shift
  for ((i = 0; i < runs; i++)); do
    timed "$scanstream" scan "$@" --format json --out "$out/$name-scanstream.json" --no-progress 2>"$out/$name-scanstream.log"
    scanstream_ran "$name"
    all+=("$elapsed")
    timed env RAYON_NUM_THREADS=1 "$scanstream" scan "$@" --format json --out "$out/$name-1-scanstream.json" --no-progress 2>"$out/$name-1-scanstream.log"
    scanstream_ran "$name-1"
    one+=("$elapsed")
  done
  ss_secs=$(median "${all[@]}")
  ss1_secs=$(median "${one[@]}")
  ss_findings=$(json_count "$out/$name-scanstream.json" 'd["summary"]["findings"]')
}
# Stops the bench when the last scanstream run `name` failed.
scanstream_ran() { # name
  if [ "$status" -gt 1 ]; then
    echo "scanstream scan failed (exit $status):" >&2
    cat "$out/$1-scanstream.log" >&2
    exit 1
  fi
}
run_gitleaks() { # name subcommand target
  timed_runs "$gitleaks_runs" "$gitleaks" "$2" "$3" --no-banner --exit-code 0 --log-level error -f json -r "$out/$1-gitleaks.json" 2>"$out/$1-gitleaks.log"
  if [ "$status" -ne 0 ]; then
    echo "gitleaks $2 failed (exit $status):" >&2
    cat "$out/$1-gitleaks.log" >&2
    exit 1
  fi
  gl_secs=$elapsed
  gl_findings=$(json_count "$out/$1-gitleaks.json" 'len(d)')
}

# kingfisher finds a local repository's history by itself; the counted findings are after its
# own deduplication, at its default confidence.
run_kingfisher() { # name target
  timed_runs "$runs" "$kingfisher" scan "$2" --no-validate --no-update-check --format json \
    --output "$out/$1-kingfisher.json" >"$out/$1-kingfisher.log" 2>&1
  # 200: findings.
  if [ "$status" -ne 0 ] && [ "$status" -ne 200 ]; then
    echo "kingfisher scan failed (exit $status):" >&2
    cat "$out/$1-kingfisher.log" >&2
    exit 1
  fi
  kf_secs=$elapsed
  kf_findings=$(json_count "$out/$1-kingfisher.json" 'len(d["findings"])')
}

summary=()

# --- tree ------------------------------------------------------------------------------
read -r tree_files tree_mb < <(find "$tree" -name .git -prune -o -type f -printf '%s\n' |
  awk '{ n++; s += $1 } END { printf "%d %.1f\n", n, s / 1e6 }')
summary+=("$(printf 'tree      : %s  %s MB, %s files' "$tree" "$tree_mb" "$tree_files")")
echo "== tree $tree: $tree_mb MB in $tree_files files; warming the page cache"
find "$tree" -type f -exec cat {} + >/dev/null 2>&1 || true

echo "== scanstream scan $tree (on every core and on one thread, in turn)"
run_scanstream tree "$tree"
ss_mbs=$(mbs "$tree_mb" "$ss_secs")
line=$(printf 'scanstream: %s s  %s MB/s  %s findings' "$ss_secs" "$ss_mbs" "$ss_findings")
echo "$line"
summary+=("$line")
line=$(printf 'one thread: %s s  (%sx from 1 to %s threads)' "$ss1_secs" \
  "$(awk -v a="$ss1_secs" -v b="$ss_secs" 'BEGIN { printf "%.2f", a / b }')" "$(nproc)")
echo "$line"
summary+=("$line")
if [ -n "$kingfisher" ]; then
  echo "== kingfisher scan $tree"
  run_kingfisher tree "$tree"
  kf_mbs=$(mbs "$tree_mb" "$kf_secs")
  line=$(printf 'kingfisher: %s s  %s MB/s  %s findings' "$kf_secs" "$kf_mbs" "$kf_findings")
  echo "$line"
  summary+=("$line" "ratio     : $(ratio "$ss_secs" "$kf_secs") than kingfisher")
else
  summary+=("kingfisher: not available")
fi
if [ -n "$rg" ]; then
  echo "== rg: the pack's keywords over $tree"
  run_rg tree "$rg" -uu -c -i -F -f "$keywords" "$tree"
  line=$(printf 'rg keywords: %s s  %s MB/s' "$rg_secs" "$(mbs "$tree_mb" "$rg_secs")")
  echo "$line"
  summary+=("$line" "ratio     : scanstream takes $(awk -v a="$ss_secs" -v b="$rg_secs" 'BEGIN { printf "%.1f", a / (b > 0 ? b : 0.01) }')x the keyword floor")
  # A plain keyword pass: six words common to secrets, what a grep for secrets costs. Run on
  # every core and on one thread (-j1) in turn, like scanstream: rg's own gain from one thread
  # to all is what this machine gives a file-reading search, beside scanstream's.
  echo "== rg: six keywords over $tree (on every core and on one thread, in turn)"
  six=(-uu -c -i 'key|token|secret|password|api|auth' "$tree")
  all=() one=()
  for ((i = 0; i < runs; i++)); do
    run_rg_once tree6 "$rg" "${six[@]}"
    all+=("$elapsed")
    run_rg_once tree6-1 "$rg" -j1 "${six[@]}"
    one+=("$elapsed")
  done
  rg_secs=$(median "${all[@]}")
  rg1_secs=$(median "${one[@]}")
  line=$(printf 'rg 6 words : %s s  %s MB/s' "$rg_secs" "$(mbs "$tree_mb" "$rg_secs")")
  echo "$line"
  summary+=("$line")
  line=$(printf 'one thread: %s s  (%sx from 1 to %s threads; scanstream %sx)' "$rg1_secs" \
    "$(awk -v a="$rg1_secs" -v b="$rg_secs" 'BEGIN { printf "%.2f", a / b }')" "$(nproc)" \
    "$(awk -v a="$ss1_secs" -v b="$ss_secs" 'BEGIN { printf "%.2f", a / b }')")
  echo "$line"
  summary+=("$line" "ratio     : scanstream takes $(awk -v a="$ss_secs" -v b="$rg_secs" 'BEGIN { printf "%.1f", a / (b > 0 ? b : 0.01) }')x a six-keyword pass")
else
  summary+=("rg        : not available")
fi
if [ -n "$gitleaks" ]; then
  echo "== gitleaks dir $tree"
  run_gitleaks tree dir "$tree"
  gl_mbs=$(mbs "$tree_mb" "$gl_secs")
  line=$(printf 'gitleaks  : %s s  %s MB/s  %s findings' "$gl_secs" "$gl_mbs" "$gl_findings")
  echo "$line"
  summary+=("$line" "ratio     : $(ratio "$ss_secs" "$gl_secs") than gitleaks")
else
  summary+=("gitleaks  : not available")
fi

# --- history ---------------------------------------------------------------------------
if [ "${SKIP_HISTORY:-0}" != 1 ]; then
  build_history_repo
  history_stats
  summary+=("history   : $history_crate, $history_commits commits, $history_blobs unique blobs, $history_mb MB")
  # Warm the page cache with the repository too (objects are read, not the worktree).
  find "$history_repo" -type f -exec cat {} + >/dev/null 2>&1 || true
  echo "== scanstream scan --history $history_repo (no result cache; on every core and on one thread, in turn)"
  run_scanstream history "$history_repo" --history
  line="scanstream --history: $ss_secs s, $ss_findings findings"
  echo "$line"
  summary+=("$line")
  line=$(printf 'one thread          : %s s  (%sx from 1 to %s threads)' "$ss1_secs" \
    "$(awk -v a="$ss1_secs" -v b="$ss_secs" 'BEGIN { printf "%.2f", a / b }')" "$(nproc)")
  echo "$line"
  summary+=("$line")
  # A rescan after one new commit, as a scheduled history scan meets it: the result cache and
  # the last walk (--cache-dir) are kept; each timed run follows a commit of its own.
  echo "== scanstream scan --history after one new commit (result cache and last walk kept)"
  rescan=$(mktemp -d)
  git clone -q --mirror "$history_repo" "$rescan/repo.git"
  commit_graph "$rescan/repo.git"
  git clone -q "$rescan/repo.git" "$rescan/work"
  "$scanstream" scan "$rescan/repo.git" --history --cache-dir "$rescan/cache" --format json \
    --out "$rescan/first.json" --no-progress 2>/dev/null || true
  times=()
  for ((i = 0; i < runs; i++)); do
    echo "change $i" >> "$rescan/work/RESCAN.md"
    git -C "$rescan/work" add -A
    git -C "$rescan/work" -c user.name=bench -c user.email=bench@example.com commit -q -m "change $i"
    git -C "$rescan/work" push -q origin HEAD
    # What a scanner's mirror does after each fetch (untimed).
    commit_graph "$rescan/repo.git"
    timed "$scanstream" scan "$rescan/repo.git" --history --cache-dir "$rescan/cache" --format json \
      --out "$rescan/again.json" --no-progress
    times+=("$elapsed")
  done
  rescan_secs=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }')
  rm -rf "$rescan"
  line="rescan after 1 commit: $rescan_secs s (process start and rule compilation included)"
  echo "$line"
  summary+=("$line")
  if [ -n "$kingfisher" ]; then
    echo "== kingfisher scan $history_repo (full history)"
    run_kingfisher history "$history_repo"
    line="kingfisher scan     : $kf_secs s, $kf_findings findings"
    echo "$line"
    summary+=("$line" "ratio     : $(ratio "$ss_secs" "$kf_secs") than kingfisher")
  fi
  if [ -n "$rg" ]; then
    # Every object of the repository, inflated by git, through rg: the floor of a history pass.
    echo "== git cat-file --batch-all-objects | rg (the pack's keywords)"
    # shellcheck disable=SC2016 # the inner shell expands its own arguments
    run_rg history bash -c 'git -C "$1" cat-file --batch-all-objects --batch | "$2" -c -a -i -F -f "$3"' \
      _ "$history_repo" "$rg" "$keywords"
    line="cat-file | rg       : $rg_secs s"
    echo "$line"
    summary+=("$line" "ratio     : scanstream takes $(awk -v a="$ss_secs" -v b="$rg_secs" 'BEGIN { printf "%.1f", a / (b > 0 ? b : 0.01) }')x the keyword floor")
  fi
  if [ -n "$gitleaks" ]; then
    echo "== gitleaks git $history_repo"
    run_gitleaks history git "$history_repo"
    line="gitleaks git        : $gl_secs s, $gl_findings findings"
    echo "$line"
    summary+=("$line" "ratio     : $(ratio "$ss_secs" "$gl_secs") than gitleaks")
  fi
fi

echo
printf '%s\n' "${summary[@]}"
echo "(reports in $out)"
