#!/usr/bin/env bash
# A real Kubernetes cluster on this machine, for tweed to be installed on the
# way users install it (kubectl apply -f deploy/tweed.yaml).
#
#   scripts/cluster.sh up [--nodes N]   build what is missing, start (idempotent)
#                  [--no-pod-cidrs]     controller-manager without --allocate-node-cidrs
#   scripts/cluster.sh down [--purge]   stop everything, remove its namespaces;
#                                       --purge also drops certificates and images
#   scripts/cluster.sh env              export lines: KUBECONFIG, PATH with kubectl
#   scripts/cluster.sh status           what runs, the nodes
#   scripts/cluster.sh stop-node I      switch node I off (its processes end)
#   scripts/cluster.sh stop-apiserver   an API server outage (`up` ends it)
#   scripts/cluster.sh join-node I [--label K=V]...
#                                       a fresh machine joins as node I (any I
#                                       above the cluster's own nodes works too);
#                                       the labels are kubelet's --node-labels
#   scripts/cluster.sh remove-node I    node I gone for good: stopped, its Node
#                                       object deleted, its disk and network
#                                       namespace wiped
#
# What runs where (docs/cluster.md): etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler in the network namespace
# tkc-cp; per node a network namespace tkc-n<i> and, inside it, one process
# tree with its own PID, mount and UTS namespaces running containerd (Debian),
# kubelet and kube-proxy; all joined by a bridge in tkc-underlay
# (198.18.1.0/24). Kubernetes is built from its Go modules
# (cluster/kubernetes, scripts/build-kubernetes.sh), CoreDNS likewise
# (cluster/coredns); images are built here and imported into every node.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=cluster/lib/common.sh
source "$REPO/cluster/lib/common.sh"
source "$REPO/cluster/lib/pki.sh"
source "$REPO/cluster/lib/network.sh"
source "$REPO/cluster/lib/control_plane.sh"
source "$REPO/cluster/lib/images.sh"
source "$REPO/cluster/lib/flannel.sh"
source "$REPO/cluster/lib/urunc.sh"
GO_CACHE="${TWEED_CACHE:-/var/cache/tweed}/go"

[ "$(id -u)" = 0 ] || die "the cluster makes namespaces and mounts: run as root"

packages=(containerd runc etcd-server etcd-client openssl buildah busybox-static iproute2 nftables iptables util-linux jq curl qemu-system-x86)

start_node() {
  local i="$1" name
  name="$(node_name "$i")"
  tree_pid "node-$name" >/dev/null && return 0
  log "starting node $name ($(node_ip "$i"))"
  mkdir -p "$(node_dir "$i")"
  setsid nsenter --net="/run/netns/$(node_ns "$i")" -- \
    unshare --pid --mount --uts --fork --kill-child --mount-proc --propagation private -- \
    "$REPO/cluster/node-init.sh" "$i" </dev/null >>"$STATE/logs/$name-init.log" 2>&1 &
  echo $! >"$RUN/node-$name.pid"
}

cmd_up() {
  local nodes=3 i pod_cidrs=yes
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes="$2"; shift 2 ;;
      --no-pod-cidrs) pod_cidrs=no; shift ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  [ "$nodes" -ge 1 ] && [ "$nodes" -le 50 ] || die "--nodes must be 1..50"
  local have
  have="$(node_count)"
  if [ "$have" -gt 0 ] && [ "$have" != "$nodes" ] && tree_pid cp-apiserver >/dev/null; then
    die "a cluster of $have nodes is up; scripts/cluster.sh down first"
  fi
  mkdir -p "$STATE/logs" "$RUN" "$STATE/bin"
  install_packages "${packages[@]}"
  KUBE_BIN="$("$REPO/scripts/build-kubernetes.sh")"
  echo "$KUBE_BIN" >"$STATE/kube-bin"
  log "building tweed (release) for its image"
  (cd "$REPO" && cargo build --release -q -p tweed-plugin -p tweedd -p tweedctl) >&2
  TWEED_BINS="${CARGO_TARGET_DIR:-$REPO/target}/x86_64-unknown-linux-gnu/release"
  make_images
  build_urunc
  install_urunc_vmm
  urunc_guest_image
  make_pki "$nodes"
  echo "$nodes" >"$STATE/nodes.count"
  make_network "$nodes"
  start_etcd
  start_apiserver
  start_controllers "$pod_cidrs"
  sed -e "s/@DNS_SVC_IP@/$DNS_SVC_IP/" -e "s/@CLUSTER_DOMAIN@/$CLUSTER_DOMAIN/" \
    -e "s|@COREDNS_IMAGE@|localhost/coredns:$COREDNS_VERSION|" "$REPO/cluster/addons/coredns.yaml" \
    | kc apply -f - >/dev/null
  kc apply -f "$REPO/cluster/addons/urunc.yaml" >/dev/null
  for ((i = 1; i <= nodes; i++)); do
    start_node "$i"
  done
  for ((i = 1; i <= nodes; i++)); do
    wait_for "node $(node_name "$i") to register" 180 kc get node "$(node_name "$i")"
  done
  if [ "$pod_cidrs" = yes ]; then
    for ((i = 1; i <= nodes; i++)); do
      route_pod_cidr "$i" 60
    done
  fi
  write_kubectl
  log "up: $nodes nodes; they are NotReady until a CNI is installed:"
  log "  eval \"\$(scripts/cluster.sh env)\"; kubectl apply -f deploy/tweed.yaml"
}

# A kubectl on PATH that runs inside the control plane's namespace, where
# the API server listens.
write_kubectl() {
  cat >"$STATE/bin/kubectl" <<SH
#!/bin/sh
exec ip netns exec $CP_NS "$KUBE_BIN/kubectl" "\$@"
SH
  chmod +x "$STATE/bin/kubectl"
}

# --kill-child: the node's init, and with it every process of the node,
# goes when its unshare does.
stop_tree() { stop_pid "$1"; }

# Removes a node's cgroups, deepest first, once its processes are gone.
remove_cgroups() {
  local name="$1" h
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h/$name" ] || continue
    find "$h/$name" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

cmd_down() {
  local purge=no i name
  [ "${1:-}" = "--purge" ] && purge=yes
  for f in "$RUN"/node-*.pid; do
    [ -e "$f" ] || continue
    name="$(basename "$f" .pid)"
    log "stopping ${name#node-}"
    stop_tree "$name"
    remove_cgroups "${name#node-}"
  done
  for name in cp-scheduler cp-controller-manager cp-apiserver cp-etcd; do
    stop_pid "$name"
  done
  remove_network
  rm -rf "$STATE/nodes" "$STATE/etcd" "$STATE/logs" "$STATE/nodes.count"
  if [ "$purge" = yes ]; then
    rm -rf "$STATE"
  fi
  log "down"
}

# A node switched off: its process tree (kubelet, containerd, kube-proxy and
# every container) ends; its network namespace stays as a dead machine's
# cables would. `up` starts it again.
cmd_stop_node() {
  local i="${1:-}" name
  [[ "$i" =~ ^[0-9]+$ ]] && [ "$i" -ge 1 ] || die "stop-node: give the node's number (1 for $(node_name 1))"
  name="$(node_name "$i")"
  tree_pid "node-$name" >/dev/null || die "stop-node: $name is not running"
  log "stopping $name"
  stop_tree "node-$name"
  remove_cgroups "$name"
}

# The API server stopped (an outage); `up` starts it again.
cmd_stop_apiserver() {
  tree_pid cp-apiserver >/dev/null || die "stop-apiserver: the API server is not running"
  log "stopping kube-apiserver"
  stop_pid cp-apiserver
}

cmd_env() {
  [ -f "$STATE/kube-bin" ] || die "no cluster has been built: scripts/cluster.sh up"
  echo "export KUBECONFIG=$STATE/pki/admin.kubeconfig"
  echo "export PATH=$STATE/bin:\$PATH"
}

cmd_status() {
  local name
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    name="$(basename "$f" .pid)"
    if tree_pid "$name" >/dev/null; then echo "running  $name (pid $(cat "$f"))"; else echo "DEAD     $name"; fi
  done
  if tree_pid cp-apiserver >/dev/null; then
    KUBE_BIN="$(cat "$STATE/kube-bin")"
    kc get nodes -o wide
  fi
}

# A fresh machine joining the running cluster as node I: its certificate,
# its cable to the underlay, then node-init with kubelet's --node-labels.
# Returns once the Node object exists.
cmd_join_node() {
  local i="${1:-}" labels="" name
  [[ "$i" =~ ^[0-9]+$ ]] && [ "$i" -ge 1 ] && [ "$i" -le 50 ] || die "join-node: give the node's number (1..50)"
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --label) labels="${labels:+$labels,}$2"; shift 2 ;;
      *) die "join-node: unknown argument $1" ;;
    esac
  done
  tree_pid cp-apiserver >/dev/null || die "join-node: the cluster is not up"
  KUBE_BIN="$(cat "$STATE/kube-bin")"
  name="$(node_name "$i")"
  tree_pid "node-$name" >/dev/null && die "join-node: $name is running"
  make_node_pki "$i"
  attach "$(node_ns "$i")" "u-n$i" "$(node_ip "$i")"
  ip netns exec "$(node_ns "$i")" sysctl -qw net.ipv4.ip_forward=1
  TWEED_NODE_LABELS="$labels" start_node "$i"
  wait_for "node $name to register" 180 kc get node "$name"
  route_pod_cidr "$i" 10
}

# Node I removed for good, as when a machine is retired: its processes end,
# its Node object is deleted (the network's agents on the other nodes drop
# its routes), its disk and its network namespace are wiped, so a later
# join-node I is a fresh machine.
cmd_remove_node() {
  local i="${1:-}" name
  [[ "$i" =~ ^[0-9]+$ ]] && [ "$i" -ge 1 ] || die "remove-node: give the node's number"
  tree_pid cp-apiserver >/dev/null || die "remove-node: the cluster is not up"
  KUBE_BIN="$(cat "$STATE/kube-bin")"
  name="$(node_name "$i")"
  if tree_pid "node-$name" >/dev/null; then
    log "stopping $name"
    stop_tree "node-$name"
  fi
  rm -f "$RUN/node-$name.pid"
  remove_cgroups "$name"
  unroute_pod_cidr "$i"
  kc delete node "$name" --ignore-not-found --wait=true >/dev/null
  rm -rf "$(node_dir "$i")"
  ! ns_exists "$(node_ns "$i")" || ip netns del "$(node_ns "$i")"
  log "removed $name"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  env) cmd_env ;;
  status) cmd_status ;;
  stop-node) shift; cmd_stop_node "$@" ;;
  stop-apiserver) cmd_stop_apiserver ;;
  join-node) shift; cmd_join_node "$@" ;;
  remove-node) shift; cmd_remove_node "$@" ;;
  *) echo "usage: scripts/cluster.sh up [--nodes N] [--no-pod-cidrs] | down [--purge] | env | status | stop-node I | stop-apiserver | join-node I [--label K=V]... | remove-node I" >&2; exit 2 ;;
esac
