# The cluster's container images (sourced by scripts/cluster.sh), built here
# and imported into every node's containerd: no registry is ever asked.
# Docker archives, because they carry the image name for `ctr images import`.
#
#   localhost/pause:tweed        the pod sandbox (containerd's sandbox_image)
#   localhost/tweed-test:latest  busybox-static: ping, wget, nc, httpd, nslookup
#   localhost/coredns:<version>  CoreDNS from cluster/coredns
#   localhost/tweed:<version>    tweed itself (scripts/build-image.sh), the
#                                name deploy/tweed.yaml uses

IMAGES="$STATE/images"

# busybox_image NAME OUT ENTRYPOINT-JSON : busybox-static and its applets.
busybox_image() {
  local name="$1" out="$2" entrypoint="$3" ctr root applet
  root="$(mktemp -d)"
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/www"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  tar -C "$root" -cf "$root.tar" .
  rm -rf "$root"
  ctr="$(STORAGE_DRIVER=vfs buildah from scratch)"
  STORAGE_DRIVER=vfs buildah add "$ctr" "$root.tar" / >/dev/null
  rm -f "$root.tar"
  STORAGE_DRIVER=vfs buildah config --entrypoint "$entrypoint" --env PATH=/bin "$ctr"
  STORAGE_DRIVER=vfs buildah commit --quiet "$ctr" "docker-archive:$out:$name" >/dev/null
  STORAGE_DRIVER=vfs buildah rm "$ctr" >/dev/null
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

make_images() {
  local key stamp ctr tweed_version
  mkdir -p "$IMAGES"
  build_coredns
  tweed_version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n1)"
  # Rebuilt when busybox, CoreDNS or tweed's binaries change.
  key="$({ dpkg-query -W -f='${Version}' busybox-static; echo "$COREDNS_VERSION";
    sha256sum "$TWEED_BINS"/tweed "$TWEED_BINS"/tweedd "$TWEED_BINS"/tweedctl; } | sha256sum | cut -c1-16)"
  stamp="$IMAGES/.key"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
    return 0
  fi
  log "building images (pause, tweed-test, coredns $COREDNS_VERSION, tweed $tweed_version)"
  rm -f "$IMAGES"/*.tar
  busybox_image localhost/pause:tweed "$IMAGES/pause.tar" '["/bin/sleep", "2147483647"]'
  busybox_image localhost/tweed-test:latest "$IMAGES/tweed-test.tar" '["/bin/sleep", "2147483647"]'
  ctr="$(STORAGE_DRIVER=vfs buildah from scratch)"
  STORAGE_DRIVER=vfs buildah copy --chmod 0755 "$ctr" "$COREDNS_BIN" /coredns >/dev/null
  STORAGE_DRIVER=vfs buildah config --entrypoint '["/coredns"]' "$ctr"
  STORAGE_DRIVER=vfs buildah commit --quiet "$ctr" "docker-archive:$IMAGES/coredns.tar:localhost/coredns:$COREDNS_VERSION" >/dev/null
  STORAGE_DRIVER=vfs buildah rm "$ctr" >/dev/null
  "$REPO/scripts/build-image.sh" --binaries "$TWEED_BINS" --out "$IMAGES/tweed.tar" --format docker >/dev/null
  echo "$key" >"$stamp"
}
