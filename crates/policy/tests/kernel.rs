//! The rendered ruleset in a real kernel: a node namespace with a bridge
//! and three pods on it (same-node traffic, bridged) and a fourth pod
//! behind a route (traffic from another node, forwarded). TCP connects
//! tell what passes; the table is read back with `nft`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};
use tweed_netlink::NetNs;
use tweed_policy::render::{TABLE, ruleset};
use tweed_policy::{Cluster, PodView, compile};
use tweed_testkit::netns::{TestNs, run_ok};

/// node: bridge br0 10.244.1.1/24, pods a .2, b .3, c .4 on it; pod r
/// 10.244.2.2 behind veth "remote" (10.244.2.1/24 on the node side).
struct Node {
    node: TestNs,
    pods: Vec<(String, TestNs, &'static str)>,
}

fn ip(ns: &TestNs, args: &str) {
    let argv: Vec<&str> = args.split_whitespace().collect();
    run_ok("ip", &[&["-n", &ns.name], argv.as_slice()].concat());
}

fn node() -> Node {
    let node = TestNs::new("pol");
    ip(&node, "link add br0 type bridge");
    ip(&node, "addr add 10.244.1.1/24 dev br0");
    ip(&node, "link set br0 up");
    // Bridged IPv4 goes through the IP hooks (the default in a new
    // namespace; said here because the test depends on it).
    node.exec_ok(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
    node.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let mut pods = Vec::new();
    for (i, (name, addr)) in [
        ("a", "10.244.1.2"),
        ("b", "10.244.1.3"),
        ("c", "10.244.1.4"),
    ]
    .into_iter()
    .enumerate()
    {
        let pod = TestNs::new(&format!("pol{name}"));
        ip(
            &node,
            &format!("link add v{i} type veth peer name eth0 netns {}", pod.name),
        );
        ip(&node, &format!("link set v{i} master br0 up"));
        ip(&pod, &format!("addr add {addr}/24 dev eth0"));
        ip(&pod, "link set eth0 up");
        ip(&pod, "route add default via 10.244.1.1");
        pods.push((name.to_string(), pod, addr));
    }
    let r = TestNs::new("polr");
    ip(
        &node,
        &format!("link add remote type veth peer name eth0 netns {}", r.name),
    );
    ip(&node, "addr add 10.244.2.1/24 dev remote");
    ip(&node, "link set remote up");
    ip(&r, "addr add 10.244.2.2/24 dev eth0");
    ip(&r, "link set eth0 up");
    ip(&r, "route add default via 10.244.2.1");
    pods.push(("r".to_string(), r, "10.244.2.2"));
    Node { node, pods }
}

impl Node {
    fn ns(&self, pod: &str) -> NetNs {
        let (_, ns, _) = self.pods.iter().find(|(n, _, _)| n == pod).unwrap();
        NetNs::named(&ns.name).unwrap()
    }

    fn addr(&self, pod: &str) -> &'static str {
        self.pods.iter().find(|(n, _, _)| n == pod).unwrap().2
    }

    /// Listens on `port` in every pod, answering each connection's byte.
    fn listen(&self, port: u16) {
        for (name, _, addr) in &self.pods {
            let sock: SocketAddr = format!("{addr}:{port}").parse().unwrap();
            let listener = self
                .ns(name)
                .run(|| TcpListener::bind(sock))
                .unwrap()
                .unwrap();
            std::thread::spawn(move || {
                for mut s in listener.incoming().flatten() {
                    std::thread::spawn(move || {
                        let mut b = [0u8; 1];
                        while s.read_exact(&mut b).is_ok() {
                            if s.write_all(&b).is_err() {
                                break;
                            }
                        }
                    });
                }
            });
        }
    }

    fn connect(&self, from: &str, to: &str, port: u16) -> Option<TcpStream> {
        let dst: SocketAddr = format!("{}:{port}", self.addr(to)).parse().unwrap();
        self.ns(from)
            .run(|| TcpStream::connect_timeout(&dst, Duration::from_millis(700)))
            .unwrap()
            .ok()
    }

    fn passes(&self, from: &str, to: &str, port: u16) -> bool {
        self.connect(from, to, port)
            .is_some_and(|mut s| echo(&mut s))
    }

    fn apply(&self, policies: &[NetworkPolicy]) {
        let view = |name: &str, labels: &[(&str, &str)]| PodView {
            namespace: "default".into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ips: vec![self.addr(name).parse().unwrap()],
            ports: Vec::new(),
            node: Some(if name == "r" { "n2" } else { "n1" }.into()),
        };
        let cluster = Cluster {
            pods: vec![
                view("a", &[("app", "a")]),
                view("b", &[("app", "b")]),
                view("c", &[("app", "c")]),
                view("r", &[("app", "r")]),
            ],
            namespaces: [("default".to_string(), Default::default())]
                .into_iter()
                .collect(),
        };
        let pods = compile(policies, &cluster, |p| p.node.as_deref() == Some("n1"));
        let node = NetNs::named(&self.node.name).unwrap();
        node.run(|| tweed_netlink::nft::apply(&ruleset(&pods), "apply the policies"))
            .unwrap()
            .unwrap();
    }
}

fn echo(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut b = [0u8; 1];
    s.write_all(b"x").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"x"
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
    let n = node();
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
    n.apply(&[]);
    assert!(n.passes("c", "b", 80));
    assert!(n.passes("a", "c", 80));
}
