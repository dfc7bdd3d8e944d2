#!/usr/bin/env bash
# Builds the Kubernetes components scripts/cluster.sh runs, from their
# official Go modules as pinned in cluster/kubernetes/go.mod (k8s.io/kubernetes
# at one release, every staging module at the matching v0 version), and caches
# them: a rebuild happens only when go.mod, go.sum or this script change.
#
#   build-kubernetes.sh        prints the directory holding the binaries
#
# Binaries: kube-apiserver kube-controller-manager kube-scheduler kubelet
# kube-proxy kubectl, static (CGO_ENABLED=0), stamped with the release's
# version (as Kubernetes' own build does with -ldflags -X), so kubectl
# version, the nodes' kubeletVersion and the apiserver's compatibility
# version all say the release.
#
# Environment:
#   TWEED_CACHE   cache root (default /var/cache/tweed): Go's module and build
#                 caches live in $TWEED_CACHE/go, the binaries in
#                 $TWEED_CACHE/kube/<key>/bin
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mod="$repo/cluster/kubernetes"
cache="${TWEED_CACHE:-/var/cache/tweed}"
log() { echo "build-kubernetes: $*" >&2; }

command -v go >/dev/null || { log "error: no go on PATH (Go 1.24 or later builds Kubernetes)"; exit 1; }
version="$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p; s/^\tk8s.io\/kubernetes \(v[0-9.]*\).*$/\1/p' "$mod/go.mod" | head -n1)"
[ -n "$version" ] || { log "error: no k8s.io/kubernetes requirement in $mod/go.mod"; exit 1; }
key="$({ sha256sum <"$mod/go.mod"; sha256sum <"$mod/go.sum"; sha256sum <"${BASH_SOURCE[0]}"; go env GOVERSION; } | sha256sum | cut -c1-16)"
out="$cache/kube/$key"
components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

built() {
  local c
  for c in "${components[@]}"; do [ -x "$out/bin/$c" ] || return 1; done
}
if built; then
  log "cached: Kubernetes $version in $out/bin"
  echo "$out/bin"
  exit 0
fi

mkdir -p "$cache/kube" "$cache/go"
exec 9>"$cache/kube/.lock"
flock 9
if built; then
  echo "$out/bin"
  exit 0
fi

export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOFLAGS=-buildvcs=false CGO_ENABLED=0
minor="${version#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
started=$(date +%s)
log "building Kubernetes $version (${components[*]}) from cluster/kubernetes; a cold build takes a while on 2 cores"
stage="$(mktemp -d "$cache/kube/.stage.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"
mkdir -p "$stage/bin"
(cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$stage/bin/" \
  $(printf 'k8s.io/kubernetes/cmd/%s ' "${components[@]}")) >&2
echo "$version" >"$stage/version"
rm -rf "$out"
mv "$stage" "$out"
trap - EXIT
# Keep only this build: each is about 400 MB.
find "$cache/kube" -mindepth 1 -maxdepth 1 -type d ! -path "$out" ! -name '.*' -exec rm -rf {} +
log "built in $(( $(date +%s) - started )) s: $out/bin"
echo "$out/bin"
