//! A network lab declared in Kubernetes objects, exactly as shipped in
//! examples/multus-lab.yaml (docs/multus-lab.md): NetworkAttachmentDefinitions
//! for the segment `lan` (pure layer 2), the same segment in tweed's tap
//! guest mode, and a wire r1-pc3; a router r1 on node 1 serving DHCP on
//! the segment and forwarding to its wire; PCs on nodes 1 and 2 that get
//! their addresses from it; pc3 on node 3 at the wire's far end; a QEMU
//! VM on node 3 on the segment. Multus is installed by the step before
//! (segments.rs), which also puts `lan` in the ConfigMap.
//!
//! Everything asserted is read back from the kernel or carried by packets:
//! the leased addresses on the PCs' interfaces, pings across the segment
//! over IPv4 and IPv6 link-local, across the wire and through the router,
//! the VM's console and its web page; and after `kubectl delete`, on every
//! node: no port on the segment's bridge, as many veths as before, no
//! wire or guest record, none of the lab's MACs in any FDB, no wire end
//! in the node's annotation.

use tweed_cluster::Cluster;
use tweed_cluster::pods::{exec, http_from, ping_ok, pod};

use crate::segments::address;
use crate::wires::{link_local, ping6};

const LAB: &str = include_str!("../../../../examples/multus-lab.yaml");
const PODS: [&str; 5] = ["r1", "pc1", "pc2", "pc3", "vm1"];
/// The VM's address on its kernel command line, in the example.
const VM: &str = "192.168.77.30";

fn node_text(c: &Cluster, i: usize, argv: &[&str]) -> String {
    String::from_utf8_lossy(&c.on_node(i, argv).stdout).into_owned()
}

/// The names of node `i`'s veths (the host ends of pod interfaces).
fn veths(c: &Cluster, i: usize) -> std::collections::BTreeSet<String> {
    node_text(c, i, &["ip", "-o", "link", "show", "type", "veth"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// The forwarding entries tweedd programs on node `i`'s end of the
/// segment (`<MAC> dst <node>` on twx.4002). Not the bridge's own learnt
/// entries, which age out as on any switch.
fn remote_entries(c: &Cluster, i: usize) -> Vec<String> {
    node_text(c, i, &["bridge", "fdb", "show", "dev", "twx.4002"])
        .lines()
        .filter(|l| l.contains(" dst "))
        .map(str::to_string)
        .collect()
}

/// What is left on node `i` of the lab's host veths (the pods' ports on
/// the segment's bridge and veths that were not there before), with each one's details and the
/// node's last CNI calls; empty when nothing is.
fn lab_veths(c: &Cluster, i: usize, before: &std::collections::BTreeSet<String>) -> String {
    // The segment's own VXLAN device (twx.4002) stays a port.
    let ports: String = node_text(c, i, &["ip", "-o", "link", "show", "master", "tws-lan"])
        .lines()
        .filter(|l| !l.contains(": twx."))
        .collect();
    let new: Vec<String> = veths(c, i).difference(before).cloned().collect();
    if ports.trim().is_empty() && new.is_empty() {
        return String::new();
    }
    let mut out = format!("ports on tws-lan:\n{ports}\nnew veths: {new:?}\n");
    for v in &new {
        out += &node_text(c, i, &["ip", "-d", "link", "show", v]);
    }
    out += &node_text(c, i, &["sh", "-c", "tail -n 30 /var/log/tweed/cni.log"]);
    out
}

pub fn a_lab_of_routers_pcs_a_vm_and_a_wire_works_through_multus(c: &Cluster) {
    let started = std::time::Instant::now();
    for i in 1..=c.nodes {
        c.wait_until(30, &format!("segment bridge tws-lan on node {i}"), || {
            c.on_node(i, &["ip", "link", "show", "tws-lan"])
                .status
                .success()
        });
    }
    let veths_before: Vec<_> = (1..=c.nodes).map(|i| veths(c, i)).collect();
    c.apply(LAB);
    let mut wait = vec!["wait", "--for=condition=Ready", "--timeout=180s"];
    let names: Vec<String> = PODS.iter().map(|p| format!("pod/{p}")).collect();
    wait.extend(names.iter().map(String::as_str));
    c.kubectl_ok(&wait);
    assert_ne!(pod(c, "pc1").node, pod(c, "pc2").node);
    assert_ne!(pod(c, "r1").node, pod(c, "pc3").node);

    // DHCP across the segment: pc2 is on another node than r1's server.
    let mut leased = std::collections::HashMap::new();
    c.wait_until(90, "pc1 and pc2 leased an address from r1", || {
        for pc in ["pc1", "pc2"] {
            match address(c, pc, "net1") {
                Some(a) => drop(leased.insert(pc, a)),
                None => return false,
            }
        }
        true
    });
    for (pc, a) in &leased {
        let host: u8 = a
            .strip_prefix("192.168.77.")
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("{pc}'s net1 {a} is not from the lab's subnet"));
        assert!(
            (100..=149).contains(&host),
            "{pc}'s net1 {a} is not from r1's DHCP range"
        );
        // The option router of the lease became the route to the wire.
        let routes = exec(c, pc, &["ip", "route", "show", "10.99.0.0/30"]).unwrap_or_default();
        assert!(
            routes.contains("via 192.168.77.1"),
            "{pc} has no route from its lease: {routes:?}"
        );
    }
    println!(
        "multus lab: DHCP leases pc1 {}, pc2 {}",
        leased["pc1"], leased["pc2"]
    );
    for (from, to) in [
        ("pc1", leased["pc2"].as_str()),
        ("pc2", leased["pc1"].as_str()),
        ("pc2", "192.168.77.1"),
    ] {
        let r = ping_ok(c, from, to, 3);
        assert!(r.is_ok(), "{from} -> {to} over the segment: {r:?}");
    }
    // IPv6 link-local across the segment, both ways.
    let mut ll = std::collections::HashMap::new();
    c.wait_until(30, "link-local addresses on the segment", || {
        for p in ["pc1", "pc2"] {
            match link_local(c, p, "net1") {
                Some(a) => drop(ll.insert(p, a)),
                None => return false,
            }
        }
        true
    });
    for (from, to) in [("pc1", "pc2"), ("pc2", "pc1")] {
        let r = ping6(c, from, &ll[to], "net1");
        assert!(r.is_ok(), "{from} -> {to} over IPv6 link-local: {r:?}");
    }

    // The wire, cabled by tweedd across nodes 1 and 3 from the NAD.
    c.wait_until(60, "r1 and pc3 addressed on the wire", || {
        address(c, "r1", "eth1").as_deref() == Some("10.99.0.1")
            && address(c, "pc3", "eth1").as_deref() == Some("10.99.0.2")
    });
    for p in ["r1", "pc3"] {
        let alias = exec(c, p, &["cat", "/sys/class/net/eth1/ifalias"]).unwrap_or_default();
        assert!(
            alias.starts_with("tweed-wire vni=") && alias.contains("vxlan to"),
            "{p}'s eth1 is not tweedd's wire tunnel: {alias:?}"
        );
    }
    for (from, to) in [("r1", "10.99.0.2"), ("pc3", "10.99.0.1")] {
        let r = ping_ok(c, from, to, 3);
        assert!(r.is_ok(), "{from} -> {to} over the wire: {r:?}");
    }
    // Through the router: pc2 (node 2) over the segment to r1 (node 1),
    // over the wire to pc3 (node 3).
    let r = ping_ok(c, "pc2", "10.99.0.2", 3);
    assert!(r.is_ok(), "pc2 -> pc3 through r1: {r:?}");

    // The VM on the segment: its console, then packets from a PC on
    // another node.
    c.wait_until(240, "vm1's guest READY on its console", || {
        let log = c.kubectl(&["logs", "vm1"]);
        String::from_utf8_lossy(&log.stdout).contains("TWEED-GUEST-READY")
    });
    let log = c.kubectl_ok(&["logs", "vm1"]);
    assert!(
        log.contains(&format!("ip={VM}/24")),
        "vm1's console:\n{log}"
    );
    let r = ping_ok(c, "pc1", VM, 3);
    assert!(r.is_ok(), "pc1 -> vm1 over the segment: {r:?}");
    let page = http_from(c, "pc1", &format!("http://{VM}/"));
    assert!(
        page.as_deref().is_ok_and(|p| p.contains(VM)),
        "pc1 fetching vm1's page: {page:?}"
    );

    // Tear-down: nothing of the lab left on any node. First, what there
    // is while it runs: the records the checks below look for.
    let records = |i: usize| {
        node_text(
            c,
            i,
            &[
                "sh",
                "-c",
                "ls -A /run/tweed/wires/pods; grep -ls lan-vm /run/tweed/guests/*",
            ],
        )
    };
    let vm_node = c.node_index(&pod(c, "vm1").node);
    for i in [c.node_index(&pod(c, "r1").node), vm_node] {
        assert!(
            !records(i).trim().is_empty(),
            "node {i}: no record of the lab"
        );
    }
    assert!(
        records(vm_node).contains("/run/tweed/guests/"),
        "no guest record of vm1"
    );
    let wire_ends = || {
        c.json(&["get", "nodes"])["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                n["metadata"]["annotations"]["tweed.io/wire-ends"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect::<String>()
    };
    let ends = wire_ends();
    assert!(
        ends.contains("default/r1:eth1") && ends.contains("default/pc3:eth1"),
        "the wire's ends are not in the nodes' annotations: {ends}"
    );
    let mut macs = Vec::new();
    // vm1's image is the guest's kernel: its shell is the node's busybox.
    for (p, cat) in [
        ("r1", "cat"),
        ("pc1", "cat"),
        ("pc2", "cat"),
        ("vm1", "/usr/lib/tweed-cluster/urunc/busybox"),
    ] {
        let mut argv = vec![cat];
        if p == "vm1" {
            argv.push("cat");
        }
        argv.push("/sys/class/net/net1/address");
        let mac = exec(c, p, &argv);
        macs.push(
            mac.unwrap_or_else(|e| panic!("{p}'s MAC: {e}"))
                .trim()
                .to_string(),
        );
    }
    // tweedd sends node 1's frames for pc2 (node 2) straight to node 2.
    let pc2 = format!("{} dst {}", macs[2], "198.18.1.12");
    c.wait_until(30, &format!("node 1 has `{pc2}`"), || {
        remote_entries(c, 1).iter().any(|l| l.contains(&pc2))
    });
    c.kubectl_ok(&[
        "delete",
        "pod",
        "-l",
        "app=multus-lab",
        "--wait=true",
        "--timeout=90s",
    ]);
    c.kubectl_ok(&[
        "delete",
        "network-attachment-definitions",
        "lan",
        "lan-vm",
        "r1-pc3",
    ]);
    for i in 1..=c.nodes {
        // The host ends go in the background (tweed's DEL leaves the
        // kernel's slow unregistration to a helper).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let left = lab_veths(c, i, &veths_before[i - 1]);
            if left.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {i}: the lab's veths still there after 60 s:\n{left}\n{}",
                c.explain()
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let left = records(i);
        assert!(left.trim().is_empty(), "node {i}: records left: {left}");
        c.wait_until(
            30,
            &format!("node {i}: tweedd's entries for the lab's MACs gone"),
            || {
                !remote_entries(c, i)
                    .iter()
                    .any(|l| macs.iter().any(|m| l.contains(m.as_str())))
            },
        );
    }
    c.wait_until(
        15,
        "the wire's ends gone from the nodes' annotations",
        || {
            let ends = wire_ends();
            !ends.contains("default/r1:") && !ends.contains("default/pc3:")
        },
    );
    println!(
        "multus lab: up, checked and torn down in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
