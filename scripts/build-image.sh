#!/usr/bin/env bash
# Builds tweed's OCI image without a daemon or a registry: static tweed,
# tweedd and tweedctl plus nft (with its shared libraries, for tweedd's
# masquerade rules) in an image FROM scratch, assembled with Debian's buildah
# and written as an OCI archive.
#
#   sudo scripts/build-image.sh                       # release build -> target/tweed-image.tar
#   sudo scripts/build-image.sh --binaries DIR --out FILE [--format docker]
#
# --format docker writes a docker archive instead (the image name travels in
# it, so `ctr images import` names the image without further flags; the
# cluster of scripts/cluster.sh imports it so).
#
# Load it on a node with `ctr -n k8s.io images import target/tweed-image.tar`
# (or `podman load -i`); deploy/tweed.yaml refers to it as localhost/tweed:<version>.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)"
name="localhost/tweed:$version"
bins=""
out="$repo/target/tweed-image.tar"
format=oci
while [ $# -gt 0 ]; do
  case "$1" in
    --binaries) bins="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --format) format="$2"; shift 2 ;;
    *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { echo "build-image: $*" >&2; }

missing=()
for p in buildah umoci nftables; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "missing ${missing[*]}; run as root"; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

if [ -z "$bins" ]; then
  log "cargo build --release"
  (cd "$repo" && cargo build --release -p tweed-plugin -p tweedd -p tweedctl >&2)
  bins="$repo/target/x86_64-unknown-linux-gnu/release"
fi
for b in tweed tweedd tweedctl; do
  [ -x "$bins/$b" ] || { log "no $bins/$b"; exit 1; }
done

# vfs: works inside containers and on any file system, no fuse-overlayfs.
export STORAGE_DRIVER=vfs
ctr="$(buildah from scratch)"
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
for b in tweed tweedd tweedctl; do
  buildah copy --chmod 0755 "$ctr" "$bins/$b" "/usr/local/bin/$b" >/dev/null
done
# nft and every library it loads, at the same paths.
nft="$(command -v nft || echo /usr/sbin/nft)"
buildah copy --chmod 0755 "$ctr" "$nft" /usr/sbin/nft >/dev/null
for lib in $(ldd "$nft" | grep -o '/[^ ]*'); do
  real="$(readlink -f "$lib")"
  buildah copy "$ctr" "$real" "$lib" >/dev/null
done
buildah config \
  --entrypoint '["/usr/local/bin/tweedd"]' \
  --env PATH=/usr/local/bin:/usr/sbin:/usr/bin \
  --label org.opencontainers.image.title=tweed \
  --label org.opencontainers.image.version="$version" \
  --label org.opencontainers.image.description="tweed CNI plugin, node agent and tool" \
  "$ctr"
mkdir -p "$(dirname "$out")"
rm -f "$out"
case "$format" in
  oci) buildah commit --quiet "$ctr" "oci-archive:$out:$name" >/dev/null ;;
  docker) buildah commit --quiet "$ctr" "docker-archive:$out:$name" >/dev/null ;;
  *) log "--format $format: oci or docker"; exit 2 ;;
esac
log "wrote $out ($name, $(stat -c %s "$out") bytes)"
echo "$out"
