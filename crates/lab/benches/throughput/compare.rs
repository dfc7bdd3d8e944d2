//! Comparing the two sides before timing: the devices' parameters (`ip -d
//! -j link`), and the routes, of tweed's node 1 and the hand-built node 1.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tweed_lab::Lab;

use crate::common::ipn;

/// `ip -d -j link show dev DEV` in `ns`, flattened to `path = value`.
fn link_params(ns: &str, dev: &str) -> BTreeMap<String, String> {
    let out = ipn(ns, &format!("-d -j link show dev {dev}"));
    let v: Value = serde_json::from_str(&out).expect("ip -j");
    let mut flat = BTreeMap::new();
    flatten("", &v[0], &mut flat);
    flat
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::Array(a) if a.iter().all(|x| !x.is_object()) => {
            let s: Vec<String> = a.iter().map(|x| x.to_string()).collect();
            out.insert(prefix.to_string(), s.join(","));
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.to_string());
        }
    }
}

/// Keys that name or number a device rather than configure it.
fn identity_key(k: &str) -> bool {
    [
        "ifindex",
        "ifname",
        "address",
        "broadcast",
        "link",
        "link_index",
        "link_netnsid",
        "operstate",
        "master",
        "ifalias",
        "parentbus",
        "parentdev",
        "perm_address",
    ]
    .contains(&k)
        || k.starts_with("linkinfo.info_slave_data.")
            && ["id", "no", "designated_", "root_id", "bridge_id", "port_"]
                .iter()
                .any(|p| k.starts_with(&format!("linkinfo.info_slave_data.{p}")))
        || k.starts_with("linkinfo.info_data.")
            && [
                "bridge_id",
                "root_id",
                "designated",
                "hello_timer",
                "tcn_timer",
                "topology_change_timer",
                "gc_timer",
                "vlan_default_pvid",
                "group_addr",
                "multicast_router",
                "mcast_",
            ]
            .iter()
            .any(|p| k.starts_with(&format!("linkinfo.info_data.{p}")))
        || k.ends_with("timer")
}

/// Prints the parameters in which two devices differ.
fn compare_link(what: &str, a: (&str, &str), b: (&str, &str)) {
    let pa = link_params(a.0, a.1);
    let pb = link_params(b.0, b.1);
    let mut diffs = Vec::new();
    for k in pa.keys().chain(pb.keys()).collect::<BTreeSet<_>>() {
        if identity_key(k) {
            continue;
        }
        let (x, y) = (pa.get(k), pb.get(k));
        if x != y {
            diffs.push(format!(
                "{k}: {} vs {}",
                x.map(String::as_str).unwrap_or("-"),
                y.map(String::as_str).unwrap_or("-")
            ));
        }
    }
    if diffs.is_empty() {
        println!(
            "  {what:<22} same parameters (mtu {})",
            pa.get("mtu").map(String::as_str).unwrap_or("?")
        );
    } else {
        println!("  {what:<22} differ: {}", diffs.join("; "));
    }
}

/// The host end of a pod's veth: the one port of the node bridge.
fn bridge_port(ns: &str, bridge: &str) -> String {
    let out = ipn(ns, &format!("-j link show master {bridge}"));
    let v: Value = serde_json::from_str(&out).expect("ip -j");
    v[0]["ifname"].as_str().expect("a bridge port").to_string()
}

fn route_line(ns: &str, family: &str, dst: &str) -> String {
    let out = ipn(ns, &format!("{family} -d route show {dst}"));
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prints how tweed's node 1 and the hand-built node 1 differ.
pub fn compare_state(lab: &Lab, hand: &str, backend: &str) {
    let n1 = &lab.state.nodes[0];
    let n2 = &lab.state.nodes[1];
    let hn1 = format!("{hand}.n1");
    println!(
        "{backend}: tweed (lab {}) vs hand-built ({hand}.*), node 1 and its pod:",
        lab.state.name
    );
    compare_link("underlay eth0", (&n1.ns, "eth0"), (&hn1, "eth0"));
    compare_link("node bridge", (&n1.ns, "tweed0"), (&hn1, "cni0"));
    compare_link(
        "host veth",
        (&n1.ns, &bridge_port(&n1.ns, "tweed0")),
        (&hn1, "vethp"),
    );
    compare_link(
        "pod eth0",
        (&n1.pods[0].ns, "eth0"),
        (&format!("{hand}.n1.p"), "eth0"),
    );
    let peer_subnet = lease_subnet(lab, &n2.name);
    match backend {
        "vxlan" => {
            compare_link("vxlan device", (&n1.ns, "tweed.1"), (&hn1, "flannel.1"));
            println!("  route tweed: {}", route_line(&n1.ns, "-4", &peer_subnet));
            println!("  route hand:  {}", route_line(&hn1, "-4", "10.244.2.0/24"));
        }
        "geneve" => {
            compare_link("geneve device", (&n1.ns, "tweed.geneve"), (&hn1, "gnv0"));
            println!("  route tweed: {}", route_line(&n1.ns, "-4", &peer_subnet));
            println!("  route hand:  {}", route_line(&hn1, "-4", "10.244.2.0/24"));
        }
        "wireguard" => {
            compare_link(
                "wireguard device",
                (&n1.ns, "tweed-wg"),
                (&hn1, "flannel-wg"),
            );
            println!("  route tweed: {}", route_line(&n1.ns, "-4", &peer_subnet));
            println!("  route hand:  {}", route_line(&hn1, "-4", "10.244.2.0/24"));
        }
        "srv6" => {
            println!("  route tweed: {}", route_line(&n1.ns, "-4", &peer_subnet));
            println!("  route hand:  {}", route_line(&hn1, "-4", "10.244.2.0/24"));
            let out = ipn(&n1.ns, "-6 route show proto 77");
            for l in out.lines() {
                println!(
                    "  route tweed: {}",
                    l.split_whitespace().collect::<Vec<_>>().join(" ")
                );
            }
            for dst in ["fd00:5:0:1::4", "fd00:5:0:2::/64"] {
                println!("  route hand:  {}", route_line(&hn1, "-6", dst));
            }
        }
        _ => {
            println!("  route tweed: {}", route_line(&n1.ns, "-4", &peer_subnet));
            println!("  route hand:  {}", route_line(&hn1, "-4", "10.244.2.0/24"));
        }
    }
}

/// The subnet (CIDR) a lab node leased.
fn lease_subnet(lab: &Lab, node: &str) -> String {
    let key = lab.lease_of(node).expect("lease");
    let (net, len) = key
        .split('&')
        .next()
        .unwrap()
        .rsplit_once('-')
        .expect("key");
    format!("{net}/{len}")
}
