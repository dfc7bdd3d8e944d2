//! A segment with a `Subnet` hands out addresses that are unique across
//! nodes: every node's tweedd claims its own block of the subnet in the
//! store and writes it to the segment's block file, and the plugin
//! allocates `net1`'s address from that block — with the subnet's prefix,
//! no gateway and no routes beyond the on-link one. Shown with the file,
//! etcd and kube stores: distinct blocks read back from the files and the
//! store, addresses inside them, pings across nodes, the block kept
//! across an agent restart, DEL releasing the address; and a subnet with
//! too few blocks refused by the plugin with tweedd's reason, leaving
//! nothing behind.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use common::{TestLab, wait_until};
use ipnet::Ipv4Net;
use serde_json::{Value, json};
use tweed_segment::block::BlockFile;

const SEGMENT: &str = "lab1";
const SUBNET: &str = "192.168.50.0/24";

fn lab(tag: &str, nodes: usize, store: &str, segment: Value) -> TestLab {
    TestLab::up_with(tag, nodes, "vxlan", store, |s| {
        s.net_conf_overrides
            .insert("Segments".into(), json!([segment]));
    })
}

fn block_file(lab: &TestLab, node: &str) -> Option<BlockFile> {
    let dir = lab.lab().node_dir(node).join("segments");
    BlockFile::read(&dir, SEGMENT).expect("readable block file")
}

/// The node's block, once tweedd has written it.
fn block_of(lab: &TestLab, node: &str) -> Ipv4Net {
    let mut found = None;
    wait_until(10, &format!("{node}'s block file"), || {
        found = match block_file(lab, node) {
            Some(BlockFile::Claimed(b)) => Some(b.block),
            _ => None,
        };
        found.is_some()
    });
    found.unwrap()
}

/// ADD or DEL of interface `ifname` on the segment for `node`'s pod.
fn segment_cni(lab: &TestLab, node: &str, command: &str, ifname: &str) -> Result<Value, String> {
    let n = lab.lab().state.node(node).unwrap();
    let pod = &n.pods[0];
    let conf = tweed_lab::pods::segment_conf(&lab.lab().node_dir(node), SEGMENT);
    tweed_lab::pods::cni_with(
        &lab.lab().binaries.plugin,
        &n.ns,
        &conf,
        &tweed_lab::pods::Call {
            command,
            container_id: &pod.container_id,
            pod_ns: &pod.ns,
            ifname,
            cni_args: "",
        },
    )
    .map_err(|e| match e {
        tweed_lab::LabError::Plugin { output, .. } => output,
        other => other.to_string(),
    })
}

/// The one address a result gives: checked to have the subnet's prefix
/// and no gateway.
fn address_in(result: &Value) -> Ipv4Addr {
    let ips = result["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), 1, "{result}");
    assert!(
        ips[0].get("gateway").is_none(),
        "a segment has no gateway: {result}"
    );
    let net: Ipv4Net = ips[0]["address"].as_str().unwrap().parse().unwrap();
    assert_eq!(net.prefix_len(), 24, "{result}");
    assert!(
        result["routes"].as_array().is_none_or(|r| r.is_empty()),
        "{result}"
    );
    net.addr()
}

fn pod_ns(lab: &TestLab, node: &str) -> String {
    lab.lab().state.node(node).unwrap().pods[0].ns.clone()
}

/// What the kernel says `ifname` in `node`'s pod holds: its IPv4 address
/// with prefix, and the routes through it.
fn kernel_view(lab: &TestLab, node: &str, ifname: &str) -> (Vec<String>, Vec<Value>) {
    let ns = format!(
        "{node}/{}",
        lab.lab().state.node(node).unwrap().pods[0].name
    );
    let addrs = lab.ip_json(&ns, &["-4", "addr", "show", "dev", ifname]);
    let addrs = addrs[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    let routes = lab.ip_json(&ns, &["-4", "route", "show", "dev", ifname]);
    (addrs, routes.as_array().unwrap().clone())
}

/// Whether `node`'s pod has an interface net1.
fn has_net1(lab: &TestLab, node: &str) -> bool {
    std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &pod_ns(lab, node),
            "ip",
            "link",
            "show",
            "net1",
        ])
        .output()
        .expect("ip link")
        .status
        .success()
}

/// A ping that gets a few tries: the first ARP on a busy machine can be
/// slow, a broken path still fails all of them.
fn ping(lab: &TestLab, from: &str, to: Ipv4Addr) -> bool {
    common::wait_for(10, || {
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &pod_ns(lab, from),
                "ping",
                "-c",
                "1",
                "-W",
                "2",
            ])
            .arg(to.to_string())
            .output()
            .expect("ping")
            .status
            .success()
    })
}

/// host-local's reservation file for `ip` on `node`.
fn reservation(lab: &TestLab, node: &str, ip: Ipv4Addr) -> PathBuf {
    lab.lab()
        .node_dir(node)
        .join("ipam")
        .join(format!("seg-{SEGMENT}"))
        .join(ip.to_string())
}

/// A 3-node lab on `store` with the segment's Subnet, put through the
/// checks every store shares; returns it with the nodes' blocks.
fn unique_addresses_across_nodes(tag: &str, store: &str) -> (TestLab, Vec<Ipv4Net>) {
    let mut lab = lab(
        tag,
        3,
        store,
        json!({"Name": SEGMENT, "VNI": 4001, "Subnet": SUBNET}),
    );
    let blocks = shared_checks(&mut lab);
    (lab, blocks)
}

fn shared_checks(lab: &mut TestLab) -> Vec<Ipv4Net> {
    let subnet: Ipv4Net = SUBNET.parse().unwrap();
    let nodes = ["n1", "n2", "n3"];
    let blocks: Vec<Ipv4Net> = nodes.iter().map(|n| block_of(lab, n)).collect();
    let distinct: BTreeSet<_> = blocks.iter().collect();
    assert_eq!(distinct.len(), 3, "blocks not unique: {blocks:?}");
    for b in &blocks {
        assert!(subnet.contains(b) && b.prefix_len() == 28, "{b}");
    }

    // net1 and net2 of each pod: addresses from its node's block, two
    // different ones on one node, all distinct across the nodes.
    let mut addresses = Vec::new();
    for (node, block) in nodes.iter().zip(&blocks) {
        let mut mine = Vec::new();
        for ifname in ["net1", "net2"] {
            let result = segment_cni(lab, node, "ADD", ifname)
                .unwrap_or_else(|e| panic!("{node}: ADD {ifname}: {e}"));
            let ip = address_in(&result);
            assert!(
                block.contains(&ip),
                "{node}: {ip} outside its block {block}"
            );
            let (addrs, routes) = kernel_view(lab, node, ifname);
            assert_eq!(addrs, vec![format!("{ip}/24")], "{node} {ifname}");
            // Only the on-link route of the subnet: no gateway, no default.
            assert_eq!(routes.len(), 1, "{node} {ifname}: {routes:?}");
            assert_eq!(routes[0]["dst"], SUBNET, "{routes:?}");
            assert!(routes[0].get("gateway").is_none(), "{routes:?}");
            mine.push(ip);
        }
        assert_ne!(mine[0], mine[1], "{node}: one address twice");
        addresses.extend(mine);
    }
    let distinct: BTreeSet<_> = addresses.iter().collect();
    assert_eq!(distinct.len(), addresses.len(), "{addresses:?}");
    eprintln!("blocks {blocks:?}, addresses {addresses:?}");

    // tweedctl status on a node shows the segment's block.
    let tweedctl = common::binaries().plugin.with_file_name("tweedctl");
    let out = std::process::Command::new(&tweedctl)
        .args(["status", "--netns", &lab.lab().state.node("n2").unwrap().ns])
        .arg("--segment-dir")
        .arg(lab.lab().node_dir("n2").join("segments"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("block {} of subnet {SUBNET}", blocks[1])),
        "{text}"
    );

    // Across the nodes over the segment.
    for (from, to) in [
        ("n1", addresses[2]),
        ("n1", addresses[4]),
        ("n3", addresses[0]),
    ] {
        assert!(
            ping(lab, from, to),
            "{from} cannot reach {to} on the segment"
        );
    }

    // An agent restart keeps the node's block (its record names the node).
    lab.lab_mut().stop_agent("n2").unwrap();
    lab.lab_mut().start_agent("n2").unwrap();
    wait_until(20, "n2's agent to be ready again", || {
        let l = lab.lab();
        l.ready(l.state.node("n2").unwrap())
    });
    assert_eq!(
        block_of(lab, "n2"),
        blocks[1],
        "n2's block changed on restart"
    );

    // DEL releases the address and removes the interface.
    assert!(reservation(lab, "n1", addresses[0]).exists());
    segment_cni(lab, "n1", "DEL", "net1").unwrap();
    assert!(
        !reservation(lab, "n1", addresses[0]).exists(),
        "reservation kept"
    );
    // The device goes shortly after DEL returns (a detached deletion).
    wait_until(5, "net1 to leave the pod", || !has_net1(lab, "n1"));
    blocks
}

#[test]
fn a_segment_subnet_gives_each_node_its_own_block() {
    let (lab, blocks) = unique_addresses_across_nodes("sga", "file");
    // The claims are leases in the store, one per node, in a space of the
    // segment's own beside the pod subnets.
    let root = lab
        .lab()
        .state
        .store_url
        .strip_prefix("file://")
        .unwrap()
        .to_string();
    let dir = PathBuf::from(root)
        .join("segments")
        .join(SEGMENT)
        .join("subnets");
    let mut keys: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    keys.sort();
    let mut want: Vec<String> = blocks
        .iter()
        .map(|b| format!("{}-{}", b.network(), b.prefix_len()))
        .collect();
    want.sort();
    assert_eq!(keys, want);
}

#[test]
fn a_segment_subnet_with_etcd() {
    let (lab, blocks) = unique_addresses_across_nodes("sge", "etcd");
    let endpoint = format!("http://{}:2379", tweed_lab::topology::ROUTER_IPV4);
    let out = lab
        .lab()
        .exec_output(
            "underlay",
            &[
                "etcdctl",
                "--endpoints",
                &endpoint,
                "get",
                "--prefix",
                "--keys-only",
                "/coreos.com/network/segments/lab1/subnets/",
            ],
        )
        .expect("etcdctl");
    let text = String::from_utf8_lossy(&out.stdout);
    let keys: BTreeSet<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let want: BTreeSet<String> = blocks
        .iter()
        .map(|b| {
            format!(
                "/coreos.com/network/segments/lab1/subnets/{}-{}",
                b.network(),
                b.prefix_len()
            )
        })
        .collect();
    assert_eq!(
        keys,
        want.iter().map(String::as_str).collect(),
        "etcd keys: {text}"
    );
}

#[test]
fn a_segment_subnet_with_the_kube_store() {
    let (lab, blocks) = unique_addresses_across_nodes("sgk", "kube");
    // One coordination.k8s.io Lease per block, held by its node.
    let list = tweed_lab::kube::call_ok(
        &lab.lab().state.underlay_ns,
        "GET",
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?labelSelector=tweed.io%2Fsegment%3Dlab1",
        None,
    )
    .expect("Leases from the fake API server");
    let mut held: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["metadata"]["annotations"]["tweed.io/block"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                o["spec"]["holderIdentity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    held.sort();
    let mut want: Vec<(String, String)> = ["n1", "n2", "n3"]
        .iter()
        .zip(&blocks)
        .map(|(n, b)| (format!("{}-{}", b.network(), b.prefix_len()), n.to_string()))
        .collect();
    want.sort();
    assert_eq!(held, want, "{list}");
}

/// One block for two nodes: the second node's tweedd says why it has
/// none, and the plugin refuses the segment's ADD there with that reason
/// (try again later), leaving nothing.
#[test]
fn a_subnet_without_a_free_block_is_refused_with_the_reason() {
    let lab = lab(
        "sgf",
        2,
        "file",
        json!({"Name": SEGMENT, "VNI": 4001, "Subnet": "192.168.60.0/30", "BlockLen": 30}),
    );
    let mut holder = None;
    wait_until(10, "both block files", || {
        let files = [block_file(&lab, "n1"), block_file(&lab, "n2")];
        if files.iter().all(Option::is_some) {
            holder = files
                .iter()
                .position(|f| matches!(f, Some(BlockFile::Claimed(_))));
            true
        } else {
            false
        }
    });
    let holder = holder.expect("one node holds the only block");
    let (with, without) = if holder == 0 {
        ("n1", "n2")
    } else {
        ("n2", "n1")
    };
    let Some(BlockFile::Unclaimed { reason, .. }) = block_file(&lab, without) else {
        panic!("{without} should have no block");
    };
    assert!(reason.contains("all 1 blocks (/30)"), "{reason}");

    let err = segment_cni(&lab, without, "ADD", "net1").expect_err("refused");
    let v: Value = serde_json::from_str(&err).expect("error JSON");
    assert_eq!(v["code"], 11, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("BlockLen"), "{v}");
    assert!(!has_net1(&lab, without), "net1 left behind");
    let ports = lab.ip_json(
        without,
        &["link", "show", "master", &format!("tws-{SEGMENT}")],
    );
    assert_eq!(ports.as_array().unwrap().len(), 1, "a stray port: {ports}");

    // The holder's pod gets the first of the block's two usable addresses.
    let result = segment_cni(&lab, with, "ADD", "net1").unwrap();
    let ips = result["ips"].as_array().unwrap();
    assert_eq!(ips[0]["address"], "192.168.60.1/30", "{result}");
}
