#!/usr/bin/env bash
# PID 1 of one cluster node (started by scripts/cluster.sh inside the node's
# network namespace with `unshare --pid --mount --uts --fork --kill-child`):
# gives the node its own hostname, /run and the directories a kubeadm node
# keeps per machine (/etc/cni/net.d, /opt/cni/bin, /var/lib/kubelet,
# /var/lib/containerd, ...), bind-mounted from $STATE/nodes/<name>/root;
# then runs containerd, imports the cluster's images, and runs kubelet and
# kube-proxy. When this process dies, the kernel ends every process of the
# node, containers included.
#
#   node-init.sh INDEX
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=cluster/lib/common.sh
source "$here/lib/common.sh"
i="$1"
name="$(node_name "$i")"
dir="$(node_dir "$i")"
ip="$(node_ip "$i")"
KUBE_BIN="$(cat "$STATE/kube-bin")"
URUNC_BIN="$(cat "$STATE/urunc-bin")"
# shellcheck source=cluster/lib/urunc.sh
source "$here/lib/urunc.sh"
PKI="$STATE/pki"
say() { echo "node-init $name: $*"; }

hostname "$name"
# Per-node directories. The mount points are made on the host (empty
# directories) if missing; what is mounted there is only this node's.
for d in etc/cni/net.d opt/cni/bin etc/containerd etc/kubernetes etc/tweed \
  var/lib/kubelet var/lib/containerd var/lib/cni var/lib/tweed var/lib/kube-proxy \
  var/log/pods var/log/containers var/log/tweed; do
  mkdir -p "$dir/root/$d" "/$d"
  mount --bind "$dir/root/$d" "/$d"
done
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/netns /run/containerd
# kubelet wants mount propagation for its volumes; the node's own peer group.
mount --make-rshared /

# The reference plugins a kubeadm node has (kubernetes-cni), from Debian.
for p in loopback portmap host-local bridge bandwidth tuning; do
  [ -x "/usr/lib/cni/$p" ] && cp -f "/usr/lib/cni/$p" /opt/cni/bin/
done

# Every v1 hierarchy gets the node's cgroup root (kubelet's cgroupRoot); the
# pods' cgroups go below it.
for h in /sys/fs/cgroup/*/; do
  case "$h" in */unified/) continue ;; esac
  mkdir -p "$h/$name" 2>/dev/null || true
done

ctr oci spec | jq '.hooks = {
    "createRuntime": [{"path": "/opt/cni/bin/tweed", "args": ["tweed", "urunc-hook", "create-runtime"], "timeout": 30}],
    "poststart": [{"path": "/opt/cni/bin/tweed", "args": ["tweed", "urunc-hook", "poststart"], "timeout": 60}]}' \
  >/etc/containerd/urunc-spec.json
cat >/etc/containerd/config.toml <<TOML
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:tweed"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    # urunc (cluster/lib/urunc.sh, docs/urunc.md) as containerd runs any
    # other OCI runtime: the runc shim with BinaryName. urunc's own shim
    # (runtime_type io.containerd.urunc.v2) is the same runc shim under
    # another name, but this containerd passes BinaryName only to the runc
    # runtime types, so that shim would run plain runc.
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.urunc]
      runtime_type = "io.containerd.runc.v2"
      container_annotations = ["com.urunc.unikernel.*"]
      # tweed's guest annotations reach the hook through the spec.
      pod_annotations = ["com.urunc.unikernel.*", "tweed.io/*"]
      # containerd's default spec plus tweed's hooks, which give the guest
      # the pod's localhost (docs/urunc.md).
      base_runtime_spec = "/etc/containerd/urunc-spec.json"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.urunc.options]
        SystemdCgroup = false
        BinaryName = "$URUNC_BIN/urunc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$here/runc-wrapper.sh"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
# Prometheus metrics, for the benchmarks: among them containerd's own timing
# of every CNI ADD and DEL (network_plugin_operations_duration_seconds).
[metrics]
  address = "127.0.0.1:1338"
[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd/opt"
TOML
say "starting containerd"
# urunc finds `runc` and QEMU on PATH.
PATH="$URUNC_BIN:$URUNC_VMM_DIR/bin:$PATH" containerd --config /etc/containerd/config.toml >>"$STATE/logs/$name-containerd.log" 2>&1 &
for _ in $(seq 100); do
  ctr --address /run/containerd/containerd.sock version >/dev/null 2>&1 && break
  sleep 0.2
done
# The e2e test images too, once scripts/e2e.sh has built them, so a node
# restarted or joined during a run has them.
for image in "$STATE"/images/*.tar "$STATE"/images/e2e/*.tar; do
  [ -e "$image" ] || continue
  ctr --address /run/containerd/containerd.sock -n k8s.io images import --no-unpack "$image" >/dev/null \
    || say "importing $image failed"
done
say "images: $(ctr --address /run/containerd/containerd.sock -n k8s.io images ls -q | grep -c .)"

# Pods get the cluster's DNS only: the host's resolvers are not theirs.
: >/etc/kubernetes/resolv.conf
cat >/etc/kubernetes/kubelet.yaml <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
cgroupRoot: /$name
# These machines run cgroup v1; this release still supports it (see docs/cluster.md).
failCgroupV1: false
failSwapOn: false
clusterDNS: [$DNS_SVC_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: /etc/kubernetes/resolv.conf
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
serializeImagePulls: false
imageGCHighThresholdPercent: 100
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
YAML
say "starting kubelet"
"$KUBE_BIN/kubelet" --config /etc/kubernetes/kubelet.yaml \
  --kubeconfig "$PKI/kubelet-$name.kubeconfig" \
  --hostname-override "$name" --node-ip "$ip" --v 2 \
  ${TWEED_NODE_LABELS:+--node-labels "$TWEED_NODE_LABELS"} \
  >>"$STATE/logs/$name-kubelet.log" 2>&1 &

cat >/etc/kubernetes/kube-proxy.yaml <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $PKI/kube-proxy.kubeconfig}
mode: nftables
clusterCIDR: $CLUSTER_CIDR
hostnameOverride: $name
bindAddress: $ip
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Global knobs stay as the host has them.
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
say "starting kube-proxy"
"$KUBE_BIN/kube-proxy" --config /etc/kubernetes/kube-proxy.yaml \
  >>"$STATE/logs/$name-kube-proxy.log" 2>&1 &

# PID 1: reap whatever is orphaned here (containerd's shims) until killed.
trap 'say "stopping"; kill -TERM $(jobs -p) 2>/dev/null; exit 0' TERM INT
while :; do
  wait -n 2>/dev/null || sleep 1
done
