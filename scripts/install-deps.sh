#!/usr/bin/env bash
# Installs the Debian packages tweed needs. Safe to run repeatedly; needs
# root (CI runs it as root on a fresh Debian machine).
#
#   install-deps.sh        everything: build, lab, tests and benchmarks
#   install-deps.sh run    only what building tweed and running the lab need
set -euo pipefail

run_packages=(
  protobuf-compiler             # protoc: the etcd-client crate compiles etcd's .proto files
  libprotobuf-dev               # google/protobuf/*.proto that etcd's .proto files import (only a Recommends of protobuf-compiler)
  nftables                      # tweedd's masquerade rules go through nft
  iproute2                      # ip/tc/bridge to look at what tweed programmed
  etcd-server etcd-client       # the lab's etcd store, and etcdctl to inspect it
  iputils-ping                  # ping between pods: the demo's suggested next command
)
test_packages=(
  iptables                      # the reference portmap 1.1.1 programs iptables (nft backend); tests read iptables-save
  podman runc conmon            # a real CNI runtime
  containernetworking-plugins   # reference bridge/host-local/portmap/bandwidth/tuning
  busybox-static                # rootfs for podman test images
  iperf3 tcpdump                # throughput figures and packet captures
  procps psmisc                 # ps / fuser for diagnostics
  openssl                       # throwaway CA and certificates for the etcd TLS tests
  qemu-system-x86               # the real VM guest (TCG) of the guest tests, and the VM runner (docs/vm-runner.md)
  cpio xz-utils zstd            # scripts/build-guest-image.sh: the guest's initramfs and kernel modules
  dnsmasq                       # DNS (and later DHCP) servers inside test namespaces
  buildah umoci                 # scripts/build-image.sh and its test (OCI image without a daemon)
  graphviz                      # dot: scripts/render-docs.sh draws docs/architecture.svg from docs/architecture.dot
  wireguard-tools               # wg: the wireguard backend's tests read devices and peers back with it
  python3                       # scripts/fuzz-coverage.py: what of tweed's code a fuzz corpus runs (scripts/fuzz.sh coverage, gaps)
)

packages=("${run_packages[@]}")
if [ "${1:-all}" != "run" ]; then
  packages+=("${test_packages[@]}")
fi

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
