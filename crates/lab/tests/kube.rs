//! `tweedd --store kube` end to end: the workspace's fake API server runs in
//! the lab's underlay namespace, nodes are registered in it with pod CIDRs
//! as kube-controller-manager would allocate them, and a real tweedd per
//! node (`--store kube --kubeconfig ...`) programs the kernel. Asserted:
//! pods on nodes whose subnets come from the API reach each other (ICMP and
//! TCP); each node's record and `NetworkUnavailable=False` are in the API;
//! a node deleted from the API loses its routes, neighbours and FDB
//! entries everywhere; a node without a pod CIDR waits, says why, programs
//! nothing, and joins once it gets one.

mod common;

use std::net::SocketAddr;

use common::{TestLab, tcp_send, tcp_sink, wait_until};
use serde_json::{Value, json};
use tweed_lab::kube;

fn api_node(lab: &TestLab, name: &str) -> Value {
    kube::call_ok(
        &lab.lab().state.underlay_ns,
        "GET",
        &format!("/api/v1/nodes/{name}"),
        None,
    )
    .expect("node from the fake API server")
}

fn condition(node: &Value, kind: &str) -> Value {
    node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind).cloned())
        .unwrap_or(Value::Null)
}

fn subnet_env(lab: &TestLab, node: &str) -> String {
    std::fs::read_to_string(lab.lab().node_dir(node).join("subnet.env")).unwrap_or_default()
}

fn vtep_mac(lab: &TestLab, node: &str) -> String {
    lab.ip_json(node, &["link", "show", "tweed.1"])[0]["address"]
        .as_str()
        .expect("tweed.1's MAC")
        .to_string()
}

fn has_route(lab: &TestLab, node: &str, subnet: &str) -> bool {
    lab.ip_json(node, &["route", "show", "proto", "77"])
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["dst"] == subnet)
}

fn fdb_has(lab: &TestLab, node: &str, mac: &str) -> bool {
    let out = lab
        .lab()
        .exec_output(node, &["bridge", "-j", "fdb", "show", "dev", "tweed.1"])
        .unwrap();
    let fdb: Value = serde_json::from_slice(&out.stdout).unwrap_or(json!([]));
    fdb.as_array().unwrap().iter().any(|e| e["mac"] == mac)
}

fn neigh_has(lab: &TestLab, node: &str, mac: &str) -> bool {
    lab.ip_json(node, &["neigh", "show", "dev", "tweed.1"])
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["lladdr"] == mac)
}

#[test]
fn vxlan_over_the_kube_store() {
    let lab = TestLab::up("kv", 3, "vxlan", "kube");

    // Each node's subnet is the podCIDR the API gave it.
    for i in 1..=3 {
        let env = subnet_env(&lab, &format!("n{i}"));
        assert!(
            env.contains(&format!("TWEED_SUBNET=10.244.{i}.1/24")),
            "n{i}: {env}"
        );
    }

    // Pods reach each other: ICMP across the matrix, then TCP keeping
    // the pod's source address.
    let m = lab.lab().check().expect("check");
    assert!(m.all_ok(), "reachability:\n{}\n{}", m.render(), lab.logs());
    let dst = SocketAddr::new(lab.pod_ip("n2"), 5001);
    let sink = tcp_sink(&lab.pod_ns("n2"), dst);
    tcp_send(&lab.pod_ns("n1"), dst, 4 << 20).expect("TCP across nodes");
    let (bytes, peer) = sink.join().expect("sink");
    assert_eq!(bytes, 4 << 20);
    assert_eq!(peer.ip(), lab.pod_ip("n1"));

    // The record in the API is what the kernel holds, and the node is
    // marked network-ready.
    for i in 1..=3 {
        let name = format!("n{i}");
        let node = api_node(&lab, &name);
        let ann = &node["metadata"]["annotations"];
        assert_eq!(ann["tweed.io/backend-type"], "vxlan", "{node}");
        assert_eq!(ann["tweed.io/public-ip"], format!("198.18.0.{i}"));
        let data: Value =
            serde_json::from_str(ann["tweed.io/backend-data"].as_str().expect("backend-data"))
                .unwrap();
        assert_eq!(data["VtepMAC"], vtep_mac(&lab, &name), "{node}");
        assert_eq!(data["VNI"], 1);
        let c = condition(&node, "NetworkUnavailable");
        assert_eq!(c["status"], "False", "{node}");
        assert_eq!(c["reason"], "TweedIsUp", "{node}");
        assert_eq!(condition(&node, "Ready")["status"], "True", "{node}");
    }

    // n3 deleted from the API: its route, neighbour and FDB entry vanish
    // from n1 and n2, and its pod is unreachable; n1 and n2 still talk.
    let mac3 = vtep_mac(&lab, "n3");
    assert!(has_route(&lab, "n1", "10.244.3.0/24"));
    lab.lab().delete_lease("n3").unwrap();
    for node in ["n1", "n2"] {
        wait_until(10, "the deleted node's route to go", || {
            !has_route(&lab, node, "10.244.3.0/24")
        });
        assert!(!neigh_has(&lab, node, &mac3), "{node} kept n3's neighbour");
        assert!(!fdb_has(&lab, node, &mac3), "{node} kept n3's FDB entry");
        assert!(has_route(
            &lab,
            node,
            if node == "n1" {
                "10.244.2.0/24"
            } else {
                "10.244.1.0/24"
            }
        ));
    }
    let m = lab.lab().check().unwrap();
    assert!(m.ok[0][1] && m.ok[1][0], "{}", m.render());
    assert!(!m.ok[0][2], "n3's pod must be unreachable:\n{}", m.render());
}

/// Dual stack: both pod CIDRs of each node come from the API.
#[test]
fn dual_stack_over_the_kube_store() {
    let lab = TestLab::up_with("kd", 2, "vxlan", "kube", |s| s.ipv6 = true);
    for i in 1..=2 {
        let env = subnet_env(&lab, &format!("n{i}"));
        assert!(
            env.contains(&format!("TWEED_SUBNET=10.244.{i}.1/24"))
                && env.contains(&format!("TWEED_IPV6_SUBNET=fd00:10:244:{i}::1/64")),
            "n{i}: {env}"
        );
    }
    let routes = lab.ip_json("n1", &["-6", "route", "show", "proto", "77"]);
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "fd00:10:244:2::/64"),
        "{routes}"
    );
    let m = lab.lab().check().expect("check");
    assert!(m.all_ok(), "IPv4 and IPv6:\n{}\n{}", m.render(), lab.logs());
}

#[test]
fn a_node_without_a_pod_cidr_waits_then_joins() {
    let mut lab = TestLab::up("kc", 2, "vxlan", "kube");
    let ul = lab.lab().state.underlay_ns.clone();
    // Registered before its agent starts, without a pod CIDR (no
    // --allocate-node-cidrs on the controller-manager).
    kube::call_ok(
        &ul,
        "POST",
        "/admin/nodes",
        Some(&json!({"name": "n3", "podCIDRs": []})),
    )
    .unwrap();
    let n3 = lab.lab_mut().start_node().unwrap();
    assert_eq!(n3, "n3");
    let log = lab.lab().node_dir("n3").join("tweedd.log");
    wait_until(15, "n3's agent to say twice why it waits", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("--allocate-node-cidrs")
            .count()
            >= 2
    });
    let node = lab.lab().state.node("n3").unwrap().clone();
    let (code, why) = lab.lab().http_get(&node, "/readyz").expect("n3's /readyz");
    assert_eq!(code, 503, "n3 must not be ready: {why}");
    assert!(why.contains("podCIDR"), "/readyz must say why: {why}");
    assert!(subnet_env(&lab, "n3").is_empty(), "no lease file yet");
    let out = lab
        .lab()
        .exec_output("n3", &["ip", "link", "show", "tweed.1"])
        .unwrap();
    assert!(!out.status.success(), "nothing programmed while waiting");
    assert_eq!(
        condition(&api_node(&lab, "n3"), "NetworkUnavailable")["status"],
        "True"
    );

    // Node IPAM allocates: n3 becomes ready, joins, and its pod talks.
    kube::call_ok(
        &ul,
        "POST",
        "/admin/nodes/n3/pod-cidrs",
        Some(&json!({"podCIDRs": ["10.244.3.0/24"]})),
    )
    .unwrap();
    wait_until(30, "n3 to become ready", || lab.lab().ready(&node));
    assert!(subnet_env(&lab, "n3").contains("TWEED_SUBNET=10.244.3.1/24"));
    lab.lab()
        .wait_converged()
        .expect("all nodes see each other");
    lab.lab_mut().add_pod("n3", "p1").unwrap();
    let m = lab.lab().check().unwrap();
    assert!(m.all_ok(), "{}\n{}", m.render(), lab.logs());
    wait_until(10, "n3 to be marked network-ready", || {
        condition(&api_node(&lab, "n3"), "NetworkUnavailable")["status"] == "False"
    });
}
