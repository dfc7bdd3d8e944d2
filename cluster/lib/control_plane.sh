# The control plane (sourced by scripts/cluster.sh): etcd (Debian's), then
# kube-apiserver, kube-controller-manager and kube-scheduler, each a process
# in the control plane's network namespace, its pid in $RUN/cp-<name>.pid
# and its log in $STATE/logs/<name>.log. TLS everywhere, including etcd.

# start_daemon NAME NETNS ARGV... : starts ARGV in its own session inside
# NETNS unless $RUN/NAME.pid names a live process.
start_daemon() {
  local name="$1" ns="$2"
  shift 2
  if tree_pid "$name" >/dev/null; then
    return 0
  fi
  mkdir -p "$STATE/logs" "$RUN"
  log "starting $name"
  setsid nsenter --net="/run/netns/$ns" -- "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

# stop_pid NAME : SIGTERM, then SIGKILL after 10 s, the process in $RUN/NAME.pid.
stop_pid() {
  local name="$1" pid i
  pid="$(tree_pid "$name")" || { rm -f "$RUN/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  rm -f "$RUN/$name.pid"
}

start_etcd() {
  mkdir -p "$STATE/etcd"
  chmod 700 "$STATE/etcd"
  start_daemon cp-etcd "$CP_NS" /usr/bin/etcd \
    --name cp --data-dir "$STATE/etcd" \
    --listen-client-urls "https://127.0.0.1:$ETCD_PORT,https://$CP_IP:$ETCD_PORT" \
    --advertise-client-urls "https://$CP_IP:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:2380" \
    --initial-advertise-peer-urls "http://127.0.0.1:2380" \
    --initial-cluster "cp=http://127.0.0.1:2380" \
    --cert-file "$PKI/etcd.crt" --key-file "$PKI/etcd.key" \
    --client-cert-auth --trusted-ca-file "$PKI/ca.crt"
  wait_for "etcd" 60 ip netns exec "$CP_NS" env ETCDCTL_API=3 etcdctl \
    --endpoints "https://127.0.0.1:$ETCD_PORT" --cacert "$PKI/ca.crt" \
    --cert "$PKI/apiserver-etcd-client.crt" --key "$PKI/apiserver-etcd-client.key" endpoint health
}

start_apiserver() {
  start_daemon cp-apiserver "$CP_NS" "$KUBE_BIN/kube-apiserver" \
    --advertise-address "$CP_IP" --bind-address "$CP_IP" --secure-port "$API_PORT" \
    --etcd-servers "https://127.0.0.1:$ETCD_PORT" --etcd-cafile "$PKI/ca.crt" \
    --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --endpoint-reconciler-type lease
  wait_for "kube-apiserver" 120 kc get --raw /readyz
}

# start_controllers [no] : the controller-manager allocates node pod CIDRs
# unless given "no" (a cluster set up without --pod-network-cidr, which
# tweed's kube store must report clearly).
start_controllers() {
  local cidrs=(--allocate-node-cidrs --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24)
  [ "${1:-yes}" = no ] && cidrs=(--allocate-node-cidrs=false)
  start_daemon cp-controller-manager "$CP_NS" "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig "$PKI/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$PKI/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$PKI/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 \
    "${cidrs[@]}" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --use-service-account-credentials --leader-elect=false
  start_daemon cp-scheduler "$CP_NS" "$KUBE_BIN/kube-scheduler" \
    --kubeconfig "$PKI/scheduler.kubeconfig" \
    --authentication-kubeconfig "$PKI/scheduler.kubeconfig" \
    --authorization-kubeconfig "$PKI/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false
}
