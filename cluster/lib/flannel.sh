# flannel, the peer tweed is compared with and migrated from (sourced by
# scripts/cluster.sh, used by cluster/lib/images.sh): flanneld and its
# install-conf from flannel's Go module (cluster/flannel), its CNI plugin
# from cluster/flannel-cni, and flannel's own kube-flannel.yml from the same
# module with only the two image references pointed at the images built here:
#
#   ghcr.io/flannel-io/flannel:<v>            -> localhost/flannel:<v>
#   ghcr.io/flannel-io/flannel-cni-plugin:<v> -> localhost/flannel-cni-plugin:<cni v>
#
# written to $STATE/addons/kube-flannel.yml. Its net-conf (10.244.0.0/16,
# vxlan) is the cluster's; the tests change what they compare (host-gw, the
# etcd store) with kubectl, the way a flannel user would.

# go_module_version DIR MODULE : the version DIR/go.mod pins MODULE at.
go_module_version() {
  local dir="$1" module="$2"
  (cd "$dir" && GOMODCACHE="$GO_CACHE/mod" GOFLAGS=-mod=mod go list -m -f '{{.Version}}' "$module")
}

go_module_dir() {
  local dir="$1" module="$2"
  (cd "$dir" && GOMODCACHE="$GO_CACHE/mod" GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' "$module")
}

# go_build_tools DIR OUT CGO LDFLAGS : builds DIR's go.mod `tool`s into OUT.
go_build_tools() {
  local dir="$1" out="$2" cgo="$3" ldflags="$4"
  (cd "$dir" && GOMODCACHE="$GO_CACHE/mod" GOCACHE="$GO_CACHE/build" \
    GOFLAGS=-buildvcs=false CGO_ENABLED="$cgo" go build -trimpath -tags netgo,osusergo \
    -ldflags "$ldflags" -o "$out/" tool) >&2
}

build_flannel() {
  local version cni_version out
  version="$(go_module_version "$REPO/cluster/flannel" github.com/flannel-io/flannel)"
  cni_version="$(go_module_version "$REPO/cluster/flannel-cni" github.com/containernetworking/plugins)"
  out="$STATE/flannel/$version-$cni_version"
  if [ ! -x "$out/bin/flanneld" ]; then
    log "building flannel $version (cluster/flannel) and its CNI plugin (plugins $cni_version, cluster/flannel-cni)"
    rm -rf "$out.tmp"
    mkdir -p "$out.tmp/bin" "$out.tmp/cni"
    # flannel's own build: cgo on amd64 (its udp backend), static, version stamped.
    go_build_tools "$REPO/cluster/flannel" "$out.tmp/bin" 1 \
      "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$version -extldflags -static"
    mv "$out.tmp/bin/flannel" "$out.tmp/bin/flanneld"
    mv "$out.tmp/bin/install_conf" "$out.tmp/bin/install-conf"
    go_build_tools "$REPO/cluster/flannel-cni" "$out.tmp/cni" 0 "-s -w"
    rm -rf "$out"
    mv "$out.tmp" "$out"
  fi
  mkdir -p "$STATE/addons"
  sed -e "s|ghcr.io/flannel-io/flannel:$version|localhost/flannel:$version|" \
    -e "s|ghcr.io/flannel-io/flannel-cni-plugin:[^ ]*|localhost/flannel-cni-plugin:$cni_version|" \
    "$(go_module_dir "$REPO/cluster/flannel" github.com/flannel-io/flannel)/Documentation/kube-flannel.yml" \
    >"$STATE/addons/kube-flannel.yml"
  grep -q ghcr.io "$STATE/addons/kube-flannel.yml" && die "kube-flannel.yml still names an image in ghcr.io"
  FLANNEL_VERSION="$version"
  FLANNEL_CNI_VERSION="$cni_version"
  FLANNEL_BINS="$out"
}

# flannel's image, laid out as flannel's Dockerfile lays it out:
# /opt/bin/flanneld, /opt/bin/install-conf, and iptables (nf_tables) and nft,
# which flanneld runs for its masquerade and forward rules.
flannel_images() {
  local ctr root
  root="$(mktemp -d)"
  mkdir -p "$root/opt/bin" "$root/tmp" "$root/run" "$root/etc"
  cp "$FLANNEL_BINS/bin/flanneld" "$FLANNEL_BINS/bin/install-conf" "$root/opt/bin/"
  copy_with_libs "$root" /usr/sbin/xtables-nft-multi /usr/sbin/nft
  copy_with_libs "$root" /usr/lib/x86_64-linux-gnu/xtables/*.so
  for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -s xtables-nft-multi "$root/usr/sbin/$t"
  done
  cp /etc/protocols /etc/services /etc/ethertypes "$root/etc/" 2>/dev/null || true
  tar -C "$root" -cf "$root.tar" .
  rm -rf "$root"
  ctr="$(STORAGE_DRIVER=vfs buildah from scratch)"
  STORAGE_DRIVER=vfs buildah add "$ctr" "$root.tar" / >/dev/null
  rm -f "$root.tar"
  STORAGE_DRIVER=vfs buildah config --entrypoint '["/opt/bin/flanneld"]' \
    --env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  STORAGE_DRIVER=vfs buildah commit --quiet "$ctr" \
    "docker-archive:$IMAGES/flannel.tar:localhost/flannel:$FLANNEL_VERSION" >/dev/null
  STORAGE_DRIVER=vfs buildah rm "$ctr" >/dev/null
  # The CNI plugin's image: /flannel, and the `cp` its init container runs.
  busybox_image "localhost/flannel-cni-plugin:$FLANNEL_CNI_VERSION" "$IMAGES/flannel-cni-plugin.tar" \
    '["/bin/sh"]' "$FLANNEL_BINS/cni/flannel:/flannel"
}
