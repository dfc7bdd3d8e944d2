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
/// with `qlen`, its MAC and network address, and a route to the other
/// node's subnet with VNI `vni`.
struct GeneveNode {
    ns: TestNs,
    nl: Netlink,
    dev: u32,
}

fn geneve_node(ns: TestNs, port: u16, qlen: u32, n: u8) -> GeneveNode {
    let mut nl = nl(&ns);
    let mut spec = NewLink::new("tweed.geneve", LinkKind::Geneve(GeneveSpec { port }));
    spec.mtu = Some(1450);
    spec.qlen = Some(qlen);
    spec.mac = Some(format!("02:00:00:00:0{n}:0{n}").parse().unwrap());
    spec.up = true;
    let dev = nl.create_link_and_get(&spec).unwrap().index;
    nl.add_address(dev, net(&format!("10.244.{n}.0/32")), true)
        .unwrap();
    GeneveNode { ns, nl, dev }
}

#[test]
fn geneve_device_port_qlen_and_vni_route_read_back_and_carry_traffic() {
    if !on_a_kernel_with(&[KernelFeature::Geneve]) {
        return; // ran, and passed, in the VM runner
    }
    let (a, b) = (TestNs::new("gnA"), TestNs::new("gnB"));
    let mut la = nl(&a);
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
    la.create_link(&veth).unwrap();
    let mut lb = nl(&b);
    let ul_b = lb.link_by_name("ul0").unwrap().unwrap().index;
    lb.set_link_up(ul_b, true).unwrap();
    let ul_a = la.link_by_name("ul0").unwrap().unwrap().index;
    la.add_address(ul_a, net("198.18.0.1/24"), true).unwrap();
    lb.add_address(ul_b, net("198.18.0.2/24"), true).unwrap();

    let mut ga = geneve_node(a, 6090, 777, 1);
    let mut gb = geneve_node(b, 6090, 777, 2);
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

    // Each side: a permanent neighbour for the other's network address
    // (its device MAC) and a route into its subnet with VNI 4242.
    for (g, peer) in [(&mut ga, 2u8), (&mut gb, 1u8)] {
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
            id: 4242,
            dst: format!("198.18.0.{peer}").parse().unwrap(),
        });
        g.nl.add_route(&r).unwrap();
    }
    let routes = ga.nl.routes(false, tweed_netlink::TABLE_MAIN).unwrap();
    let r = routes
        .iter()
        .find(|r| r.dst == net("10.244.2.0/24"))
        .expect("the Geneve route");
    assert_eq!(
        r.encap,
        Some(RouteEncap::Ip {
            id: 4242,
            dst: "198.18.0.2".parse().unwrap()
        })
    );
    let j = ip_json(&ga.ns, &["route", "show", "10.244.2.0/24"]);
    assert_eq!(j[0]["encap"], "ip", "{j}");
    assert_eq!(j[0]["id"], 4242, "{j}");
    assert_eq!(j[0]["dst"], "198.18.0.2", "{j}");

    // The pair carries traffic: from a's network address to b's.
    let ping: Vec<&str> = "ping -c 2 -W 2 -I 10.244.1.0 10.244.2.0"
        .split(' ')
        .collect();
    let out = ga.ns.exec(&ping);
    assert!(
        out.status.success(),
        "ping over Geneve: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The queue length changes in place.
    ga.nl.set_link_qlen(ga.dev, 0).unwrap();
    assert_eq!(
        ga.nl.link_by_index(ga.dev).unwrap().unwrap().qlen,
        0,
        "txqueuelen 0"
    );
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
