# The cluster's emulated underlay (sourced by scripts/cluster.sh): a bridge
# in its own namespace, the control plane's namespace and one per node, each
# joined to the bridge by a veth. The bridge's address is every namespace's
# default gateway and leads nowhere: nothing leaves these namespaces.

ns_exists() { [ -e "/run/netns/$1" ]; }

# attach NS IFACE-IN-UNDERLAY ADDRESS : a veth from NS (eth0) to the bridge.
attach() {
  local ns="$1" port="$2" addr="$3"
  ns_exists "$ns" || ip netns add "$ns"
  if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
    ip -n "$UNDERLAY_NS" link add "$port" type veth peer name eth0 netns "$ns"
    ip -n "$UNDERLAY_NS" link set "$port" master br0 up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add default via "$GATEWAY_IP"
  fi
}

make_network() {
  local nodes="$1" i
  if ! ns_exists "$UNDERLAY_NS"; then
    log "making the underlay ($UNDERLAY_PREFIX.0/24 on a bridge in netns $UNDERLAY_NS)"
    ip netns add "$UNDERLAY_NS"
    ip -n "$UNDERLAY_NS" link set lo up
    ip -n "$UNDERLAY_NS" link add br0 type bridge
    ip -n "$UNDERLAY_NS" link set br0 up
    ip -n "$UNDERLAY_NS" addr add "$GATEWAY_IP/24" dev br0
  fi
  attach "$CP_NS" u-cp "$CP_IP"
  for ((i = 1; i <= nodes; i++)); do
    attach "$(node_ns "$i")" "u-n$i" "$(node_ip "$i")"
    ip netns exec "$(node_ns "$i")" sysctl -qw net.ipv4.ip_forward=1
  done
}

remove_network() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^(tkc-n[0-9]+|$CP_NS|$UNDERLAY_NS)$" || true); do
    ip netns del "$ns"
  done
}

# The control plane is not a node (no kubelet, so no pod network agent),
# yet the API server dials pods: its proxy subresource, Service proxying,
# webhooks and aggregated APIs. As for any control plane outside the pod
# network, the network routes each node's pod CIDR to that node (a cloud's
# VPC route table does the same); these are the control plane's routes.
# route_pod_cidr I [SECS] : the route to node I's pods, once the
# controller-manager has handed it a pod CIDR (waiting up to SECS).
route_pod_cidr() {
  local i="$1" secs="${2:-0}" cidr n
  for ((n = 0; ; n++)); do
    cidr="$(kc get node "$(node_name "$i")" -o jsonpath='{.spec.podCIDR}' 2>/dev/null || true)"
    [ -n "$cidr" ] || [ "$n" -ge $((secs * 5)) ] && break
    sleep 0.2
  done
  [ -z "$cidr" ] || ip -n "$CP_NS" route replace "$cidr" via "$(node_ip "$i")"
}

# unroute_pod_cidr I : the control plane's route to node I's pods removed.
unroute_pod_cidr() {
  local cidr
  cidr="$(kc get node "$(node_name "$1")" -o jsonpath='{.spec.podCIDR}' 2>/dev/null || true)"
  [ -z "$cidr" ] || ip -n "$CP_NS" route del "$cidr" 2>/dev/null || true
}
