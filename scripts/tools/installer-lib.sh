# Sourced by the installers (install-checkers.sh, install-local.sh). Sets one cache outside the clone for
# everything they download or build (Go and pip caches too, never in the clone or the user's global
# caches), and defines the steps both take. Before calling the functions an installer sets LOG_NAME (its
# log prefix), BIN and STAMPS, and GO_MIN (the Go version its modules need).
CACHE="${MLFLOW_PLATFORM_CACHE:-$HOME/.cache/mlflow-platform}"
export GOPATH="$CACHE/go"
export GOMODCACHE="$CACHE/go/mod"
export GOCACHE="$CACHE/go/build"
export GOFLAGS="-modcacherw -buildvcs=false"
export GOTOOLCHAIN=local          # never download a Go toolchain: fail clearly instead
export PIP_CACHE_DIR="$CACHE/pip-cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { echo "$LOG_NAME: $*" >&2; }
FAILED=()
fail() { log "cannot install $1: $2"; FAILED+=("$1"); }
# Whether NAME was installed at VERSION (its stamp file holds the version, or a checksum).
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }

# go install MODULE@VERSION into $GOBIN as NAME, unless that version is already there.
go_tool() {
  local name=$1 pkg=$2 version=$3
  if stamp_ok "$name" "$version" && [ -x "$BIN/$name" ]; then return 0; fi
  if ! command -v go >/dev/null; then fail "$name" "Go is not installed (apt-get install golang-go, or a Go >= $GO_MIN toolchain)"; return; fi
  log "go install $pkg@$version (not installed yet; the first build takes minutes)"
  local out
  if out=$(go install "$pkg@$version" 2>&1); then
    echo "$version" >"$STAMPS/$name"
  else
    local reason
    if echo "$out" | grep -q "403 Forbidden"; then
      # The proxy in front of this machine refuses some module hosts outright (a final answer, not a time-out).
      reason="the Go module proxy refused it (403 Forbidden): modules from ${pkg%%/*} are not served to this machine"
    else
      reason=$(echo "$out" | grep -m1 -iE "forbidden|not available|requires go|error|cannot" || echo "$out" | tail -1)
    fi
    fail "$name" "go install $pkg@$version: $reason"
  fi
}

# One installer at a time per cache folder (a test run and `npm run local` may start together): the
# second waits for the first, then finds its work done. Held until the installer exits.
take_install_lock() {
  mkdir -p "$1"
  exec 9>"$1/.install.lock"
  if ! flock -n 9; then
    log "another install into $1 is running; waiting for it"
    flock 9
  fi
}
