# Shared by the bench scripts (sourced, not run). Expects `cache` (~/.cache/scanstream),
# `gitleaks_version` and `kingfisher_version` to be set.
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

# timed, N times: `elapsed` is the median, `status` the first failing run's (else 0); a failed
# run stops the repetitions.
timed_runs() { # n command...
  local n=$1 i times=()
  shift
  for ((i = 0; i < n; i++)); do
    timed "$@"
    times+=("$elapsed")
    [ "$status" -eq 0 ] || [ "$status" -eq 1 ] || [ "$status" -eq 200 ] || return 0
  done
  elapsed=$(median "${times[@]}")
}

# The median of the numbers given.
median() { # numbers...
  printf '%s\n' "$@" | sort -n | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }'
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

# The Python venv the peers installed from PyPI live in.
venv=$cache/venv

# pip installs the packages into $venv (created if missing).
ensure_venv() { # package-spec...
  if [ ! -x "$venv/bin/python" ]; then
    echo "== creating the venv $venv"
    python3 -m venv "$venv"
  fi
  echo "== pip install $*"
  "$venv/bin/pip" install -q --disable-pip-version-check "$@"
}

# Sets `kingfisher` to $venv/bin/kingfisher, installing kingfisher-bin==$kingfisher_version
# there first if missing; "" (and says why) when it cannot be had. Run it with --no-validate
# --no-update-check: nothing may phone home.
find_kingfisher() {
  kingfisher=""
  if [ ! -x "$venv/bin/kingfisher" ]; then
    ensure_venv "kingfisher-bin==$kingfisher_version" || true
  fi
  if [ -x "$venv/bin/kingfisher" ]; then
    kingfisher=$venv/bin/kingfisher
    echo "kingfisher: $kingfisher ($("$kingfisher" --version 2>/dev/null || echo "unknown version"))"
  else
    echo "kingfisher: not available (pip could not install kingfisher-bin==$kingfisher_version)"
  fi
}

# Sets `rg` to ripgrep on the PATH, installed from Debian's packages (with sudo when not root)
# when missing; "" (and says why) when it cannot be had.
find_rg() {
  rg=""
  if ! command -v rg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ripgrep (Debian package)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ripgrep \
      >/dev/null 2>&1 || true
  fi
  if command -v rg >/dev/null 2>&1; then
    rg=$(command -v rg)
    echo "rg: $rg ($("$rg" --version | head -n 1))"
  else
    echo "rg: not available (not on the PATH, and apt-get could not install ripgrep)"
  fi
}
