//! A layer-2 segment in the cluster, declared the way docs/segments.md
//! says: `Segments` in the ConfigMap's net-conf.json, and a pod attached
//! through Kubernetes' secondary-network API — Multus (built here from its
//! Go module, deployed with its own manifest) and a
//! NetworkAttachmentDefinition whose config is tweed's segment config.
//! Pods on two nodes get `net1` on the segment with addresses from their
//! nodes' blocks of the segment's Subnet, and reach each other over it.

use tweed_cluster::pods::{exec, ping_ok, pod};
use tweed_cluster::{Cluster, STATE};

use tweed_cluster::install;

/// lab1 for this step; lan, pure layer 2, for the lab of multus_lab.rs
/// (examples/multus-lab.yaml).
const SEGMENT: &str = r#""Segments": [{"Name": "lab1", "VNI": 4001, "Subnet": "192.168.50.0/24"}, {"Name": "lan", "VNI": 4002}],"#;

const PODS: &str = r#"
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: lab1, namespace: default}
spec:
  config: '{"cniVersion": "1.0.0", "name": "lab1", "type": "tweed", "segment": "lab1"}'
---
apiVersion: v1
kind: Pod
metadata:
  name: s1
  annotations: {k8s.v1.cni.cncf.io/networks: lab1}
spec:
  nodeName: tweed-n1
  terminationGracePeriodSeconds: 0
  containers: [{name: c, image: localhost/tweed-test:latest, imagePullPolicy: Never}]
---
apiVersion: v1
kind: Pod
metadata:
  name: s2
  annotations: {k8s.v1.cni.cncf.io/networks: lab1}
spec:
  nodeName: tweed-n2
  terminationGracePeriodSeconds: 0
  containers: [{name: c, image: localhost/tweed-test:latest, imagePullPolicy: Never}]
"#;

/// `pod`'s IPv4 address on `ifname`, if it has one.
pub fn address(c: &Cluster, pod: &str, ifname: &str) -> Option<String> {
    let out = exec(c, pod, &["ip", "-4", "-o", "addr", "show", "dev", ifname]).ok()?;
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
}

pub fn multus_attaches_pods_to_a_segment_across_nodes(c: &Cluster) {
    // The segment, in the ConfigMap; tweed's pods restart into it.
    let manifest = install::edit(
        &install::manifest(),
        r#"  net-conf.json: |
    {
"#,
        &format!("  net-conf.json: |\n    {{\n      {SEGMENT}\n"),
    );
    c.apply(&manifest);
    c.kubectl_ok(&["-n", "kube-tweed", "rollout", "restart", "ds/tweed"]);
    c.kubectl_ok(&[
        "-n",
        "kube-tweed",
        "rollout",
        "status",
        "ds/tweed",
        "--timeout=180s",
    ]);
    for i in 1..=c.nodes {
        c.wait_until(30, &format!("segment bridge tws-lab1 on node {i}"), || {
            c.on_node(i, &["ip", "link", "show", "tws-lab1"])
                .status
                .success()
        });
    }
    // Multus with its own manifest (image built here).
    c.kubectl_ok(&[
        "apply",
        "-f",
        &format!("{STATE}/addons/multus-daemonset.yml"),
    ]);
    c.kubectl_ok(&[
        "-n",
        "kube-system",
        "rollout",
        "status",
        "ds/kube-multus-ds",
        "--timeout=180s",
    ]);
    for i in 1..=c.nodes {
        c.wait_until(60, &format!("Multus's config first on node {i}"), || {
            let out = c.on_node(i, &["ls", "/etc/cni/net.d"]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .is_some_and(|f| f.contains("multus"))
        });
    }
    c.apply(PODS);
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/s1",
        "pod/s2",
        "--timeout=120s",
    ]);
    let (p1, p2) = (pod(c, "s1"), pod(c, "s2"));
    assert_ne!(p1.node, p2.node);
    assert!(
        p1.ip.starts_with("10.244."),
        "s1's eth0 is on the pod network: {}",
        p1.ip
    );
    let a1 = address(c, "s1", "net1").expect("s1 has net1 with an address");
    let a2 = address(c, "s2", "net1").expect("s2 has net1 with an address");
    for a in [&a1, &a2] {
        assert!(a.starts_with("192.168.50."), "a segment address: {a}");
    }
    assert_ne!(a1, a2);
    println!(
        "segment lab1 through Multus: s1 ({}) net1 {a1}, s2 ({}) net1 {a2}",
        p1.node, p2.node
    );
    for (from, to) in [("s1", &a2), ("s2", &a1)] {
        // The segment's subnet is on net1 only: the ping leaves there.
        let out = ping_ok(c, from, to, 3);
        assert!(out.is_ok(), "{from} -> {to} over the segment: {out:?}");
    }
    // tweedd publishes the MACs behind each node's segment ports (in kube
    // mode a node annotation): node 1 sends s2's frames straight to node 2.
    let mac = exec(c, "s2", &["cat", "/sys/class/net/net1/address"]).expect("s2's net1 MAC");
    let entry = format!("{} dst 198.18.1.12", mac.trim());
    c.wait_until(30, &format!("node 1 has `{entry}` on twx.4001"), || {
        let fdb = c.on_node(1, &["bridge", "fdb", "show", "dev", "twx.4001"]);
        String::from_utf8_lossy(&fdb.stdout).contains(&entry)
    });
    c.kubectl_ok(&["delete", "pod", "s1", "s2", "--wait=true", "--timeout=60s"]);
}
