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
# One line per step: what is being done, then how long it took.
step_started=$SECONDS
step() {
  step_started=$SECONDS
  echo "demo: $*"
}
done_step() {
  echo "demo:   done in $((SECONDS - step_started))s"
}
step "Debian packages the lab needs (scripts/install-deps.sh run)"
scripts/install-deps.sh run
done_step
step "building tweed, tweedd and tweedctl (cargo build --release; a first build takes minutes)"
cargo build --release -p tweed-plugin -p tweedd -p tweedctl
done_step
bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release"   # see .cargo/config.toml
"$bin/tweedctl" lab down --name tweed >/dev/null
step "the lab (tweedctl lab up --name tweed --nodes 3 $*; each step below with its time)"
exec "$bin/tweedctl" lab up --name tweed --nodes 3 "$@"
