//! Tunnel devices as the agent makes them, read back over netlink and
//! cross-checked with iproute2: an external Geneve device with its port
//! and queue length and a route carrying its VNI and peer (in the VM
//! runner where the host lacks Geneve), and a VXLAN device's queue length.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use tweed_netlink::{
    GeneveSpec, LinkKind, NetNs, Netlink, NewLink, Route, RouteEncap, VethPeer, VxlanSpec,
};
use tweed_testkit::netns::TestNs;
use tweed_testkit::vm::{KernelFeature, on_a_kernel_with};

fn nl(ns: &TestNs) -> Netlink {
    Netlink::in_netns(&NetNs::named(&ns.name).expect("open netns")).expect("netlink in netns")
}

fn ip_json(ns: &TestNs, args: &[&str]) -> Value {
    let mut argv = vec!["ip", "-j", "-d"];
    argv.extend_from_slice(args);
    serde_json::from_str(&ns.exec_ok(&argv)).expect("ip -j output")
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// One node of a two-node Geneve tunnel: an external device on `port`
/// with `qlen`, its MAC and network address.
struct GeneveNode {
    ns: TestNs,
    nl: Netlink,
    dev: u32,
}

fn geneve_node(ns: TestNs, port: u16, qlen: u32, n: u8) -> GeneveNode {
    let mut nl = nl(&ns);
    let mut spec = NewLink::new("tweed.geneve", LinkKind::Geneve(GeneveSpec { port }));
    spec.mtu = Some(1400);
    spec.qlen = Some(qlen);
    spec.mac = Some(format!("02:00:00:00:0{n}:0{n}").parse().unwrap());
    spec.up = true;
    let dev = nl.create_link_and_get(&spec).unwrap().index;
    nl.add_address(dev, net(&format!("10.244.{n}.0/32")), true)
        .unwrap();
    GeneveNode { ns, nl, dev }
}

/// Two namespaces joined by a veth underlay with `underlay[0]` and
/// `underlay[1]` (address/prefix), each with a Geneve device on `port`.
fn geneve_pair(tag: &str, underlay: [&str; 2], port: u16, qlen: u32) -> (GeneveNode, GeneveNode) {
    let (a, b) = (
        TestNs::new(&format!("{tag}A")),
        TestNs::new(&format!("{tag}B")),
    );
    let b_ns = NetNs::named(&b.name).unwrap();
    let mut veth = NewLink::new(
        "ul0",
        LinkKind::Veth(VethPeer {
            name: "ul0".into(),
            mac: None,
            netns: Some(&b_ns),
        }),
    );
    veth.up = true;
    nl(&a).create_link(&veth).unwrap();
    for (ns, addr) in [(&a, underlay[0]), (&b, underlay[1])] {
        let mut nl = nl(ns);
        let ul = nl.link_by_name("ul0").unwrap().unwrap().index;
        nl.set_link_up(ul, true).unwrap();
        nl.add_address(ul, net(addr), true).unwrap();
    }
    (geneve_node(a, port, qlen, 1), geneve_node(b, port, qlen, 2))
}

/// On each node: a permanent neighbour for the other's network address
/// (its device MAC) and a route into its subnet with VNI `vni` to its
/// underlay address `dsts[other]`.
fn route_each_to_the_other(pair: [&mut GeneveNode; 2], vni: u32, dsts: [IpAddr; 2]) {
    for (i, g) in pair.into_iter().enumerate() {
        let peer = 2 - i as u8;
        let gw: IpAddr = format!("10.244.{peer}.0").parse().unwrap();
        g.nl.set_neighbour(
            g.dev,
            gw,
            format!("02:00:00:00:0{peer}:0{peer}").parse().unwrap(),
        )
        .unwrap();
        let mut r = Route::new(net(&format!("10.244.{peer}.0/24")))
            .via(gw)
            .dev(g.dev);
        r.onlink = true;
        r.protocol = 77;
        r.encap = Some(RouteEncap::Ip {
            id: vni,
            dst: dsts[1 - i],
        });
        g.nl.add_route(&r).unwrap();
    }
}

/// The encapsulation of a's route to b's subnet, read back over netlink.
fn encap_towards_b(a: &mut GeneveNode) -> Option<RouteEncap> {
    let routes = a.nl.routes(false, tweed_netlink::TABLE_MAIN).unwrap();
    let r = routes
        .iter()
        .find(|r| r.dst == net("10.244.2.0/24"))
        .expect("the Geneve route");
    r.encap.clone()
}

/// Pings b's network address from a's.
fn ping_across(a: &GeneveNode) {
    let ping: Vec<&str> = "ping -c 2 -W 2 -I 10.244.1.0 10.244.2.0"
        .split(' ')
        .collect();
    let out = a.ns.exec(&ping);
    assert!(
        out.status.success(),
        "ping over Geneve: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn geneve_device_port_qlen_and_vni_route_read_back_and_carry_traffic() {
    if !on_a_kernel_with(&[KernelFeature::Geneve]) {
        return; // ran, and passed, in the VM runner
    }
    let (mut ga, mut gb) = geneve_pair("gn", ["198.18.0.1/24", "198.18.0.2/24"], 6090, 777);
    let dev = ga.nl.link_by_name("tweed.geneve").unwrap().unwrap();
    assert_eq!(dev.kind.as_deref(), Some("geneve"));
    let info = dev.geneve.clone().expect("geneve info");
    assert_eq!((info.port, info.external, info.remote), (6090, true, None));
    assert_eq!(dev.qlen, 777);
    let j = ip_json(&ga.ns, &["link", "show", "tweed.geneve"]);
    assert_eq!(j[0]["txqlen"], 777, "{j}");
    assert_eq!(j[0]["linkinfo"]["info_kind"], "geneve", "{j}");
    assert_eq!(j[0]["linkinfo"]["info_data"]["port"], 6090, "{j}");
    assert_eq!(j[0]["linkinfo"]["info_data"]["external"], true, "{j}");

    let underlay: [IpAddr; 2] = ["198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap()];
    route_each_to_the_other([&mut ga, &mut gb], 4242, underlay);
    assert_eq!(
        encap_towards_b(&mut ga),
        Some(RouteEncap::Ip {
            id: 4242,
            dst: underlay[1]
        })
    );
    let j = ip_json(&ga.ns, &["route", "show", "10.244.2.0/24"]);
    assert_eq!(j[0]["encap"], "ip", "{j}");
    assert_eq!(j[0]["id"], 4242, "{j}");
    assert_eq!(j[0]["dst"], "198.18.0.2", "{j}");

    // The pair carries traffic: from a's network address to b's.
    ping_across(&ga);

    // The queue length changes in place.
    ga.nl.set_link_qlen(ga.dev, 0).unwrap();
    assert_eq!(
        ga.nl.link_by_index(ga.dev).unwrap().unwrap().qlen,
        0,
        "txqueuelen 0"
    );
}

/// Over an IPv6 underlay the routes carry `encap ip6` (with the UDP
/// checksum IPv6 receivers want), read back as the same [`RouteEncap::Ip`],
/// and IPv4 pod traffic crosses.
#[test]
fn geneve_over_an_ipv6_underlay() {
    if !on_a_kernel_with(&[KernelFeature::Geneve]) {
        return; // ran, and passed, in the VM runner
    }
    let (mut ga, mut gb) = geneve_pair("g6", ["fd00:ab::1/64", "fd00:ab::2/64"], 6081, 1000);
    let underlay: [IpAddr; 2] = ["fd00:ab::1".parse().unwrap(), "fd00:ab::2".parse().unwrap()];
    route_each_to_the_other([&mut ga, &mut gb], 99, underlay);
    assert_eq!(
        encap_towards_b(&mut ga),
        Some(RouteEncap::Ip {
            id: 99,
            dst: underlay[1]
        })
    );
    let j = ip_json(&ga.ns, &["route", "show", "10.244.2.0/24"]);
    assert_eq!(j[0]["encap"], "ip6", "{j}");
    // Wait for the underlay addresses' duplicate detection (nodad was
    // asked, but a link coming up may still hold them tentative).
    assert!(
        (0..50).any(|_| {
            let ok = ga
                .ns
                .exec(&["ping", "-c", "1", "-W", "1", "fd00:ab::2"])
                .status
                .success();
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            ok
        }),
        "the IPv6 underlay itself"
    );
    ping_across(&ga);
}

#[test]
fn vxlan_device_queue_length_is_set_at_creation_and_changed_in_place() {
    let ns = TestNs::new("vxq");
    let mut nl = nl(&ns);
    let mut spec = NewLink::new(
        "tweed.9",
        LinkKind::Vxlan(VxlanSpec {
            vni: 9,
            port: 8472,
            local: None,
            underlay_index: None,
            learning: false,
            remote: None,
        }),
    );
    spec.qlen = Some(321);
    let dev = nl.create_link_and_get(&spec).unwrap();
    assert_eq!(dev.qlen, 321);
    assert_eq!(ip_json(&ns, &["link", "show", "tweed.9"])[0]["txqlen"], 321);
    nl.set_link_qlen(dev.index, 4000).unwrap();
    assert_eq!(nl.link_by_index(dev.index).unwrap().unwrap().qlen, 4000);
    assert_eq!(
        ip_json(&ns, &["link", "show", "tweed.9"])[0]["txqlen"],
        4000
    );
}
