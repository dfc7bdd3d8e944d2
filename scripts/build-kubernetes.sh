#!/usr/bin/env bash
# Builds the Kubernetes components scripts/cluster.sh runs, from their
# official Go modules as pinned in cluster/kubernetes/go.mod (k8s.io/kubernetes
# at one release, every staging module at the matching v0 version), and caches
# them: a rebuild happens only when go.mod, go.sum or this script change.
#
#   build-kubernetes.sh        prints the directory holding the binaries
#   build-kubernetes.sh e2e    the same for Kubernetes' end-to-end tests
#
# Binaries: kube-apiserver kube-controller-manager kube-scheduler kubelet
# kube-proxy kubectl; with `e2e`: e2e.test (`go test -c` of
# k8s.io/kubernetes/test/e2e), ginkgo (the CLI at the version Kubernetes
# pins, for parallel runs) and agnhost (the test image's program). All
# static (CGO_ENABLED=0), stamped with the release's version (as Kubernetes'
# own build does with -ldflags -X), so kubectl version, the nodes'
# kubeletVersion, the apiserver's compatibility version and e2e.test
# --version all say the release.
#
# Environment:
#   TWEED_CACHE   cache root (default /var/cache/tweed): Go's module and build
#                 caches live in $TWEED_CACHE/go, the binaries in
#                 $TWEED_CACHE/kube/<key>/bin (e2e: <key>-e2e)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mod="$repo/cluster/kubernetes"
cache="${TWEED_CACHE:-/var/cache/tweed}"
log() { echo "build-kubernetes: $*" >&2; }

command -v go >/dev/null || { log "error: no go on PATH (Go 1.24 or later builds Kubernetes)"; exit 1; }
version="$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p; s/^\tk8s.io\/kubernetes \(v[0-9.]*\).*$/\1/p' "$mod/go.mod" | head -n1)"
[ -n "$version" ] || { log "error: no k8s.io/kubernetes requirement in $mod/go.mod"; exit 1; }
key="$({ sha256sum <"$mod/go.mod"; sha256sum <"$mod/go.sum"; sha256sum <"${BASH_SOURCE[0]}"; go env GOVERSION; } | sha256sum | cut -c1-16)"
target="${1:-components}"
case "$target" in
  components)
    out="$cache/kube/$key"
    components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl) ;;
  e2e)
    out="$cache/kube/$key-e2e"
    components=(e2e.test ginkgo agnhost) ;;
  *) log "usage: build-kubernetes.sh [e2e]"; exit 2 ;;
esac

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
if [ "$target" = e2e ]; then
  # Niced: the suite builds this while other tests run their clusters.
  (cd "$mod" && nice -n 10 go test -c -trimpath -ldflags "$ldflags" -o "$stage/bin/e2e.test" k8s.io/kubernetes/test/e2e \
    && nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$stage/bin/" \
      github.com/onsi/ginkgo/v2/ginkgo k8s.io/kubernetes/test/images/agnhost) >&2
else
  (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$stage/bin/" \
    $(printf 'k8s.io/kubernetes/cmd/%s ' "${components[@]}")) >&2
fi
echo "$version" >"$stage/version"
rm -rf "$out"
mv "$stage" "$out"
trap - EXIT
# Keep the three newest builds of each kind (each is a few hundred MB); not
# only this one, as two checkouts with other go.mod files may share the
# cache and run clusters from it at the same time.
for kind in '' '-e2e'; do
  find "$cache/kube" -mindepth 1 -maxdepth 1 -type d -regex ".*/[0-9a-f]\{16\}$kind" -printf '%T@ %p\n' \
    | sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
done
log "built in $(( $(date +%s) - started )) s: $out/bin"
echo "$out/bin"
