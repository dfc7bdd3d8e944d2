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
# Then every libFuzzer target mutates its committed corpus for a few seconds,
# so a parser change that crashes on a near miss of a known input fails the
# suite (about 10 minutes with cargo-fuzz's install and build; see
# docs/reliability.md, "Fuzzing"). TWEED_FUZZ_SECONDS sets the seconds per
# target; 0 skips it.
fuzz_seconds=${TWEED_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" != 0 ]; then
  scripts/fuzz.sh check "$fuzz_seconds"
fi
