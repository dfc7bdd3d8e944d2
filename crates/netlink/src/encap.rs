//! Lightweight-tunnel encapsulation of routes (`ip route ... encap ...`):
//! SRv6 encap and decap, and IP tunnel metadata for metadata-mode tunnel
//! devices (Geneve).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_route::route::{
    RouteIp6Tunnel, RouteIp6TunnelFlags, RouteIpTunnel, RouteLwEnCapType, RouteLwTunnelEncap,
    RouteSeg6IpTunnel, RouteSeg6LocalTunnel, Seg6Header, Seg6LocalAction, Seg6Mode,
};

/// What a route does to packets besides forwarding them (`encap ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteEncap {
    /// `encap seg6 mode encap segs ...`: wrap the packet in an outer IPv6
    /// header with a segment routing header listing `segments`.
    Seg6 { segments: Vec<Ipv6Addr> },
    /// `encap seg6local action End.DX4 nh4 ...`: remove the outer header
    /// and forward the inner IPv4 packet to `nh4`; with `nh4` unspecified
    /// the kernel routes the inner packet by its own destination.
    EndDx4 { nh4: Ipv4Addr },
    /// `encap seg6local action End.DX6 nh6 ...`: the same for inner IPv6.
    EndDx6 { nh6: Ipv6Addr },
    /// `encap ip id <id> dst <dst>` (`encap ip6 ...` for an IPv6 `dst`):
    /// tunnel metadata for the route's device, which must be a
    /// metadata-mode (external) tunnel such as Geneve; it sends the packet
    /// to `dst` with tunnel key `id` (the VNI).
    Ip { id: u32, dst: IpAddr },
}

/// The `RTA_ENCAP_TYPE` and `RTA_ENCAP` of a route.
pub(crate) fn to_attributes(encap: &RouteEncap) -> (RouteLwEnCapType, Vec<RouteLwTunnelEncap>) {
    match encap {
        RouteEncap::Seg6 { segments } => {
            let mut header = Seg6Header::default();
            header.mode = Seg6Mode::Encap;
            header.segments = segments.clone();
            (
                RouteLwEnCapType::Seg6,
                vec![RouteLwTunnelEncap::Seg6(RouteSeg6IpTunnel::Seg6(header))],
            )
        }
        RouteEncap::EndDx4 { nh4 } => (
            RouteLwEnCapType::Seg6Local,
            vec![
                RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(
                    Seg6LocalAction::EndDx4,
                )),
                RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Nh4(*nh4)),
            ],
        ),
        RouteEncap::EndDx6 { nh6 } => (
            RouteLwEnCapType::Seg6Local,
            vec![
                RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(
                    Seg6LocalAction::EndDx6,
                )),
                RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Nh6(*nh6)),
            ],
        ),
        RouteEncap::Ip {
            id,
            dst: IpAddr::V4(dst),
        } => (
            RouteLwEnCapType::Ip,
            vec![
                RouteLwTunnelEncap::Ip(RouteIpTunnel::Id(u64::from(*id))),
                RouteLwTunnelEncap::Ip(RouteIpTunnel::Destination(*dst)),
            ],
        ),
        // Over IPv6 the outer UDP checksum is asked for: a zero checksum
        // is refused by IPv6 receivers that do not opt in to it.
        RouteEncap::Ip {
            id,
            dst: IpAddr::V6(dst),
        } => (
            RouteLwEnCapType::Ip6,
            vec![
                RouteLwTunnelEncap::Ip6(RouteIp6Tunnel::Id(u64::from(*id))),
                RouteLwTunnelEncap::Ip6(RouteIp6Tunnel::Destination(*dst)),
                RouteLwTunnelEncap::Ip6(RouteIp6Tunnel::Flags(RouteIp6TunnelFlags::Checksum)),
            ],
        ),
    }
}

/// The encapsulation of a route read from the kernel.
pub(crate) fn parse(items: Vec<RouteLwTunnelEncap>) -> Option<RouteEncap> {
    let mut action = None;
    let mut nh4 = Ipv4Addr::UNSPECIFIED;
    let mut nh6 = Ipv6Addr::UNSPECIFIED;
    let mut ip_id = None;
    let mut ip_dst = None;
    for item in items {
        match item {
            RouteLwTunnelEncap::Seg6(RouteSeg6IpTunnel::Seg6(h)) => {
                // In visiting order both ways (the header itself holds the
                // last segment first; the crate turns the list around).
                return Some(RouteEncap::Seg6 {
                    segments: h.segments,
                });
            }
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Action(a)) => action = Some(a),
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Nh4(a)) => nh4 = a,
            RouteLwTunnelEncap::Seg6Local(RouteSeg6LocalTunnel::Nh6(a)) => nh6 = a,
            RouteLwTunnelEncap::Ip(RouteIpTunnel::Id(id))
            | RouteLwTunnelEncap::Ip6(RouteIp6Tunnel::Id(id)) => ip_id = Some(id),
            RouteLwTunnelEncap::Ip(RouteIpTunnel::Destination(a)) => ip_dst = Some(IpAddr::V4(a)),
            RouteLwTunnelEncap::Ip6(RouteIp6Tunnel::Destination(a)) => ip_dst = Some(IpAddr::V6(a)),
            _ => {}
        }
    }
    if let Some(dst) = ip_dst {
        // A VNI is 24 bits; the kernel keeps a 64-bit key.
        let id = u32::try_from(ip_id.unwrap_or(0)).unwrap_or(u32::MAX);
        return Some(RouteEncap::Ip { id, dst });
    }
    match action? {
        Seg6LocalAction::EndDx4 => Some(RouteEncap::EndDx4 { nh4 }),
        Seg6LocalAction::EndDx6 => Some(RouteEncap::EndDx6 { nh6 }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{Emitable, NlaBuffer, ParseableParametrized};

    use super::*;

    /// What `parse` reads back from the bytes `to_attributes` sends.
    fn round_trip(encap: &RouteEncap) -> Option<RouteEncap> {
        let (kind, items) = to_attributes(encap);
        let parsed = items
            .iter()
            .map(|item| {
                let mut buf = vec![0u8; item.buffer_len()];
                item.emit(&mut buf);
                let nla = NlaBuffer::new_checked(&buf[..]).expect("an attribute");
                RouteLwTunnelEncap::parse_with_param(&nla, kind).expect("parses back")
            })
            .collect();
        parse(parsed)
    }

    #[test]
    fn seg6_segments_read_back_in_visiting_order() {
        let segments: Vec<Ipv6Addr> = vec![
            "fd00:198:0:1::3".parse().unwrap(),
            "fd00:5:0:2::4".parse().unwrap(),
        ];
        let encap = RouteEncap::Seg6 { segments };
        assert_eq!(round_trip(&encap), Some(encap));
    }
}
