# urunc on the cluster's nodes (sourced by scripts/cluster.sh; docs/urunc.md).
#
#   build_urunc          urunc from cluster/urunc (urunc's own source:
#                        cluster/urunc/SOURCE.md says why a copy), into
#                        $STATE/urunc/<key>/bin. Its containerd shim is not
#                        built: containerd's runc shim runs urunc
#                        (node-init.sh says why)
#   install_urunc_vmm    what urunc finds on PATH for its `qemu` guests, under
#                        $URUNC_VMM_DIR (see below)
#   urunc_guest_image    tweed's test guest (scripts/build-guest-image.sh)
#                        as an image urunc boots as a `linux` guest:
#                        localhost/tweed-guest:urunc
#
# Each node's containerd gets the runtime `urunc` (node-init.sh), the
# cluster the RuntimeClass `urunc` (cluster/addons/urunc.yaml).

# urunc runs QEMU from inside the container's root after bind-mounting into
# it the QEMU binary it found on PATH plus the host's /lib, /lib64, /usr/lib
# and /usr/share/qemu (non-recursive binds: a mount below them would not
# come along). So what it runs lives in real files below /usr/lib.
URUNC_VMM_DIR=/usr/lib/tweed-cluster/urunc

build_urunc() {
  local key out
  key="$(cd "$REPO/cluster/urunc" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  out="$STATE/urunc/$key"
  if [ ! -x "$out/bin/urunc" ]; then
    log "building urunc from cluster/urunc"
    rm -rf "$out.tmp"
    mkdir -p "$out.tmp/bin"
    (cd "$REPO/cluster/urunc" && GOMODCACHE="$GO_CACHE/mod" GOCACHE="$GO_CACHE/build" \
      GOFLAGS=-buildvcs=false nice go build -trimpath \
      -ldflags "-X main.version=$(cat VERSION)" -o "$out.tmp/bin/urunc" ./cmd/urunc) >&2
    rm -rf "$out"
    mv "$out.tmp" "$out"
  fi
  # urunc hands every container that is not a guest (the pod's sandbox, a
  # sidecar) to `runc` from PATH: the same wrapper the runc runtime uses.
  ln -sfn "$REPO/cluster/runc-wrapper.sh" "$out/bin/runc"
  echo "$out/bin" >"$STATE/urunc-bin"
}

# urunc starts QEMU with `-enable-kvm -cpu host`. On these machines /dev/kvm
# is nested KVM and guests hang under it (docs/vm-runner.md), so the QEMU
# urunc finds is a wrapper that asks for TCG instead (`-accel tcg -cpu max`)
# and passes every other argument unchanged. Its interpreter and the real
# QEMU are beside it, where urunc's binds make them visible.
install_urunc_vmm() {
  mkdir -p "$URUNC_VMM_DIR/bin"
  cp -L /bin/busybox "$URUNC_VMM_DIR/busybox.tmp"
  mv "$URUNC_VMM_DIR/busybox.tmp" "$URUNC_VMM_DIR/busybox"
  if ! cmp -s /usr/bin/qemu-system-x86_64 "$URUNC_VMM_DIR/qemu-system-x86_64"; then
    cp -L /usr/bin/qemu-system-x86_64 "$URUNC_VMM_DIR/qemu-system-x86_64.tmp"
    mv "$URUNC_VMM_DIR/qemu-system-x86_64.tmp" "$URUNC_VMM_DIR/qemu-system-x86_64"
  fi
  cat >"$URUNC_VMM_DIR/bin/qemu-system-x86_64.tmp" <<EOF
#!$URUNC_VMM_DIR/busybox sh
# QEMU as urunc runs it on tweed's test cluster (cluster/lib/urunc.sh):
# TCG instead of KVM, everything else as urunc asked.
prev=
for a do
  shift
  case "\$prev,\$a" in
    *,-enable-kvm) set -- "\$@" -accel tcg; prev=; continue ;;
    -cpu,host) a=max ;;
  esac
  set -- "\$@" "\$a"
  prev=\$a
done
# Away from /usr/bin, QEMU looks for its modules (TCG is one) and firmware
# (SeaBIOS, the virtio NIC's option ROM) relative to itself; they are where
# Debian put them (urunc adds -L /usr/share/qemu itself).
QEMU_MODULE_DIR=/usr/lib/x86_64-linux-gnu/qemu exec $URUNC_VMM_DIR/qemu-system-x86_64 \
  -L /usr/share/seabios -L /usr/lib/ipxe/qemu "\$@"
EOF
  chmod 0755 "$URUNC_VMM_DIR/bin/qemu-system-x86_64.tmp"
  mv "$URUNC_VMM_DIR/bin/qemu-system-x86_64.tmp" "$URUNC_VMM_DIR/bin/qemu-system-x86_64"
}

# The guest's kernel and initramfs as urunc expects a `linux` guest's image:
# the files in the image's root and urunc.json naming them (every value
# base64, as urunc reads it). The entrypoint is the guest's PID 1, which
# urunc passes as `rdinit=`.
urunc_guest_image() {
  local guest key out="$IMAGES/tweed-guest-urunc.tar" root
  guest="$("$REPO/scripts/build-guest-image.sh")"
  key="$(basename "$guest")-dhcp"
  if [ -f "$out" ] && [ "$(cat "$IMAGES/.tweed-guest-urunc.key" 2>/dev/null)" = "$key" ]; then
    return 0
  fi
  log "building localhost/tweed-guest:urunc from $guest"
  root="$(mktemp -d)"
  cp "$guest/vmlinuz" "$root/kernel"
  cp "$guest/initramfs.cpio.gz" "$root/initrd"
  b64() { printf '%s' "$1" | base64 -w0; }
  jq -n --arg type "$(b64 linux)" --arg hv "$(b64 qemu)" --arg bin "$(b64 /kernel)" \
    --arg initrd "$(b64 /initrd)" --arg cmd "$(b64 /init)" --arg version "$(b64 '')" \
    --arg dm "$(b64 false)" \
    '{"com.urunc.unikernel.unikernelType": $type, "com.urunc.unikernel.hypervisor": $hv,
      "com.urunc.unikernel.binary": $bin, "com.urunc.unikernel.initrd": $initrd,
      "com.urunc.unikernel.cmdline": $cmd, "com.urunc.unikernel.unikernelVersion": $version,
      "com.urunc.unikernel.useDMBlock": $dm}' >"$root/urunc.json"
  # The image's command is the guest init's arguments (urunc passes them
  # after `--`): ask tweed's DHCP for DNS and the MTU (docs/urunc.md).
  commit_root "$root" localhost/tweed-guest:urunc "$out" '["/init"]' '["tweed.dhcp=on"]'
  echo "$key" >"$IMAGES/.tweed-guest-urunc.key"
}
