# Sourced by the installers: one cache outside the clone for everything they download or build.
# Go and pip caches live there too, never in the clone or the user's global caches.
CACHE="${MLFLOW_PLATFORM_CACHE:-$HOME/.cache/mlflow-platform}"
export GOPATH="$CACHE/go"
export GOMODCACHE="$CACHE/go/mod"
export GOCACHE="$CACHE/go/build"
export GOFLAGS="-modcacherw -buildvcs=false"
export GOTOOLCHAIN=local          # never download a Go toolchain: fail clearly instead
export PIP_CACHE_DIR="$CACHE/pip-cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1
