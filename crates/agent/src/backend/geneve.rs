//! Geneve: one external (metadata-mode) device `tweed.geneve` on the
//! configured UDP port, and per peer one permanent neighbour (peer subnet's
//! network address → the MAC of the peer's device) and one onlink route
//! that carries the tunnel metadata:
//! `<peer subnet> via <its network address> dev tweed.geneve onlink
//! encap ip id <VNI> dst <peer public IP>`.
//!
//! Why one external device rather than a device per peer: a Linux Geneve
//! device is either point-to-point (one remote) or external. A device per
//! peer would mean N−1 devices, MACs and UDP-socket users per node, each
//! created and torn down as nodes come and go; the external device keeps
//! the per-peer state exactly VXLAN's size (one route, one neighbour; the
//! route's encap does the FDB entry's job) and lets the same reconciler
//! diff it. What it costs: the device takes packets of every VNI arriving
//! on its port, so the VNI marks tweed's traffic on the wire but does not
//! separate two networks sharing a port — give them different ports.
//!
//! The lease record has VXLAN's shape (`{"VNI": .., "VtepMAC": ..}`,
//! `BackendType` `geneve`); the VNI a node sends with is its own
//! configured one, like the VXLAN device's.

use std::sync::Arc;

use serde_json::Value;
use tweed_netlink::{GeneveSpec, Link, LinkKind, MacAddr, Netlink, NewLink, Route, RouteEncap};

use super::tunnel::{self, TunnelPeer};
use super::{Backend, BackendError, LocalNode};
use crate::backend::desired::{Desired, DeviceWant, NeighbourWant};
use crate::lease::Lease;

/// The device. One per node whatever the VNI: the VNI is per route.
pub const DEVICE_NAME: &str = tweed_node::names::GENEVE_DEVICE;

pub struct GeneveBackend {
    pub vni: u32,
    pub port: u16,
    /// Stable across restarts: peers' neighbour entries point at it.
    pub vtep_mac: MacAddr,
    mtu: u32,
    qlen: Option<u32>,
    dev_index: Option<u32>,
}

impl GeneveBackend {
    pub fn new(
        vni: u32,
        port: u16,
        vtep_mac: MacAddr,
        underlay_mtu: u32,
        ipv6_underlay: bool,
        mtu_override: Option<u32>,
        qlen: Option<u32>,
    ) -> GeneveBackend {
        GeneveBackend {
            vni,
            port,
            vtep_mac,
            // Geneve without options has VXLAN's 8-byte header.
            mtu: tunnel::pod_mtu(underlay_mtu, ipv6_underlay, mtu_override),
            qlen,
            dev_index: None,
        }
    }

    fn spec(&self) -> NewLink<'static> {
        tunnel::device_spec(
            DEVICE_NAME.to_string(),
            LinkKind::Geneve(GeneveSpec { port: self.port }),
            self.vtep_mac,
            self.mtu,
            self.qlen,
        )
    }
}

impl Backend for GeneveBackend {
    fn kind(&self) -> &'static str {
        "geneve"
    }

    fn lease_data(&self) -> Value {
        tunnel::lease_data(self.vni, self.vtep_mac)
    }

    fn pod_mtu(&self) -> u32 {
        self.mtu
    }

    fn ensure_devices(&mut self, nl: &mut Netlink, local: &LocalNode) -> Result<(), BackendError> {
        let port = self.port;
        let current = |l: &Link| {
            l.kind.as_deref() == Some("geneve")
                && l.geneve
                    .as_ref()
                    .is_some_and(|g| g.external && g.port == port)
        };
        let link = tunnel::ensure_device(nl, &self.spec(), "Geneve", current, local)?;
        self.dev_index = Some(link.index);
        Ok(())
    }

    fn desired(&self, local: &LocalNode, peers: &[Arc<Lease>]) -> Desired {
        let mut desired = Desired::default();
        let Some(index) = self.dev_index else {
            return desired;
        };
        let mut dev = DeviceWant {
            name: DEVICE_NAME.to_string(),
            ..Default::default()
        };
        for peer in peers {
            let Some(TunnelPeer {
                mac,
                public,
                subnets,
            }) = tunnel::tunnel_peer(local, peer, "geneve")
            else {
                continue;
            };
            for subnet in subnets {
                let gw = subnet.network();
                dev.neighbours.push(NeighbourWant { ip: gw, mac });
                let mut route = Route::new(subnet).via(gw).dev(index);
                route.onlink = true;
                route.encap = Some(RouteEncap::Ip {
                    id: self.vni,
                    dst: public,
                });
                desired.routes.push(route);
            }
        }
        desired.devices.push(dev);
        desired
    }
}
