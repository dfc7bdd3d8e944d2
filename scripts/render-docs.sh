#!/usr/bin/env bash
# Draws the documentation's pictures from their text sources, which are
# what is edited and reviewed: docs/architecture.dot -> docs/architecture.svg
# (Graphviz's dot; scripts/install-deps.sh installs it). Commit both.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dot >/dev/null; then
  echo "render-docs.sh: dot not found; install Graphviz (scripts/install-deps.sh, or apt-get install graphviz)" >&2
  exit 1
fi
for src in docs/*.dot; do
  out="${src%.dot}.svg"
  dot -Tsvg "$src" -o "$out"
  echo "render-docs: $src -> $out"
done
