#!/usr/bin/env bash
# Builds the tweed test guest: Debian's cloud kernel plus a small initramfs
# (busybox-static, the virtio-net modules, and guest/init as PID 1), and
# caches it. The guest configures its network only from its boot arguments
# (see guest/init and docs/guest-image.md).
#
#   build-guest-image.sh
#
# Prints one line on stdout: the directory holding `vmlinuz` and
# `initramfs.cpio.gz`, i.e. ${TWEED_GUEST_CACHE:-/var/cache/tweed/guest}/<key>.
# Progress goes to stderr. The key is a hash of this script, guest/init, the
# kernel package (ABI and version), busybox's version and the module list,
# so a rebuild happens only when one of those changes; otherwise the script
# only looks the key up.
#
# Environment:
#   TWEED_GUEST_CACHE     cache directory (default /var/cache/tweed/guest)
#   GUEST_KERNEL_FLAVOR   Debian kernel flavour (default cloud-amd64; the
#                         VM runner takes amd64, which has 9p)
#   GUEST_KERNEL_VERSION  kernel ABI, e.g. 6.1.0-56-cloud-amd64 (default:
#                         whatever linux-image-<flavour> depends on)
#   GUEST_INIT            the initramfs's /init (default guest/init)
#   GUEST_MODULES         modules to load at boot; their dependencies are
#                         added and ordered from each module's modinfo
#                         (default: virtio_pci virtio_net)
#
# Installs what it needs (busybox-static, cpio, xz-utils, zstd, and QEMU to
# run the result) with apt-get, so it must run as root unless both the
# packages and the image are already there.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
self="$repo/scripts/build-guest-image.sh"
init="${GUEST_INIT:-$repo/guest/init}"
flavor="${GUEST_KERNEL_FLAVOR:-cloud-amd64}"
cache="${TWEED_GUEST_CACHE:-/var/cache/tweed/guest}"
modules_wanted="${GUEST_MODULES:-virtio_pci virtio_net}"

log() { echo "build-guest-image: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ -f "$init" ] || die "missing $init"
is_root() { [ "$(id -u)" = 0 ]; }

# --- tools ---------------------------------------------------------------------
apt_updated=no
apt_update() {
  [ "$apt_updated" = no ] || return 0
  is_root || die "apt-get update needs root"
  log "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || die "apt-get update failed"
  apt_updated=yes
}
need_packages=(busybox-static tcpdump cpio gzip xz-utils zstd qemu-system-x86)
missing=()
for p in "${need_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  is_root || die "missing packages ${missing[*]}; run as root (or scripts/install-deps.sh)"
  apt_update
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
fi

# --- which kernel, and the cache key ------------------------------------------------
kver="" kpkgver=""
resolve_kernel() {
  kver="${GUEST_KERNEL_VERSION:-}"
  if [ -z "$kver" ]; then
    kver="$(apt-cache depends "linux-image-$flavor" 2>/dev/null \
      | sed -n "s/^ *Depends: linux-image-\(.*-$flavor\)\$/\1/p" | head -n1)"
  fi
  kpkgver=""
  [ -n "$kver" ] || return 1
  kpkgver="$(apt-cache policy "linux-image-$kver" 2>/dev/null | sed -n 's/^ *Candidate: //p')"
  [ -n "$kpkgver" ] && [ "$kpkgver" != "(none)" ]
}
# Before the first `apt-get update` apt knows no package at all.
resolve_kernel || { apt_update; resolve_kernel; } \
  || die "apt knows no ${GUEST_KERNEL_VERSION:-linux-image-$flavor} kernel; is Debian's mirror configured?"

key=""
compute_key() {
  key="$({
    sha256sum <"$self"
    sha256sum <"$init"
    echo "kernel $kver $kpkgver"
    echo "busybox $(dpkg-query -W -f='${Version}' busybox-static)"
    echo "tcpdump $(dpkg-query -W -f='${Version}' tcpdump)"
    echo "modules $modules_wanted"
    echo "flavor $flavor"
  } | sha256sum | cut -c1-16)"
}
compute_key
is_built() { [ -s "$cache/$key/vmlinuz" ] && [ -s "$cache/$key/initramfs.cpio.gz" ]; }

# A key directory appears only complete (renamed into place), so a hit needs
# no lock.
if is_built; then
  log "cached: kernel $kver ($kpkgver), key $key"
  echo "$cache/$key"
  exit 0
fi

is_root || die "the image must be built, which needs root (apt-get, device nodes in the initramfs)"
mkdir -p "$cache/debs/$flavor"
# Several test processes may ask at once: one builds, the others wait and
# then find it built.
exec 9>"$cache/.lock"
flock 9
if is_built; then
  echo "$cache/$key"
  exit 0
fi
started=$(date +%s.%N)

stage="$(mktemp -d "$cache/.stage.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

# --- kernel --------------------------------------------------------------------
# The package is kept under debs/ (not its 120 MB unpacked tree), so that
# editing guest/init rebuilds without a download.
deb_path() { echo "$cache/debs/$flavor/linux-image-${kver}_${kpkgver//:/%3a}_amd64.deb"; }
download_kernel() {
  local dl="$stage/download"
  rm -rf "$dl" && mkdir -p "$dl"
  # As root into a directory _apt cannot write to, apt-get download warns
  # unless told to skip its sandbox user.
  (cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "linux-image-$kver=$kpkgver" >&2) || return 1
  mv "$dl"/linux-image-"$kver"_*.deb "$(deb_path).tmp"
  mv "$(deb_path).tmp" "$(deb_path)"
}
if [ ! -s "$(deb_path)" ]; then
  log "downloading linux-image-$kver ($kpkgver)"
  if ! download_kernel; then
    # Stale package lists name a version the mirror no longer has: update,
    # then the kernel (and so the key) may be a newer one.
    apt_update
    resolve_kernel || die "apt knows no linux-image-$kver after apt-get update"
    compute_key
    [ -s "$(deb_path)" ] || download_kernel || die "apt-get download linux-image-$kver=$kpkgver failed"
  fi
fi
kdir="$stage/kernel"
dpkg-deb -x "$(deb_path)" "$kdir" || die "cannot unpack $(deb_path)"
vmlinuz="$kdir/boot/vmlinuz-$kver"
moddir="$kdir/lib/modules/$kver"
[ -f "$vmlinuz" ] || die "no boot/vmlinuz-$kver in the package"
[ -d "$moddir" ] || die "no lib/modules/$kver in the package"

# --- modules, in dependency order ----------------------------------------------------
# depmod never ran on the unpacked tree, so read each module's own
# `depends=` from its .modinfo section (NUL-separated strings).
declare -A modfile=()
while IFS= read -r f; do
  name="$(basename "$f")"
  name="${name%%.ko*}"
  modfile[${name//-/_}]="$f"
done < <(find "$moddir/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')

is_builtin() {
  [ -f "$moddir/modules.builtin" ] && grep -Eq "/${1//_/[-_]}\.ko$" "$moddir/modules.builtin"
}

tree="$stage/tree"
mkdir -p "$tree/lib/modules"

# Uncompressed copy: busybox insmod cannot read .ko.xz or .ko.zst (Debian 12
# ships plain .ko; later releases compress them).
plain_module() {
  case "$1" in
    *.ko.xz) xz -dc "$1" >"$2" ;;
    *.ko.zst) zstd -qdc "$1" >"$2" ;;
    *.ko.gz) gzip -dc "$1" >"$2" ;;
    *.ko) cp "$1" "$2" ;;
  esac
}

declare -A visited=()
load_order=()
add_module() {
  local m="${1//-/_}"
  [ -n "${visited[$m]:-}" ] && return 0
  visited[$m]=1
  if [ -z "${modfile[$m]:-}" ]; then
    is_builtin "$m" && { log "module $m is built into the kernel"; return 0; }
    die "module $m is neither a module of nor built into kernel $kver"
  fi
  local ko="$tree/lib/modules/$m.ko" deps d
  plain_module "${modfile[$m]}" "$ko" || die "cannot decompress ${modfile[$m]}"
  deps="$(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p' | head -n1)"
  for d in ${deps//,/ }; do
    add_module "$d"
  done
  load_order+=("$m")
}
for m in $modules_wanted; do
  add_module "$m"
done
printf '%s\n' "${load_order[@]}" >"$tree/lib/modules/load-order"
log "kernel $kver ($kpkgver), modules in load order: ${load_order[*]}"

# --- initramfs -------------------------------------------------------------------
busybox="$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -n1)"
[ -x "$busybox" ] || die "busybox-static is installed but its binary was not found"
mkdir -p "$tree"/{bin,sbin,dev,proc,sys,tmp,run,etc,www,root,var/run}
cp "$busybox" "$tree/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$tree/bin/$applet"
done
install -m 0755 "$init" "$tree/init"
echo "$kver $kpkgver" >"$tree/etc/tweed-guest-kernel"
# The kernel opens /dev/console before it runs /init; without the node,
# init's first messages (before it mounts devtmpfs) would go nowhere.
mknod -m 600 "$tree/dev/console" c 5 1
mknod -m 666 "$tree/dev/null" c 1 3
echo 'root:x:0:0:root:/root:/bin/sh' >"$tree/etc/passwd"
echo 'root:x:0:' >"$tree/etc/group"
# Debian's tcpdump with the shared libraries it loads (and the loader), so
# the guest can capture what reaches it (`tweed.capture=`).
tcpdump_bin=/usr/bin/tcpdump
[ -x "$tcpdump_bin" ] || die "tcpdump is installed but /usr/bin/tcpdump was not found"
install -D -m 0755 "$tcpdump_bin" "$tree/usr/bin/tcpdump"
for lib in $(ldd "$tcpdump_bin" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'); do
  install -D -m 0755 "$lib" "$tree$lib"
done

out="$stage/out"
mkdir -p "$out"
(cd "$tree" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) \
  | gzip -9n >"$out/initramfs.cpio.gz"
cp "$vmlinuz" "$out/vmlinuz"
cat >"$out/info" <<EOF
kernel=$kver
kernel_package=$kpkgver
busybox=$(dpkg-query -W -f='${Version}' busybox-static)
tcpdump=$(dpkg-query -W -f='${Version}' tcpdump)
modules=${load_order[*]}
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
rm -rf "${cache:?}/$key"
mv "$out" "$cache/$key"

# Keep the four newest images (other checkouts, and the other kind of
# image, may still use older keys) and only this flavour's kernel package
# just used.
find "$cache" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{16}' -printf '%T@ %p\n' \
  | sort -rn | tail -n +5 | cut -d' ' -f2- | xargs -r rm -rf
find "$cache/debs/$flavor" -name '*.deb' ! -path "$(deb_path)" -delete

log "built in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s:" \
  "vmlinuz $(stat -c %s "$cache/$key/vmlinuz") bytes," \
  "initramfs.cpio.gz $(stat -c %s "$cache/$key/initramfs.cpio.gz") bytes"
echo "$cache/$key"
