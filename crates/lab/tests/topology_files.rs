//! `tweedctl lab up --topology FILE`: a lab built from a topology file in
//! containerlab's shape — its pods on their nodes, links between pod
//! interfaces as wires, links to a segment as attachments through the
//! segment's network configuration — as `lab up` reports it and as the
//! kernel and packets say.

mod common;

use common::wait_for;
use tweed_netlink::NetNs;

/// `tweedctl lab up --topology`: the file's pods on the file's nodes,
/// every wire up, as `lab up` reports it.
#[test]
fn the_topology_file_builds_a_lab_with_its_wires() {
    let name = format!("twtopo{}", std::process::id() % 100000);
    // `tweedctl lab up --topology` with the file's own node count.
    let lab = common::topology_lab(
        &name,
        "topology:\n  nodes:\n    a: {node: n1}\n    b: {node: n2}\n    c: {node: n2}\n  links:\n    - endpoints: [\"a:eth1\", \"b:eth1\"]\n    - endpoints: [\"b:eth2\", \"c:eth5\"]\n",
    );
    let text = lab.output.clone();
    let checks = [
        "default/a:eth1",
        "up (vxlan to n2)",
        "default/b:eth1",
        "up (vxlan to n1)",
        "default/c:eth5",
        "up (veth)",
    ];
    let missing: Vec<&str> = checks
        .iter()
        .copied()
        .filter(|c| !text.contains(c))
        .collect();
    let alive = common::link(&format!("{name}.n2.c"), "eth5").is_some()
        && common::link(&format!("{name}.n1.a"), "eth1").is_some();
    drop(lab);
    assert!(missing.is_empty(), "missing {missing:?} in:\n{text}");
    assert!(alive, "the wires' devices are not in the pods");
    assert!(
        !wait_for(1, || NetNs::named(&format!("{name}.n1")).is_ok()),
        "lab down left n1"
    );
}

/// `tweedctl lab up --topology` with a segment: the file's segment in the
/// lab's net-conf, links to it attach the pods' interfaces with addresses
/// from its subnet, `lab up` reports them, and the pods on two nodes talk
/// over it.
#[test]
fn the_topology_file_puts_pods_on_a_segment() {
    let name = format!("tsgtopo{}", std::process::id() % 100000);
    let lab = common::topology_lab(
        &name,
        "segments:\n  lan: {vni: 4011, subnet: 192.168.70.0/24}\ntopology:\n  nodes:\n    pc1: {node: n1}\n    pc2: {node: n2}\n  links:\n    - endpoints: [\"pc1:eth1\", \"lan\"]\n    - endpoints: [\"lan\", \"pc2:eth1\"]\n    - endpoints: [\"pc1:eth2\", \"pc2:eth2\"]\n",
    );
    let text = lab.output.clone();
    // What the kernel says: eth1 of each pod on the node's segment bridge
    // side, with an address of the subnet; then a ping across the nodes.
    let addr_of = |pod_ns: &str| -> Option<String> {
        let out = std::process::Command::new("ip")
            .args(["-n", pod_ns, "-j", "-4", "addr", "show", "dev", "eth1"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v[0]["addr_info"][0]["local"].as_str().map(str::to_string)
    };
    let pc1 = format!("{name}.n1.pc1");
    let pc2 = format!("{name}.n2.pc2");
    let (a1, a2) = (addr_of(&pc1), addr_of(&pc2));
    // A few tries: the agents may still be learning each other's leases.
    let pinged = a2
        .as_deref()
        .is_some_and(|a| common::ping_from(&pc1, a, 10));
    let reported = ["eth1 on segment lan 192.168.70.", "up (vxlan to n2)"]
        .iter()
        .all(|want| text.contains(want));
    // A single pod joins the segment too (`lab pod add --segment`); a
    // segment the lab lacks is refused before any pod is made.
    let pod_add = |pod: &str, segment: &str| {
        let args = [
            "lab",
            "pod",
            "--name",
            &name,
            "add",
            "n2",
            pod,
            "--segment",
            segment,
        ];
        lab.run(&args)
    };
    let added = pod_add("pc3", "eth1=lan");
    assert!(added.status.success(), "lab pod add --segment: {added:?}");
    let added = String::from_utf8_lossy(&added.stdout).into_owned();
    let a3 = addr_of(&format!("{name}.n2.pc3"));
    let pinged3 = a3
        .as_deref()
        .is_some_and(|a| common::ping_from(&pc1, a, 10));
    let refused = pod_add("pc4", "eth1=nope");
    let pc4_made = std::path::Path::new(&format!("/run/netns/{name}.n2.pc4")).exists();
    // `lab pod del` lets go of the segment's address and port too.
    lab.tweedctl(&["lab", "pod", "--name", &name, "del", "n2", "pc2"]);
    let ipam = std::path::PathBuf::from(format!("/run/tweed-lab/{name}/n2/ipam/seg-lan"));
    let reserved: Vec<String> = std::fs::read_dir(&ipam)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|f| Some(f) == a2.as_ref())
                .collect()
        })
        .unwrap_or_default();
    // The port goes shortly after DEL returns (a detached deletion).
    let n2 = format!("{name}.n2");
    let mut ports = serde_json::Value::Null;
    common::wait_for(5, || {
        let out = std::process::Command::new("ip")
            .args(["-n", &n2, "-j", "link", "show", "master", "tws-lan"])
            .output()
            .unwrap();
        ports = serde_json::from_slice(&out.stdout).unwrap_or_default();
        ports.as_array().map(Vec::len) == Some(2)
    });
    drop(lab);
    for a in [&a1, &a2] {
        assert!(
            a.as_deref().is_some_and(|a| a.starts_with("192.168.70.")),
            "{a1:?} {a2:?}\n{text}"
        );
    }
    assert_ne!(a1, a2);
    assert!(pinged, "pc1 cannot reach pc2 ({a2:?}) on the segment");
    assert!(reported, "lab up did not report the attachments:\n{text}");
    assert!(
        added.contains("eth1 on segment lan 192.168.70.") && a3.is_some(),
        "lab pod add --segment: {added}"
    );
    assert!(pinged3, "pc1 cannot reach the added pc3 ({a3:?})");
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("has no segment \"nope\""),
        "{refused:?}"
    );
    assert!(!pc4_made, "a refused pod was made anyway");
    assert!(
        reserved.is_empty(),
        "pc2's segment address kept: {reserved:?}"
    );
    assert_eq!(
        ports.as_array().map(Vec::len),
        Some(2),
        "only the VXLAN device and pc3's port stay on n2's segment bridge: {ports}"
    );
}
