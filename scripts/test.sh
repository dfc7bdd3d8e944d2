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

# The fuzz corpora are replayed above by crates/fuzz-targets' replay test.
# A libFuzzer run on top (cargo-fuzz install and an instrumented build of
# the agent's dependency tree) takes longer than CI's budget leaves, so it
# runs when asked: TWEED_FUZZ_SECONDS=20 scripts/test.sh (see
# docs/reliability.md, "Fuzzing").
if [ -n "${TWEED_FUZZ_SECONDS:-}" ]; then
  scripts/fuzz.sh check "$TWEED_FUZZ_SECONDS"
fi
