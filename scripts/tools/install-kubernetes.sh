#!/usr/bin/env bash
# Builds a Kubernetes control plane from its Go modules, at the version pinned in kubernetes.env, into a
# cache outside the clone: ~/.cache/mlflow-platform/kubernetes/<version>/bin (the root can be moved with
# MLFLOW_PLATFORM_CACHE). Idempotent: a binary whose stamp names the pinned version is skipped, so a warm
# run costs a few stat calls. A cold build is about 1,000 CPU-seconds (the apiserver is the long pole), so
# callers start it early with --background and whoever needs the binaries runs it again: that run waits
# on the install lock and then finds the work done.
#
# Usage: scripts/tools/install-kubernetes.sh [--background] [--print-env] [BINARY ...]
#   BINARY is one of: etcd kube-apiserver kube-controller-manager kube-scheduler kubectl (default: all)
#   --background  detaches a nice'd build (log: <version>/install.log) and returns at once
#   --print-env   prints KEY=VALUE lines (paths of the binaries) on stdout
#
# Sources (the Go module proxy only):
#   etcd     a throwaway main module calling etcdmain.Main: `go install go.etcd.io/etcd/server/v3@...` is
#            refused because that module's go.mod has replace directives
#   kube-*   a copy of the k8s.io/kubernetes module with its `replace` block (to ./staging, which the module
#   kubectl  zip leaves empty) dropped and each staging module required at its published v0.<minor>.<patch>,
#            then `go build -mod=mod ./cmd/<binary>`
# A binary that cannot be built is reported on stderr with the reason; the others are still built, and
# the exit code is 1.
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/kubernetes.env"
LOG_NAME=install-kubernetes
GO_MIN=1.24
. "$HERE/installer-lib.sh"
ROOT="$CACHE/kubernetes/$KUBERNETES_VERSION"
BIN="$ROOT/bin"
STAMPS="$ROOT/stamps"
SRC="$ROOT/src"
ALL=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

PRINT_ENV=0
BACKGROUND=0
WANT=()
for a in "$@"; do
  case "$a" in
    --print-env) PRINT_ENV=1 ;;
    --background) BACKGROUND=1 ;;
    etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) WANT+=("$a") ;;
    *) echo "install-kubernetes: unknown binary '$a' (one of: ${ALL[*]}, --background, --print-env)" >&2; exit 2 ;;
  esac
done
[ ${#WANT[@]} -eq 0 ] && WANT=("${ALL[@]}")
mkdir -p "$BIN" "$STAMPS"

wanted_version() { if [ "$1" = etcd ]; then echo "$ETCD_VERSION"; else echo "$KUBERNETES_VERSION"; fi; }
built() { stamp_ok "$1" "$(wanted_version "$1")" && [ -x "$BIN/$1" ]; }
missing() { local b; for b in "${WANT[@]}"; do built "$b" || echo "$b"; done; }

print_env() {
  echo "CACHE=$CACHE"
  echo "KUBERNETES_VERSION=$KUBERNETES_VERSION"
  echo "ETCD_VERSION=$ETCD_VERSION"
  echo "ETCD=$BIN/etcd"
  echo "KUBE_APISERVER=$BIN/kube-apiserver"
  echo "KUBE_CONTROLLER_MANAGER=$BIN/kube-controller-manager"
  echo "KUBE_SCHEDULER=$BIN/kube-scheduler"
  echo "KUBECTL=$BIN/kubectl"
  echo "FAILED=${FAILED[*]:-}"
}

if [ "$BACKGROUND" = 1 ]; then
  todo=$(missing)
  if [ -z "$todo" ]; then
    log "Kubernetes $KUBERNETES_VERSION is built (nothing to do)"
  else
    # setsid: the build outlives the npm script or test run that started it; nice: it yields to the tests.
    args=("${WANT[@]}")
    setsid nice -n 19 "$0" "${args[@]}" </dev/null >>"$ROOT/install.log" 2>&1 &
    log "building $(echo $todo) in the background (pid $!, log $ROOT/install.log); a later run waits for it"
  fi
  [ "$PRINT_ENV" = 1 ] && print_env
  exit 0
fi

# The control plane's certificates are made with openssl at start (scripts/cluster/controlPlane.ts).
if ! out=$("$HERE/ensure-apt.sh" openssl 2>&1); then fail openssl "$out"; elif [ -n "$out" ]; then log "$out"; fi

# Warm path without the lock: nothing to build, so nothing to wait for.
if [ -n "$(missing)" ]; then
  take_install_lock "$ROOT"
  if ! command -v go >/dev/null; then
    for b in $(missing); do fail "$b" "Go is not installed (apt-get install golang-go, or a Go >= $GO_MIN toolchain)"; done
  fi
fi

build_etcd() {
  built etcd && return 0
  command -v go >/dev/null || return 0
  log "building etcd $ETCD_VERSION (first use; about 100 CPU-seconds)"
  local work="$SRC/etcd" out
  rm -rf "$work" && mkdir -p "$work"
  cat >"$work/go.mod" <<MOD
module etcdbuild

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat >"$work/main.go" <<'GO'
// etcd's own main package, as a module the Go proxy can build (the upstream one has replace directives).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  local t0=$SECONDS
  if out=$( cd "$work" && go mod tidy 2>&1 && go build -trimpath -o "$BIN/etcd.tmp" . 2>&1 ) && mv "$BIN/etcd.tmp" "$BIN/etcd"; then
    echo "$ETCD_VERSION" >"$STAMPS/etcd"
    log "built etcd in $((SECONDS - t0)) s"
  else
    fail etcd "go build of etcdmain at go.etcd.io/etcd/server/v3@$ETCD_VERSION failed: $(echo "$out" | grep -m1 -iE "error|forbidden|not available|cannot" || echo "$out" | tail -1)"
  fi
}

# The k8s.io/kubernetes module, copied once per version and made buildable outside its own repository.
KSRC="$SRC/kubernetes"
prepare_kubernetes() {
  [ -f "$KSRC/.prepared" ] && return 0
  local staging="v0.${KUBERNETES_VERSION#v1.}" dir out
  log "go mod download k8s.io/kubernetes@$KUBERNETES_VERSION"
  if ! out=$(cd "$ROOT" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" 2>&1); then
    echo "go mod download k8s.io/kubernetes@$KUBERNETES_VERSION: $(echo "$out" | grep -m1 -i error || echo "$out" | tail -1)"; return 1
  fi
  dir=$(echo "$out" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || { echo "go mod download gave no module directory"; return 1; }
  rm -rf "$KSRC" && mkdir -p "$SRC" && cp -r "$dir" "$KSRC" && chmod -R u+w "$KSRC" || { echo "cannot copy $dir"; return 1; }
  rm -f "$KSRC/go.work" "$KSRC/go.work.sum"
  # Drop the replace block (it points into ./staging, empty in the module zip) and require every staging
  # module at its published version instead of v0.0.0.
  sed -i -e '/^replace ($/,/^)$/d' -e '/^replace k8s.io\//d' \
    -e "s#^\(\s*k8s.io/[a-z0-9-]*\) v0.0.0\$#\1 $staging#" "$KSRC/go.mod"
  if grep -q ' v0\.0\.0$' "$KSRC/go.mod"; then echo "go.mod still requires v0.0.0 modules: $(grep ' v0\.0\.0$' "$KSRC/go.mod" | tr -s ' \t' ' ')"; return 1; fi
  touch "$KSRC/.prepared"
}

build_kube() {
  local name=$1
  built "$name" && return 0
  command -v go >/dev/null || return 0
  local reason
  if ! reason=$(prepare_kubernetes); then fail "$name" "$reason"; return; fi
  log "building $name $KUBERNETES_VERSION (first use; the apiserver alone is about 500 CPU-seconds)"
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local ld="" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  local out t0=$SECONDS
  if out=$( cd "$KSRC" && go build -mod=mod -trimpath -ldflags "-s -w$ld" -o "$BIN/$name.tmp" "./cmd/$name" 2>&1 ) && mv "$BIN/$name.tmp" "$BIN/$name"; then
    echo "$KUBERNETES_VERSION" >"$STAMPS/$name"
    log "built $name in $((SECONDS - t0)) s"
  else
    fail "$name" "go build ./cmd/$name of k8s.io/kubernetes@$KUBERNETES_VERSION failed: $(echo "$out" | grep -m1 -iE "error|forbidden|not available|cannot" || echo "$out" | tail -1)"
  fi
}

for b in "${WANT[@]}"; do
  case "$b" in
    etcd) build_etcd ;;
    *) build_kube "$b" ;;
  esac
done

# CPU seconds of the builds (the children's user and system time), for the README's cost figures.
[ "$SECONDS" -gt 5 ] && log "done in $SECONDS s wall; CPU of the builds (user, system): $(times | tail -1)"
[ "$PRINT_ENV" = 1 ] && print_env
[ ${#FAILED[@]} -eq 0 ]
