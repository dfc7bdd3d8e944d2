#!/usr/bin/env bash
# tweed's main job on one machine: builds tweed and runs the single-node
# demo (two pods on a tweed network, connected and checked). Needs root and
# only the Rust toolchain. Extra arguments go to `tweedctl demo` (--keep).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: creates network namespaces; run as root" >&2
  exit 1
fi
cargo build --release -q -p tweed-plugin -p tweedctl
exec target/release/tweedctl demo "$@"
