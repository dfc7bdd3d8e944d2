//! Rolling migration from flannel (etcd mode): one node runs flannel's
//! VXLAN data plane, built by hand exactly as flannel builds it and
//! published in flannel's etcd format; the other nodes run tweed with
//! `--flannel-compat`. Pods on all nodes reach each other; then the flannel
//! node switches to tweed under a continuous ping that loses at most one
//! packet, keeping its subnet and its VTEP MAC.
//!
//! The flannel node is configured from what is in etcd, read with
//! flannel's field names only — so the test also shows that the records
//! tweed publishes are enough for flannel.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::flannel::{etcdctl, tweed_compat_node};
use common::{TestLab, wait_until};
use serde_json::Value;

const PREFIX: &str = "/coreos.com/network/subnets/";
/// The VTEP MAC the "flannel" node's device has: different from the one
/// tweed gave that node before, so adopting it is visible.
const FLANNEL_MAC: &str = "0e:f1:a0:00:00:01";

/// Every record under flannel's prefix: (subnet key, JSON value).
fn records(lab: &TestLab) -> Vec<(String, Value)> {
    let out = etcdctl(lab, &["get", "--prefix", PREFIX]);
    let lines: Vec<&str> = out.lines().collect();
    lines
        .chunks(2)
        .map(|kv| {
            (
                kv[0].trim_start_matches(PREFIX).to_string(),
                serde_json::from_str(kv[1]).expect("record is JSON"),
            )
        })
        .collect()
}

/// `10.244.3.0-24` → ("10.244.3.0/24", "10.244.3.0").
fn cidr_and_gw(key: &str) -> (String, String) {
    let (net, len) = key.rsplit_once('-').expect("key");
    (format!("{net}/{len}"), net.to_string())
}

/// Runs `ip` or `bridge` in a node, as an operator (or flannel) would.
fn run(lab: &TestLab, node: &str, tool: &str, args: &str) {
    let argv: Vec<&str> = std::iter::once(tool).chain(args.split(' ')).collect();
    let out = lab.lab().exec_output(node, &argv).expect(tool);
    assert!(
        out.status.success(),
        "{node}: {tool} {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(lab: &TestLab, node: &str, args: &str) {
    run(lab, node, "ip", args)
}

fn bridge(lab: &TestLab, node: &str, args: &str) {
    run(lab, node, "bridge", args)
}

fn link_mac(lab: &TestLab, node: &str, dev: &str) -> Option<String> {
    let out = lab
        .lab()
        .exec_output(node, &["ip", "-j", "link", "show", dev])
        .expect("ip");
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j");
    v[0]["address"].as_str().map(String::from)
}

/// Turns `node` into a flannel node: tweed's device and record gone,
/// `flannel.1` made and programmed by hand from the other nodes' etcd
/// records, and its own record written the way flannel writes it.
fn become_flannel_node(lab: &mut TestLab, node: &str) -> String {
    let key = lab.lab().lease_of(node).expect("lease");
    let public = lab.lab().state.node(node).unwrap().underlay_ipv4.clone();
    let public = public.split('/').next().unwrap().to_string();
    lab.lab_mut().stop_agent(node).unwrap();
    ip(lab, node, "link del tweed.1");
    lab.lab().delete_lease(node).unwrap();

    // flannel's own record: its field names, no NodeName, an etcd lease.
    let grant = etcdctl(lab, &["lease", "grant", "86400"]);
    let id = grant
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    let record = format!(
        r#"{{"PublicIP":"{public}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{FLANNEL_MAC}"}}}}"#
    );
    etcdctl(
        lab,
        &[
            "put",
            &format!("--lease={id}"),
            &format!("{PREFIX}{key}"),
            &record,
        ],
    );

    // flannel.1 as flannel makes it.
    let (_, gw) = cidr_and_gw(&key);
    ip(
        lab,
        node,
        &format!(
            "link add flannel.1 type vxlan id 1 local {public} dev eth0 dstport 8472 nolearning"
        ),
    );
    ip(
        lab,
        node,
        &format!("link set flannel.1 address {FLANNEL_MAC} mtu 1450 up"),
    );
    ip(lab, node, &format!("addr add {gw}/32 dev flannel.1"));
    // One route, neighbour and FDB entry per peer, from the peers' records.
    for (peer_key, rec) in records(lab) {
        if peer_key == key {
            continue;
        }
        assert_eq!(rec["BackendType"], "vxlan", "{rec}");
        assert_eq!(rec["BackendData"]["VNI"], 1, "{rec}");
        let mac = rec["BackendData"]["VtepMAC"].as_str().expect("VtepMAC");
        let peer_ip = rec["PublicIP"].as_str().expect("PublicIP");
        let (peer_cidr, peer_gw) = cidr_and_gw(&peer_key);
        ip(
            lab,
            node,
            &format!("neigh replace {peer_gw} lladdr {mac} dev flannel.1 nud permanent"),
        );
        bridge(
            lab,
            node,
            &format!("fdb replace {mac} dev flannel.1 dst {peer_ip} self permanent"),
        );
        ip(
            lab,
            node,
            &format!("route replace {peer_cidr} via {peer_gw} dev flannel.1 onlink"),
        );
    }
    key
}

fn all_pods_talk(lab: &TestLab, when: &str) {
    wait_until(10, &format!("every pod to reach every pod {when}"), || {
        lab.lab().check().map(|m| m.all_ok()).unwrap_or(false)
    });
}

#[test]
fn flannel_node_switches_to_tweed_under_a_continuous_ping() {
    let mut lab = TestLab::up("flm", 3, "vxlan", "etcd");
    tweed_compat_node(&mut lab, "n2");
    tweed_compat_node(&mut lab, "n3");
    for n in ["n2", "n3"] {
        assert!(
            link_mac(&lab, n, "flannel.1").is_some(),
            "{n} has no flannel.1"
        );
        assert!(
            link_mac(&lab, n, "tweed.1").is_none(),
            "{n} still has tweed.1"
        );
    }
    let key = become_flannel_node(&mut lab, "n1");
    // The tweed nodes learn the flannel node from its flannel record.
    all_pods_talk(&lab, "with n1 on flannel");

    // Switch n1 under a ping from n2's pod to n1's pod, 50 per second.
    let target = lab.pod_ip("n1").to_string();
    let ping = lab
        .lab()
        .command(
            "n2/p1",
            &["ping", "-q", "-i", "0.02", "-c", "250", "-W", "2", &target].map(String::from),
        )
        .unwrap()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ping");
    std::thread::sleep(Duration::from_millis(1500));
    lab.lab_mut()
        .start_agent_args("n1", &["--flannel-compat"])
        .unwrap();
    let out = ping.wait_with_output().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    let received: u32 = text
        .split(", ")
        .find_map(|p| p.strip_suffix(" received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ping summary:\n{text}"));
    eprintln!(
        "ping across the switch: {}",
        text.lines()
            .find(|l| l.contains("transmitted"))
            .unwrap_or("")
    );
    assert!(
        received >= 249,
        "more than one packet lost while n1 switched from flannel to tweed:\n{text}\n{}",
        lab.logs()
    );

    // Same subnet (no pod re-addressed), flannel's device and MAC adopted.
    assert_eq!(lab.lab().lease_of("n1").as_deref(), Some(key.as_str()));
    assert_eq!(
        link_mac(&lab, "n1", "flannel.1").as_deref(),
        Some(FLANNEL_MAC)
    );
    assert!(link_mac(&lab, "n1", "tweed.1").is_none());
    let rec = records(&lab)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .expect("n1's record");
    assert_eq!(rec["NodeName"], "n1", "tweed took the record over: {rec}");
    assert_eq!(rec["BackendData"]["VtepMAC"], FLANNEL_MAC, "{rec}");
    // Its routes to the others are tweed's now (protocol 77) on flannel.1.
    let routes = lab.ip_json("n1", &["route", "show", "proto", "77"]);
    assert_eq!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["dev"] == "flannel.1")
            .count(),
        2,
        "{routes}"
    );
    all_pods_talk(&lab, "after n1 switched");
}
