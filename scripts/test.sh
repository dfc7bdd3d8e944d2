#!/usr/bin/env bash
# The whole test suite: unit, kernel, integration and runtime (podman) tests.
# Run as root on Debian 12; installs the system packages it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the tests create network namespaces and must run as root" >&2
  exit 1
fi

scripts/install-deps.sh

export RUST_BACKTRACE=1
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads "${TWEED_TEST_THREADS:-4}"
