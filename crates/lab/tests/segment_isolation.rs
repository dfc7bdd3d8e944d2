//! Segments are isolated from each other and from the routed pod network.
//! Two segments on two nodes, endpoints of both with addresses of one IP
//! subnet: an endpoint reaches its own segment on the other node (the
//! control) and nothing on the other segment, on either node — no ARP
//! answer, no broadcast frame. An endpoint on a segment with an address of
//! the node's pod subnet reaches neither the node's pod gateway nor the
//! routed pod, and broadcasts do not cross between the segment and the
//! pod network in either direction.

mod common;

use std::time::Duration;

use common::{TestLab, raw, segment_endpoint};
use serde_json::json;

const ETHERTYPE: u16 = 0x88b5;

/// Sends a broadcast of `ETHERTYPE` from `from` (`eth1` of a namespace)
/// and says which of `listeners` (namespace, interface) received it.
fn broadcast_reaches(from: (&str, &str), listeners: &[(&str, &str)]) -> Vec<bool> {
    let receivers: Vec<raw::Receiver> = listeners
        .iter()
        .map(|(ns, ifname)| raw::Receiver::open(ns, ifname, ETHERTYPE))
        .collect();
    raw::send(
        from.0,
        from.1,
        [0xff; 6],
        ETHERTYPE,
        b"tweed isolation probe",
    );
    receivers
        .iter()
        .map(|r| {
            r.recv(Duration::from_secs(2))
                .is_some_and(|p| p.starts_with(b"tweed isolation probe"))
        })
        .collect()
}

#[test]
fn segments_are_isolated_from_each_other_and_from_the_pod_network() {
    let lab = TestLab::up_with("sgi", 2, "vxlan", "file", |s| {
        s.net_conf_overrides.insert(
            "Segments".into(),
            json!([{"Name": "red", "VNI": 4001}, {"Name": "blue", "VNI": 4002}]),
        );
    });
    for vni in [4001, 4002] {
        common::wait_segment_meshed(&lab, vni);
    }
    let red1 = segment_endpoint(&lab, "n1", "red", "ir1", "192.168.50.1/24");
    let red2 = segment_endpoint(&lab, "n2", "red", "ir2", "192.168.50.2/24");
    let blue1 = segment_endpoint(&lab, "n1", "blue", "ib1", "192.168.50.3/24");
    let blue2 = segment_endpoint(&lab, "n2", "blue", "ib2", "192.168.50.4/24");

    // Each segment works across the nodes...
    assert!(
        common::ping_from(&red1.name, "192.168.50.2", 10),
        "red: n1 cannot reach n2:\n{}",
        common::segment_state(&lab, 4001, "tws-red")
    );
    assert!(
        common::ping_from(&blue1.name, "192.168.50.4", 10),
        "blue: n1 cannot reach n2:\n{}",
        common::segment_state(&lab, 4002, "tws-blue")
    );
    // ...and never reaches the other, on the same node or across.
    for (from, to) in [
        (&red1, "192.168.50.3"),
        (&red1, "192.168.50.4"),
        (&blue2, "192.168.50.1"),
        (&blue2, "192.168.50.2"),
    ] {
        assert!(
            !from.ping(to),
            "{} reached {to} on the other segment",
            from.name
        );
    }
    let heard = broadcast_reaches(
        (&red1.name, "eth1"),
        &[
            (&red2.name, "eth1"),
            (&blue1.name, "eth1"),
            (&blue2.name, "eth1"),
        ],
    );
    assert_eq!(
        heard,
        [true, false, false],
        "red's broadcast: red2, blue1, blue2"
    );

    // The routed pod network: n1's pod and its gateway, in n1's pod subnet.
    let pod = &lab.lab().state.node("n1").unwrap().pods[0];
    let pod_ip = pod.ipv4.clone().expect("pod address");
    let prefix = pod_ip.rsplit_once('.').expect("IPv4").0;
    let gateway = format!("{prefix}.1");
    let intruder = segment_endpoint(&lab, "n1", "red", "irx", &format!("{prefix}.200/24"));
    assert!(
        !intruder.ping(&gateway),
        "a segment endpoint reached the pod network's gateway {gateway}"
    );
    assert!(
        !intruder.ping(&pod_ip),
        "a segment endpoint reached the routed pod {pod_ip}"
    );
    // Broadcasts cross neither way (the segment side hears its own, the
    // control that the probe was sent at all).
    let heard = broadcast_reaches(
        (&intruder.name, "eth1"),
        &[(&red2.name, "eth1"), (&pod.ns, "eth0")],
    );
    assert_eq!(heard, [true, false], "segment broadcast: red2, routed pod");
    let heard = broadcast_reaches(
        (&pod.ns, "eth0"),
        &[(&red1.name, "eth1"), (&intruder.name, "eth1")],
    );
    assert_eq!(heard, [false, false], "pod broadcast reached the segment");
}
