#!/bin/sh
# runc as the cluster's containerd runs it (BinaryName in each node's
# containerd config). These machines withhold CAP_SYS_RESOURCE, and the
# kernel refuses an oom_score_adj below 0 without it, while kubelet asks
# -998 for critical pods and -997 for Guaranteed ones: runc then dies with
# "failed to update /proc/self/oom_score_adj: Permission denied". So a
# negative oomScoreAdj in the bundle's config.json (or an exec's process
# file) is raised to 0 before runc sees it. Nothing else is changed.
raise() {
  [ -f "$1" ] || return 0
  jq -c 'def fix: if (.oomScoreAdj // 0) < 0 then .oomScoreAdj = 0 else . end;
    if .process then .process |= fix else fix end' "$1" >"$1.tweed" \
    && mv "$1.tweed" "$1"
}
prev=
for a in "$@"; do
  case "$prev" in
    --bundle | -b) raise "$a/config.json" ;;
    --process | -p) raise "$a" ;;
  esac
  prev=$a
done
exec /usr/sbin/runc "$@"
