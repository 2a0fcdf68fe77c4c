#!/usr/bin/env bash
# Installs the trusted manifest checkers that `npm run check` runs, pinned, into a cache outside the
# clone (~/.cache/mlflow-platform/checkers; the root can be moved with MLFLOW_PLATFORM_CACHE). Idempotent: a tool whose
# pinned version is already installed is skipped, so a warm run costs a few stat calls.
#
# Usage: scripts/tools/install-checkers.sh [--print-env] [TOOL ...]
#   TOOL is one of: kubeconform kube-score kube-linter checkov k8s-schemas prometheus-crds (default: all)
#   --print-env  prints KEY=VALUE lines (paths of what was installed) on stdout for scripts/lib/checkers.ts
#
# Sources (each through its registry's ordinary client; nothing else is downloaded):
#   kubeconform, kube-score, kube-linter   `go install MODULE@VERSION` (Go module proxy)
#   checkov                                `pip install checkov==VERSION` in a venv (PyPI)
#   k8s-schemas                            the `kubernetes-validate` wheel (PyPI), which ships the Kubernetes
#                                          OpenAPI as JSON schemas per minor; only downloaded, not installed
#   prometheus-crds                        `go mod download` of the prometheus-operator Go module, which ships
#                                          its CRDs (example/prometheus-operator-crd/*.yaml)
# A tool that cannot be installed is reported on stderr with the reason; the others are still installed,
# and the exit code is 1.
set -uo pipefail

KUBECONFORM_VERSION=v0.8.0
KUBE_SCORE_VERSION=v1.20.0
KUBE_LINTER_VERSION=v0.8.3
CHECKOV_VERSION=3.3.30
# Ships one schema set per Kubernetes minor (1.28-1.37 in 1.37.0); the minor used is the control plane's,
# from kubernetes.env (scripts/lib/kubernetesVersion.ts), which this wheel has exactly (1.34).
KUBERNETES_VALIDATE_VERSION=1.37.0
PROMETHEUS_OPERATOR_VERSION=v0.89.0

LOG_NAME=install-checkers
GO_MIN=1.22
. "$(dirname "${BASH_SOURCE[0]}")/installer-lib.sh"
ROOT="$CACHE/checkers"
BIN="$ROOT/bin"
STAMPS="$ROOT/stamps"
VENV="$ROOT/checkov-$CHECKOV_VERSION"
DOWNLOADS="$ROOT/downloads"
mkdir -p "$BIN" "$STAMPS" "$DOWNLOADS"
take_install_lock "$ROOT"

export GOBIN="$BIN"

PRINT_ENV=0
TOOLS=()
for a in "$@"; do
  case "$a" in
    --print-env) PRINT_ENV=1 ;;
    kubeconform|kube-score|kube-linter|checkov|k8s-schemas|prometheus-crds) TOOLS+=("$a") ;;
    *) echo "install-checkers: unknown tool '$a'" >&2; exit 2 ;;
  esac
done
[ ${#TOOLS[@]} -eq 0 ] && TOOLS=(kubeconform kube-score kube-linter checkov k8s-schemas prometheus-crds)

# kube-linter's module path is golang.stackrox.io/kube-linter, a host the Go module proxy here does not
# serve; the same module is published under its GitHub path. A throwaway module requires the vanity path
# and replaces it with the GitHub one at the same version, so the build is the upstream release source.
install_kube_linter() {
  local version=$KUBE_LINTER_VERSION
  if stamp_ok kube-linter "$version" && [ -x "$BIN/kube-linter" ]; then return 0; fi
  if ! command -v go >/dev/null; then fail kube-linter "Go is not installed"; return; fi
  log "building kube-linter $version from github.com/stackrox/kube-linter (first use; takes about two minutes)"
  local work out
  work=$(mktemp -d)
  cat >"$work/go.mod" <<MOD
module kubelinterbuild

go 1.24

require golang.stackrox.io/kube-linter $version

replace golang.stackrox.io/kube-linter => github.com/stackrox/kube-linter $version
MOD
  printf '//go:build tools\n\npackage tools\n\nimport _ "golang.stackrox.io/kube-linter/cmd/kube-linter"\n' >"$work/tools.go"
  if out=$( cd "$work" && go mod tidy 2>&1 && go build -trimpath \
      -ldflags "-X golang.stackrox.io/kube-linter/internal/version.version=$version" \
      -o "$BIN/kube-linter" golang.stackrox.io/kube-linter/cmd/kube-linter 2>&1 ); then
    echo "$version" >"$STAMPS/kube-linter"
  else
    fail kube-linter "build from github.com/stackrox/kube-linter@$version failed: $(echo "$out" | tail -1)"
  fi
  rm -rf "$work"
}

install_checkov() {
  if stamp_ok checkov "$CHECKOV_VERSION" && [ -x "$VENV/bin/checkov" ]; then return 0; fi
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then fail checkov "python3 with venv/ensurepip is needed (apt-get install python3-venv)"; return; fi
  log "pip install checkov==$CHECKOV_VERSION into $VENV (first use; takes a few minutes)"
  local out
  if out=$( { rm -rf "$VENV" && python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "checkov==$CHECKOV_VERSION"; } 2>&1 ); then
    echo "$CHECKOV_VERSION" >"$STAMPS/checkov"
  else
    fail checkov "$(echo "$out" | grep -m1 -E "ERROR|error" || echo "$out" | tail -1)"
  fi
}

# The wheel is only downloaded (no dependencies, not installed): scripts/lib/checkersSchemas.ts reads the
# schemas for the pinned Kubernetes minor straight out of it.
install_k8s_schemas() {
  local wheel="$DOWNLOADS/kubernetes_validate-$KUBERNETES_VALIDATE_VERSION-py3-none-any.whl"
  if [ -s "$wheel" ]; then return 0; fi
  log "pip download kubernetes-validate==$KUBERNETES_VALIDATE_VERSION (Kubernetes JSON schemas)"
  local out pip=(python3 -m pip)
  [ -x "$VENV/bin/pip" ] && pip=("$VENV/bin/pip")   # the checkov venv's pip, when there is one
  if ! out=$("${pip[@]}" download -q --no-deps --only-binary=:all: -d "$DOWNLOADS" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" 2>&1) || [ ! -s "$wheel" ]; then
    fail k8s-schemas "pip download kubernetes-validate==$KUBERNETES_VALIDATE_VERSION failed: $(echo "$out" | tail -1)"
  fi
}

prometheus_crd_dir() { echo "$GOMODCACHE/github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION/example/prometheus-operator-crd"; }
install_prometheus_crds() {
  if [ -d "$(prometheus_crd_dir)" ]; then return 0; fi
  if ! command -v go >/dev/null; then fail prometheus-crds "Go is not installed"; return; fi
  log "go mod download github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION (its CRDs)"
  local out
  if ! out=$(cd "$ROOT" && go mod download "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" 2>&1) || [ ! -d "$(prometheus_crd_dir)" ]; then
    fail prometheus-crds "go mod download failed: $(echo "$out" | tail -1)"
  fi
}

for t in "${TOOLS[@]}"; do
  case "$t" in
    kubeconform) go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" ;;
    kube-score) go_tool kube-score github.com/zegl/kube-score/cmd/kube-score "$KUBE_SCORE_VERSION" ;;
    kube-linter) install_kube_linter ;;
    checkov) install_checkov ;;
    k8s-schemas) install_k8s_schemas ;;
    prometheus-crds) install_prometheus_crds ;;
  esac
done

if [ "$PRINT_ENV" = 1 ]; then
  echo "CACHE=$CACHE"
  echo "KUBECONFORM=$BIN/kubeconform"
  echo "KUBECONFORM_VERSION=$KUBECONFORM_VERSION"
  echo "KUBE_SCORE=$BIN/kube-score"
  echo "KUBE_SCORE_VERSION=$KUBE_SCORE_VERSION"
  echo "KUBE_LINTER=$BIN/kube-linter"
  echo "KUBE_LINTER_VERSION=$KUBE_LINTER_VERSION"
  echo "CHECKOV=$VENV/bin/checkov"
  echo "CHECKOV_VERSION=$CHECKOV_VERSION"
  echo "K8S_SCHEMA_WHEEL=$DOWNLOADS/kubernetes_validate-$KUBERNETES_VALIDATE_VERSION-py3-none-any.whl"
  echo "KUBERNETES_VALIDATE_VERSION=$KUBERNETES_VALIDATE_VERSION"
  echo "PROMETHEUS_CRDS=$(prometheus_crd_dir)"
  echo "PROMETHEUS_OPERATOR_VERSION=$PROMETHEUS_OPERATOR_VERSION"
  echo "FAILED=${FAILED[*]:-}"
fi
[ ${#FAILED[@]} -eq 0 ]
