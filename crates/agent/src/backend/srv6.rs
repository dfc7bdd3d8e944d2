//! SRv6 over an IPv6 underlay. Each node owns a block of SIDs carved from
//! the configured locator (the node's number is its subnet's position in
//! the pool); `<block>::4` decapsulates with End.DX4 and `<block>::6` with
//! End.DX6, both with an unspecified next hop, so the kernel routes the
//! inner packet by its own destination (to the pod bridge). Peers' pod
//! subnets are routed with `encap seg6 mode encap` to the peer's SID, and
//! the peer's SID block via its underlay address.
//!
//! A peer on another underlay subnet (a routed underlay) is reached with
//! two segments, its underlay address and then its SID: routers between the
//! nodes forward on the underlay address they already know, and the peer's
//! kernel, which owns that address, advances to the SID (its `seg6_enabled`
//! underlay interface acts as an SRv6 End). The routers never need to carry
//! the SID blocks.
//!
//! The encapsulation adds an outer IPv6 header (40 bytes) and a segment
//! routing header (8) with one segment (16), or two for a routed peer (32):
//! pods get underlay MTU − 80, room for the larger. The kernel encapsulates
//! forwarded packets on input, before any MTU check, and an outer packet
//! too big for the underlay is dropped with an ICMPv6 error to the node
//! itself: the pod never hears of it and TCP stalls on full-size segments.
//! So the pod MTU must already fit every peer's encapsulation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv6Net};
use serde_json::{Value, json};
use tweed_netlink::{Netlink, Route, RouteEncap, sysctl};

use super::{Backend, BackendError, LocalNode, on_link};
use crate::backend::desired::Desired;
use crate::lease::Lease;

pub const OVERHEAD: u32 = 40 + 8 + 2 * 16;
/// Bits of a node number in a SID block, unless the pool has more subnets
/// than that numbers (then the block takes as many bits as the pool).
const MIN_NODE_BITS: u8 = 16;
/// The SID's function (`::4`, `::6`) lives in the low 16 bits of the block.
const FUNCTION_BITS: u8 = 16;

/// Bits a node number takes for a pool of `2^pool_bits` subnets. Every
/// subnet has its own number, so no two nodes share a block.
pub fn node_bits(pool_bits: u8) -> u8 {
    pool_bits.max(MIN_NODE_BITS)
}

/// Why `locator` cannot number `2^pool_bits` nodes, if it cannot.
pub fn locator_too_long(locator: Ipv6Net, pool_bits: u8) -> Option<String> {
    let block_len = u16::from(locator.prefix_len()) + u16::from(node_bits(pool_bits));
    let room = u16::from(128 - FUNCTION_BITS);
    (block_len > room).then(|| {
        format!(
            "/{} with {} bits of node number (one per pod subnet of the pool) leaves no room for SID functions; use /{} or shorter",
            locator.prefix_len(),
            node_bits(pool_bits),
            room - u16::from(node_bits(pool_bits))
        )
    })
}

pub struct Srv6Backend {
    block: Ipv6Net,
    mtu: u32,
}

/// The SID block of node number `node` (of `bits` bits) under `locator`.
/// The config check (`locator_too_long`) keeps `locator + bits` short
/// enough for the function bits.
pub fn sid_block(locator: Ipv6Net, node: u128, bits: u8) -> Ipv6Net {
    let len = locator.prefix_len() + bits;
    debug_assert!(
        bits >= 128 || node >> bits == 0,
        "node number fits its bits"
    );
    let base = u128::from(locator.network());
    let addr = base | (node << (128 - u32::from(len)));
    Ipv6Net::new(Ipv6Addr::from(addr), len).expect("the config check bounds the block length")
}

fn sid(block: Ipv6Net, function: u16) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(block.network()) | u128::from(function))
}

impl Srv6Backend {
    pub fn new(
        locator: Ipv6Net,
        (node, bits): (u128, u8),
        underlay_mtu: u32,
        mtu_override: Option<u32>,
    ) -> Srv6Backend {
        Srv6Backend {
            block: sid_block(locator, node, bits),
            mtu: mtu_override.unwrap_or(underlay_mtu.saturating_sub(OVERHEAD)),
        }
    }

    pub fn dx4_sid(&self) -> Ipv6Addr {
        sid(self.block, 4)
    }

    pub fn dx6_sid(&self) -> Ipv6Addr {
        sid(self.block, 6)
    }
}

impl Backend for Srv6Backend {
    fn kind(&self) -> &'static str {
        "srv6"
    }

    fn lease_data(&self) -> Value {
        json!({"SIDBlock": self.block.to_string(), "SID": self.dx4_sid().to_string(), "SID6": self.dx6_sid().to_string()})
    }

    fn pod_mtu(&self) -> u32 {
        self.mtu
    }

    fn ensure_devices(&mut self, _nl: &mut Netlink, local: &LocalNode) -> Result<(), BackendError> {
        let io = |e: tweed_netlink::NetlinkError| BackendError::Setup(e.to_string());
        sysctl::ensure(&["net", "ipv6", "conf", "all", "forwarding"], "1").map_err(io)?;
        sysctl::ensure(&["net", "ipv6", "conf", "all", "seg6_enabled"], "1").map_err(io)?;
        sysctl::ensure(
            &["net", "ipv6", "conf", &local.underlay.iface, "seg6_enabled"],
            "1",
        )
        .map_err(io)?;
        sysctl::ensure(&["net", "ipv4", "ip_forward"], "1").map_err(io)?;
        if local.underlay.ipv6.is_none() {
            return Err(BackendError::Setup(format!(
                "srv6 needs an IPv6 address on the underlay interface {}",
                local.underlay.iface
            )));
        }
        Ok(())
    }

    fn desired(&self, local: &LocalNode, peers: &[Arc<Lease>]) -> Desired {
        let mut desired = Desired::default();
        let dev = local.underlay.index;
        // Our own SIDs: decapsulate and route the inner packet.
        let mut dx4 =
            Route::new(IpNet::V6(Ipv6Net::new(self.dx4_sid(), 128).expect("/128"))).dev(dev);
        dx4.encap = Some(RouteEncap::EndDx4 {
            nh4: Ipv4Addr::UNSPECIFIED,
        });
        desired.routes.push(dx4);
        let mut dx6 =
            Route::new(IpNet::V6(Ipv6Net::new(self.dx6_sid(), 128).expect("/128"))).dev(dev);
        dx6.encap = Some(RouteEncap::EndDx6 {
            nh6: Ipv6Addr::UNSPECIFIED,
        });
        desired.routes.push(dx6);

        for peer in peers {
            if peer.attrs.backend_type != "srv6" {
                continue;
            }
            let Value::Object(data) = peer.attrs.backend_data.value() else {
                tracing::debug!(peer = %peer.key, "skipping SRv6 peer without backend data");
                continue;
            };
            let text = |k: &str| data.get(k).and_then(Value::as_str);
            let parse = |k: &str| text(k).and_then(|s| s.parse::<Ipv6Addr>().ok());
            let (Some(block), Some(sid4), Some(public)) = (
                text("SIDBlock").and_then(|s| s.parse::<Ipv6Net>().ok()),
                parse("SID"),
                peer.attrs.public_ipv6,
            ) else {
                tracing::debug!(peer = %peer.key, "skipping SRv6 peer without SIDs or IPv6 address");
                continue;
            };
            // On one segment the peer's block is routed to it directly; across
            // routers the peer's own address goes first (see the module doc).
            let via = if on_link(local, IpAddr::V6(public)) {
                desired.routes.push(
                    Route::new(IpNet::V6(block))
                        .via(IpAddr::V6(public))
                        .dev(dev),
                );
                vec![]
            } else {
                vec![public]
            };
            let encap = |sid: Ipv6Addr| RouteEncap::Seg6 {
                segments: via.iter().copied().chain([sid]).collect(),
            };
            if let Some(v4) = peer.key.ipv4 {
                let mut r = Route::new(IpNet::V4(v4)).dev(dev);
                r.encap = Some(encap(sid4));
                r.mtu = Some(self.mtu);
                desired.routes.push(r);
            }
            if let (Some(v6), Some(sid6)) = (peer.key.ipv6, parse("SID6")) {
                let mut r = Route::new(IpNet::V6(v6)).dev(dev);
                r.encap = Some(encap(sid6));
                r.mtu = Some(self.mtu);
                desired.routes.push(r);
            }
        }
        desired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_blocks_are_distinct_per_node() {
        let loc: Ipv6Net = "fd00:5::/48".parse().unwrap();
        assert_eq!(sid_block(loc, 0, 16), "fd00:5::/64".parse().unwrap());
        assert_eq!(sid_block(loc, 7, 16), "fd00:5:0:7::/64".parse().unwrap());
        let b = Srv6Backend::new(loc, (7, 16), 1500, None);
        assert_eq!(b.dx4_sid(), "fd00:5:0:7::4".parse::<Ipv6Addr>().unwrap());
        assert_eq!(b.pod_mtu(), 1420);
    }

    #[test]
    fn a_pool_of_more_than_65536_subnets_still_gets_distinct_blocks() {
        let loc: Ipv6Net = "fd00:5::/48".parse().unwrap();
        // 10.0.0.0/8 in /28s: 2^20 subnets. Numbers 1 and 65,537 were one
        // block when node numbers wrapped at 16 bits.
        let bits = node_bits(20);
        assert_eq!(bits, 20);
        assert_ne!(sid_block(loc, 1, bits), sid_block(loc, 65_537, bits));
        assert_eq!(
            sid_block(loc, 65_537, bits),
            "fd00:5:0:1000:1000::/68".parse().unwrap()
        );
        // Small pools keep the 16-bit layout of earlier releases.
        assert_eq!(node_bits(8), 16);
    }

    #[test]
    fn the_config_refuses_a_locator_too_long_for_the_pool() {
        use crate::config::NetConfig;
        // IPv6-only: nodes are numbered in the IPv6 pool, fd00::/8 in /64s.
        let conf = |loc: &str| {
            NetConfig::parse(&format!(
                r#"{{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00::/8", "IPv6SubnetLen": 64, "Backend": {{"Type": "srv6", "Locator": "{loc}"}}}}"#
            ))
        };
        let e = conf("fc00:5::/64").unwrap_err().to_string();
        assert!(e.contains("Backend.Locator"), "{e}");
        assert!(
            e.contains("56 bits of node number") && e.contains("/56"),
            "{e}"
        );
        assert!(conf("fc00:5::/56").is_ok());
    }

    fn routes_to_peer(underlay_networks: &[&str]) -> Vec<Route> {
        use crate::identity::Underlay;
        use crate::lease::{BackendData, LeaseAttrs, LeaseKey};
        let loc: Ipv6Net = "fd00:5::/48".parse().unwrap();
        let me = Srv6Backend::new(loc, (1, 16), 1500, None);
        let peer_backend = Srv6Backend::new(loc, (2, 16), 1500, None);
        let lease = |v4: &str, v6: &str, ip6: &str, data: Value| Lease {
            key: LeaseKey {
                ipv4: v4.parse().ok(),
                ipv6: v6.parse().ok(),
            },
            attrs: LeaseAttrs {
                public_ip: None,
                public_ipv6: ip6.parse().ok(),
                backend_type: "srv6".into(),
                backend_data: data.into(),
                backend_v6_data: BackendData::null(),
                node_name: String::new(),
                segment_macs: Default::default(),
                wire_ends: Default::default(),
            },
            expires: None,
        };
        let local = LocalNode {
            name: "n1".into(),
            lease: lease(
                "10.244.1.0/24",
                "fd00:10:244:1::/64",
                "fd00:198::1",
                me.lease_data(),
            ),
            underlay: Underlay {
                iface: "eth0".into(),
                index: 2,
                mtu: 1500,
                ipv4: None,
                ipv6: Some("fd00:198::1".parse().unwrap()),
                public_ipv4: None,
                public_ipv6: Some("fd00:198::1".parse().unwrap()),
                reason: String::new(),
            },
            underlay_networks: underlay_networks
                .iter()
                .map(|n| n.parse().unwrap())
                .collect(),
        };
        let peer = Arc::new(lease(
            "10.244.2.0/24",
            "fd00:10:244:2::/64",
            "fd00:198:0:1::2",
            peer_backend.lease_data(),
        ));
        me.desired(&local, &[peer]).routes
    }

    fn encap_of(routes: &[Route], dst: &str) -> (Option<RouteEncap>, Option<u32>) {
        let dst: IpNet = dst.parse().unwrap();
        let r = routes
            .iter()
            .find(|r| r.dst == dst)
            .expect("a route to the peer's pods");
        (r.encap.clone(), r.mtu)
    }

    #[test]
    fn a_peer_on_the_underlay_subnet_gets_its_sid_alone_and_a_block_route() {
        let routes = routes_to_peer(&["fd00:198::/48"]);
        let sid: Ipv6Addr = "fd00:5:0:2::4".parse().unwrap();
        assert_eq!(
            encap_of(&routes, "10.244.2.0/24"),
            (
                Some(RouteEncap::Seg6 {
                    segments: vec![sid]
                }),
                Some(1420)
            )
        );
        let block: IpNet = "fd00:5:0:2::/64".parse().unwrap();
        assert!(routes.iter().any(|r| r.dst == block), "{routes:?}");
    }

    #[test]
    fn a_routed_peer_is_reached_through_its_underlay_address_first() {
        let routes = routes_to_peer(&["fd00:198::/64"]);
        let public: Ipv6Addr = "fd00:198:0:1::2".parse().unwrap();
        let sid6: Ipv6Addr = "fd00:5:0:2::6".parse().unwrap();
        assert_eq!(
            encap_of(&routes, "fd00:10:244:2::/64"),
            (
                Some(RouteEncap::Seg6 {
                    segments: vec![public, sid6]
                }),
                Some(1420)
            )
        );
        // The routers know the peer's address, not its SID block.
        let block: IpNet = "fd00:5:0:2::/64".parse().unwrap();
        assert!(!routes.iter().any(|r| r.dst == block), "{routes:?}");
    }
}
