//! Masquerade, checked against the kernel: the ruleset `nft` reads back,
//! and real TCP connections between throwaway namespaces.
//!
//! `install` runs on a thread that entered the test's namespace, so the
//! `nft` it spawns programs that namespace and never the host.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tweed_netlink::NetNs;
use tweed_testkit::{TestNs, run_ok};
use tweedd::masq::{self, MasqError, MasqRules};

fn nets(list: &[&str]) -> MasqRules {
    MasqRules {
        cluster_networks: list
            .iter()
            .map(|s| s.parse().expect("test network"))
            .collect(),
    }
}

/// Runs `f` on a thread inside `ns`.
fn in_ns<T: Send>(ns: &TestNs, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            NetNs::named(&ns.name)
                .expect("open namespace")
                .run(f)
                .expect("enter namespace")
        })
        .join()
        .expect("namespace thread panicked")
    })
}

/// The table's rules as (chain, statements) in order, from `nft -j`.
fn rules(ns: &TestNs) -> Vec<(String, serde_json::Value)> {
    let out = ns.exec_ok(&["nft", "-j", "list", "table", "inet", masq::TABLE]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("nft -j output is JSON");
    v["nftables"]
        .as_array()
        .expect("nftables array")
        .iter()
        .filter_map(|o| o.get("rule"))
        .map(|r| {
            (
                r["chain"].as_str().unwrap_or_default().to_string(),
                r["expr"].clone(),
            )
        })
        .collect()
}

/// The table in nft's text form, for readable assertions.
fn listing(ns: &TestNs) -> String {
    ns.exec_ok(&["nft", "list", "table", "inet", masq::TABLE])
}

fn tweed_tables(ns: &TestNs) -> usize {
    ns.exec_ok(&["nft", "list", "tables"])
        .lines()
        .filter(|l| l.trim() == format!("table inet {}", masq::TABLE))
        .count()
}

fn assert_unique(rules: &[(String, serde_json::Value)]) {
    let distinct: HashSet<String> = rules.iter().map(|(c, e)| format!("{c} {e}")).collect();
    assert_eq!(distinct.len(), rules.len(), "duplicate rules: {rules:#?}");
}

fn count(rules: &[(String, serde_json::Value)], chain: &str) -> usize {
    rules.iter().filter(|(c, _)| c == chain).count()
}

#[test]
fn install_twice_leaves_one_copy_of_each_rule() {
    let ns = TestNs::new("masq-twice");
    let rules_in = nets(&["10.244.0.0/16"]);
    in_ns(&ns, || masq::install(&rules_in)).expect("first install");
    in_ns(&ns, || masq::install(&rules_in)).expect("second install");

    assert_eq!(tweed_tables(&ns), 1);
    let got = rules(&ns);
    assert_unique(&got);
    assert_eq!(count(&got, masq::POSTROUTING_CHAIN), 3, "{got:#?}");
    assert_eq!(count(&got, masq::FORWARD_CHAIN), 2, "{got:#?}");
    let text = listing(&ns);
    for want in [
        "type nat hook postrouting priority srcnat; policy accept;",
        "meta mark & 0x00004000 == 0x00004000 return",
        "ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return",
        "ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
        "type filter hook forward priority filter; policy accept;",
        "ip saddr 10.244.0.0/16 accept",
        "ip daddr 10.244.0.0/16 accept",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // Pod-to-pod must be exempted before the masquerade rule sees it.
    let exempt = text
        .find("ip daddr 10.244.0.0/16 return")
        .expect("exemption");
    assert!(
        exempt < text.find("masquerade fully-random").expect("masquerade"),
        "{text}"
    );
}

#[test]
fn install_with_other_networks_replaces_the_rules() {
    let ns = TestNs::new("masq-replace");
    in_ns(&ns, || masq::install(&nets(&["10.244.0.0/16"]))).expect("install");
    let dual = nets(&["10.96.0.0/12", "fd00:10:244::/56"]);
    in_ns(&ns, || masq::install(&dual)).expect("reinstall");

    let text = listing(&ns);
    assert!(
        !text.contains("10.244.0.0/16"),
        "old network left behind:\n{text}"
    );
    for want in [
        "ip saddr 10.96.0.0/12 ip daddr != 224.0.0.0/4 masquerade fully-random",
        "ip6 saddr fd00:10:244::/56 ip6 daddr fd00:10:244::/56 return",
        "ip6 saddr fd00:10:244::/56 ip6 daddr != ff00::/8 masquerade fully-random",
        "ip6 daddr fd00:10:244::/56 accept",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let got = rules(&ns);
    assert_unique(&got);
    assert_eq!(count(&got, masq::POSTROUTING_CHAIN), 1 + 2 * 2, "{got:#?}");
    assert_eq!(count(&got, masq::FORWARD_CHAIN), 2 * 2, "{got:#?}");
}

#[test]
fn install_for_node_adds_flannels_rules_for_outside_traffic() {
    let ns = TestNs::new("masq-node");
    let node: IpNet = "10.244.1.0/24".parse().expect("subnet");
    in_ns(&ns, || {
        masq::install_for_node(&nets(&["10.244.0.0/16"]), &[node])
    })
    .expect("install");
    let text = listing(&ns);
    let order: Vec<usize> = [
        "ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 return",
        "ip saddr != 10.244.0.0/16 ip daddr 10.244.1.0/24 return",
        "ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
        "ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random",
    ]
    .iter()
    .map(|want| {
        text.find(want)
            .unwrap_or_else(|| panic!("missing {want:?} in\n{text}"))
    })
    .collect();
    assert!(order.is_sorted(), "rules out of order:\n{text}");
}

#[test]
fn remove_leaves_no_table_and_tolerates_a_missing_one() {
    let ns = TestNs::new("masq-remove");
    in_ns(&ns, || masq::install(&nets(&["10.244.0.0/16"]))).expect("install");
    assert_eq!(tweed_tables(&ns), 1);
    in_ns(&ns, masq::remove).expect("remove");
    assert_eq!(tweed_tables(&ns), 0);
    in_ns(&ns, masq::remove).expect("remove again");
}

#[test]
fn bad_input_is_refused_before_touching_the_kernel() {
    let ns = TestNs::new("masq-bad");
    let err = in_ns(&ns, || masq::install(&MasqRules::default())).expect_err("no networks");
    assert!(matches!(err, MasqError::NoNetworks), "{err}");
    let outside: IpNet = "10.9.1.0/24".parse().expect("subnet");
    let err = in_ns(&ns, || {
        masq::install_for_node(&nets(&["10.244.0.0/16"]), &[outside])
    })
    .expect_err("subnet outside the cluster");
    assert!(err.to_string().contains("10.9.1.0/24"), "{err}");
    assert_eq!(tweed_tables(&ns), 0);
}

/// A node with two local pods (10.244.1.2, 10.244.2.2; fd00:10:244:1::2)
/// and an outside host on the underlay that has no route to the pods.
struct Lab {
    node: TestNs,
    pod1: TestNs,
    pod2: TestNs,
    outside: TestNs,
}

fn veth(a: &TestNs, a_if: &str, b: &TestNs, b_if: &str) {
    run_ok(
        "ip",
        &[
            "-n", &a.name, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns",
            &b.name,
        ],
    );
    a.exec_ok(&["ip", "link", "set", a_if, "up"]);
    b.exec_ok(&["ip", "link", "set", b_if, "up"]);
}

fn addr(ns: &TestNs, cidr: &str, dev: &str) {
    let mut argv = vec!["ip", "addr", "add", cidr, "dev", dev];
    if cidr.contains(':') {
        argv.push("nodad");
    }
    ns.exec_ok(&argv);
}

fn lab() -> Lab {
    let lab = Lab {
        node: TestNs::new("mq-node"),
        pod1: TestNs::new("mq-pod1"),
        pod2: TestNs::new("mq-pod2"),
        outside: TestNs::new("mq-out"),
    };
    veth(&lab.node, "p1", &lab.pod1, "eth0");
    veth(&lab.node, "p2", &lab.pod2, "eth0");
    veth(&lab.node, "up0", &lab.outside, "eth0");
    addr(&lab.node, "10.244.1.1/24", "p1");
    addr(&lab.node, "fd00:10:244:1::1/64", "p1");
    addr(&lab.node, "10.244.2.1/24", "p2");
    addr(&lab.node, "198.18.0.1/24", "up0");
    addr(&lab.node, "fd00:198:18::1/64", "up0");
    addr(&lab.pod1, "10.244.1.2/24", "eth0");
    addr(&lab.pod1, "fd00:10:244:1::2/64", "eth0");
    lab.pod1
        .exec_ok(&["ip", "route", "add", "default", "via", "10.244.1.1"]);
    lab.pod1.exec_ok(&[
        "ip",
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd00:10:244:1::1",
    ]);
    addr(&lab.pod2, "10.244.2.2/24", "eth0");
    lab.pod2
        .exec_ok(&["ip", "route", "add", "default", "via", "10.244.2.1"]);
    addr(&lab.outside, "198.18.0.254/24", "eth0");
    addr(&lab.outside, "fd00:198:18::254/64", "eth0");
    lab.node
        .exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    lab.node
        .exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    lab
}

/// Connects from `from` to `ip` where a listener in `at` waits, and returns
/// the source address the listener saw, or `None` if no connection came up.
fn source_seen(from: &TestNs, at: &TestNs, ip: &str) -> Option<IpAddr> {
    let ip: IpAddr = ip.parse().expect("target address");
    let any: IpAddr = if ip.is_ipv4() {
        [0u8; 4].into()
    } else {
        [0u16; 8].into()
    };
    let listener = in_ns(at, || TcpListener::bind((any, 0))).expect("listen");
    let target = SocketAddr::new(ip, listener.local_addr().expect("listener address").port());
    let _stream = in_ns(from, || {
        TcpStream::connect_timeout(&target, Duration::from_secs(2))
    })
    .ok()?;
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match listener.accept() {
            Ok((_, peer)) => return Some(peer.ip()),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connected, but the listener saw nothing: {e}"),
        }
    }
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("address"))
}

#[test]
fn pods_reach_outside_as_the_node_and_each_other_as_themselves() {
    let lab = lab();
    let dual = nets(&["10.244.0.0/16", "fd00:10:244::/56"]);

    // Without masquerade the outside host cannot answer: the test can fail.
    assert_eq!(source_seen(&lab.pod1, &lab.outside, "198.18.0.254"), None);
    assert_eq!(
        source_seen(&lab.pod1, &lab.outside, "fd00:198:18::254"),
        None
    );

    in_ns(&lab.node, || masq::install(&dual)).expect("install");
    assert_eq!(
        source_seen(&lab.pod1, &lab.outside, "198.18.0.254"),
        ip("198.18.0.1")
    );
    assert_eq!(
        source_seen(&lab.pod1, &lab.outside, "fd00:198:18::254"),
        ip("fd00:198:18::1")
    );
    assert_eq!(
        source_seen(&lab.pod1, &lab.pod2, "10.244.2.2"),
        ip("10.244.1.2")
    );

    in_ns(&lab.node, masq::remove).expect("remove");
    assert_eq!(source_seen(&lab.pod1, &lab.outside, "198.18.0.254"), None);
    assert_eq!(
        source_seen(&lab.pod1, &lab.pod2, "10.244.2.2"),
        ip("10.244.1.2")
    );
}

#[test]
fn outside_clients_keep_their_address_towards_this_nodes_pods() {
    let lab = lab();
    lab.outside
        .exec_ok(&["ip", "route", "add", "10.244.0.0/16", "via", "198.18.0.1"]);
    let cluster = nets(&["10.244.0.0/16"]);

    // Knowing only the cluster network: no outside traffic is masqueraded.
    in_ns(&lab.node, || masq::install(&cluster)).expect("install");
    assert_eq!(
        source_seen(&lab.outside, &lab.pod1, "10.244.1.2"),
        ip("198.18.0.254")
    );
    assert_eq!(
        source_seen(&lab.outside, &lab.pod2, "10.244.2.2"),
        ip("198.18.0.254")
    );

    // Knowing the node's subnet (10.244.1.0/24), 10.244.2.2 stands for a pod
    // on another node: flannel masquerades traffic to it.
    let node: IpNet = "10.244.1.0/24".parse().expect("subnet");
    in_ns(&lab.node, || masq::install_for_node(&cluster, &[node])).expect("install for node");
    assert_eq!(
        source_seen(&lab.outside, &lab.pod1, "10.244.1.2"),
        ip("198.18.0.254")
    );
    assert_eq!(
        source_seen(&lab.outside, &lab.pod2, "10.244.2.2"),
        ip("10.244.2.1")
    );
    assert_eq!(
        source_seen(&lab.pod1, &lab.pod2, "10.244.2.2"),
        ip("10.244.1.2")
    );
    assert_eq!(
        source_seen(&lab.pod1, &lab.outside, "198.18.0.254"),
        ip("198.18.0.1")
    );
}
