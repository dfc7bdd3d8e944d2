#!/usr/bin/env bash
# Installs every system package tweed's tests, demo and benchmarks use.
# Safe to run repeatedly; needs root (CI runs as root on a fresh Debian machine).
set -euo pipefail

packages=(
  iproute2                      # ip/tc/bridge: tests read kernel state back with them
  iputils-ping                  # ping between pods
  nftables                      # inspect masquerade rules
  iptables                      # the reference portmap 1.1.1 programs iptables (nft backend); tests read iptables-save
  podman runc conmon            # a real CNI runtime
  containernetworking-plugins   # reference bridge/host-local/portmap/bandwidth/tuning
  busybox-static                # rootfs for podman test images
  iperf3 tcpdump                # throughput figures and packet captures
  procps psmisc                 # ps / fuser for diagnostics
  protobuf-compiler             # protoc: the etcd-client crate compiles etcd's .proto files
  etcd-server etcd-client       # etcd (a real lease store peer) and etcdctl to inspect it
  openssl                       # throwaway CA and certificates for the etcd TLS tests
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
