//! Wires declared the way docs/wires.md says (the pod annotation
//! `tweed.io/wires`), cabled by tweedd inside the cluster: r1 on node 1
//! wired to r2 on node 2 (a VXLAN device of the wire's own VNI in each
//! pod), and r2 wired to r3 on the same node (a veth pair). The pods
//! carry no addresses on the wires: they talk over IPv6 link-local
//! addresses, which only a working cable carries.

use tweed_cluster::Cluster;
use tweed_cluster::pods::{exec, ping_ok, pod};

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: r1
  annotations: {tweed.io/wires: "eth1=r2:eth1"}
spec:
  nodeName: tweed-n1
  containers: [{name: c, image: localhost/tweed-test:latest, imagePullPolicy: Never}]
---
apiVersion: v1
kind: Pod
metadata:
  name: r2
  annotations: {tweed.io/wires: "eth1=r1:eth1, eth2=r3:eth1"}
spec:
  nodeName: tweed-n2
  containers: [{name: c, image: localhost/tweed-test:latest, imagePullPolicy: Never}]
---
apiVersion: v1
kind: Pod
metadata:
  name: r3
  annotations: {tweed.io/wires: "eth1=r2:eth2"}
spec:
  nodeName: tweed-n2
  containers: [{name: c, image: localhost/tweed-test:latest, imagePullPolicy: Never}]
"#;

/// The IPv6 link-local address of `pod`'s interface `ifname`, once the
/// interface exists and has one that passed duplicate address detection
/// (a tentative address cannot send yet).
pub fn link_local(c: &Cluster, pod: &str, ifname: &str) -> Option<String> {
    let out = exec(c, pod, &["ip", "-6", "-o", "addr", "show", "dev", ifname]).ok()?;
    if out.contains("tentative") {
        return None;
    }
    out.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .filter(|a| a.starts_with("fe80:"))
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
}

/// Pings over one interface to a link-local address (`ADDR%IFNAME`).
pub fn ping6(c: &Cluster, pod: &str, to: &str, ifname: &str) -> Result<String, String> {
    ping_ok(c, pod, &format!("{to}%{ifname}"), 3)
}

pub fn cable_pods_on_one_node_and_across_nodes(c: &Cluster) {
    c.apply(PODS);
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/r1",
        "pod/r2",
        "pod/r3",
        "--timeout=120s",
    ]);
    let ends = [
        ("r1", "eth1"),
        ("r2", "eth1"),
        ("r2", "eth2"),
        ("r3", "eth1"),
    ];
    let mut addr = std::collections::HashMap::new();
    c.wait_until(30, "tweedd cables every wire end", || {
        for (p, i) in ends {
            match link_local(c, p, i) {
                Some(a) => drop(addr.insert((p, i), a)),
                None => return false,
            }
        }
        true
    });
    assert_ne!(pod(c, "r1").node, pod(c, "r2").node);
    // Across nodes, both ways; on one node, both ways.
    for (from, ifname, to) in [
        ("r1", "eth1", ("r2", "eth1")),
        ("r2", "eth1", ("r1", "eth1")),
        ("r2", "eth2", ("r3", "eth1")),
        ("r3", "eth1", ("r2", "eth2")),
    ] {
        let r = ping6(c, from, &addr[&to], ifname);
        assert!(r.is_ok(), "{from} {ifname} -> {to:?} over the wire: {r:?}");
    }
    // A wire is a cable, not a network: r1 does not reach r3 through r2.
    let r = ping6(c, "r1", &addr[&("r3", "eth1")], "eth1");
    assert!(r.is_err(), "r1 reached r3 over r1's wire to r2: {r:?}");
    // Deleting one end removes the other, across nodes.
    c.kubectl_ok(&["delete", "pod", "r1", "--wait=true", "--timeout=60s"]);
    c.wait_until(15, "r2's end of the wire to the deleted r1 removed", || {
        exec(c, "r2", &["ip", "link", "show", "eth1"]).is_err()
    });
    assert!(
        ping6(c, "r2", &addr[&("r3", "eth1")], "eth2").is_ok(),
        "the r2-r3 wire suffered when r1 went"
    );
    c.kubectl_ok(&["delete", "pod", "r2", "r3", "--wait=true", "--timeout=60s"]);
}
