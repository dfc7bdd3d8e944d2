#!/usr/bin/env bash
# Builds real flannel for the lab tests: flanneld (flannel's Go module as
# pinned in cluster/flannel/go.mod) and flannel's CNI plugin (pinned in
# cluster/flannel-cni/go.mod), with the very build scripts/cluster.sh runs
# (build_flannel in cluster/lib/flannel.sh, sourced unchanged), cached per
# version pair: a rebuild happens only when a pin changes.
#
#   build-flannel.sh        prints the directory holding bin/flanneld and cni/flannel
#
# Environment:
#   TWEED_CACHE   cache root (default /var/cache/tweed): Go's module and build
#                 caches live in $TWEED_CACHE/go, the binaries in
#                 $TWEED_CACHE/flannel/flannel/<version>-<cni version>
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${TWEED_CACHE:-/var/cache/tweed}"
# What cluster/lib/flannel.sh expects of its caller (scripts/cluster.sh
# sets the same names): the Go cache, a state directory it builds under
# (here a cache of its own, never the cluster's), log and die.
GO_CACHE="$cache/go"
STATE="$cache/flannel"
log() { echo "build-flannel: $*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=cluster/lib/flannel.sh
source "$REPO/cluster/lib/flannel.sh"

command -v go >/dev/null || die "no go on PATH (Go builds flanneld and its CNI plugin)"
mkdir -p "$STATE" "$GO_CACHE"
# Test processes may build at the same time: one builds, the others wait.
exec 9>"$STATE/.lock"
flock 9
build_flannel
for f in bin/flanneld cni/flannel; do
  [ -x "$FLANNEL_BINS/$f" ] || die "$FLANNEL_BINS/$f was not built"
done
echo "$FLANNEL_BINS"
