#!/usr/bin/env bash
# Kubernetes' own end-to-end tests against the cluster of scripts/cluster.sh
# with tweed installed (docs/e2e.md).
#
#   scripts/e2e.sh build           e2e.test, ginkgo and agnhost from the pinned
#                                  Kubernetes module, and the test images
#   scripts/e2e.sh run SUITE [--procs N] [--timeout DURATION] [--focus RE] [--skip RE]
#                                  builds what is missing, imports the test
#                                  images into every node, runs the suite and
#                                  prints a summary; exit status 0 only when
#                                  every selected test passed
#
# Suites:
#   network-conformance   [sig-network] tests tagged [Conformance]
#   netpol                the NetworkPolicy suites ([Feature:NetworkPolicy],
#                         the table-driven netpol)
#   custom                only --focus (and --skip)
#
# The report (JUnit XML, ginkgo's JSON and the e2e log) goes to
# $STATE/e2e/<suite>/ (default /var/lib/tweed-cluster/e2e).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=cluster/lib/common.sh
source "$REPO/cluster/lib/common.sh"
source "$REPO/cluster/lib/images.sh"
source "$REPO/cluster/lib/flannel.sh"
source "$REPO/cluster/lib/e2e.sh"
GO_CACHE="${TWEED_CACHE:-/var/cache/tweed}/go"

[ "$(id -u)" = 0 ] || die "the tests run in the cluster's namespaces: run as root"

cmd_build() {
  install_packages "${e2e_packages[@]}"
  E2E_BIN="$("$REPO/scripts/build-kubernetes.sh" e2e)"
  make_e2e_images "$E2E_BIN"
}

# The focus and skip of each suite. Serial and disruptive tests are left
# out of the parallel run, as upstream's conformance runs do with -p.
suite_focus() {
  case "$1" in
    network-conformance) echo '\[sig-network\].*\[Conformance\]' ;;
    netpol) echo '\[sig-network\] (Netpol|NetworkPolicy|NetworkPolicyLegacy)' ;;
    custom) echo '' ;;
    *) die "unknown suite $1 (network-conformance, netpol, custom)" ;;
  esac
}

kernel_has_sctp() {
  grep -qw '^SCTP' /proc/net/protocols && return 0
  modprobe -q sctp 2>/dev/null && grep -qw '^SCTP' /proc/net/protocols
}

cmd_run() {
  local suite="${1:-}" procs=4 timeout=60m focus skip='\[Serial\]|\[Disruptive\]' out rc=0
  [ -n "$suite" ] || die "run: name a suite (network-conformance, netpol, custom)"
  shift
  focus="$(suite_focus "$suite")"
  while [ $# -gt 0 ]; do
    case "$1" in
      --procs) procs="$2"; shift 2 ;;
      --timeout) timeout="$2"; shift 2 ;;
      --focus) focus="$2"; shift 2 ;;
      --skip) skip="$2"; shift 2 ;;
      *) die "run: unknown argument $1" ;;
    esac
  done
  [ -n "$focus" ] || die "run: the custom suite needs --focus"
  # The nodes share this machine's kernel: without SCTP, pods serving SCTP
  # cannot start (tweed's SCTP ports are tested in the VM runner instead:
  # crates/policy/tests/kernel.rs).
  if ! kernel_has_sctp; then
    log "this kernel has no SCTP (CONFIG_IP_SCTP): [Feature:SCTPConnectivity] tests are skipped"
    skip="$skip|\[Feature:SCTPConnectivity\]"
  fi
  [ -f "$STATE/kube-bin" ] && [ -n "$(node_count)" ] || die "no cluster: scripts/cluster.sh up, then kubectl apply -f deploy/tweed.yaml"
  KUBE_BIN="$(cat "$STATE/kube-bin")"
  kc get --raw /readyz >/dev/null 2>&1 || die "the API server does not answer: scripts/cluster.sh up"
  cmd_build
  log "importing the test images into every node"
  import_e2e_images
  out="$STATE/e2e/$suite"
  rm -rf "$out"
  mkdir -p "$out"
  log "running $suite (focus '$focus', skip '$skip', $procs processes, timeout $timeout); report in $out"
  # The API server listens only in the control plane's namespace, so the
  # tests run there, as a client of the cluster.
  ip netns exec "$CP_NS" "$E2E_BIN/ginkgo" --procs="$procs" --timeout="$timeout" \
    --focus="$focus" --skip="$skip" --no-color --silence-skips --output-dir="$out" \
    --junit-report=junit.xml --json-report=report.json \
    "$E2E_BIN/e2e.test" -- \
    --kubeconfig="$STATE/pki/admin.kubeconfig" --kubectl-path="$KUBE_BIN/kubectl" --provider=local \
    --dns-domain="$CLUSTER_DOMAIN" --report-dir="$out" >"$out/e2e.log" 2>&1 || rc=$?
  summarize "$out"
  return "$rc"
}

# One line per test that ran, then the counts (from ginkgo's JSON report).
summarize() {
  local out="$1"
  [ -s "$out/report.json" ] || { tail -n 40 "$out/e2e.log" >&2; die "no report in $out (log: $out/e2e.log)"; }
  jq -r '[.[].SpecReports[] | select(.LeafNodeType == "It") | select(.State != "skipped")
    | {name: ((.ContainerHierarchyTexts + [.LeafNodeText]) | join(" ")), state: .State, secs: (.RunTime / 1e9 | floor)}]
    | sort_by(.name)[] | "\(.state)\t\(.secs)s\t\(.name)"' "$out/report.json"
  jq -r '[.[].SpecReports[] | select(.LeafNodeType == "It") | .State]
    | group_by(.) | map("\(.[0]): \(length)") | join(", ")' "$out/report.json" \
    | sed 's/^/e2e summary: /'
}

case "${1:-}" in
  build) cmd_build ;;
  run) shift; cmd_run "$@" ;;
  *) echo "usage: scripts/e2e.sh build | run network-conformance|netpol|custom [--procs N] [--timeout D] [--focus RE] [--skip RE]" >&2; exit 2 ;;
esac
