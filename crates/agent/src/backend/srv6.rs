//! SRv6 over an IPv6 underlay. Each node owns a block of SIDs carved from
//! the configured locator (the node's number is its subnet's position in
//! the pool); `<block>::4` decapsulates with End.DX4 and `<block>::6` with
//! End.DX6, both with an unspecified next hop, so the kernel routes the
//! inner packet by its own destination (to the pod bridge). Peers' pod
//! subnets are routed with `encap seg6 mode encap` to the peer's SID, and
//! the peer's SID block via its underlay address.
//!
//! The encapsulation adds an outer IPv6 header (40 bytes) and a segment
//! routing header with one segment (8 + 16): pods get underlay MTU − 64, or
//! TCP stalls on full-size segments.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv6Net};
use serde_json::{Value, json};
use tweed_netlink::{Netlink, Route, RouteEncap, sysctl};

use super::{Backend, BackendError, LocalNode};
use crate::lease::Lease;
use crate::reconcile::desired::Desired;

pub const OVERHEAD: u32 = 40 + 8 + 16;
/// Bits of a node number in a SID block.
const NODE_BITS: u8 = 16;

pub struct Srv6Backend {
    block: Ipv6Net,
    mtu: u32,
}

/// The SID block of node number `node` under `locator`.
pub fn sid_block(locator: Ipv6Net, node: u16) -> Ipv6Net {
    let len = locator.prefix_len() + NODE_BITS;
    let base = u128::from(locator.network());
    let addr = base | (u128::from(node) << (128 - u32::from(len)));
    Ipv6Net::new(Ipv6Addr::from(addr), len).expect("locator is at most /64")
}

fn sid(block: Ipv6Net, function: u16) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(block.network()) | u128::from(function))
}

impl Srv6Backend {
    pub fn new(
        locator: Ipv6Net,
        node: u16,
        underlay_mtu: u32,
        mtu_override: Option<u32>,
    ) -> Srv6Backend {
        Srv6Backend {
            block: sid_block(locator, node),
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
            desired.routes.push(
                Route::new(IpNet::V6(block))
                    .via(IpAddr::V6(public))
                    .dev(dev),
            );
            if let Some(v4) = peer.key.ipv4 {
                let mut r = Route::new(IpNet::V4(v4)).dev(dev);
                r.encap = Some(RouteEncap::Seg6 {
                    segments: vec![sid4],
                });
                r.mtu = Some(self.mtu);
                desired.routes.push(r);
            }
            if let (Some(v6), Some(sid6)) = (peer.key.ipv6, parse("SID6")) {
                let mut r = Route::new(IpNet::V6(v6)).dev(dev);
                r.encap = Some(RouteEncap::Seg6 {
                    segments: vec![sid6],
                });
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
        assert_eq!(sid_block(loc, 0), "fd00:5::/64".parse().unwrap());
        assert_eq!(sid_block(loc, 7), "fd00:5:0:7::/64".parse().unwrap());
        let b = Srv6Backend::new(loc, 7, 1500, None);
        assert_eq!(b.dx4_sid(), "fd00:5:0:7::4".parse::<Ipv6Addr>().unwrap());
        assert_eq!(b.pod_mtu(), 1436);
    }
}
