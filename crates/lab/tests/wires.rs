//! Wires: point-to-point links between pod interfaces, declared with the
//! `tweed.io/wires` annotation and cabled by tweedd — a veth pair straight
//! between two pods on one node, a per-wire VXLAN tunnel across nodes.
//! Checked here with what the kernel reports and what crosses: 802.1Q
//! tagged frames (seen by tcpdump), a non-IP EtherType and MTU-sized
//! frames both ways, on both kinds; either start order; deleting either
//! end removes both; a recreated pod gets its wire back; the agent drops
//! the wires of a pod whose namespace vanished without a DEL.

mod common;

use std::time::Duration;

use common::capture::Capture;
use common::{TestLab, raw, wait_until};
use tweed_netlink::{NetNs, Netlink};
use tweed_wire::{Endpoint, WireState};

const BROADCAST: [u8; 6] = [0xff; 6];

fn lab(tag: &str) -> TestLab {
    TestLab::up_with(tag, 2, "vxlan", "file", |s| s.pods_per_node = 0)
}

fn pod_ns(lab: &TestLab, node: &str, pod: &str) -> String {
    format!("{}.{node}.{pod}", lab.lab().state.name)
}

fn ep(pod: &str, ifname: &str) -> Endpoint {
    Endpoint::new(&format!("default/{pod}"), ifname).unwrap()
}

/// The node's report on one of its wire ends.
fn state(lab: &TestLab, node: &str, end: &Endpoint) -> Option<WireState> {
    lab.lab()
        .wire_status(node)
        .into_iter()
        .find(|s| &s.local == end)
        .map(|s| s.state)
}

fn is_up(s: Option<WireState>) -> bool {
    matches!(s, Some(WireState::Up { .. }))
}

/// A frame of each kind a cable must carry, from `from` to `to`.
/// `size`: the untagged frame's payload (the wire's MTU for the largest).
fn frames_cross(from: (&str, &str), to: (&str, &str), size: u32) {
    // 802.1Q-tagged: tcpdump shows the tag and the inner EtherType.
    let cap = Capture::start(to.0, to.1, "vlan 100 and ether proto 0x88b5");
    raw::send_frame(
        from.0,
        from.1,
        &raw::tagged_frame(BROADCAST, 100, 0x88b5, b"tweed wire, tagged"),
    );
    let seen = cap
        .wait(Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no tagged frame {from:?} -> {to:?}"));
    assert!(
        seen.contains("vlan 100") && seen.contains("0x88b5"),
        "{from:?} -> {to:?}: {seen}"
    );

    // Untagged, a non-IP EtherType, `size` bytes of payload.
    let rx = raw::Receiver::open(to.0, to.1, 0x88b6);
    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    raw::send(from.0, from.1, BROADCAST, 0x88b6, &payload);
    let got = rx
        .recv(Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no 0x88b6 frame of {size} bytes {from:?} -> {to:?}"));
    assert_eq!(got, payload, "{from:?} -> {to:?}");
}

/// r2 on n2 wired to r1's eth1, r3 on n1 wired to r1's eth2.
fn start_far_ends(t: &mut TestLab) {
    t.lab_mut()
        .add_pod_wired("n2", "r2", "eth1=r1:eth1")
        .unwrap();
    t.lab_mut()
        .add_pod_wired("n1", "r3", "eth1=r1:eth2")
        .unwrap();
}

#[test]
fn wires_cable_pods_on_one_node_and_across_nodes() {
    let mut t = lab("wire");
    let name = t.lab().state.name.clone();
    let (r1, r2, r3) = (
        pod_ns(&t, "n1", "r1"),
        pod_ns(&t, "n2", "r2"),
        pod_ns(&t, "n1", "r3"),
    );
    // The far ends start first: they wait for their peer, with no device.
    start_far_ends(&mut t);
    wait_until(10, "r2's end reported waiting", || {
        matches!(
            state(&t, "n2", &ep("r2", "eth1")),
            Some(WireState::WaitingForPeer { .. })
        )
    });
    assert!(common::link(&r2, "eth1").is_none() && common::link(&r3, "eth1").is_none());

    t.lab_mut()
        .add_pod_wired("n1", "r1", "eth1=r2:eth1, eth2=r3:eth1")
        .unwrap();
    t.lab()
        .wait_wires_up(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}\n{}", t.logs()));

    // Across nodes: a VXLAN device of the wire's VNI in each pod, between
    // the two nodes' underlay addresses.
    let vni = tweed_wire::wire_vni(&ep("r1", "eth1"), &ep("r2", "eth1"));
    let n1_ip = t.lab().state.node("n1").unwrap().underlay_ipv4.clone();
    let n2_ip = t.lab().state.node("n2").unwrap().underlay_ipv4.clone();
    let a = common::link(&r1, "eth1").expect("r1 eth1");
    let b = common::link(&r2, "eth1").expect("r2 eth1");
    for (l, local, remote) in [(&a, &n1_ip, &n2_ip), (&b, &n2_ip, &n1_ip)] {
        assert_eq!(l.kind.as_deref(), Some("vxlan"));
        let v = l.vxlan.as_ref().unwrap();
        assert_eq!(v.vni, vni);
        assert_eq!(v.local.unwrap().to_string(), *local);
        assert_eq!(v.remote.unwrap().to_string(), *remote);
        assert!(!v.learning && l.up);
    }
    assert_eq!(a.mtu, b.mtu);
    // On one node: one veth pair, one end in each pod.
    let c = common::link(&r1, "eth2").expect("r1 eth2");
    let d = common::link(&r3, "eth1").expect("r3 eth1");
    assert_eq!(
        (c.kind.as_deref(), d.kind.as_deref()),
        (Some("veth"), Some("veth"))
    );
    assert_eq!(c.peer_index, Some(d.index));
    assert_eq!(d.peer_index, Some(c.index));
    assert_eq!(
        c.mtu, a.mtu,
        "a wire's MTU does not depend on where its pods run"
    );

    // Everything a cable carries, both ways, on both kinds of wire.
    let mtu = a.mtu;
    frames_cross((&r1, "eth1"), (&r2, "eth1"), mtu);
    frames_cross((&r2, "eth1"), (&r1, "eth1"), mtu);
    frames_cross((&r1, "eth2"), (&r3, "eth1"), mtu);
    frames_cross((&r3, "eth1"), (&r1, "eth2"), mtu);

    // tweedctl status in a node lists the wires with their state.
    let tweedctl = common::binaries().plugin.with_file_name("tweedctl");
    let out = std::process::Command::new(&tweedctl)
        .args(["status", "--netns", &format!("{name}.n1"), "--wire-dir"])
        .arg(t.lab().node_dir("n1").join("wires"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("default/r1:eth1") && text.contains("up (vxlan to n2)"),
        "{text}"
    );
    assert!(
        text.contains("default/r3:eth1") && text.contains("up (veth)"),
        "{text}"
    );

    // Deleting either end removes both ends: across nodes, the far agent
    // removes its end once the record leaves the store...
    t.lab_mut().del_pod("n2", "r2").unwrap();
    wait_until(10, "r1's tunnel end removed after r2 was deleted", || {
        common::link(&r1, "eth1").is_none()
    });
    assert!(matches!(
        state(&t, "n1", &ep("r1", "eth1")),
        Some(WireState::WaitingForPeer { .. })
    ));
    // ... on one node the veth pair goes as one.
    t.lab_mut().del_pod("n1", "r3").unwrap();
    assert!(
        common::link(&r1, "eth2").is_none(),
        "r1's veth end outlived r3"
    );

    // Recreated pods get their wires back.
    start_far_ends(&mut t);
    wait_until(10, "both wires back", || {
        is_up(state(&t, "n1", &ep("r1", "eth1")))
            && is_up(state(&t, "n2", &ep("r2", "eth1")))
            && is_up(state(&t, "n1", &ep("r1", "eth2")))
            && common::link(&r1, "eth1").is_some()
            && common::link(&r1, "eth2").is_some()
    });
    frames_cross((&r2, "eth1"), (&r1, "eth1"), mtu);
    frames_cross((&r1, "eth2"), (&r3, "eth1"), mtu);

    // A pod whose namespace vanishes without a DEL (a crashed node's
    // runtime): its node's agent drops the record, the far end follows.
    let record_dir = t.lab().node_dir("n2").join("wires").join("pods");
    NetNs::delete_named(&r2).unwrap();
    wait_until(10, "n2's agent dropped r2's record", || {
        std::fs::read_dir(&record_dir)
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    });
    wait_until(10, "r1's end removed after r2's namespace vanished", || {
        common::link(&r1, "eth1").is_none()
    });
    // The same-node wire is untouched by all this.
    assert!(common::link(&r1, "eth2").is_some());
}

/// A bad declaration is refused with code 7 naming where it came from
/// (code 4 when the pod's name is missing from CNI_ARGS), before anything
/// is made: no interface, no address, no record.
#[test]
fn wire_declarations_are_checked_and_leave_nothing() {
    let t = TestLab::up_with("wbad", 1, "vxlan", "file", |s| s.pods_per_node = 0);
    let node_dir = t.lab().node_dir("n1");
    let node_ns = format!("{}.n1", t.lab().state.name);
    let pod = format!("{}.n1.bad", t.lab().state.name);
    tweed_lab::topology::create_pod_ns(&pod).unwrap();
    let annotation = "runtimeConfig.io.kubernetes.cri.pod-annotations[\\\"tweed.io/wires\\\"]";
    let named = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=bad";
    for (wires, args, code, field, needle) in [
        ("eth1=r2", named, 7, annotation, "must be <pod>:<ifname>"),
        ("eth1=bad:eth2", named, 7, annotation, "to itself"),
        ("eth0=r2:eth1", named, 7, annotation, "CNI_IFNAME"),
        (
            "eth1=r2:eth1,eth1=r3:eth1",
            named,
            7,
            annotation,
            "wired twice",
        ),
        ("eth1=r2:eth1", "", 4, "CNI_ARGS", "K8S_POD_NAME"),
    ] {
        let mut conf = tweed_lab::pods::conflist(&node_dir);
        conf["runtimeConfig"] = serde_json::json!({
            "io.kubernetes.cri.pod-annotations": {"tweed.io/wires": wires}
        });
        let err = tweed_lab::pods::cni_with(
            &t.lab().binaries.plugin,
            &node_ns,
            &conf,
            &tweed_lab::pods::Call {
                command: "ADD",
                container_id: "bad",
                pod_ns: &pod,
                ifname: "eth0",
                cni_args: args,
            },
        )
        .expect_err(wires)
        .to_string();
        assert!(err.contains(&format!("\"code\":{code},")), "{wires}: {err}");
        assert!(
            err.contains(field) && err.contains(needle),
            "{wires}: {err}"
        );
        // Nothing made: only loopback in the pod, no reservation, no record.
        let links = Netlink::in_netns(&NetNs::named(&pod).unwrap())
            .unwrap()
            .links()
            .unwrap();
        assert_eq!(links.len(), 1, "{wires}: {links:?}");
        let reserved = std::fs::read_dir(node_dir.join("ipam").join("tweed"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().contains('.'))
                    .filter(|e| !e.file_name().to_string_lossy().starts_with("last_reserved"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(reserved, 0, "{wires}: an address stayed reserved");
        let records = std::fs::read_dir(node_dir.join("wires").join("pods"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(records, 0, "{wires}: a wire record was left");
    }
    NetNs::delete_named(&pod).unwrap();
}

/// A wire across nodes with each store: the far end travels in the lease
/// record (etcd: flannel's JSON with `WireEnds`; kube: the node annotation
/// `tweed.io/wire-ends`), and an agent restart leaves the cable alone.
#[test]
fn wires_cross_nodes_with_etcd_and_kube_and_survive_agent_restarts() {
    for store in ["etcd", "kube"] {
        let mut t = TestLab::up_with(&format!("w{}", &store[..1]), 2, "vxlan", store, |s| {
            s.pods_per_node = 0
        });
        t.lab_mut()
            .add_pod_wired("n1", "ra", "eth1=rb:eth1")
            .unwrap();
        t.lab_mut()
            .add_pod_wired("n2", "rb", "eth1=ra:eth1")
            .unwrap();
        t.lab()
            .wait_wires_up(Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("{store}: {e}\n{}", t.logs()));
        let (ra, rb) = (pod_ns(&t, "n1", "ra"), pod_ns(&t, "n2", "rb"));
        frames_cross((&ra, "eth1"), (&rb, "eth1"), 1000);
        frames_cross((&rb, "eth1"), (&ra, "eth1"), 1000);

        // Restarting the far node's agent does not flap the near end.
        let before = common::link(&ra, "eth1").unwrap().index;
        t.lab_mut().stop_agent("n2").unwrap();
        t.lab_mut().start_agent("n2").unwrap();
        std::thread::sleep(Duration::from_secs(4));
        assert_eq!(
            common::link(&ra, "eth1").map(|l| l.index),
            Some(before),
            "{store}: the wire end was recreated across the far agent's restart"
        );
        frames_cross((&rb, "eth1"), (&ra, "eth1"), 1000);

        // Deleting the far pod still removes the near end.
        t.lab_mut().del_pod("n2", "rb").unwrap();
        wait_until(10, &format!("{store}: ra's end removed"), || {
            common::link(&ra, "eth1").is_none()
        });
    }
}
