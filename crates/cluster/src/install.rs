//! Installing tweed: deploy/tweed.yaml applied with kubectl (as shipped, or
//! with the one edit docs/deploy.md describes for a variant), then waiting
//! for what a user waits for: nodes Ready, the DaemonSet ready, CoreDNS on
//! pod addresses.

use std::time::Instant;

use crate::pods::condition;
use crate::{Cluster, STATE, repo_root};

/// deploy/tweed.yaml as shipped.
pub fn manifest() -> String {
    deploy_file("tweed.yaml")
}

/// `deploy/<name>` as shipped.
pub fn deploy_file(name: &str) -> String {
    let path = repo_root().join("deploy").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `manifest` (deploy/tweed.yaml) with the pod network carried by
/// `backend` (`vxlan` as shipped, or `host-gw`).
pub fn with_backend(manifest: &str, backend: &str) -> String {
    match backend {
        "vxlan" => manifest.to_string(),
        other => edit(
            manifest,
            r#""Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}"#,
            &format!(r#""Backend": {{"Type": "{other}"}}"#),
        ),
    }
}

/// `manifest` with `from` replaced by `to`, which must occur exactly once.
pub fn edit(manifest: &str, from: &str, to: &str) -> String {
    assert_eq!(
        manifest.matches(from).count(),
        1,
        "deploy/tweed.yaml no longer holds `{from}` exactly once: update the test and docs/deploy.md"
    );
    manifest.replacen(from, to, 1)
}

/// The Secret `kube-tweed/tweed-etcd` with the client certificate the
/// cluster made for tweed, as docs/deploy.md tells users to create it.
pub fn etcd_secret(c: &Cluster) {
    etcd_client_secret(c, "kube-tweed", "tweed-etcd");
}

/// The namespace `ns` and in it the Secret `name` holding the cluster's CA
/// and tweed's etcd client certificate (ca.crt, tls.crt, tls.key).
pub fn etcd_client_secret(c: &Cluster, ns: &str, name: &str) {
    let pki = format!("{STATE}/pki");
    c.kubectl_ok(&["create", "namespace", ns]);
    c.kubectl_ok(&[
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        name,
        &format!("--from-file=ca.crt={pki}/ca.crt"),
        &format!("--from-file=tls.crt={pki}/etcd-client-tweed.crt"),
        &format!("--from-file=tls.key={pki}/etcd-client-tweed.key"),
    ]);
}

/// The nodes' `spec.podCIDR`, node 1 first.
pub fn pod_cidrs(c: &Cluster) -> Vec<String> {
    (1..=c.nodes)
        .map(|i| {
            let n = c.json(&["get", "node", &c.node_name(i)]);
            n["spec"]["podCIDR"]
                .as_str()
                .expect("a podCIDR")
                .to_string()
        })
        .collect()
}

/// Applies `manifest` to a cluster with no CNI yet and waits until the
/// network is up everywhere.
pub fn apply(c: &Cluster, manifest: &str) {
    let nodes = c.json(&["get", "nodes"]);
    for n in nodes["items"].as_array().unwrap() {
        assert_eq!(
            condition(n, "Ready"),
            "False",
            "a node is Ready before any CNI"
        );
    }
    let applied = Instant::now();
    c.apply(manifest);
    // The kube store also clears NetworkUnavailable (as flannel does);
    // with the etcd store tweedd does not talk to the API at all.
    let kube_store = manifest.contains("  store: kube\n");
    c.wait_until(240, "every node Ready and its network available", || {
        let nodes = c.json(&["get", "nodes"]);
        let items = nodes["items"].as_array().unwrap();
        items.len() == c.nodes
            && items.iter().all(|n| {
                let unavailable = condition(n, "NetworkUnavailable");
                condition(n, "Ready") == "True"
                    && if kube_store {
                        unavailable == "False"
                    } else {
                        unavailable != "True"
                    }
            })
    });
    println!(
        "kubectl apply (tweed) -> {} nodes Ready in {:.1} s",
        c.nodes,
        applied.elapsed().as_secs_f64()
    );
    daemonset_ready(c);
    coredns_on_pod_addresses(c);
}

/// Waits until CoreDNS runs, ready, on pod addresses.
pub fn coredns_on_pod_addresses(c: &Cluster) {
    c.wait_until(180, "CoreDNS running with pod addresses", || {
        let pods = c.json(&["-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns"]);
        let items = pods["items"].as_array().unwrap().clone();
        !items.is_empty()
            && items.iter().all(|p| {
                p["status"]["podIP"]
                    .as_str()
                    .is_some_and(|ip| ip.starts_with("10.244."))
                    && condition(p, "Ready") == "True"
            })
    });
}

/// Waits for a tweed pod ready on every node.
pub fn daemonset_ready(c: &Cluster) {
    c.wait_until(120, "the tweed DaemonSet ready on every node", || {
        let ds = c.json(&["-n", "kube-tweed", "get", "ds", "tweed"]);
        ds["status"]["numberReady"] == c.nodes && ds["status"]["updatedNumberScheduled"] == c.nodes
    });
}
