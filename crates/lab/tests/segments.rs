//! Layer-2 segments across nodes: tweedd builds, on every node, the
//! segment's bridge joined to its VXLAN device and programs head-end
//! replication towards every other node. Endpoints in namespaces of their
//! own are cabled to the bridge on two different nodes (by hand here; the
//! plugin's attachment comes with the segment network config): ARP
//! and IPv6 neighbour discovery resolve across the nodes, ping works with
//! addresses the test assigns, and a raw Ethernet frame with an unusual
//! EtherType crosses too.

mod common;

use std::time::Duration;

use common::capture::Capture;
use common::{TestLab, raw, wait_until};
use serde_json::json;
use tweed_testkit::netns::TestNs;

const SEGMENT: &str = "lab1";
const VNI: u32 = 4001;
/// IEEE 802 local experimental EtherType: nothing on the path parses it.
const ETHERTYPE: u16 = 0x88b5;

fn lab_with_segment(tag: &str, nodes: usize) -> TestLab {
    lab_with(tag, nodes, json!({"Name": SEGMENT, "VNI": VNI}))
}

fn lab_with(tag: &str, nodes: usize, segment: serde_json::Value) -> TestLab {
    TestLab::up_with(tag, nodes, "vxlan", "file", |s| {
        s.net_conf_overrides
            .insert("Segments".into(), json!([segment]));
    })
}

/// An endpoint on the segment: its own namespace, cabled by a veth to the
/// segment bridge of `node`, with `addr` assigned by hand.
fn endpoint(lab: &TestLab, node: &str, tag: &str, addr: &str) -> TestNs {
    common::segment_endpoint(lab, node, SEGMENT, tag, &format!("{addr}/24"))
}

/// The segment device's FDB on `node`: (MAC, destination) pairs.
fn fdb_entries(lab: &TestLab, node: &str) -> Vec<(String, String)> {
    common::segment_fdb(lab, node, VNI)
}

/// The nodes `node`'s segment device floods to (all-zero MAC entries).
fn fdb_dsts(lab: &TestLab, node: &str) -> Vec<String> {
    common::segment_floods(lab, node, VNI)
}

fn underlay_ip(lab: &TestLab, node: &str) -> String {
    common::underlay_ip(lab, node)
}

#[test]
fn containers_on_two_nodes_share_one_segment() {
    let mut lab = lab_with_segment("seg", 3);
    // Every node: the bridge, the VXLAN device on it with learning off, and
    // one flooding entry per other node.
    for node in ["n1", "n2", "n3"] {
        let link = &lab.ip_json(node, &["-d", "link", "show", &format!("twx.{VNI}")])[0];
        assert_eq!(link["master"], format!("tws-{SEGMENT}"), "{link}");
        assert_eq!(link["linkinfo"]["info_data"]["id"], VNI, "{link}");
        assert_eq!(link["linkinfo"]["info_data"]["learning"], false, "{link}");
    }
    common::wait_segment_meshed(&lab, VNI);

    let a = endpoint(&lab, "n1", "sga", "192.168.254.1");
    let b = endpoint(&lab, "n2", "sgb", "192.168.254.2");
    // ARP across nodes, then ICMP.
    assert!(
        common::ping_from(&b.name, "192.168.254.1", 10),
        "no ping across the segment:\n{}",
        common::segment_state(&lab, VNI, &format!("tws-{SEGMENT}"))
    );
    let neigh = a.exec_ok(&["ip", "-j", "neigh", "show", "192.168.254.2"]);
    let b_mac = b.exec_ok(&["cat", "/sys/class/net/eth1/address"]);
    assert!(
        neigh.contains(b_mac.trim()),
        "ARP did not resolve n2's endpoint: {neigh} (want {})",
        b_mac.trim()
    );

    // IPv6 neighbour discovery: the solicitation goes to a solicited-node
    // multicast group, which only the flooding entries carry across.
    a.exec_ok(&[
        "ip",
        "addr",
        "add",
        "fd00:254::1/64",
        "dev",
        "eth1",
        "nodad",
    ]);
    b.exec_ok(&[
        "ip",
        "addr",
        "add",
        "fd00:254::2/64",
        "dev",
        "eth1",
        "nodad",
    ]);
    let ping6 = b.exec(&["ping", "-6", "-c", "1", "-W", "2", "fd00:254::1"]);
    assert!(
        ping6.status.success(),
        "ping over IPv6 across the segment failed: {}",
        String::from_utf8_lossy(&ping6.stdout)
    );
    let neigh6 = a.exec_ok(&["ip", "-j", "-6", "neigh", "show", "fd00:254::2"]);
    assert!(
        neigh6.contains(b_mac.trim()),
        "neighbour discovery did not resolve n2's endpoint: {neigh6}"
    );

    // Each node publishes the MACs its bridge learnt; the other sends to
    // them directly (a unicast entry) instead of flooding.
    let a_mac = a.exec_ok(&["cat", "/sys/class/net/eth1/address"]);
    for (node, mac, via) in [("n1", b_mac.trim(), "n2"), ("n2", a_mac.trim(), "n1")] {
        let want = (mac.to_string(), underlay_ip(&lab, via));
        wait_until(10, &format!("{node}'s unicast entry for {mac}"), || {
            fdb_entries(&lab, node).contains(&want)
        });
    }

    // A raw frame of an EtherType nothing routes: broadcast from n1,
    // received on n2.
    let receiver = raw::Receiver::open(&b.name, "eth1", ETHERTYPE);
    raw::send(
        &a.name,
        "eth1",
        [0xff; 6],
        ETHERTYPE,
        b"tweed segment frame",
    );
    let got = receiver.recv(Duration::from_secs(3));
    assert!(
        got.as_deref()
            .is_some_and(|p| p.starts_with(b"tweed segment frame")),
        "the raw frame did not cross the segment: {got:?}"
    );

    // A node leaving takes its flooding entry with it everywhere.
    lab.lab_mut().stop_agent("n3").unwrap();
    lab.lab().delete_lease("n3").unwrap();
    let n3 = underlay_ip(&lab, "n3");
    wait_until(10, "n1 to drop n3's flooding entry", || {
        !fdb_dsts(&lab, "n1").contains(&n3)
    });
    // Drift: the segment's VXLAN device deleted by hand comes back on the
    // bridge, with its entries, and the endpoints talk again.
    tweed_testkit::netns::run_ok(
        "ip",
        &[
            "-n",
            &lab.lab().state.node("n1").unwrap().ns,
            "link",
            "del",
            &format!("twx.{VNI}"),
        ],
    );
    wait_until(10, "n1's segment device to come back", || {
        fdb_dsts(&lab, "n1") == vec![underlay_ip(&lab, "n2")]
    });
    assert!(
        common::ping_from(&b.name, "192.168.254.1", 10),
        "no ping after the device came back:\n{}",
        common::segment_state(&lab, VNI, &format!("tws-{SEGMENT}"))
    );
}

#[test]
fn a_segment_with_a_vlan_tag_carries_it_between_nodes() {
    let lab = lab_with("sgq", 2, json!({"Name": SEGMENT, "VNI": VNI, "VLAN": 100}));
    let tunnel = format!("twx.{VNI}");
    // Every node: the tagging program on the way out of the VXLAN device,
    // the untagging one on the way in.
    for node in ["n1", "n2"] {
        for (dir, prog) in [("egress", "tw_vpush_100"), ("ingress", "tw_vpop_100")] {
            wait_until(10, &format!("{node}'s {dir} program"), || {
                let out = lab
                    .lab()
                    .exec_output(node, &["tc", "filter", "show", "dev", &tunnel, dir])
                    .expect("tc");
                String::from_utf8_lossy(&out.stdout).contains(prog)
            });
        }
    }
    common::wait_segment_meshed(&lab, VNI);
    let _a = endpoint(&lab, "n1", "sqa", "192.168.254.1");
    let b = endpoint(&lab, "n2", "sqb", "192.168.254.2");
    // Untagged between the pods (their eth1 has no VLAN device: a tagged
    // frame would not reach their IP stack), tagged between the nodes.
    let n2 = lab.lab().state.node("n2").unwrap().ns.clone();
    let cap = Capture::start(&n2, &tunnel, "vlan 100 and icmp");
    assert!(
        common::ping_from(&b.name, "192.168.254.1", 10),
        "no ping across the tagged segment:\n{}",
        common::segment_state(&lab, VNI, &format!("tws-{SEGMENT}"))
    );
    let seen = cap
        .wait(Duration::from_secs(3))
        .expect("no tagged ICMP on n2's segment device");
    assert!(seen.contains("vlan 100"), "{seen}");
    let inside = Capture::start(&b.name, "eth1", "vlan");
    assert!(b.ping("192.168.254.1"));
    assert_eq!(
        inside.wait(Duration::from_secs(2)),
        None,
        "a tag reached the pod"
    );
}

/// ADD/DEL of a second pod interface (`net1`) on the segment, through the
/// real plugin with a segment network config, in the node's namespace.
fn segment_cni(
    lab: &TestLab,
    node: &str,
    command: &str,
    conf: &serde_json::Value,
) -> Result<serde_json::Value, tweed_lab::LabError> {
    let n = lab.lab().state.node(node).unwrap();
    let pod = &n.pods[0];
    tweed_lab::pods::cni_with(
        &lab.lab().binaries.plugin,
        &n.ns,
        conf,
        &tweed_lab::pods::Call {
            command,
            container_id: &pod.container_id,
            pod_ns: &pod.ns,
            ifname: "net1",
            cni_args: "",
        },
    )
}

fn segment_conf(lab: &TestLab, node: &str, segment: &str) -> serde_json::Value {
    tweed_lab::pods::segment_conf(&lab.lab().node_dir(node), segment)
}

fn pod_ns(lab: &TestLab, node: &str) -> String {
    lab.lab().state.node(node).unwrap().pods[0].ns.clone()
}

fn run_in(ns: &str, argv: &[&str]) -> std::process::Output {
    std::process::Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .output()
        .expect("ip netns exec")
}

#[test]
fn pods_attach_to_a_segment_through_the_plugin() {
    let lab = lab_with_segment("sgp", 2);
    for node in ["n1", "n2"] {
        let result = segment_cni(&lab, node, "ADD", &segment_conf(&lab, node, SEGMENT))
            .unwrap_or_else(|e| panic!("{node}: segment ADD: {e}"));
        // Pure layer 2: the interface, no addresses, no routes.
        let ifaces = result["interfaces"].as_array().unwrap();
        assert!(ifaces.iter().any(|i| i["name"] == "net1"), "{result}");
        assert!(
            result["ips"].as_array().is_none_or(|a| a.is_empty()),
            "{result}"
        );
        assert!(
            result["routes"].as_array().is_none_or(|a| a.is_empty()),
            "{result}"
        );
        // The host end is a port of the segment bridge, and the pod's end
        // has the segment's MTU.
        let host_end = ifaces
            .iter()
            .find(|i| i["sandbox"].is_null() && i["name"] != format!("tws-{SEGMENT}"))
            .and_then(|i| i["name"].as_str())
            .expect("host veth in the result")
            .to_string();
        let link = &lab.ip_json(node, &["link", "show", &host_end])[0];
        assert_eq!(link["master"], format!("tws-{SEGMENT}"), "{link}");
        let bridge_mtu =
            lab.ip_json(node, &["link", "show", &format!("tws-{SEGMENT}")])[0]["mtu"].clone();
        let pod_link = run_in(&pod_ns(&lab, node), &["ip", "-j", "link", "show", "net1"]);
        let pod_link: serde_json::Value = serde_json::from_slice(&pod_link.stdout).unwrap();
        assert_eq!(pod_link[0]["mtu"], bridge_mtu, "{pod_link}");
        let addrs = run_in(
            &pod_ns(&lab, node),
            &["ip", "-j", "-4", "addr", "show", "net1"],
        );
        let addrs: serde_json::Value = serde_json::from_slice(&addrs.stdout).unwrap();
        assert!(
            addrs[0]["addr_info"]
                .as_array()
                .is_none_or(|a| a.is_empty()),
            "{addrs}"
        );
    }
    // Addresses by hand, then ARP, ping and a raw frame across the nodes.
    for (node, addr) in [("n1", "192.168.254.1/24"), ("n2", "192.168.254.2/24")] {
        let out = run_in(
            &pod_ns(&lab, node),
            &["ip", "addr", "add", addr, "dev", "net1"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    common::wait_segment_meshed(&lab, VNI);
    assert!(
        common::ping_from(&pod_ns(&lab, "n2"), "192.168.254.1", 10),
        "no ping across the segment:\n{}",
        common::segment_state(&lab, VNI, &format!("tws-{SEGMENT}"))
    );
    let receiver = raw::Receiver::open(&pod_ns(&lab, "n2"), "net1", ETHERTYPE);
    raw::send(
        &pod_ns(&lab, "n1"),
        "net1",
        [0xff; 6],
        ETHERTYPE,
        b"from a pod",
    );
    assert!(
        receiver
            .recv(Duration::from_secs(3))
            .is_some_and(|p| p.starts_with(b"from a pod")),
        "the raw frame did not reach n2's pod"
    );
    drop(receiver);

    // DEL removes the interface on both sides and leaves eth0 alone.
    // DEL hands the kernel's slow device teardown to a detached process,
    // so the port goes a few milliseconds after DEL returns.
    segment_cni(&lab, "n1", "DEL", &segment_conf(&lab, "n1", SEGMENT)).unwrap();
    let only_the_vxlan_port = || {
        lab.ip_json("n1", &["link", "show", "master", &format!("tws-{SEGMENT}")])
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"].as_str().is_some_and(|n| n.starts_with("twx.")))
    };
    wait_until(
        5,
        "the pod port to leave the segment bridge",
        only_the_vxlan_port,
    );
    assert!(
        !run_in(&pod_ns(&lab, "n1"), &["ip", "link", "show", "net1"])
            .status
            .success()
    );
    assert!(
        run_in(&pod_ns(&lab, "n1"), &["ip", "link", "show", "eth0"])
            .status
            .success()
    );
}

#[test]
fn segment_attachment_refuses_bad_input_and_leaves_nothing() {
    let lab = lab_with_segment("sgb", 1);
    let mut bad_name = segment_conf(&lab, "n1", SEGMENT);
    bad_name["segment"] = json!("Lab!");
    let mut with_bridge = segment_conf(&lab, "n1", SEGMENT);
    with_bridge["bridge"] = json!("br9");
    let mut bad_mtu = segment_conf(&lab, "n1", SEGMENT);
    bad_mtu["mtu"] = json!(1300);
    let mut bad_ipam = segment_conf(&lab, "n1", SEGMENT);
    bad_ipam["ipam"] = json!({"ranges": [[{"subnet": "192.168.9.1/24"}]]});
    for (conf, code, needle) in [
        (bad_name, 7, "segment"),
        (with_bridge, 7, "bridge"),
        (bad_mtu, 7, "mtu"),
        (bad_ipam, 7, "ipam.ranges[0][0].subnet"),
        // A segment tweedd was not told about: try again later.
        (segment_conf(&lab, "n1", "nope"), 11, "tws-nope"),
    ] {
        let err = segment_cni(&lab, "n1", "ADD", &conf).expect_err("refused");
        let tweed_lab::LabError::Plugin { output, .. } = &err else {
            panic!("{err}");
        };
        let v: serde_json::Value = serde_json::from_str(output).expect("error JSON");
        assert_eq!(v["code"], code, "{conf}: {v}");
        assert!(v["msg"].as_str().unwrap().contains(needle), "{conf}: {v}");
        // Nothing left: no net1 in the pod, no stray port on the bridge.
        assert!(
            !run_in(&pod_ns(&lab, "n1"), &["ip", "link", "show", "net1"])
                .status
                .success()
        );
        let ports = lab.ip_json("n1", &["link", "show", "master", &format!("tws-{SEGMENT}")]);
        assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");
    }
}

/// A DHCP server (Debian's dnsmasq) in a pod on node 1's end of the
/// segment hands an address to a pod on node 2: broadcast DISCOVER across
/// the nodes, unicast or broadcast OFFER/ACK back.
#[test]
fn dhcp_across_nodes_on_a_segment() {
    let lab = lab_with_segment("sgd", 2);
    for node in ["n1", "n2"] {
        segment_cni(&lab, node, "ADD", &segment_conf(&lab, node, SEGMENT))
            .unwrap_or_else(|e| panic!("{node}: segment ADD: {e}"));
    }
    let server_ns = pod_ns(&lab, "n1");
    let out = run_in(
        &server_ns,
        &["ip", "addr", "add", "192.168.254.1/24", "dev", "net1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = tweed_testkit::dns::Dnsmasq::start_dhcp(
        &server_ns,
        "net1",
        "192.168.254.50",
        "192.168.254.60",
        "255.255.255.0",
    );
    // The client configures what it got through a script, as a distro's
    // DHCP client does.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("udhcpc.script");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && ip addr add \"$ip/$subnet\" dev \"$interface\"\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let client_ns = pod_ns(&lab, "n2");
    let client = run_in(
        &client_ns,
        &[
            "busybox",
            "udhcpc",
            "-i",
            "net1",
            "-f",
            "-q",
            "-n",
            // Patient: the suite runs labs and QEMU guests side by side.
            "-t",
            "10",
            "-T",
            "2",
            "-s",
            script.to_str().unwrap(),
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&client.stdout),
        String::from_utf8_lossy(&client.stderr)
    );
    // dnsmasq picks from the range by a hash of the client's MAC.
    let leased: Option<std::net::Ipv4Addr> = text
        .split("lease of ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ip| ip.parse().ok());
    let in_range = |ip: std::net::Ipv4Addr| (50..=60).contains(&ip.octets()[3]);
    assert!(
        client.status.success()
            && leased.is_some_and(|ip| ip.to_string().starts_with("192.168.254.") && in_range(ip)),
        "no DHCP lease from the range across the segment:\n{text}\ndnsmasq:\n{}",
        server.log()
    );
    let addrs = run_in(&client_ns, &["ip", "-j", "-4", "addr", "show", "net1"]);
    let addrs: serde_json::Value = serde_json::from_slice(&addrs.stdout).unwrap();
    let got = addrs[0]["addr_info"][0]["local"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(
        got,
        leased.unwrap().to_string(),
        "the client did not configure its lease: {addrs}"
    );
    assert!(
        server.log().contains(&format!("DHCPACK(net1) {got}")),
        "{}",
        server.log()
    );
    assert!(
        common::ping_from(&client_ns, "192.168.254.1", 10),
        "the DHCP client cannot ping its server:\n{}",
        common::segment_state(&lab, VNI, &format!("tws-{SEGMENT}"))
    );
}

/// A container on node 1 and a VM (the QEMU test guest on a tap the plugin
/// made in tap mode) on node 2 share the segment: the guest's only network
/// is the segment (the pod's primary interface), its address given by hand
/// on its boot line. ARP resolves the VM's MAC from the container, and the
/// container fetches the VM's page.
#[test]
fn a_container_and_a_vm_share_a_segment_across_nodes() {
    let image = tweed_testkit::qemu::GuestImage::build();
    let lab = lab_with_segment("sgv", 2);
    let container_ns = pod_ns(&lab, "n1");
    segment_cni(&lab, "n1", "ADD", &segment_conf(&lab, "n1", SEGMENT)).expect("n1 net1");
    let out = run_in(
        &container_ns,
        &["ip", "addr", "add", "192.168.254.1/24", "dev", "net1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The VM pod on node 2: the segment as its only network, in tap mode.
    let n2 = lab.lab().state.node("n2").unwrap().clone();
    let vm_ns = format!("{}.n2.vm", lab.lab().state.name);
    tweed_lab::topology::create_pod_ns(&vm_ns).expect("pod ns");
    let mut conf = segment_conf(&lab, "n2", SEGMENT);
    conf["guest"] =
        json!({"mode": "tap", "stateDir": lab.lab().node_dir("n2").join("guest-state")});
    let call = |command| tweed_lab::pods::Call {
        command,
        container_id: "segvm",
        pod_ns: &vm_ns,
        ifname: "eth0",
        cni_args: "",
    };
    let plugin = lab.lab().binaries.plugin.clone();
    let result = tweed_lab::pods::cni_with(&plugin, &n2.ns, &conf, &call("ADD")).expect("VM ADD");
    assert!(
        result["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "tap0"),
        "{result}"
    );
    let mac = run_in(&vm_ns, &["cat", "/sys/class/net/eth0/address"]);
    let mac = String::from_utf8_lossy(&mac.stdout).trim().to_string();
    let vm = tweed_testkit::qemu::Guest::start(
        &vm_ns,
        "tap0",
        &mac,
        // The guest captures frames of our unusual EtherType with tcpdump.
        &format!("ip=192.168.254.2:::255.255.255.0:segvm:eth0:off tweed.capture=0x{ETHERTYPE:04x}"),
        &image,
    );
    let ready = vm
        .wait_ready(Duration::from_secs(180))
        .unwrap_or_else(|log| panic!("guest did not come up:\n{log}"));
    assert!(
        ready.contains("ip=192.168.254.2/24") && ready.contains("capture=0x88b5"),
        "{ready}"
    );

    let page = http_get(&container_ns, "192.168.254.2:80");
    assert!(
        page.as_deref().is_ok_and(|p| p.contains("192.168.254.2")),
        "container → VM over the segment: {page:?}\n{}",
        vm.log()
            .lines()
            .filter(|l| l.contains("TWEED"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let neigh = run_in(&container_ns, &["ip", "neigh", "show", "192.168.254.2"]);
    assert!(
        String::from_utf8_lossy(&neigh.stdout).contains(&mac),
        "ARP did not resolve the VM's MAC {mac}: {}",
        String::from_utf8_lossy(&neigh.stdout)
    );
    // A raw frame of an unusual EtherType from the container reaches the
    // VM's kernel, where tcpdump sees it.
    let vm_mac: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    raw::send(
        &container_ns,
        "net1",
        vm_mac.try_into().unwrap(),
        ETHERTYPE,
        b"tweed segment to VM",
    );
    wait_until(20, "the VM's tcpdump to report the frame", || {
        vm.log()
            .lines()
            .any(|l| l.contains("TWEED-GUEST-CAPTURE") && l.contains(&format!("0x{ETHERTYPE:04x}")))
    });
    drop(vm);
    tweed_lab::pods::cni_with(&plugin, &n2.ns, &conf, &call("DEL")).expect("VM DEL");
    // The veth goes shortly after DEL returns (a detached deletion).
    wait_until(5, "the VM pod's tap0 and eth0 to go", || {
        let links = run_in(&vm_ns, &["ip", "-o", "link"]);
        let links = String::from_utf8_lossy(&links.stdout).to_string();
        !links.contains("tap0") && !links.contains("eth0")
    });
    let _ = tweed_netlink::NetNs::delete_named(&vm_ns);
}

/// `GET /` over HTTP/1.0 from inside `netns`; the whole response.
fn http_get(netns: &str, addr: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let ns = tweed_netlink::NetNs::named(netns).map_err(|e| e.to_string())?;
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    ns.run(|| -> Result<String, String> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out)
            .map_err(|e| format!("read: {e}"))?;
        Ok(out)
    })
    .map_err(|e| e.to_string())?
}
