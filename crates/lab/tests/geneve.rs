//! The geneve backend across lab nodes, in the VM runner where the host
//! kernel lacks Geneve: pods talk (ICMP matrix, TCP), the underlay carries
//! Geneve on the configured UDP port with the configured VNI (captured
//! with tcpdump on a node's underlay interface and decoded here), a new
//! VNI and port take effect when the agents restart with them, and the
//! device is put back when changed by hand.

mod common;

use std::time::Duration;

use common::capture::{Capture, frame_bytes};
use common::{TestLab, dual_stack_pods_talk, pods_reach_outside_masqueraded, pods_talk};
use tweed_testkit::vm::{KernelFeature, on_a_kernel_with};

/// What one captured underlay frame says about its Geneve packet.
#[derive(Debug, PartialEq, Eq)]
struct GenevePacket {
    udp_dst_port: u16,
    vni: u32,
    /// Geneve's protocol type: 0x6558 is an Ethernet frame.
    protocol: u16,
    inner_dst_mac: String,
    inner_src_ip: String,
}

/// Decodes Ethernet / IPv4 / UDP / Geneve / inner Ethernet / IPv4.
fn decode(frame: &[u8]) -> GenevePacket {
    let be16 = |i: usize| u16::from_be_bytes([frame[i], frame[i + 1]]);
    assert_eq!(be16(12), 0x0800, "outer IPv4: {frame:02x?}");
    assert_eq!(frame[14 + 9], 17, "outer UDP: {frame:02x?}");
    let udp = 14 + usize::from(frame[14] & 0x0f) * 4;
    let geneve = udp + 8;
    assert_eq!(frame[geneve] >> 6, 0, "Geneve version 0: {frame:02x?}");
    let options = usize::from(frame[geneve] & 0x3f) * 4;
    let inner = geneve + 8 + options;
    let mac = &frame[inner..inner + 6];
    let src = &frame[inner + 14 + 12..inner + 14 + 16];
    GenevePacket {
        udp_dst_port: be16(udp + 2),
        vni: u32::from_be_bytes([0, frame[geneve + 4], frame[geneve + 5], frame[geneve + 6]]),
        protocol: be16(geneve + 2),
        inner_dst_mac: mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        inner_src_ip: format!("{}.{}.{}.{}", src[0], src[1], src[2], src[3]),
    }
}

/// Captures, on n2's underlay interface, the first UDP packet to `port`
/// while n1's pod pings n2's pod, and decodes it.
fn capture_n1_to_n2(lab: &TestLab, port: u16) -> GenevePacket {
    let n2 = lab.lab().target_ns("n2").unwrap();
    let cap = Capture::start(&n2, "eth0", &format!("udp dst port {port}"));
    let pod1 = lab.lab().target_ns("n1/p1").unwrap();
    assert!(
        common::ping_from(&pod1, &lab.pod_ip("n2").to_string(), 10),
        "n1/p1 -> n2/p1\n{}",
        lab.logs()
    );
    let text = cap.wait(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "no UDP packet to port {port} on n2's underlay\n{}",
            lab.logs()
        )
    });
    decode(&frame_bytes(&text))
}

/// What a Geneve packet from n1's pod to n2's pod must say: the port and
/// VNI, an Ethernet frame inside, to n2's device from n1's pod.
fn expected_n1_to_n2(lab: &TestLab, port: u16, vni: u32) -> GenevePacket {
    GenevePacket {
        udp_dst_port: port,
        vni,
        protocol: 0x6558,
        inner_dst_mac: device_mac(lab, "n2"),
        inner_src_ip: lab.pod_ip("n1").to_string(),
    }
}

fn device_mac(lab: &TestLab, node: &str) -> String {
    let dev = lab.ip_json(node, &["link", "show", "tweed.geneve"]);
    dev[0]["address"].as_str().expect("MAC").to_string()
}

/// n1's view of the Geneve device and its peer routes.
fn assert_geneve_state(lab: &TestLab, vni: u32, port: u16, peers: usize) {
    let dev = lab.ip_json("n1", &["-d", "link", "show", "tweed.geneve"]);
    let info = &dev[0]["linkinfo"];
    assert_eq!(info["info_kind"], "geneve", "{dev}");
    assert_eq!(info["info_data"]["external"], true, "{dev}");
    assert_eq!(info["info_data"]["port"], port, "{dev}");
    assert_eq!(dev[0]["mtu"], 1450, "Geneve over IPv4: underlay 1500 - 50");
    let routes = lab.ip_json("n1", &["-d", "route", "show", "proto", "77"]);
    let routes = routes.as_array().unwrap();
    assert_eq!(routes.len(), peers, "{routes:?}");
    for r in routes {
        assert_eq!(r["dev"], "tweed.geneve", "{r}");
        assert_eq!(r["encap"], "ip", "{r}");
        assert_eq!(r["id"], vni, "{r}");
        assert!(
            r["dst"]
                .as_str()
                .is_some_and(|d| d.starts_with("198.18.0.")),
            "{r}"
        );
    }
    let neigh = lab.ip_json(
        "n1",
        &["neigh", "show", "dev", "tweed.geneve", "nud", "permanent"],
    );
    assert_eq!(neigh.as_array().unwrap().len(), peers, "{neigh}");
}

/// The file store's lease records: `nodes` of them, vxlan's shape with
/// BackendType geneve and VNI `vni`.
fn assert_lease_records(lab: &TestLab, nodes: usize, vni: u32) {
    let subnets = lab.lab().state.dir().join("store").join("subnets");
    let records: Vec<serde_json::Value> = std::fs::read_dir(&subnets)
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    assert_eq!(records.len(), nodes, "{records:?}");
    for r in &records {
        assert_eq!(r["BackendType"], "geneve", "{r}");
        assert_eq!(r["BackendData"]["VNI"], vni, "{r}");
        assert!(r["BackendData"]["VtepMAC"].is_string(), "{r}");
    }
}

#[test]
fn geneve_with_file_store() {
    if !on_a_kernel_with(&[KernelFeature::Geneve]) {
        return; // ran, and passed, in the VM runner
    }
    let lab = TestLab::up_with("cgf", 3, "geneve", "file", |s| {
        s.net_conf_overrides.insert(
            "Backend".into(),
            serde_json::json!({"Type": "geneve", "Qlen": 500}),
        );
    });
    pods_talk(&lab);
    pods_reach_outside_masqueraded(&lab);
    assert_geneve_state(&lab, 1, 6081, 2);
    let dev = lab.ip_json("n1", &["link", "show", "tweed.geneve"]);
    assert_eq!(dev[0]["txqlen"], 500, "Backend.Qlen: {dev}");
    let env = std::fs::read_to_string(lab.lab().state.dir().join("n1").join("subnet.env")).unwrap();
    assert!(env.contains("TWEED_MTU=1450"), "{env}");
    assert_lease_records(&lab, 3, 1);

    // The operator's view names the device, its port and queue length.
    let tweedctl = common::binaries().plugin.with_file_name("tweedctl");
    let out = std::process::Command::new(&tweedctl)
        .args(["status", "--netns", &lab.lab().state.node("n1").unwrap().ns])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    let mac = device_mac(&lab, "n1");
    assert!(
        status.contains(&format!(
            "tweed.geneve geneve port 6081 mac {mac} mtu 1450 qlen 500"
        )),
        "{status}"
    );

    let packet = capture_n1_to_n2(&lab, 6081);
    assert_eq!(packet, expected_n1_to_n2(&lab, 6081, 1));
}

/// Geneve between nodes that bring their own kernel: two VM nodes
/// (docs/lab.md "VM nodes") run the backend on this host whatever its
/// kernel, with no VM runner around the test. The capture is on the
/// host, on n2's tap in the lab's underlay: what crossed the wire.
#[test]
fn geneve_between_vm_nodes() {
    let lab = TestLab::up_with("gvm", 2, "geneve", "etcd", |s| s.vm_nodes = vec![1, 2]);
    assert_geneve_state(&lab, 1, 6081, 1);
    common::pods_talk_anywhere(&lab);
    let (underlay, tap) = common::vm_tap(&lab, "n2");
    let cap = Capture::start(&underlay, &tap, "udp dst port 6081");
    common::exec_ping(&lab, "n1/p1", "n2");
    let text = cap
        .wait(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no Geneve packet on {tap}\n{}", lab.logs()));
    assert_eq!(
        decode(&frame_bytes(&text)),
        expected_n1_to_n2(&lab, 6081, 1)
    );
}

/// Dual-stack pods over Geneve with leases in etcd: the IPv6 pod subnets
/// ride the same IPv4 tunnel (their routes carry `encap ip` too).
#[test]
fn geneve_dual_stack_with_etcd_store() {
    if !on_a_kernel_with(&[KernelFeature::Geneve]) {
        return; // ran, and passed, in the VM runner
    }
    let lab = TestLab::up_with("cge", 2, "geneve", "etcd", |s| s.ipv6 = true);
    pods_talk(&lab);
    dual_stack_pods_talk(&lab);
    let routes = lab.ip_json("n1", &["-6", "-d", "route", "show", "proto", "77"]);
    let routes = routes.as_array().unwrap();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0]["encap"], "ip", "{routes:?}");
    assert_eq!(routes[0]["dev"], "tweed.geneve", "{routes:?}");
}

#[test]
fn geneve_vni_and_port_changes_take_effect_and_the_device_is_repaired() {
    if !on_a_kernel_with(&[KernelFeature::Geneve]) {
        return; // ran, and passed, in the VM runner
    }
    let mut lab = TestLab::up_with("cgc", 2, "geneve", "file", |s| {
        s.net_conf_overrides.insert(
            "Backend".into(),
            serde_json::json!({"Type": "geneve", "VNI": 7, "Port": 7000}),
        );
    });
    pods_talk(&lab);
    assert_geneve_state(&lab, 7, 7000, 1);
    let packet = capture_n1_to_n2(&lab, 7000);
    assert_eq!((packet.udp_dst_port, packet.vni), (7000, 7), "{packet:?}");

    // Deleted by hand: back within the monitor's reaction, with its route.
    lab.lab()
        .exec_output("n1", &["ip", "link", "del", "tweed.geneve"])
        .unwrap();
    common::wait_until(10, "tweed.geneve and its route back on n1", || {
        lab.ip_json("n1", &["route", "show", "proto", "77"])
            .as_array()
            .is_some_and(|r| r.len() == 1)
    });
    assert_geneve_state(&lab, 7, 7000, 1);
    pods_talk(&lab);

    // Replaced by hand with another port while the agent is down (the
    // kernel cannot change a Geneve port in place): the agent replaces it.
    lab.lab_mut().stop_agent("n1").unwrap();
    for cmd in [
        "ip link del tweed.geneve",
        "ip link add tweed.geneve type geneve external dstport 9999",
        "ip link set tweed.geneve up",
    ] {
        let argv: Vec<&str> = cmd.split(' ').collect();
        let out = lab.lab().exec_output("n1", &argv).unwrap();
        assert!(out.status.success(), "{cmd}: {out:?}");
    }
    lab.lab_mut().start_agent("n1").unwrap();
    lab.lab().wait_converged().unwrap();
    assert_geneve_state(&lab, 7, 7000, 1);
    pods_talk(&lab);

    // A new VNI and port in net-conf.json, every agent restarted.
    let conf_path = lab.lab().state.dir().join("net-conf.json");
    let mut conf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&conf_path).unwrap()).unwrap();
    conf["Backend"] = serde_json::json!({"Type": "geneve", "VNI": 4242, "Port": 7100, "Qlen": 64});
    std::fs::write(&conf_path, serde_json::to_vec_pretty(&conf).unwrap()).unwrap();
    for node in ["n1", "n2"] {
        lab.lab_mut().stop_agent(node).unwrap();
        lab.lab_mut().start_agent(node).unwrap();
    }
    lab.lab().wait_converged().unwrap();
    pods_talk(&lab);
    assert_geneve_state(&lab, 4242, 7100, 1);
    assert_lease_records(&lab, 2, 4242);
    let dev = lab.ip_json("n2", &["link", "show", "tweed.geneve"]);
    assert_eq!(dev[0]["txqlen"], 64, "{dev}");
    let packet = capture_n1_to_n2(&lab, 7100);
    assert_eq!(
        (packet.udp_dst_port, packet.vni),
        (7100, 4242),
        "{packet:?}"
    );
    assert_eq!(packet.inner_src_ip, lab.pod_ip("n1").to_string());
}

/// A layer-2 segment beside the geneve pod network: the segment keeps its
/// VXLAN device on 8472, even with the pod network's own VNI, and both
/// carry traffic.
#[test]
fn a_segment_rides_beside_geneve() {
    if !on_a_kernel_with(&[KernelFeature::Geneve]) {
        return; // ran, and passed, in the VM runner
    }
    let lab = TestLab::up_with("cgs", 2, "geneve", "file", |s| {
        s.net_conf_overrides.insert(
            "Segments".into(),
            serde_json::json!([{"Name": "lab1", "VNI": 1}]),
        );
    });
    pods_talk(&lab);
    common::wait_segment_meshed(&lab, 1);
    let _a = common::segment_endpoint(&lab, "n1", "lab1", "sga", "192.168.254.1/24");
    let b = common::segment_endpoint(&lab, "n2", "lab1", "sgb", "192.168.254.2/24");
    assert!(
        common::ping_from(&b.name, "192.168.254.1", 10),
        "no ping across the segment:\n{}",
        common::segment_state(&lab, 1, "tws-lab1")
    );
    let twx = lab.ip_json("n1", &["-d", "link", "show", "twx.1"]);
    assert_eq!(twx[0]["linkinfo"]["info_data"]["port"], 8472, "{twx}");
    assert_geneve_state(&lab, 1, 6081, 1);
}

/// The decoder itself, on a frame written by hand: a wrong offset would
/// otherwise make the captures above read garbage.
#[test]
fn the_geneve_decoder_reads_a_known_frame() {
    let text = "12:00:00 header line\n\
        \t0x0000:  0200 0000 0002 0200 0000 0001 0800 4500\n\
        \t0x0010:  0080 0000 0000 4011 0000 c612 0001 c612\n\
        \t0x0020:  0002 3f25 1b58 006c 0000 0000 6558 0010\n\
        \t0x0030:  9200 0200 0000 0b0b 0200 0000 0a0a 0800\n\
        \t0x0040:  4500 0054 0000 4000 4001 0000 0af4 0102\n\
        \t0x0050:  0af4 0202";
    assert_eq!(
        decode(&frame_bytes(text)),
        GenevePacket {
            udp_dst_port: 7000,
            vni: 0x1092,
            protocol: 0x6558,
            inner_dst_mac: "02:00:00:00:0b:0b".into(),
            inner_src_ip: "10.244.1.2".into(),
        }
    );
}
