# Kubernetes' own end-to-end tests against the cluster (sourced by
# scripts/e2e.sh): the test images e2e.test asks for, built here under the
# names it expects and imported into every node, so no registry is asked.
#
#   registry.k8s.io/e2e-test-images/agnhost:<v>   agnhost from the pinned
#       k8s.io/kubernetes module (test/images/agnhost), with what its own
#       Alpine-based image carries and the tests call: sh, the usual
#       applets (busybox), dig, curl, OpenBSD nc, iperf, bash, ip, getent,
#       a CoreDNS at /coredns, porter's certificate, the users it defines
#   registry.k8s.io/e2e-test-images/jessie-dnsutils:<v>
#                                                 busybox, dig, getent, bash
#   registry.k8s.io/e2e-test-images/busybox:<v>   busybox-static
#   registry.k8s.io/pause:<v>                     pause.c from the module's
#                                                 build/pause, static
#
# Programs come from Debian with the shared libraries they load
# (copy_with_libs). Other images e2e.test lists are not built: the tests
# this project runs (docs/e2e.md) do not use them.

E2E_IMAGES="$STATE/images/e2e"
e2e_packages=(bind9-dnsutils curl netcat-openbsd iperf bash dash iproute2 libc-bin gcc libc6-dev)

# e2e_image_names E2E_TEST : the images E2E_TEST uses, one per line.
e2e_image_names() {
  "$1" --list-images 2>/dev/null | grep -v '^$'
}

# e2e_image_of NAMES REPO : the full names in NAMES of the image REPO
# (e.g. e2e-test-images/agnhost), one per tag, or fail.
e2e_image_of() {
  local names="$1" repo="$2"
  grep -E "^[^/]+/$repo:" <<<"$names" | sort || die "e2e.test --list-images names no $repo"
}

# tools_root ROOT PROGRAM... : busybox's applets, and Debian's PROGRAMs
# in /usr/bin ahead of them on PATH. /bin/sh is Debian's dash: busybox's
# own sh runs its applets before anything on PATH (so `nc` would be
# busybox's, which lacks the options the tests pass).
tools_root() {
  local root="$1"
  shift
  busybox_root "$root"
  copy_with_libs "$root" /usr/bin/dash "$@"
  ln -sf /usr/bin/dash "$root/bin/sh"
}

# agnhost_root ROOT AGNHOST : agnhost's image content in ROOT.
agnhost_root() {
  local root="$1" agnhost="$2" module
  tools_root "$root" /usr/bin/dig /usr/bin/curl /usr/bin/nc.openbsd /usr/bin/iperf \
    /usr/bin/bash /usr/bin/ip /usr/bin/getent
  mv "$root/usr/bin/nc.openbsd" "$root/usr/bin/nc"
  cp "$agnhost" "$root/agnhost"
  ln -s agnhost "$root/agnhost-2"
  cp "$COREDNS_BIN" "$root/coredns"
  module="$(go_module_dir "$REPO/cluster/kubernetes" k8s.io/kubernetes)"
  cp "$module/test/images/agnhost/porter/localhost.crt" "$module/test/images/agnhost/porter/localhost.key" "$root/"
  chmod 644 "$root/localhost.crt" "$root/localhost.key"
  mkdir -p "$root/uploads"
  echo 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh' >>"$root/etc/passwd"
  echo 'user-defined-in-image:x:1000:' >>"$root/etc/group"
  echo 'group-defined-in-image:x:50000:user-defined-in-image' >>"$root/etc/group"
}

# make_e2e_images E2E_BIN : the images into $E2E_IMAGES (docker archives),
# rebuilt when e2e.test, busybox or this file change.
make_e2e_images() {
  local bin="$1" names key stamp root module pause busybox
  names="$(e2e_image_names "$bin/e2e.test")"
  [ -n "$names" ] || die "e2e.test --list-images printed nothing"
  build_coredns
  key="$({ sha256sum "$bin/e2e.test" "$bin/agnhost" "$COREDNS_BIN" "$REPO/cluster/lib/e2e.sh" "$REPO/cluster/lib/images.sh";
    dpkg-query -W -f='${Version}\n' busybox-static bind9-dnsutils curl netcat-openbsd iperf bash iproute2; } | sha256sum | cut -c1-16)"
  stamp="$E2E_IMAGES/.key"
  [ "$(cat "$stamp" 2>/dev/null)" = "$key" ] && return 0
  log "building the e2e test images"
  # Built aside and moved in whole: a node starting meanwhile imports
  # whatever $E2E_IMAGES holds.
  local final="$E2E_IMAGES"
  E2E_IMAGES="$final.tmp"
  rm -rf "$E2E_IMAGES"
  mkdir -p "$E2E_IMAGES"

  root="$(mktemp -d)"
  agnhost_root "$root" "$bin/agnhost"
  commit_root "$root" "$(e2e_image_of "$names" e2e-test-images/agnhost)" "$E2E_IMAGES/agnhost.tar" '["/agnhost"]' '["pause"]'

  root="$(mktemp -d)"
  tools_root "$root" /usr/bin/dig /usr/bin/getent /usr/bin/bash
  cp "$COREDNS_BIN" "$root/coredns"
  commit_root "$root" "$(e2e_image_of "$names" e2e-test-images/jessie-dnsutils)" "$E2E_IMAGES/jessie-dnsutils.tar" ''

  # e2e.test names two busybox tags (tests moved between them).
  for busybox in $(e2e_image_of "$names" e2e-test-images/busybox); do
    root="$(mktemp -d)"
    busybox_root "$root"
    commit_root "$root" "$busybox" "$E2E_IMAGES/busybox-${busybox##*:}.tar" '' '["sh"]'
  done

  root="$(mktemp -d)"
  pause="$(e2e_image_of "$names" pause)"
  module="$(go_module_dir "$REPO/cluster/kubernetes" k8s.io/kubernetes)"
  gcc -Os -Wall -Werror -static -DVERSION="v${pause##*:}" \
    -o "$root/pause" "$module/build/pause/linux/pause.c"
  commit_root "$root" "$pause" "$E2E_IMAGES/pause.tar" '["/pause"]'

  echo "$key" >"$E2E_IMAGES/.key"
  rm -rf "$final"
  mv "$E2E_IMAGES" "$final"
  E2E_IMAGES="$final"
}

# node_ctr I ARGS... : ctr in node I's containerd (k8s.io namespace).
node_ctr() {
  local i="$1" unshare init
  shift
  unshare="$(tree_pid "node-$(node_name "$i")")" || die "node $(node_name "$i") is not running"
  init="$(awk '{print $1}' "/proc/$unshare/task/$unshare/children")"
  nsenter -t "$init" -n -m -u -p -- ctr --address /run/containerd/containerd.sock -n k8s.io "$@"
}

# import_e2e_images : every image in $E2E_IMAGES into every running node.
import_e2e_images() {
  local i tar
  for ((i = 1; i <= $(node_count); i++)); do
    tree_pid "node-$(node_name "$i")" >/dev/null || continue
    for tar in "$E2E_IMAGES"/*.tar; do
      node_ctr "$i" images import --no-unpack "$tar" >/dev/null
    done
  done
}
