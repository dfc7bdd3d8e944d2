//! A segment with a `Subnet` hands out addresses that are unique across
//! nodes: every node's tweedd claims its own block of the subnet in the
//! store and writes it to the segment's block file, and the plugin
//! allocates `net1`'s address from that block — with the subnet's prefix,
//! no gateway and no routes beyond the on-link one. Shown with the file,
//! etcd and kube stores: distinct blocks read back from the files and the
//! store, addresses inside them, pings across nodes, the block kept
//! across an agent restart, DEL releasing the address; and a subnet with
//! too few blocks refused by the plugin with tweedd's reason, leaving
//! nothing behind. `IPv6Subnet` does the same for IPv6, alone or beside
//! `Subnet` (one address of each family per interface).

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use common::{TestLab, etcd_keys, wait_until};
use ipnet::{IpNet, Ipv4Net};
use serde_json::{Value, json};
use tweed_segment::block::{BlockFile, Blocks};

const SEGMENT: &str = "lab1";
const SUBNET: &str = "192.168.50.0/24";

fn lab(tag: &str, nodes: usize, store: &str, segment: Value) -> TestLab {
    TestLab::up_with(tag, nodes, "vxlan", store, |s| {
        s.net_conf_overrides
            .insert("Segments".into(), json!([segment]));
    })
}

fn block_file(lab: &TestLab, node: &str) -> Option<BlockFile> {
    block_file_of(lab, node, SEGMENT)
}

fn block_file_of(lab: &TestLab, node: &str, segment: &str) -> Option<BlockFile> {
    let dir = lab.lab().node_dir(node).join("segments");
    BlockFile::read(&dir, segment).expect("readable block file")
}

/// The node's IPv4 block, once tweedd has written it.
fn block_of(lab: &TestLab, node: &str) -> Ipv4Net {
    let blocks = blocks_of(lab, node, SEGMENT);
    blocks.ipv4.expect("an IPv4 block").block
}

/// The node's (first and only) blocks of `segment`, once tweedd has
/// written them.
fn blocks_of(lab: &TestLab, node: &str, segment: &str) -> Blocks {
    let claims = claims_of(lab, node, segment);
    assert_eq!(claims.len(), 1, "{node} holds one claim: {claims:?}");
    claims[0]
}

/// Every claim of the node on `segment`, once tweedd has written them.
fn claims_of(lab: &TestLab, node: &str, segment: &str) -> Vec<Blocks> {
    let mut found = None;
    wait_until(10, &format!("{node}'s block file of {segment}"), || {
        found = match block_file_of(lab, node, segment) {
            Some(BlockFile::Claimed(b)) => Some(b),
            _ => None,
        };
        found.is_some()
    });
    found.unwrap()
}

/// ADD or DEL of interface `ifname` on the segment for `node`'s pod.
fn segment_cni(lab: &TestLab, node: &str, command: &str, ifname: &str) -> Result<Value, String> {
    segment_cni_on(lab, node, SEGMENT, command, ifname)
}

/// ADD or DEL of interface `ifname` on `segment` for `node`'s pod.
fn segment_cni_on(
    lab: &TestLab,
    node: &str,
    segment: &str,
    command: &str,
    ifname: &str,
) -> Result<Value, String> {
    let n = lab.lab().state.node(node).unwrap();
    let pod = &n.pods[0];
    let conf = tweed_lab::pods::segment_conf(&lab.lab().node_dir(node), segment);
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
fn ping(lab: &TestLab, from: &str, to: impl Into<IpAddr>) -> bool {
    let to: IpAddr = to.into();
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

/// What `tweedctl status` prints on `node` (with the lab's segment dir).
fn tweedctl_status(lab: &TestLab, node: &str) -> String {
    let tweedctl = common::binaries().plugin.with_file_name("tweedctl");
    let out = std::process::Command::new(&tweedctl)
        .args(["status", "--netns", &lab.lab().state.node(node).unwrap().ns])
        .arg("--segment-dir")
        .arg(lab.lab().node_dir(node).join("segments"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The kube store's claims of `segment`: (block key, holder) per Lease
/// object, sorted, each object's name checked to be a valid one (the API
/// server refuses the ':' and '&' of keys); and the list as read.
fn held_blocks(lab: &TestLab, segment: &str) -> (Vec<(String, String)>, Value) {
    let list = tweed_lab::kube::call_ok(
        &lab.lab().state.underlay_ns,
        "GET",
        &format!(
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?labelSelector=tweed.io%2Fsegment%3D{segment}"
        ),
        None,
    )
    .expect("Leases from the fake API server");
    let mut held: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let name = o["metadata"]["name"].as_str().unwrap();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name}"
            );
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
    (held, list)
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
    let text = tweedctl_status(lab, "n2");
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
    let all = etcd_keys(&lab, "/coreos.com/network/segments/lab1/subnets/");
    let keys: BTreeSet<&str> = all.iter().map(String::as_str).collect();
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
        "etcd keys: {all:?}"
    );
}

#[test]
fn a_segment_subnet_with_the_kube_store() {
    let (lab, blocks) = unique_addresses_across_nodes("sgk", "kube");
    // One coordination.k8s.io Lease per block, held by its node.
    let (held, list) = held_blocks(&lab, SEGMENT);
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
/// (try again later), leaving nothing; on the first node the block runs
/// full, refused with the knob that sizes it.
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

    // The holder's pod gets the first of the block's two usable addresses,
    // then the second; a third interface finds the block full: tweedd is
    // asked for another (try again later) and, with none free, answers
    // why — the knob that sizes blocks — and nothing is left behind.
    let result = segment_cni(&lab, with, "ADD", "net1").unwrap();
    let ips = result["ips"].as_array().unwrap();
    assert_eq!(ips[0]["address"], "192.168.60.1/30", "{result}");
    let result = segment_cni(&lab, with, "ADD", "net2").unwrap();
    assert_eq!(result["ips"][0]["address"], "192.168.60.2/30", "{result}");
    let mut v = Value::Null;
    wait_until(
        5,
        "tweedd's answer to the request for another block",
        || {
            let err = segment_cni(&lab, with, "ADD", "net3").expect_err("the block is full");
            v = serde_json::from_str(&err).expect("error JSON");
            v["code"] != 11
        },
    );
    assert_eq!(v["code"], 101, "{v}");
    let msg = v["msg"].as_str().unwrap();
    assert!(
        msg.contains("segment lab1: this node's blocks are full")
            && msg.contains("cannot claim another")
            && msg.contains("BlockLen"),
        "{v}"
    );
    let ns = format!(
        "{with}/{}",
        lab.lab().state.node(with).unwrap().pods[0].name
    );
    let links = lab.ip_json(&ns, &["link", "show"]);
    assert!(
        !links
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ifname"] == "net3"),
        "net3 left behind: {links}"
    );
    let ports = lab.ip_json(with, &["link", "show", "master", &format!("tws-{SEGMENT}")]);
    assert_eq!(
        ports.as_array().unwrap().len(),
        3,
        "twx + net1's and net2's ports: {ports}"
    );
}

/// A dual-stack segment (`Subnet` + `IPv6Subnet`) and an IPv6-only one,
/// on the kube store (whose object names come from keys with ':'): one
/// block of each family per node, an address of each family from the
/// node's blocks on every interface (the subnet's prefix, usable at once,
/// no gateway), IPv6 across the nodes, and DEL releasing both.
#[test]
fn ipv6_segment_subnets_alone_and_beside_ipv4() {
    const SIX: &str = "six";
    let lab = TestLab::up_with("sg6", 2, "vxlan", "kube", |s| {
        s.net_conf_overrides.insert(
            "Segments".into(),
            json!([
                {"Name": SEGMENT, "VNI": 4001, "Subnet": SUBNET, "IPv6Subnet": "fd00:50::/48"},
                {"Name": SIX, "VNI": 4002, "IPv6Subnet": "fd00:60::/120"},
            ]),
        );
    });
    let nodes = ["n1", "n2"];
    let dual: Vec<Blocks> = nodes.iter().map(|n| blocks_of(&lab, n, SEGMENT)).collect();
    let six: Vec<Blocks> = nodes.iter().map(|n| blocks_of(&lab, n, SIX)).collect();
    for (d, s) in dual.iter().zip(&six) {
        let v6 = d.ipv6.expect("a dual-stack segment's IPv6 block");
        assert!(d.ipv4.is_some(), "{d:?}");
        assert_eq!(v6.block.prefix_len(), 64, "default IPv6 blocks are /64s");
        assert!(v6.subnet.contains(&v6.block), "{v6:?}");
        assert!(s.ipv4.is_none(), "an IPv6-only segment: {s:?}");
        let v6 = s.ipv6.expect("the IPv6-only segment's block");
        assert_eq!(v6.block.prefix_len(), 124, "16 blocks of a /120");
        assert!(v6.subnet.contains(&v6.block), "{v6:?}");
    }
    assert_ne!(dual[0].ipv4, dual[1].ipv4, "{dual:?}");
    assert_ne!(dual[0].ipv6, dual[1].ipv6, "{dual:?}");
    assert_ne!(six[0].ipv6, six[1].ipv6, "{six:?}");

    // net1 on the dual-stack segment, net2 on the IPv6-only one.
    let mut v6_addresses = Vec::new();
    let mut n1_net1 = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for (segment, ifname, blocks, want_len) in [
            (SEGMENT, "net1", &dual[i], vec![24, 48]),
            (SIX, "net2", &six[i], vec![120]),
        ] {
            let result = segment_cni_on(&lab, node, segment, "ADD", ifname)
                .unwrap_or_else(|e| panic!("{node}: ADD {ifname}: {e}"));
            let ips: Vec<IpNet> = result["ips"]
                .as_array()
                .expect("ips")
                .iter()
                .map(|ip| {
                    assert!(ip.get("gateway").is_none(), "no gateway: {result}");
                    ip["address"].as_str().unwrap().parse().unwrap()
                })
                .collect();
            let lens: Vec<u8> = ips.iter().map(IpNet::prefix_len).collect();
            assert_eq!(lens, want_len, "{node} {segment}: {result}");
            for ip in &ips {
                let inside = match ip.addr() {
                    IpAddr::V4(a) => blocks.ipv4.is_some_and(|b| b.block.contains(&a)),
                    IpAddr::V6(a) => blocks.ipv6.is_some_and(|b| b.block.contains(&a)),
                };
                assert!(inside, "{node}: {ip} outside its blocks {blocks:?}");
            }
            if (*node, ifname) == ("n1", "net1") {
                n1_net1 = ips.iter().map(IpNet::addr).collect();
            }
            let v6 = *ips.last().unwrap();
            // The kernel holds it with the subnet's prefix, not tentative
            // (a pod may use it at once).
            let ns = format!(
                "{node}/{}",
                lab.lab().state.node(node).unwrap().pods[0].name
            );
            let addrs = lab.ip_json(
                &ns,
                &["-6", "addr", "show", "dev", ifname, "scope", "global"],
            );
            let info = &addrs[0]["addr_info"][0];
            assert_eq!(info["local"], v6.addr().to_string(), "{addrs}");
            assert_eq!(info["prefixlen"], v6.prefix_len(), "{addrs}");
            assert!(info.get("tentative").is_none(), "{addrs}");
            v6_addresses.push(v6.addr());
        }
    }

    // IPv6 across the nodes on both segments.
    for (from, to) in [
        ("n1", v6_addresses[2]),
        ("n1", v6_addresses[3]),
        ("n2", v6_addresses[0]),
    ] {
        assert!(
            ping(&lab, from, to),
            "{from} cannot reach {to} on the segment"
        );
    }

    // The claims: one Lease per node and segment, named validly for any
    // key (the API server refuses ':'), holding both families' blocks.
    for (segment, blocks) in [(SEGMENT, &dual), (SIX, &six)] {
        let (held, list) = held_blocks(&lab, segment);
        let key = |b: &Blocks| {
            let v4 = b
                .ipv4
                .map(|b| format!("{}-{}", b.block.network(), b.block.prefix_len()));
            let v6 = b
                .ipv6
                .map(|b| format!("{}-{}", b.block.network(), b.block.prefix_len()));
            v4.into_iter().chain(v6).collect::<Vec<_>>().join("&")
        };
        let mut want: Vec<(String, String)> = blocks
            .iter()
            .zip(nodes)
            .map(|(b, n)| (key(b), n.to_string()))
            .collect();
        want.sort();
        assert_eq!(held, want, "{list}");
    }

    // tweedctl status shows each family's block.
    let text = tweedctl_status(&lab, "n1");
    for b in [dual[0].ipv6.unwrap(), six[0].ipv6.unwrap()] {
        assert!(
            text.contains(&format!("block {} of subnet {}", b.block, b.subnet)),
            "{text}"
        );
    }

    // DEL releases both of net1's addresses.
    let reserved = |ip: IpAddr| {
        lab.lab()
            .node_dir("n1")
            .join("ipam")
            .join(format!("seg-{SEGMENT}"))
            .join(ip.to_string())
            .exists()
    };
    assert!(n1_net1.iter().all(|ip| reserved(*ip)), "{n1_net1:?}");
    segment_cni_on(&lab, "n1", SEGMENT, "DEL", "net1").unwrap();
    for ip in n1_net1 {
        assert!(!reserved(ip), "reservation of {ip} kept");
    }
}

/// A node that fills its block gets another: the plugin asks ahead (or,
/// full, asks and says try again later), tweedd claims a further block of
/// the subnet, and the pods go on getting addresses — unique across the
/// nodes, reachable across them — and a restarted agent holds every block
/// again.
#[test]
fn a_node_whose_block_fills_claims_another() {
    let mut lab = lab(
        "sgg",
        2,
        "file",
        json!({"Name": SEGMENT, "VNI": 4001, "Subnet": "192.168.80.0/24", "BlockLen": 30}),
    );
    let first = claims_of(&lab, "n1", SEGMENT);
    assert_eq!(first.len(), 1, "{first:?}");
    // Six interfaces: more than a /30 block holds.
    let mut addresses = Vec::new();
    for i in 1..=6 {
        let ifname = format!("net{i}");
        let mut result = None;
        wait_until(10, &format!("an address for {ifname}"), || {
            match segment_cni(&lab, "n1", "ADD", &ifname) {
                Ok(r) => result = Some(r),
                Err(e) => {
                    let v: Value = serde_json::from_str(&e).expect("error JSON");
                    assert_eq!(
                        v["code"], 11,
                        "only 'try again later' while a block is claimed: {v}"
                    );
                }
            }
            result.is_some()
        });
        addresses.push(address_in(&result.unwrap()));
    }
    // The last ADDs may have asked ahead for yet another block: let tweedd
    // answer before the blocks are compared across a restart.
    let dir = lab.lab().node_dir("n1").join("segments");
    wait_until(5, "tweedd to answer the requests for blocks", || {
        tweed_segment::more::read(&dir, SEGMENT).unwrap().is_none()
    });
    let claims = claims_of(&lab, "n1", SEGMENT);
    assert!(claims.len() >= 2, "n1 holds {claims:?}");
    assert_eq!(claims[0], first[0], "the first block stays first");
    let blocks: Vec<Ipv4Net> = claims.iter().map(|c| c.ipv4.unwrap().block).collect();
    for ip in &addresses {
        assert!(
            blocks.iter().any(|b| b.contains(ip)),
            "{ip} outside {blocks:?}"
        );
    }
    let distinct: BTreeSet<_> = addresses.iter().collect();
    assert_eq!(distinct.len(), 6, "{addresses:?}");

    // n2's pod: an address of n2's own block, and it reaches the address
    // n1 handed out last, from a later block.
    let theirs = address_in(&segment_cni(&lab, "n2", "ADD", "net1").unwrap());
    assert!(
        !blocks.iter().any(|b| b.contains(&theirs)),
        "{theirs} in {blocks:?}"
    );
    assert!(
        ping(&lab, "n2", addresses[5]),
        "n2 cannot reach {}",
        addresses[5]
    );
    let text = tweedctl_status(&lab, "n1");
    for b in &blocks {
        assert!(text.contains(&format!("block {b} of subnet")), "{text}");
    }

    // A restart finds every block again.
    lab.lab_mut().stop_agent("n1").unwrap();
    std::fs::remove_file(
        lab.lab()
            .node_dir("n1")
            .join("segments")
            .join(format!("{SEGMENT}.env")),
    )
    .unwrap();
    lab.lab_mut().start_agent("n1").unwrap();
    wait_until(20, "n1's agent to be ready again", || {
        let l = lab.lab();
        l.ready(l.state.node("n1").unwrap())
    });
    let mut again = claims_of(&lab, "n1", SEGMENT);
    let mut before = claims.clone();
    again.sort_by_key(|c| c.ipv4.unwrap().block);
    before.sort_by_key(|c| c.ipv4.unwrap().block);
    assert_eq!(again, before, "n1's blocks after a restart");
}
