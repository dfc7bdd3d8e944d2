# The cluster's container images (sourced by scripts/cluster.sh), built here
# and imported into every node's containerd: no registry is ever asked.
# Docker archives, because they carry the image name for `ctr images import`.
#
#   localhost/pause:tweed        the pod sandbox (containerd's sandbox_image)
#   localhost/tweed-test:latest  busybox-static: ping, wget, nc, httpd, nslookup
#   localhost/coredns:<version>  CoreDNS from cluster/coredns
#   localhost/tweed:<version>    tweed itself (scripts/build-image.sh), the
#                                name deploy/tweed.yaml uses
#   localhost/multus:<version>   Multus (thin plugin) from cluster/multus, laid
#                                out as Multus's own image, for its own
#                                manifest ($STATE/addons/multus-daemonset.yml)
#   localhost/flannel:<version>, localhost/flannel-cni-plugin:<version>
#                                flannel, for its own kube-flannel.yml
#                                ($STATE/addons/kube-flannel.yml;
#                                cluster/lib/flannel.sh)

IMAGES="$STATE/images"

# copy_with_libs ROOT FILE... : each FILE at its own path under ROOT, with
# the shared libraries it loads (and the loader), for images of Debian's
# dynamically linked programs.
copy_with_libs() {
  local root="$1" f lib
  shift
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
    for lib in $(ldd "$f" | grep -o '/[^ ]*'); do
      [ -e "$root$lib" ] && continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
}

# busybox_root ROOT : busybox-static and its applets in ROOT/bin, a root
# user, /tmp and /www.
busybox_root() {
  local root="$1" applet
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/www"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
}

# commit_root ROOT NAME OUT ENTRYPOINT-JSON [CMD-JSON] : the directory ROOT
# as the one layer of image NAME, written to the docker archive OUT; ROOT
# is removed. An empty ENTRYPOINT-JSON leaves the entrypoint unset.
commit_root() {
  local root="$1" name="$2" out="$3" entrypoint="$4" cmd="${5:-}" ctr
  tar -C "$root" -cf "$root.tar" .
  rm -rf "$root"
  ctr="$(STORAGE_DRIVER=vfs buildah from scratch)"
  STORAGE_DRIVER=vfs buildah add "$ctr" "$root.tar" / >/dev/null
  rm -f "$root.tar"
  STORAGE_DRIVER=vfs buildah config --env PATH=/usr/local/bin:/usr/bin:/bin "$ctr"
  [ -z "$entrypoint" ] || STORAGE_DRIVER=vfs buildah config --entrypoint "$entrypoint" "$ctr"
  [ -z "$cmd" ] || STORAGE_DRIVER=vfs buildah config --cmd "$cmd" "$ctr"
  STORAGE_DRIVER=vfs buildah commit --quiet "$ctr" "docker-archive:$out:$name" >/dev/null
  STORAGE_DRIVER=vfs buildah rm "$ctr" >/dev/null
}

# busybox_image NAME OUT ENTRYPOINT-JSON [SRC:DST...] : busybox-static and
# its applets, and SRC copied to DST.
busybox_image() {
  local name="$1" out="$2" entrypoint="$3" root extra
  shift 3
  root="$(mktemp -d)"
  busybox_root "$root"
  for extra in "$@"; do
    cp "${extra%%:*}" "$root${extra#*:}"
  done
  commit_root "$root" "$name" "$out" "$entrypoint"
}

build_coredns() {
  local version out="$STATE/coredns/bin"
  version="$(sed -n 's/^\(require \|\t\)github.com\/coredns\/coredns \(v[0-9.]*\).*/\2/p' "$REPO/cluster/coredns/go.mod" | head -n1)"
  [ -n "$version" ] || die "no github.com/coredns/coredns requirement in cluster/coredns/go.mod"
  if [ ! -x "$out/coredns-$version" ]; then
    log "building CoreDNS $version from cluster/coredns"
    mkdir -p "$out"
    (cd "$REPO/cluster/coredns" && GOMODCACHE="$GO_CACHE/mod" GOCACHE="$GO_CACHE/build" \
      GOFLAGS=-buildvcs=false CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
      -o "$out/coredns-$version.tmp" github.com/coredns/coredns) >&2
    mv "$out/coredns-$version.tmp" "$out/coredns-$version"
  fi
  COREDNS_VERSION="$version"
  COREDNS_BIN="$out/coredns-$version"
}

# Multus: its thin plugin, passthru and the two programs its DaemonSet runs
# (install_multus, thin_entrypoint), and its own manifest with the image
# reference pointed at the image built here.
build_multus() {
  local version out="$STATE/multus" dir
  version="$(sed -n 's/^\(require \|\t\)gopkg.in\/k8snetworkplumbingwg\/multus-cni.v4 \(v[0-9.]*\).*$/\2/p' "$REPO/cluster/multus/go.mod" | head -n1)"
  [ -n "$version" ] || die "no multus-cni.v4 requirement in cluster/multus/go.mod"
  if [ ! -x "$out/$version/bin/multus" ]; then
    log "building Multus $version from cluster/multus"
    rm -rf "$out/$version.tmp"
    mkdir -p "$out/$version.tmp/bin"
    (cd "$REPO/cluster/multus" && GOMODCACHE="$GO_CACHE/mod" GOCACHE="$GO_CACHE/build" \
      GOFLAGS=-buildvcs=false CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
      -o "$out/$version.tmp/bin/" tool) >&2
    mv "$out/$version.tmp/bin/passthru-cni" "$out/$version.tmp/bin/passthru"
    rm -rf "${out:?}/$version"
    mv "$out/$version.tmp" "$out/$version"
  fi
  dir="$(cd "$REPO/cluster/multus" && GOMODCACHE="$GO_CACHE/mod" go list -m -f '{{.Dir}}' gopkg.in/k8snetworkplumbingwg/multus-cni.v4)"
  mkdir -p "$STATE/addons"
  sed "s|ghcr.io/k8snetworkplumbingwg/multus-cni:snapshot|localhost/multus:$version|" \
    "$dir/deployments/multus-daemonset.yml" >"$STATE/addons/multus-daemonset.yml"
  MULTUS_VERSION="$version"
  MULTUS_BINS="$out/$version/bin"
}

make_images() {
  local key stamp ctr tweed_version
  mkdir -p "$IMAGES"
  build_coredns
  build_multus
  build_flannel
  tweed_version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n1)"
  # Rebuilt when busybox, CoreDNS or tweed's binaries change.
  key="$({ dpkg-query -W -f='${Version}' busybox-static; echo "$COREDNS_VERSION $MULTUS_VERSION $FLANNEL_BINS";
    sha256sum "$REPO/cluster/lib/flannel.sh";
    sha256sum "$TWEED_BINS"/tweed "$TWEED_BINS"/tweedd "$TWEED_BINS"/tweedctl; } | sha256sum | cut -c1-16)"
  stamp="$IMAGES/.key"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
    return 0
  fi
  log "building images (pause, tweed-test, coredns $COREDNS_VERSION, multus $MULTUS_VERSION, flannel $FLANNEL_VERSION, tweed $tweed_version)"
  rm -f "$IMAGES"/*.tar
  busybox_image localhost/pause:tweed "$IMAGES/pause.tar" '["/bin/sleep", "2147483647"]'
  busybox_image localhost/tweed-test:latest "$IMAGES/tweed-test.tar" '["/bin/sleep", "2147483647"]'
  ctr="$(STORAGE_DRIVER=vfs buildah from scratch)"
  STORAGE_DRIVER=vfs buildah copy --chmod 0755 "$ctr" "$COREDNS_BIN" /coredns >/dev/null
  STORAGE_DRIVER=vfs buildah config --entrypoint '["/coredns"]' "$ctr"
  STORAGE_DRIVER=vfs buildah commit --quiet "$ctr" "docker-archive:$IMAGES/coredns.tar:localhost/coredns:$COREDNS_VERSION" >/dev/null
  STORAGE_DRIVER=vfs buildah rm "$ctr" >/dev/null
  ctr="$(STORAGE_DRIVER=vfs buildah from scratch)"
  for b in multus passthru; do
    STORAGE_DRIVER=vfs buildah copy --chmod 0755 "$ctr" "$MULTUS_BINS/$b" "/usr/src/multus-cni/bin/$b" >/dev/null
  done
  for b in install_multus thin_entrypoint; do
    STORAGE_DRIVER=vfs buildah copy --chmod 0755 "$ctr" "$MULTUS_BINS/$b" "/$b" >/dev/null
  done
  STORAGE_DRIVER=vfs buildah config --entrypoint '["/thin_entrypoint"]' "$ctr"
  STORAGE_DRIVER=vfs buildah commit --quiet "$ctr" "docker-archive:$IMAGES/multus.tar:localhost/multus:$MULTUS_VERSION" >/dev/null
  STORAGE_DRIVER=vfs buildah rm "$ctr" >/dev/null
  flannel_images
  "$REPO/scripts/build-image.sh" --binaries "$TWEED_BINS" --out "$IMAGES/tweed.tar" --format docker >/dev/null
  echo "$key" >"$stamp"
}
