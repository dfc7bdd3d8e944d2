# Shared settings and helpers of scripts/cluster.sh (sourced, not run).
#
# Addresses: everything lives in network namespaces this script makes. The
# underlay is 198.18.1.0/24 (the lab uses 198.18.0.0/24, so both can run),
# Service virtual IPs come from 198.19.0.0/16 (also inside the test range
# 198.18.0.0/15, so not even a stray packet to a Service address is aimed
# outside), pods from 10.244.0.0/16.

CLUSTER_NAME=tweed
STATE="${TWEED_CLUSTER_STATE:-/var/lib/tweed-cluster}"   # certs, configs, node trees, logs
RUN="${TWEED_CLUSTER_RUN:-/run/tweed-cluster}"           # pids
UNDERLAY_NS=tkc-underlay
CP_NS=tkc-cp
UNDERLAY_PREFIX=198.18.1
CP_IP=198.18.1.1
GATEWAY_IP=198.18.1.254
SERVICE_CIDR=198.19.0.0/16
KUBERNETES_SVC_IP=198.19.0.1
DNS_SVC_IP=198.19.0.10
CLUSTER_CIDR=10.244.0.0/16
CLUSTER_DOMAIN=cluster.local
API_PORT=6443
ETCD_PORT=2379

log() { echo "cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

# install_packages PKG... : the Debian packages not yet installed.
install_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
}

node_name() { echo "tweed-n$1"; }
node_ns() { echo "tkc-n$1"; }
node_ip() { echo "$UNDERLAY_PREFIX.$((10 + $1))"; }
node_dir() { echo "$STATE/nodes/$(node_name "$1")"; }
node_count() { cat "$STATE/nodes.count" 2>/dev/null || echo 0; }

# A process tree started by start_tree is one PID namespace: its init's pid
# (in our namespace) is in $RUN/<name>.pid; killing that init ends every
# process of the tree, containers included.
tree_pid() {
  local f="$RUN/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

# Waits up to $2 seconds for the command "$3..." to succeed, saying what.
wait_for() {
  local what="$1" secs="$2" i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "timed out after ${secs}s waiting for $what"
}

# kubectl as the cluster admin, from inside the control plane's namespace
# (the API server listens only there).
kc() {
  ip netns exec "$CP_NS" "$KUBE_BIN/kubectl" --kubeconfig "$STATE/pki/admin.kubeconfig" "$@"
}
