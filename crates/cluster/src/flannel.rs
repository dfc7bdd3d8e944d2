//! Real flannel in the cluster, the peer tweed is compared with and
//! migrated from: flannel's own kube-flannel.yml (only its image references
//! point at the images cluster.sh built from flannel's Go modules), in kube
//! mode as shipped, or in etcd mode against the cluster's etcd.

use crate::pods::condition;
use crate::{Cluster, STATE};

use crate::install;

/// Where flannel keeps its leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// `--kube-subnet-mgr`: the Node objects (kube-flannel.yml as shipped).
    Kube,
    /// The cluster's etcd over TLS, config at `/coreos.com/network/config`.
    Etcd,
}

/// flannel's net-conf.json in kube-flannel.yml (and in etcd in etcd mode).
pub const NET_CONF: &str =
    r#"{"Network": "10.244.0.0/16", "EnableNFTables": false, "Backend": {"Type": "vxlan"}}"#;

/// kube-flannel.yml as cluster.sh wrote it (images: localhost/...).
pub fn manifest() -> String {
    let path = format!("{STATE}/addons/kube-flannel.yml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `manifest` with `from` replaced by `to`; `from` must occur once.
fn edit(manifest: &str, from: &str, to: &str) -> String {
    assert_eq!(
        manifest.matches(from).count(),
        1,
        "kube-flannel.yml no longer holds `{from}` exactly once"
    );
    manifest.replacen(from, to, 1)
}

/// kube-flannel.yml for `store`: as shipped for kube; for etcd, flanneld's
/// `--kube-subnet-mgr` replaced by the etcd endpoint and its client
/// certificate, mounted from the Secret kube-flannel/flannel-etcd.
pub fn manifest_for(store: Store) -> String {
    let shipped = manifest();
    match store {
        Store::Kube => shipped,
        Store::Etcd => {
            let m = edit(
                &shipped,
                "        - --kube-subnet-mgr\n",
                "        - --etcd-endpoints=https://198.18.1.1:2379\n        \
                 - --etcd-cafile=/etc/flannel-etcd/ca.crt\n        \
                 - --etcd-certfile=/etc/flannel-etcd/tls.crt\n        \
                 - --etcd-keyfile=/etc/flannel-etcd/tls.key\n",
            );
            let m = edit(
                &m,
                "          mountPath: /run/xtables.lock\n",
                "          mountPath: /run/xtables.lock\n        \
                 - name: etcd-tls\n          mountPath: /etc/flannel-etcd\n          \
                 readOnly: true\n",
            );
            format!(
                "{m}      - name: etcd-tls\n        secret:\n          secretName: flannel-etcd\n"
            )
        }
    }
}

/// kube-flannel.yml (`manifest`) with flannel's net-conf.json asking for
/// `backend` (`vxlan` as shipped, or `host-gw`).
pub fn with_backend(manifest: &str, backend: &str) -> String {
    edit(
        manifest,
        "        \"Type\": \"vxlan\"\n",
        &format!("        \"Type\": \"{backend}\"\n"),
    )
}

/// Installs flannel on a cluster with no CNI, its pod network carried by
/// `backend` (`vxlan`, `host-gw`), and waits until it carries the cluster:
/// every node Ready, flannel's pod ready on every node, CoreDNS on pod
/// addresses.
pub fn install(c: &Cluster, store: Store, backend: &str) {
    if store == Store::Etcd {
        install::etcd_client_secret(c, "kube-flannel", "flannel-etcd");
        let conf = NET_CONF.replace(r#""Type": "vxlan""#, &format!(r#""Type": "{backend}""#));
        let put = c.etcdctl(&["put", "/coreos.com/network/config", &conf]);
        assert!(put.status.success(), "etcdctl put: {put:?}");
    }
    c.apply(&with_backend(&manifest_for(store), backend));
    c.wait_until(240, "every node Ready on flannel", || {
        let nodes = c.json(&["get", "nodes"]);
        let items = nodes["items"].as_array().unwrap();
        items.len() == c.nodes && items.iter().all(|n| condition(n, "Ready") == "True")
    });
    daemonset_ready(c, c.nodes);
    install::coredns_on_pod_addresses(c);
}

/// Waits until flannel's DaemonSet runs `want` up-to-date ready pods.
pub fn daemonset_ready(c: &Cluster, want: usize) {
    c.wait_until(180, &format!("flannel ready on {want} nodes"), || {
        let ds = c.json(&["-n", "kube-flannel", "get", "ds", "kube-flannel-ds"]);
        let s = &ds["status"];
        s["desiredNumberScheduled"] == want
            && s["numberReady"] == want
            && s["updatedNumberScheduled"] == want
            && s["numberAvailable"] == want
    });
}
