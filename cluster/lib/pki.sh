# The cluster's certificates and kubeconfigs (sourced by scripts/cluster.sh).
# One CA signs everything: the API server's serving certificate, etcd's,
# and a client certificate per component, each with the user and group the
# built-in RBAC bindings expect (system:kube-controller-manager,
# system:kube-scheduler, system:kube-proxy, system:node:<name> in
# system:nodes). Made once; `down --purge` removes them.

PKI="$STATE/pki"

# cert NAME SUBJECT [SAN-LIST] : a key and a certificate signed by the CA.
cert() {
  local name="$1" subj="$2" san="${3:-}"
  [ -s "$PKI/$name.crt" ] && return 0
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" \
    -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# kubeconfig NAME CERT : a kubeconfig for the client certificate CERT.
kubeconfig() {
  local name="$1" crt="$2"
  cat >"$PKI/$name.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_NAME
  cluster:
    certificate-authority: $PKI/ca.crt
    server: https://$CP_IP:$API_PORT
users:
- name: $name
  user:
    client-certificate: $PKI/$crt.crt
    client-key: $PKI/$crt.key
contexts:
- name: $name@$CLUSTER_NAME
  context: {cluster: $CLUSTER_NAME, user: $name}
current-context: $name@$CLUSTER_NAME
KC
}

make_pki() {
  local nodes="$1" i name
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [ ! -s "$PKI/ca.crt" ]; then
    log "making the cluster CA and certificates ($PKI)"
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" \
      -subj "/CN=tweed-cluster-ca" -days 3650 -out "$PKI/ca.crt" 2>/dev/null
  fi
  cert apiserver "/CN=kube-apiserver" \
    "IP:$CP_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
  cert etcd "/CN=etcd" "IP:$CP_IP,IP:127.0.0.1,DNS:localhost"
  cert apiserver-etcd-client "/CN=kube-apiserver-etcd-client"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert admin "/O=system:masters/CN=cluster-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kube-proxy "/CN=system:kube-proxy"
  # For tweedd (or flannel) with its leases in this etcd instead of the API.
  cert etcd-client-tweed "/CN=tweed"
  [ -s "$PKI/sa.key" ] || openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  [ -s "$PKI/sa.pub" ] || openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kube-proxy kube-proxy
  for ((i = 1; i <= nodes; i++)); do
    make_node_pki "$i"
  done
}

# make_node_pki I : node I's kubelet certificate and kubeconfig.
make_node_pki() {
  local name
  name="$(node_name "$1")"
  cert "kubelet-$name" "/O=system:nodes/CN=system:node:$name" "IP:$(node_ip "$1"),DNS:$name"
  kubeconfig "kubelet-$name" "kubelet-$name"
}
