//! Geneve devices in the kernel's external (`collect_metadata`) mode.
//!
//! A Linux Geneve device is either point-to-point (one remote, one VNI) or
//! external: one device per UDP port that takes the remote address and the
//! VNI of each packet from the route it was sent by (`encap ip id <VNI>
//! dst <peer>`, [`RouteEncap::Ip`](crate::RouteEncap::Ip)) and accepts
//! every VNI arriving on its port. tweed uses the external mode: one device
//! and one route and neighbour per peer, the same per-peer state as VXLAN,
//! instead of one device per peer.

use std::net::IpAddr;

use netlink_packet_route::link::{InfoData, InfoGeneve};

/// An external Geneve device to create.
#[derive(Debug, Clone)]
pub struct GeneveSpec {
    /// UDP destination port of the tunnel (IANA's is 6081).
    pub port: u16,
}

/// What the kernel reports about a Geneve device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GeneveInfo {
    pub port: u16,
    /// External (`collect_metadata`) mode: remote and VNI per route.
    pub external: bool,
    /// The device's own VNI (0 in external mode).
    pub vni: u32,
    /// The device's own remote (none in external mode).
    pub remote: Option<IpAddr>,
}

pub(crate) fn info_data(spec: &GeneveSpec) -> InfoData {
    InfoData::Geneve(vec![
        InfoGeneve::Port(spec.port),
        InfoGeneve::CollectMetadata,
    ])
}

pub(crate) fn parse(opts: Vec<InfoGeneve>) -> GeneveInfo {
    let mut g = GeneveInfo::default();
    for opt in opts {
        match opt {
            InfoGeneve::Id(id) => g.vni = id,
            InfoGeneve::Port(p) => g.port = p,
            InfoGeneve::CollectMetadata => g.external = true,
            InfoGeneve::Remote(a) if !a.is_unspecified() => g.remote = Some(IpAddr::V4(a)),
            InfoGeneve::Remote6(a) if !a.is_unspecified() => g.remote = Some(IpAddr::V6(a)),
            _ => {}
        }
    }
    g
}
