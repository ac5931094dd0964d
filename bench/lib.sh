# Shared by the bench scripts (sourced, not run). Expects `cache` (~/.cache/scanstream) and
# `gitleaks_version` to be set.
# shellcheck shell=bash disable=SC2034,SC2154

# Wall-clock seconds of a command, to 0.01 s: sets `elapsed` and `status` (its exit code).
timed() {
  local t0 t1
  t0=$(date +%s.%N)
  set +e
  "$@"
  status=$?
  set -e
  t1=$(date +%s.%N)
  elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
}

# Sets `gitleaks` to a runnable gitleaks: $cache/bin/gitleaks (the pinned version), else one on
# the PATH, else $gitleaks_version installed into $cache/bin with `go install`; "" (and says
# why) when none can be had.
find_gitleaks() {
  gitleaks=""
  if [ -x "$cache/bin/gitleaks" ]; then
    gitleaks=$cache/bin/gitleaks
  elif command -v gitleaks >/dev/null 2>&1; then
    gitleaks=$(command -v gitleaks)
  elif command -v go >/dev/null 2>&1; then
    echo "== installing gitleaks $gitleaks_version (go install)"
    mkdir -p "$cache/bin"
    GOBIN=$cache/bin GOPROXY=${GOPROXY:-https://proxy.golang.org} go install \
      -ldflags "-X github.com/zricethezav/gitleaks/v8/version.Version=$gitleaks_version" \
      "github.com/zricethezav/gitleaks/v8@$gitleaks_version" && gitleaks=$cache/bin/gitleaks
  fi
  if [ -n "$gitleaks" ]; then
    echo "gitleaks: $gitleaks ($("$gitleaks" version 2>/dev/null || echo "unknown version"))"
  else
    echo "gitleaks: not available (no $cache/bin/gitleaks, none on the PATH, no go to install it)"
  fi
}
