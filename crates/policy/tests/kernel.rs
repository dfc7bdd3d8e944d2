//! The rendered ruleset in a real kernel: a node namespace with a bridge
//! and three pods on it (same-node traffic, bridged) and a fourth pod
//! behind a route (traffic from another node, forwarded). TCP connects
//! tell what passes; the table is read back with `nft`.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};
use tweed_netlink::NetNs;
use tweed_policy::render::{TABLE, ruleset};
use tweed_policy::{Cluster, PodView, compile};
use tweed_testkit::bridged_pods::{BridgedPods, echo};

mod ipv6_pods;
mod sctp;

use ipv6_pods::Ipv6Pods;

struct Node(BridgedPods);

impl std::ops::Deref for Node {
    type Target = BridgedPods;
    fn deref(&self) -> &BridgedPods {
        &self.0
    }
}

impl Node {
    fn apply(&self, policies: &[NetworkPolicy]) {
        apply_on(&self.node.name, |p| self.addr(p).parse().unwrap(), policies);
    }
}

/// Compiles `policies` for pods a, b, c (node n1) and r (node n2), each
/// labelled `app=<name>` in namespace default at `addr(name)`, and applies
/// the result in namespace `node_ns`.
fn apply_on(node_ns: &str, addr: impl Fn(&str) -> IpAddr, policies: &[NetworkPolicy]) {
    let view = |name: &str| PodView {
        namespace: "default".into(),
        name: name.into(),
        labels: [("app".to_string(), name.to_string())]
            .into_iter()
            .collect(),
        ips: vec![addr(name)],
        ports: Vec::new(),
        node: Some(if name == "r" { "n2" } else { "n1" }.into()),
    };
    let cluster = Cluster {
        pods: ["a", "b", "c", "r"].into_iter().map(view).collect(),
        namespaces: [("default".to_string(), Default::default())]
            .into_iter()
            .collect(),
    };
    let pods = compile(policies, &cluster, |p| p.node.as_deref() == Some("n1"));
    let node = NetNs::named(node_ns).unwrap();
    node.run(|| tweed_netlink::nft::apply(&ruleset(&pods), "apply the policies"))
        .unwrap()
        .unwrap();
}

fn policy(spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

#[test]
fn policies_decide_what_crosses_the_node_and_keep_established_connections() {
    let n = Node(BridgedPods::new());
    n.listen(80);
    n.listen(81);
    // No policy yet: everything passes, bridged and routed.
    for (from, to) in [("a", "b"), ("c", "b"), ("r", "b"), ("b", "r")] {
        assert!(n.passes(from, to, 80), "{from} -> {to} before any policy");
    }
    // b takes TCP 80 from a only; a may send only to b.
    n.apply(&[
        policy(json!({
            "podSelector": {"matchLabels": {"app": "b"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]}],
        })),
        policy(json!({
            "podSelector": {"matchLabels": {"app": "a"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}]}],
        })),
    ]);
    let table = NetNs::named(&n.node.name)
        .unwrap()
        .run(|| {
            std::process::Command::new("nft")
                .args(["list", "table", "inet", TABLE])
                .output()
        })
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("hook forward"), "{text}");
    assert!(
        text.contains("ct state { established, related } accept"),
        "{text}"
    );
    assert!(text.contains("default/b ingress"), "{text}");
    for (from, to, port, want) in [
        ("a", "b", 80, true),
        ("a", "b", 81, false), // port not allowed
        ("c", "b", 80, false), // peer not allowed (bridged)
        ("r", "b", 80, false), // peer not allowed (routed, from another node)
        ("a", "c", 80, false), // a's egress allows only b
        ("c", "a", 80, true),  // a is not isolated for ingress
        ("r", "c", 81, true),  // c is not isolated at all
    ] {
        assert_eq!(n.passes(from, to, port), want, "{from} -> {to}:{port}");
    }
    // A connection a -> b:80 stays up when b is closed to everyone; a new
    // one is refused.
    let mut open = n.connect("a", "b", 80).expect("a -> b:80");
    assert!(echo(&mut open));
    n.apply(&[policy(json!({
        "podSelector": {"matchLabels": {"app": "b"}},
        "policyTypes": ["Ingress"],
    }))]);
    assert!(
        echo(&mut open),
        "the established connection survived the change"
    );
    assert!(!n.passes("a", "b", 80), "a new connection is refused");
    // No policy: the table is empty of pod chains and everything passes.
    n.apply(&[] as &[NetworkPolicy]);
    assert!(n.passes("c", "b", 80));
    assert!(n.passes("a", "c", 80));
}

/// SCTP ports are policed as TCP and UDP ones are: by protocol and port.
/// The host kernel may lack SCTP; the test then runs in the VM runner.
#[test]
fn sctp_ports_are_allowed_by_protocol_and_port() {
    use tweed_testkit::vm::{KernelFeature, on_a_kernel_with};
    if !on_a_kernel_with(&[KernelFeature::Sctp]) {
        return; // ran, and passed, in the VM runner
    }
    let n = Node(BridgedPods::new());
    n.listen(80);
    let at = |pod: &str, port: u16| -> std::net::SocketAddrV4 {
        format!("{}:{port}", n.addr(pod)).parse().unwrap()
    };
    for port in [80, 81] {
        sctp::listen(n.netns("b"), at("b", port));
    }
    // Before any policy, SCTP passes bridged and routed.
    for from in ["a", "c", "r"] {
        assert!(
            sctp::passes(n.netns(from), at("b", 80)),
            "{from} -> b sctp/80"
        );
    }
    n.apply(&[policy(json!({
        "podSelector": {"matchLabels": {"app": "b"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                     "ports": [{"protocol": "SCTP", "port": 80}]}],
    }))]);
    assert!(sctp::passes(n.netns("a"), at("b", 80)), "a -> b sctp/80");
    assert!(
        !sctp::passes(n.netns("a"), at("b", 81)),
        "a -> b sctp/81: other port"
    );
    assert!(
        !sctp::passes(n.netns("c"), at("b", 80)),
        "c -> b sctp/80: other peer"
    );
    assert!(
        !sctp::passes(n.netns("r"), at("b", 80)),
        "r -> b sctp/80: other peer"
    );
    assert!(!n.passes("a", "b", 80), "a -> b tcp/80: other protocol");
}

/// IPv6 pods (a dual-stack or IPv6 cluster): the same rules in the ip6
/// half of the table, peers by pod and by ipBlock with except.
#[test]
fn ipv6_pods_are_policed_by_peer_port_and_ip_block() {
    let n = Ipv6Pods::new();
    n.listen(80);
    n.listen(81);
    for (from, to, port) in [("a", "b", 80), ("c", "b", 81), ("b", "a", 80)] {
        assert!(
            n.passes(from, to, port),
            "{from} -> {to}:{port} before any policy"
        );
    }
    // b: port 80 from app=a; port 81 from fd00:244:1::/64 except c.
    apply_on(
        &n.node.name,
        |p| IpAddr::V6(n.addr(p)),
        &[policy(json!({
            "podSelector": {"matchLabels": {"app": "b"}},
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]},
                {"from": [{"ipBlock": {"cidr": "fd00:244:1::/64", "except": ["fd00:244:1::4/128"]}}],
                 "ports": [{"port": 81}]},
            ],
        }))],
    );
    for (from, to, port, want) in [
        ("a", "b", 80, true),
        ("c", "b", 80, false), // not app=a
        ("a", "b", 81, true),  // in the block
        ("c", "b", 81, false), // the block's exception
        ("b", "c", 80, true),  // c is not isolated
    ] {
        assert_eq!(n.passes(from, to, port), want, "{from} -> {to}:{port}");
    }
}
