#!/usr/bin/env bash
# Installs what `npm run local` and the end-to-end tests run, pinned, into a cache outside the clone
# (default ~/.cache/mlflow-platform/local, override the root with MLFLOW_PLATFORM_CACHE). Idempotent: a
# part whose pinned version (or requirements file) is already installed is skipped, so a warm run costs
# a few stat calls.
#
# Usage: scripts/tools/install-local.sh [--print-env] [PART ...]
#   PART is one of: apt minio mc mlflow mlflow-previous mlserver kserve-storage chromium (default: all but
#   chromium and mlflow-previous)
#   --print-env  prints KEY=VALUE lines (paths of what was installed) on stdout for scripts/local/tools.ts
#
# Sources (each through its registry's ordinary client; nothing else is downloaded):
#   apt             Debian: postgresql (server, pg_dump, pg_restore, psql), nginx, apache2-utils, prometheus
#   chromium        Debian: chromium, for the UI check driven by puppeteer-core
#   minio, mc       `go install MODULE@PSEUDO-VERSION` (Go module proxy); MinIO tags are not semver
#   mlflow          venv: scripts/local/requirements/mlflow.txt + examples/requirements.txt (PyPI)
#   mlflow-previous venv: scripts/local/requirements/mlflow-previous.txt: the MLflow the upgrade spec starts on
#   mlserver        venv: images/mlserver/requirements.txt (PyPI), the MLServer image's exact package set
#   kserve-storage  venv: scripts/local/requirements/kserve-storage.txt (PyPI)
# A part that cannot be installed is reported on stderr with the reason; the others are still
# installed, and the exit code is 1.
set -uo pipefail

# MinIO upstream is archived and source-only. The release the images pin (RELEASE.2025-10-15T17-29-55Z,
# commit 9e49d5e7a648, pseudo-version v0.0.0-20251015172955-9e49d5e7a648) is refused by the Go module
# proxy this machine reaches ("403: not available"); the only version it serves is the archive's last
# commit, which contains that release and everything merged after it.
MINIO_MODULE_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
# mc RELEASE.2025-08-13T08-35-41Z (commit 7394ce0dd2a8) is refused by the proxy and unknown to the
# checksum database; the newest version it serves with a checksum is this one (2025-03-13). The
# provisioning and backup scripts use only long-stable commands (alias, mb, version, anonymous,
# admin user/policy, cp, ls, rm).
MC_MODULE_VERSION=v0.0.0-20250313080218-cf909e1063a9

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
REQS="$REPO/scripts/local/requirements"
LOG_NAME=install-local
GO_MIN=1.24
. "$HERE/installer-lib.sh"
ROOT="$CACHE/local"
BIN="$ROOT/bin"
STAMPS="$ROOT/stamps"
VENVS="$ROOT/venvs"
mkdir -p "$BIN" "$STAMPS" "$VENVS"
take_install_lock "$ROOT"

export GOBIN="$BIN"

PRINT_ENV=0
PARTS=()
for a in "$@"; do
  case "$a" in
    --print-env) PRINT_ENV=1 ;;
    apt|minio|mc|mlflow|mlflow-previous|mlserver|kserve-storage|chromium) PARTS+=("$a") ;;
    *) echo "install-local: unknown part '$a'" >&2; exit 2 ;;
  esac
done
[ ${#PARTS[@]} -eq 0 ] && PARTS=(apt minio mc mlflow mlserver kserve-storage)


apt_part() {
  local name=$1; shift
  local out
  if ! out=$("$HERE/ensure-apt.sh" "$@" 2>&1); then fail "$name" "$out"; else [ -n "$out" ] && log "$out"; fi
}

# A venv per requirements set, rebuilt when the requirements change (the stamp is their checksum).
# `--lock FILE`: FILE is a whole package set (pip freeze), installed exactly (--no-deps), then checked.
venv_part() {
  local name=$1; shift
  local lock=0
  if [ "${1:-}" = --lock ]; then lock=1; shift; fi
  local dir="$VENVS/$name" sum
  sum=$(cat "$@" | sha256sum | cut -c1-16)
  if stamp_ok "venv-$name" "$sum" && [ -x "$dir/bin/python" ]; then return 0; fi
  if ! python3 -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 10)' 2>/dev/null; then
    fail "$name" "python3 >= 3.10 with venv/ensurepip is needed (apt-get install python3-venv)"; return
  fi
  log "pip install into $dir ($(basename -a "$@" | tr '\n' ' '); first use takes a few minutes)"
  local out args=()
  for f in "$@"; do args+=(-r "$f"); done
  [ "$lock" = 1 ] && args+=(--no-deps)
  if out=$( { rm -rf "$dir" && python3 -m venv "$dir" && "$dir/bin/pip" install -q "${args[@]}" && { [ "$lock" = 0 ] || "$dir/bin/pip" check; }; } 2>&1 ); then
    echo "$sum" >"$STAMPS/venv-$name"
  else
    fail "$name" "$(echo "$out" | grep -m1 -E "ERROR|error" || echo "$out" | tail -1)"
  fi
}

for p in "${PARTS[@]}"; do
  case "$p" in
    apt) apt_part apt postgresql nginx apache2-utils prometheus ;;
    chromium) apt_part chromium chromium fonts-dejavu-core ;;
    minio) go_tool minio github.com/minio/minio "$MINIO_MODULE_VERSION" ;;
    mc) go_tool mc github.com/minio/mc "$MC_MODULE_VERSION" ;;
    mlflow) venv_part mlflow "$REQS/mlflow.txt" "$REPO/examples/requirements.txt" ;;
    mlflow-previous) venv_part mlflow-previous "$REQS/mlflow-previous.txt" ;;
    mlserver) venv_part mlserver --lock "$REPO/images/mlserver/requirements.txt" ;;
    kserve-storage) venv_part kserve-storage "$REQS/kserve-storage.txt" ;;
  esac
done

if [ "$PRINT_ENV" = 1 ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  echo "CACHE=$ROOT"
  echo "BIN=$BIN"
  echo "MINIO=$BIN/minio"
  echo "MINIO_MODULE_VERSION=$MINIO_MODULE_VERSION"
  echo "MC=$BIN/mc"
  echo "MC_MODULE_VERSION=$MC_MODULE_VERSION"
  echo "PG_BIN=$pg_bin"
  echo "NGINX=/usr/sbin/nginx"
  echo "PROMETHEUS=/usr/bin/prometheus"
  echo "PROMTOOL=/usr/bin/promtool"
  echo "CHROMIUM=$(command -v chromium || true)"
  echo "MLFLOW_VENV=$VENVS/mlflow"
  echo "MLFLOW_PREVIOUS_VENV=$VENVS/mlflow-previous"
  echo "MLSERVER_VENV=$VENVS/mlserver"
  echo "KSERVE_STORAGE_VENV=$VENVS/kserve-storage"
  echo "FAILED=${FAILED[*]:-}"
fi
[ ${#FAILED[@]} -eq 0 ]
