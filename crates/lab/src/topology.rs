//! The emulated underlay: one namespace with a bridge per underlay subnet
//! (the "switches"), which is also the router between them and to the
//! "outside", and per node a namespace whose eth0 is cabled to its subnet's
//! bridge. Node i on subnet s has 198.18.s.i/24 and fd00:198:0:s::i/64;
//! the router is 198.18.s.254 / fd00:198:0:s::fe there. One subnet (the
//! default) is one L2 segment; more make a routed underlay, where nodes on
//! different subnets reach each other only through the router.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use tweed_netlink::{LinkKind, MacAddr, NetNs, Netlink, NewLink, Route, VethPeer, sysctl};

use crate::LabError;

pub const MAX_NODES: usize = 250;

/// At most this many underlay subnets (198.18.0.0/24 to 198.18.15.0/24).
pub const MAX_UNDERLAY_SUBNETS: u8 = 16;

pub fn node_ipv4(i: usize, subnet: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, subnet, i as u8)
}

pub fn node_ipv6(i: usize, subnet: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x198, 0, u16::from(subnet), 0, 0, 0, i as u16)
}

fn router_ipv4(subnet: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, subnet, 254)
}

fn router_ipv6(subnet: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x198, 0, u16::from(subnet), 0, 0, 0, 0xfe)
}

/// The underlay's address on the first subnet, where etcd and the API
/// server listen.
pub const ROUTER_IPV4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
pub const ROUTER_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0, 0, 0, 0, 0, 0xfe);

/// The bridge of underlay subnet `subnet` (`ul0` for the first).
pub fn underlay_bridge(subnet: u8) -> String {
    format!("ul{subnet}")
}

/// The subnet node `i` sits on when the lab has `subnets` of them: the
/// nodes take turns, so n1 and n2 are on different subnets from two up.
pub fn subnet_of(i: usize, subnets: u8) -> u8 {
    ((i - 1) % usize::from(subnets.max(1))) as u8
}

fn net(addr: IpAddr, len: u8) -> IpNet {
    IpNet::new(addr, len).expect("valid prefix")
}

fn lo_up(nl: &mut Netlink) -> Result<(), LabError> {
    if let Some(lo) = nl.link_by_name("lo")? {
        nl.set_link_up(lo.index, true)?;
    }
    Ok(())
}

/// Creates the underlay namespace with one bridge per underlay subnet,
/// routing between them.
pub fn create_underlay(ns_name: &str, subnets: u8) -> Result<(), LabError> {
    let ns = NetNs::create_named(ns_name)?;
    let mut nl = Netlink::in_netns(&ns)?;
    lo_up(&mut nl)?;
    for subnet in 0..subnets.max(1) {
        let name = underlay_bridge(subnet);
        let mut br = NewLink::new(&name, LinkKind::Bridge);
        // A fixed address: a bridge otherwise takes its lowest port's MAC and
        // changes it as nodes join, leaving every node with a stale ARP entry
        // for the router (and etcd) behind it.
        br.mac = Some(MacAddr::random());
        br.up = true;
        nl.create_link(&br)?;
        let index = nl
            .link_by_name(&name)?
            .ok_or_else(|| LabError::Setup(format!("underlay bridge {name} vanished")))?
            .index;
        nl.add_address(index, net(IpAddr::V4(router_ipv4(subnet)), 24), true)?;
        nl.add_address(index, net(IpAddr::V6(router_ipv6(subnet)), 64), true)?;
    }
    if subnets > 1 {
        ns.run(|| -> Result<(), tweed_netlink::NetlinkError> {
            sysctl::write(&["net", "ipv4", "ip_forward"], "1")?;
            sysctl::write(&["net", "ipv6", "conf", "all", "forwarding"], "1")
        })??;
    }
    Ok(())
}

/// Creates node `i`'s namespace, cabled to the bridge of its underlay
/// subnet.
pub fn create_node(underlay_ns: &str, node_ns: &str, i: usize, subnet: u8) -> Result<(), LabError> {
    let ul = NetNs::named(underlay_ns)?;
    let node = NetNs::create_named(node_ns)?;
    let mut unl = Netlink::in_netns(&ul)?;
    let bridge = subnet_bridge(&mut unl, subnet)?;
    let mut veth = NewLink::new(
        underlay_port(i),
        LinkKind::Veth(VethPeer {
            name: "eth0".into(),
            mac: None,
            netns: Some(&node),
        }),
    );
    veth.master = Some(bridge);
    veth.up = true;
    unl.create_link(&veth)?;
    configure_node(&node, i, subnet)
}

/// The name of node `i`'s port on the underlay bridge (a veth, or a VM
/// node's tap).
pub fn underlay_port(i: usize) -> String {
    format!("n{i}")
}

fn subnet_bridge(unl: &mut Netlink, subnet: u8) -> Result<u32, LabError> {
    Ok(unl
        .link_by_name(&underlay_bridge(subnet))?
        .ok_or_else(|| LabError::Setup(format!("underlay subnet {subnet} has no bridge")))?
        .index)
}

/// Creates VM node `i`'s port: a persistent tap on its subnet's bridge,
/// for QEMU (started in the underlay namespace) to open by name.
pub fn create_vm_port(underlay_ns: &str, i: usize, subnet: u8) -> Result<String, LabError> {
    let ul = NetNs::named(underlay_ns)?;
    let name = underlay_port(i);
    ul.run(|| {
        tweed_netlink::create_tap(&tweed_netlink::TapSpec {
            name: name.clone(),
            vnet_hdr: true,
            owner: None,
            group: None,
        })
    })??;
    let mut unl = Netlink::in_netns(&ul)?;
    let bridge = subnet_bridge(&mut unl, subnet)?;
    let tap = unl
        .link_by_name(&name)?
        .ok_or_else(|| LabError::Setup(format!("tap {name} vanished")))?;
    unl.set_link_master(tap.index, Some(bridge))?;
    unl.set_link_up(tap.index, true)?;
    Ok(name)
}

/// Deletes a node's port on the underlay (a VM node's tap that no VM
/// came to use).
pub fn delete_underlay_port(underlay_ns: &str, name: &str) -> Result<(), LabError> {
    let ul = NetNs::named(underlay_ns)?;
    let mut unl = Netlink::in_netns(&ul)?;
    if let Some(port) = unl.link_by_name(name)? {
        unl.delete_link(port.index)?;
    }
    Ok(())
}

/// Addresses and routes node `i`'s eth0 (already in `node`) on underlay
/// subnet `subnet`, and makes the node forward, as every node does.
pub fn configure_node(node: &NetNs, i: usize, subnet: u8) -> Result<(), LabError> {
    let mut nnl = Netlink::in_netns(node)?;
    lo_up(&mut nnl)?;
    let eth0 = nnl
        .link_by_name("eth0")?
        .ok_or_else(|| LabError::Setup("the node has no eth0".into()))?;
    nnl.add_address(eth0.index, net(IpAddr::V4(node_ipv4(i, subnet)), 24), true)?;
    nnl.add_address(eth0.index, net(IpAddr::V6(node_ipv6(i, subnet)), 64), true)?;
    nnl.set_link_up(eth0.index, true)?;
    nnl.add_route(
        &Route::new(net(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
            .via(IpAddr::V4(router_ipv4(subnet)))
            .dev(eth0.index),
    )?;
    nnl.add_route(
        &Route::new(net(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0))
            .via(IpAddr::V6(router_ipv6(subnet)))
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
