//! The emulated underlay: one namespace with a bridge (the "switch" and
//! also the router to the "outside"), and per node a namespace whose eth0
//! is cabled to that bridge. Node i has 198.18.0.i/24 and fd00:198::i/64;
//! the underlay namespace is 198.18.0.254 / fd00:198::fe.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use tweed_netlink::{LinkKind, MacAddr, NetNs, Netlink, NewLink, Route, VethPeer, sysctl};

use crate::LabError;

pub const UNDERLAY_BRIDGE: &str = "ul0";
pub const MAX_NODES: usize = 250;

pub fn node_ipv4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, i as u8)
}

pub fn node_ipv6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x198, 0, 0, 0, 0, 0, i as u16)
}

pub const ROUTER_IPV4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
pub const ROUTER_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0, 0, 0, 0, 0, 0xfe);

fn net(addr: IpAddr, len: u8) -> IpNet {
    IpNet::new(addr, len).expect("valid prefix")
}

fn lo_up(nl: &mut Netlink) -> Result<(), LabError> {
    if let Some(lo) = nl.link_by_name("lo")? {
        nl.set_link_up(lo.index, true)?;
    }
    Ok(())
}

/// Creates the underlay namespace and its bridge.
pub fn create_underlay(ns_name: &str) -> Result<(), LabError> {
    let ns = NetNs::create_named(ns_name)?;
    let mut nl = Netlink::in_netns(&ns)?;
    lo_up(&mut nl)?;
    let mut br = NewLink::new(UNDERLAY_BRIDGE, LinkKind::Bridge);
    // A fixed address: a bridge otherwise takes its lowest port's MAC and
    // changes it as nodes join, leaving every node with a stale ARP entry
    // for the router (and etcd) behind it.
    br.mac = Some(MacAddr::random());
    br.up = true;
    nl.create_link(&br)?;
    let index = nl
        .link_by_name(UNDERLAY_BRIDGE)?
        .ok_or_else(|| LabError::Setup("underlay bridge vanished".into()))?
        .index;
    nl.add_address(index, net(IpAddr::V4(ROUTER_IPV4), 24), true)?;
    nl.add_address(index, net(IpAddr::V6(ROUTER_IPV6), 64), true)?;
    Ok(())
}

/// Creates node `i`'s namespace, cabled to the underlay bridge.
pub fn create_node(underlay_ns: &str, node_ns: &str, i: usize) -> Result<(), LabError> {
    let ul = NetNs::named(underlay_ns)?;
    let node = NetNs::create_named(node_ns)?;
    let mut unl = Netlink::in_netns(&ul)?;
    let mut nnl = Netlink::in_netns(&node)?;
    lo_up(&mut nnl)?;
    let bridge = unl
        .link_by_name(UNDERLAY_BRIDGE)?
        .ok_or_else(|| LabError::Setup("underlay bridge missing".into()))?;
    let port = format!("n{i}");
    let mut veth = NewLink::new(
        &port,
        LinkKind::Veth(VethPeer {
            name: "eth0".into(),
            mac: None,
            netns: Some(&node),
        }),
    );
    veth.master = Some(bridge.index);
    veth.up = true;
    unl.create_link(&veth)?;
    let eth0 = nnl
        .link_by_name("eth0")?
        .ok_or_else(|| LabError::Setup(format!("{node_ns}: eth0 missing")))?;
    nnl.add_address(eth0.index, net(IpAddr::V4(node_ipv4(i)), 24), true)?;
    nnl.add_address(eth0.index, net(IpAddr::V6(node_ipv6(i)), 64), true)?;
    nnl.set_link_up(eth0.index, true)?;
    nnl.add_route(
        &Route::new(net(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
            .via(IpAddr::V4(ROUTER_IPV4))
            .dev(eth0.index),
    )?;
    nnl.add_route(
        &Route::new(net(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0))
            .via(IpAddr::V6(ROUTER_IPV6))
            .dev(eth0.index),
    )?;
    node.run(|| -> Result<(), tweed_netlink::NetlinkError> {
        sysctl::write(&["net", "ipv4", "ip_forward"], "1")?;
        sysctl::write(&["net", "ipv6", "conf", "all", "forwarding"], "1")
    })??;
    Ok(())
}

/// Creates an empty pod namespace with loopback up.
pub fn create_pod_ns(name: &str) -> Result<NetNs, LabError> {
    let ns = NetNs::create_named(name)?;
    lo_up(&mut Netlink::in_netns(&ns)?)?;
    Ok(ns)
}
