//! host-gw: plain routes, one per peer, via the peer's underlay address.
//! Only works when every node is on the same L2 segment; a peer that is not
//! directly reachable is refused (logged), never routed wrongly.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::{Value, json};
use tweed_netlink::{Netlink, Route};

use super::{Backend, BackendError, LocalNode, on_link};
use crate::backend::desired::Desired;
use crate::lease::Lease;

pub struct HostGwBackend {
    mtu: u32,
}

impl HostGwBackend {
    pub fn new(underlay_mtu: u32, mtu_override: Option<u32>) -> HostGwBackend {
        HostGwBackend {
            mtu: mtu_override.unwrap_or(underlay_mtu),
        }
    }
}

impl Backend for HostGwBackend {
    fn kind(&self) -> &'static str {
        "host-gw"
    }

    fn lease_data(&self) -> Value {
        json!({})
    }

    fn pod_mtu(&self) -> u32 {
        self.mtu
    }

    fn ensure_devices(
        &mut self,
        _nl: &mut Netlink,
        _local: &LocalNode,
    ) -> Result<(), BackendError> {
        Ok(())
    }

    fn desired(&self, local: &LocalNode, peers: &[Arc<Lease>]) -> Desired {
        let mut desired = Desired::default();
        for peer in peers {
            for (subnet, public) in [
                (
                    peer.key.ipv4.map(IpNet::V4),
                    peer.attrs.public_ip.map(IpAddr::V4),
                ),
                (
                    peer.key.ipv6.map(IpNet::V6),
                    peer.attrs.public_ipv6.map(IpAddr::V6),
                ),
            ] {
                let (Some(subnet), Some(public)) = (subnet, public) else {
                    continue;
                };
                if !on_link(local, public) {
                    tracing::error!(
                        peer = %peer.key,
                        address = %public,
                        "host-gw: peer is not on this node's L2 segment ({}); its pods are unreachable. Use the vxlan backend (or DirectRouting) across routed underlays",
                        local.underlay.iface
                    );
                    continue;
                }
                desired
                    .routes
                    .push(Route::new(subnet).via(public).dev(local.underlay.index));
            }
        }
        desired
    }
}
