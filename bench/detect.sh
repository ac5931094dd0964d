#!/usr/bin/env bash
# Detection benchmark: scanstream against gitleaks, kingfisher and detect-secrets, side by side on
# corpora built at run time, printed as Markdown tables (ready for docs/scanning.md):
#   - planted: synthetic credentials of 60+ families (bench/detect/plant.py: publicly documented
#     token shapes, checksums included, values from a seeded RNG), each in several file contexts
#     (.env, YAML, JSON, Python, JavaScript, shell, properties, XML, Dockerfile, Kubernetes Secret
#     base64 data, Terraform, Markdown, URL query; native formats such as .netrc, .pgpass, PEM),
#     plus placeholder values (changeme, <your-token>, ${VAR}, xxxx, …EXAMPLE, aaaa) in separate
#     files. Recall per family and per context, placeholders reported.
#   - peers: the peers' published rule examples, extracted at run time (bench/detect/peers.py):
#     gitleaks' `tps` lists from its Go module source (cmd/generate/config/rules), kingfisher's
#     `examples` from `kingfisher rules list --format json` (none shipped in 2.14). Recall per
#     source.
#   - fp: ordinary code (default: the cargo registry sources), every finding a false positive
#     unless listed in bench/detect/fp-known-real.txt; counts, top rules and random samples per
#     tool for a human to classify.
# A planted secret or example counts as found when the tool reports anything in its file on its
# line(s), ±1 line. Then wall time per tool and corpus. Exit 0 unless the setup fails.
#
#   bench/detect.sh [SCANSTREAM_BIN] [OPTIONS]
#
#   SCANSTREAM_BIN   scanstream binary (else $SCANSTREAM_BIN, else $CARGO_TARGET_DIR/release/scanstream,
#                    else ~/.cache/scanstream/target/release/scanstream); not built here: run
#                    `cargo build --release -p scanstream` first
#   --corpus LIST    comma-separated subset of planted,peers,fp (default all three)
#   --skip TOOL      do not run scanstream, gitleaks, kingfisher or detect-secrets (repeatable)
#   --seed N         seed of the planted corpus and of the samples (default 20240611)
#   --fp-tree DIR    tree of ordinary code for the fp corpus (default ~/.cargo/registry/src)
#   --fp-limit N     scan a seeded random sample of N files of it (copied to the work folder)
#                    instead of all of it. detect-secrets is the slow one (about 85 ms a file on
#                    2 cores: some 35 minutes for the 25k files of a typical registry; the other
#                    three take seconds to a few minutes): use this, or --skip detect-secrets,
#                    for a quick run
#   --keep DIR       build the corpora and reports in DIR (created, must be empty) and keep them;
#                    default: a temporary folder, deleted at the end
#   --json OUT       also write every figure as JSON to OUT
#
# Peers: gitleaks v8.30.1 is the one at ~/.cache/scanstream/bin/gitleaks, installed there with
# `go install` if missing (its module source, needed for the peers corpus, then sits in the Go
# module cache; fetched with `go mod download` if only the binary is there). kingfisher 2.14.0 and
# detect-secrets come from the venv ~/.cache/scanstream/venv (created, and `pip install
# kingfisher-bin==2.14.0 detect-secrets`, if missing). A peer that cannot be had is skipped with
# a note. Nothing phones home: kingfisher runs with --no-validate --no-update-check,
# detect-secrets with --no-verify; gitleaks and scanstream scan folders offline. Network is used
# only by go/pip to install missing peers.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=$HOME/.cache/scanstream
gitleaks_version=v8.30.1
kingfisher_version=2.14.0

corpora=planted,peers,fp
skip=()
seed=20240611
fp_tree=$HOME/.cargo/registry/src
fp_limit=0
keep=""
json_out=""
scanstream=""
while [ $# -gt 0 ]; do
  case $1 in
    --corpus) corpora=$2; shift 2 ;;
    --skip) skip+=("$2"); shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --fp-tree) fp_tree=$2; shift 2 ;;
    --fp-limit) fp_limit=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) scanstream=$1; shift ;;
  esac
done
for c in ${corpora//,/ }; do
  case $c in planted|peers|fp) ;; *) echo "unknown corpus $c (planted, peers, fp)" >&2; exit 2 ;; esac
done
has_corpus() { [[ ",$corpora," == *",$1,"* ]]; }
skipped() { local s; for s in "${skip[@]+"${skip[@]}"}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
abspath() { (cd "$1" && pwd); }
# Options given relative to the caller's folder.
[ -z "$json_out" ] || json_out=$(abspath "$(dirname "$json_out")")/$(basename "$json_out")

# timed, find_gitleaks
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

# --- tools ------------------------------------------------------------------------------------
tools=()
if ! skipped scanstream; then
  scanstream=${scanstream:-${SCANSTREAM_BIN:-}}
  if [ -z "$scanstream" ]; then
    if [ -n "${CARGO_TARGET_DIR:-}" ]; then
      scanstream=$CARGO_TARGET_DIR/release/scanstream
    else
      scanstream=$cache/target/release/scanstream
    fi
  fi
  if [ ! -x "$scanstream" ]; then
    echo "scanstream: no binary at $scanstream (build it with \`cargo build --release -p scanstream\`," \
      "or pass its path)" >&2
    exit 1
  fi
  scanstream=$(abspath "$(dirname "$scanstream")")/$(basename "$scanstream")
  tools+=(scanstream)
  echo "scanstream: $scanstream ($("$scanstream" --version 2>/dev/null || echo "unknown version"))"
fi

gitleaks=""
if ! skipped gitleaks; then
  find_gitleaks
  [ -z "$gitleaks" ] || tools+=(gitleaks)
fi

kingfisher=""
if ! skipped kingfisher; then
  find_kingfisher
  [ -z "$kingfisher" ] || tools+=(kingfisher)
fi
detect_secrets=""
if ! skipped detect-secrets; then
  if [ ! -x "$venv/bin/detect-secrets" ]; then
    ensure_venv detect-secrets || true
  fi
  if [ -x "$venv/bin/detect-secrets" ]; then
    detect_secrets=$venv/bin/detect-secrets
    tools+=(detect-secrets)
    echo "detect-secrets: $detect_secrets ($("$detect_secrets" --version 2>/dev/null || echo "unknown version"))"
  else
    echo "detect-secrets: not available: skipped"
  fi
fi
if [ ${#tools[@]} -eq 0 ]; then
  echo "no tool to run" >&2
  exit 1
fi

# --- work folder ------------------------------------------------------------------------------
if [ -n "$keep" ]; then
  mkdir -p "$keep"
  work=$(abspath "$keep")
  if [ -n "$(ls -A "$work")" ]; then
    echo "--keep $keep: the folder is not empty" >&2
    exit 2
  fi
else
  work=$(mktemp -d /tmp/scanstream-detect.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
reports=$work/reports
mkdir -p "$reports"
: >"$reports/times.tsv"
t_start=$(date +%s)

# --- corpora ----------------------------------------------------------------------------------
if has_corpus planted; then
  echo "== building the planted corpus (seed $seed)"
  python3 "$here/detect/plant.py" "$work/planted" --seed "$seed" --manifest "$work/planted-manifest.json"
fi
if has_corpus peers; then
  echo "== building the peers corpus"
  gl_rules=""
  if command -v go >/dev/null 2>&1; then
    gl_mod=$(go env GOMODCACHE)/github.com/zricethezav/gitleaks/v8@$gitleaks_version
    if [ ! -d "$gl_mod" ]; then
      echo "   fetching the gitleaks $gitleaks_version module source (go mod download)"
      (cd /tmp && GOFLAGS=-mod=mod GOPROXY=${GOPROXY:-https://proxy.golang.org} \
        go mod download "github.com/zricethezav/gitleaks/v8@$gitleaks_version") || true
    fi
    [ -d "$gl_mod/cmd/generate/config/rules" ] && gl_rules=$gl_mod/cmd/generate/config/rules
  fi
  # kingfisher's examples are used even when kingfisher itself is skipped.
  kf_bin=$kingfisher
  [ -n "$kf_bin" ] || [ ! -x "$venv/bin/kingfisher" ] || kf_bin=$venv/bin/kingfisher
  python3 "$here/detect/peers.py" "$work/peers" --seed "$seed" --manifest "$work/peers-manifest.json" \
    ${gl_rules:+--gitleaks-rules "$gl_rules"} ${kf_bin:+--kingfisher "$kf_bin"}
fi
fp_root=""
fp_files=0
fp_source=""
if has_corpus fp; then
  fp_tree=$(abspath "$fp_tree")
  if [ "$fp_limit" -gt 0 ]; then
    echo "== sampling $fp_limit files of $fp_tree (seed $seed)"
    fp_root=$work/fp
    fp_files=$(python3 - "$fp_tree" "$fp_root" "$fp_limit" "$seed" <<'EOF'
import os, random, shutil, sys
src, dst, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
files = []
for d, dirs, names in os.walk(src):
    dirs[:] = sorted(x for x in dirs if x != ".git")
    files += [os.path.join(d, x) for x in sorted(names) if os.path.isfile(os.path.join(d, x))
              and not os.path.islink(os.path.join(d, x))]
pick = random.Random(seed).sample(files, min(n, len(files)))
for p in pick:
    q = os.path.join(dst, os.path.relpath(p, src))
    os.makedirs(os.path.dirname(q), exist_ok=True)
    shutil.copyfile(p, q)
print(len(pick))
EOF
)
    fp_source="a random sample of $fp_tree"
  else
    fp_root=$fp_tree
    fp_files=$(find "$fp_root" -name .git -prune -o -type f -print | wc -l)
    fp_source=$fp_tree
  fi
  echo "   $fp_files files"
fi

# --- runs -------------------------------------------------------------------------------------
# Each tool runs in the corpus folder on ".", so every report path is relative to it.
run_tool() { # corpus tool dir
  local corpus=$1 tool=$2 dir=$3 out=$reports/$1-$2.json log=$reports/$1-$2.log ok
  echo "== $tool on $corpus"
  case $tool in
    scanstream)
      (cd "$dir" && timed "$scanstream" scan . --format json --out "$out" --no-progress 2>"$log"
       echo "$elapsed $status" >"$log.rc")
      ;;
    gitleaks)
      (cd "$dir" && timed "$gitleaks" dir . --no-banner --exit-code 0 --log-level error \
         --report-format json --report-path "$out" 2>"$log"
       echo "$elapsed $status" >"$log.rc")
      ;;
    kingfisher)
      (cd "$dir" && timed "$kingfisher" scan . --no-validate --no-update-check --confidence low --no-dedup \
         --format json --output "$out" --quiet 2>"$log"
       echo "$elapsed $status" >"$log.rc")
      ;;
    detect-secrets)
      (cd "$dir" && timed "$detect_secrets" scan --all-files --no-verify . >"$out" 2>"$log"
       echo "$elapsed $status" >"$log.rc")
      ;;
  esac
  read -r elapsed status <"$log.rc"
  case $tool:$status in
    scanstream:0|scanstream:1|gitleaks:0|kingfisher:0|kingfisher:20[0-9]|detect-secrets:0) ok=ok ;;
    *) ok="failed (exit $status)" ;;
  esac
  if [ "$ok" != ok ]; then
    echo "   $tool failed (exit $status), last lines of its log:" >&2
    tail -n 5 "$log" >&2
  fi
  printf '%s\t%s\t%s\t%s\n' "$corpus" "$tool" "$elapsed" "$ok" >>"$reports/times.tsv"
  echo "   $elapsed s"
}

for c in planted peers fp; do
  has_corpus "$c" || continue
  case $c in
    fp) dir=$fp_root ;;
    *) dir=$work/$c ;;
  esac
  for t in "${tools[@]}"; do
    run_tool "$c" "$t" "$dir"
  done
done

# --- report -----------------------------------------------------------------------------------
echo
python3 "$here/detect/report.py" --work "$work" --corpora "$corpora" --tools "$(IFS=,; echo "${tools[*]}")" \
  --seed "$seed" --known-real "$here/detect/fp-known-real.txt" \
  ${fp_root:+--fp-root "$fp_root" --fp-files "$fp_files" --fp-source "$fp_source"} \
  ${json_out:+--json "$json_out"}
echo
echo "(total $(( $(date +%s) - t_start )) s; $([ -n "$keep" ] && echo "corpora and reports kept in $work" || echo "work folder removed"))"
