#!/usr/bin/env bash
# tweed's main job on one machine: builds tweed, brings up a 3-node lab
# (node namespaces on an emulated underlay, a real tweedd in each, pods
# attached by the real plugin, the embedded file store) and prints the
# pod-to-pod reachability matrix. The lab stays up to explore; remove it
# with `target/x86_64-unknown-linux-gnu/release/tweedctl lab down`.
#
# Extra arguments go to `tweedctl lab up` (e.g. --nodes 5 --backend srv6
# --store etcd). Needs root; installs the few Debian packages it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: the lab creates network namespaces; run as root" >&2
  exit 1
fi
scripts/install-deps.sh run
cargo build --release -q -p tweed-plugin -p tweedd -p tweedctl
bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release"   # see .cargo/config.toml
"$bin/tweedctl" lab down --name tweed >/dev/null
exec "$bin/tweedctl" lab up --name tweed --nodes 3 "$@"
