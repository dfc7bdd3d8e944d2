#!/usr/bin/env bash
# libFuzzer runs of tweed's parsers (cargo-fuzz, on the stable toolchain).
#
#   scripts/fuzz.sh run <target|all> <seconds>  fuzz, adding what is new to
#                                               fuzz/corpus/<target>/
#   scripts/fuzz.sh check <seconds>             every target for <seconds>
#                                               from the committed corpus,
#                                               which is left unchanged
#                                               (an unoptimized build: half
#                                               the build time, for a short
#                                               regression run)
#   scripts/fuzz.sh cmin <target|all>           minimize the committed corpus
#   scripts/fuzz.sh coverage <target|all> [dir] which lines of tweed's own
#                                               code the corpus reaches
#                                               (dir/<target>, by default
#                                               fuzz/corpus/<target>)
#   scripts/fuzz.sh gaps <target|all> [dir]     the code the corpus never
#                                               runs inside tweed functions
#                                               it does run
#   scripts/fuzz.sh list                        the targets
#
# fuzz/dict/<target>.dict, where it exists, gives libFuzzer the target's
# keywords (field names, enum values): without them it spends its time in
# the syntax of JSON and YAML and seldom spells a key it has not seen.
#
# The target bodies are crates/fuzz-targets; its replay test runs every
# committed corpus in the ordinary `cargo test` without libFuzzer.
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
TARGET_DIR=${TWEED_FUZZ_TARGET_DIR:-/var/cache/tweed/fuzz-target}
# Stable Rust has no -Zsanitizer: libFuzzer's coverage instrumentation
# (sancov) works without one, and every target's invariants are asserts.
FUZZ_FLAGS=(--fuzz-dir fuzz --sanitizer none --target-dir "$TARGET_DIR")

usage() {
  sed -n '2,27p' "$0" >&2
  exit 2
}

ensure_cargo_fuzz() {
  if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
  fi
}

targets() {
  cargo fuzz list --fuzz-dir fuzz
}

# fuzz_one TARGET SECONDS CORPUS...: new inputs go to the first corpus dir.
# BUILD_FLAGS picks the build (release by default; --dev for check).
BUILD_FLAGS=()
fuzz_one() {
  local target=$1 seconds=$2
  shift 2
  local dict=()
  [ -f "fuzz/dict/$target.dict" ] && dict=(-dict="fuzz/dict/$target.dict")
  echo "fuzz.sh: $target for ${seconds}s" >&2
  cargo fuzz run "${FUZZ_FLAGS[@]}" "${BUILD_FLAGS[@]}" "$target" "$@" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "${dict[@]}"
}

# cargo fuzz coverage needs llvm-profdata and llvm-cov of rustc's own LLVM
# (the distribution's are older and cannot read its profiles).
ensure_llvm_tools() {
  rustup component add llvm-tools >/dev/null
  HOST=$(rustc -vV | sed -n 's/^host: //p')
  LLVM_BIN=$(rustc --print sysroot)/lib/rustlib/$HOST/bin
}

# coverage_one MODE TARGET CORPUS: runs the corpus through a coverage build
# and prints scripts/fuzz-coverage.py's MODE (lines or gaps) of it. Not
# while a fuzzer runs on the same corpus: it deletes the inputs it reduces.
coverage_one() {
  local mode=$1 target=$2 corpus=$3
  local cov_dir="$TARGET_DIR-coverage" log
  log=$(mktemp)
  if ! cargo fuzz coverage --fuzz-dir fuzz --sanitizer none --target-dir "$cov_dir" \
    "$target" "$corpus" >"$log" 2>&1; then
    tail -n 20 "$log" | cut -c1-300 >&2
    rm -f "$log"
    echo "fuzz.sh: coverage of $target failed" >&2
    return 1
  fi
  rm -f "$log"
  echo "== $target ($(find "$corpus" -maxdepth 1 -type f | wc -l) inputs in $corpus)"
  python3 scripts/fuzz-coverage.py "$mode" "$LLVM_BIN/llvm-cov" \
    "$cov_dir/$HOST/release/$target" "fuzz/coverage/$target/coverage.profdata" \
    "$PWD/crates/"
}

selected() {
  if [ "$1" = all ]; then targets; else echo "$1"; fi
}

cmd=${1:-}
case "$cmd" in
  list)
    targets
    ;;
  run)
    [ $# -eq 3 ] || usage
    ensure_cargo_fuzz
    cargo fuzz build "${FUZZ_FLAGS[@]}"
    for t in $(selected "$2"); do
      mkdir -p "fuzz/corpus/$t"
      fuzz_one "$t" "$3" "fuzz/corpus/$t"
    done
    ;;
  check)
    [ $# -eq 2 ] || usage
    ensure_cargo_fuzz
    # The release build's one codegen unit per crate doubles the build
    # (6.5 against 3.5 minutes here); seconds of fuzzing do not need it.
    BUILD_FLAGS=(--dev)
    cargo fuzz build "${FUZZ_FLAGS[@]}" "${BUILD_FLAGS[@]}"
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    for t in $(targets); do
      mkdir -p "$scratch/$t"
      fuzz_one "$t" "$2" "$scratch/$t" "fuzz/corpus/$t"
    done
    echo "fuzz.sh: every target ran ${2}s without a failure" >&2
    ;;
  cmin)
    [ $# -eq 2 ] || usage
    ensure_cargo_fuzz
    for t in $(selected "$2"); do
      # cmin keeps only inputs that add coverage, under libFuzzer's hash
      # names; the regression-* inputs of fixed bugs and the hand-written
      # seed-* inputs stay as they are, whatever it would make of them.
      kept=$(mktemp -d)
      find "fuzz/corpus/$t" -maxdepth 1 \( -name 'regression-*' -o -name 'seed-*' \) \
        -exec mv -t "$kept" {} +
      cargo fuzz cmin "${FUZZ_FLAGS[@]}" "$t" "fuzz/corpus/$t"
      find "$kept" -maxdepth 1 -type f -exec mv -t "fuzz/corpus/$t" {} +
      rmdir "$kept"
    done
    ;;
  coverage | gaps)
    [ $# -eq 2 ] || [ $# -eq 3 ] || usage
    ensure_cargo_fuzz
    ensure_llvm_tools
    mode=lines
    [ "$cmd" = gaps ] && mode=gaps
    for t in $(selected "$2"); do
      coverage_one "$mode" "$t" "${3:-fuzz/corpus}/$t"
    done
    ;;
  *)
    usage
    ;;
esac
