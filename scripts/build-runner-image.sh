#!/usr/bin/env bash
# Builds (once, then caches) the VM runner's image: Debian's generic amd64
# kernel, which has what some host kernels lack (seg6, geneve, wireguard,
# vrf, dummy) and 9p to reach the host's files, with guest/runner-init as
# /init and the modules tweed's data plane and tests load.
#
#   build-runner-image.sh
#
# Prints the image directory (vmlinuz, initramfs.cpio.gz) on stdout, like
# scripts/build-guest-image.sh, which does the work (same cache, same
# environment variables). The runner itself is crates/testkit/src/vm.rs;
# docs/vm-runner.md says how tests use it.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

modules=(
  virtio_pci 9pnet_virtio 9p              # the host's files over virtio 9p
  virtio_net                              # a lab VM node's NIC on the underlay
  veth bridge vxlan geneve wireguard dummy macvlan macvtap tun
  sch_ingress cls_u32 cls_bpf act_mirred  # guests' tc redirect, segment VLAN programs
  crc32c_generic                          # libcrc32c (nf_conntrack) needs a crc32c, only a soft dependency
  nf_tables nft_chain_nat nft_nat nft_masq nft_ct nf_conntrack  # masquerade, port forwards
  br_netfilter sctp                       # NetworkPolicy on bridged pods, SCTP ports
)

export GUEST_KERNEL_FLAVOR=amd64
export GUEST_INIT="$repo/guest/runner-init"
export GUEST_MODULES="${modules[*]}"
exec "$repo/scripts/build-guest-image.sh"
