//! VXLAN: one device `tweed.<VNI>` with learning off, and per peer exactly
//! one permanent neighbour (peer subnet's network address → peer VTEP MAC),
//! one permanent FDB entry (VTEP MAC → peer public IP) and one onlink route
//! (`<peer subnet> via <its network address> dev tweed.<VNI> onlink`).
//! With `DirectRouting`, peers on the same L2 segment get a plain route via
//! their underlay address instead.

use std::sync::Arc;

use serde_json::Value;
use tweed_netlink::{Link, LinkKind, MacAddr, Netlink, NewLink, Route, VxlanSpec};

use super::tunnel::{self, TunnelPeer};
use super::{Backend, BackendError, LocalNode, on_link};
use crate::backend::desired::{Desired, DeviceWant, FdbWant, NeighbourWant};
use crate::lease::Lease;

pub use super::tunnel::OVERHEAD_V4;

/// tweed's own device prefix (`tweed.<VNI>`), flannel's (`flannel.<VNI>`,
/// adopted under `--flannel-compat`), and the name they make.
pub use tweed_node::names::{
    FLANNEL_VXLAN_DEVICE_PREFIX as FLANNEL_DEVICE_PREFIX, VXLAN_DEVICE_PREFIX as DEVICE_PREFIX,
    vxlan_device as device_name,
};

pub struct VxlanBackend {
    pub vni: u32,
    pub port: u16,
    pub direct_routing: bool,
    /// Stable across restarts: peers' neighbour entries point at it.
    pub vtep_mac: MacAddr,
    mtu: u32,
    qlen: Option<u32>,
    dev_index: Option<u32>,
    /// `tweed`, or `flannel` when taking over a flannel node
    /// (`--flannel-compat`): the device is `<prefix>.<VNI>`.
    device_prefix: &'static str,
}

impl VxlanBackend {
    pub fn new(
        vni: u32,
        port: u16,
        direct_routing: bool,
        vtep_mac: MacAddr,
        underlay_mtu: u32,
        ipv6_underlay: bool,
        mtu_override: Option<u32>,
    ) -> VxlanBackend {
        VxlanBackend {
            vni,
            port,
            direct_routing,
            vtep_mac,
            mtu: tunnel::pod_mtu(underlay_mtu, ipv6_underlay, mtu_override),
            qlen: None,
            dev_index: None,
            device_prefix: DEVICE_PREFIX,
        }
    }

    /// Sets the device's transmit queue length (`Backend.Qlen`).
    pub fn with_qlen(mut self, qlen: Option<u32>) -> VxlanBackend {
        self.qlen = qlen;
        self
    }

    /// Names the device `<prefix>.<VNI>` instead of `tweed.<VNI>`.
    pub fn with_device_prefix(mut self, prefix: &'static str) -> VxlanBackend {
        self.device_prefix = prefix;
        self
    }

    pub fn device_name(&self) -> String {
        device_name(self.device_prefix, self.vni)
    }

    /// The device as configured.
    fn spec(&self, local: &LocalNode) -> NewLink<'static> {
        let kind = LinkKind::Vxlan(VxlanSpec {
            remote: None,
            vni: self.vni,
            port: self.port,
            local: tunnel::local_ip(local),
            underlay_index: Some(local.underlay.index),
            learning: false,
        });
        tunnel::device_spec(self.device_name(), kind, self.vtep_mac, self.mtu, self.qlen)
    }
}

impl Backend for VxlanBackend {
    fn kind(&self) -> &'static str {
        "vxlan"
    }

    fn lease_data(&self) -> Value {
        tunnel::lease_data(self.vni, self.vtep_mac)
    }

    fn pod_mtu(&self) -> u32 {
        self.mtu
    }

    fn ensure_devices(&mut self, nl: &mut Netlink, local: &LocalNode) -> Result<(), BackendError> {
        let wanted = (self.vni, self.port, tunnel::local_ip(local), false);
        let current = |l: &Link| {
            l.kind.as_deref() == Some("vxlan")
                && l.vxlan
                    .as_ref()
                    .map(|v| (v.vni, v.port, v.local, v.learning))
                    == Some(wanted)
        };
        let link = tunnel::ensure_device(nl, &self.spec(local), "VXLAN", current, local)?;
        self.dev_index = Some(link.index);
        Ok(())
    }

    fn desired(&self, local: &LocalNode, peers: &[Arc<Lease>]) -> Desired {
        let mut desired = Desired::default();
        let mut dev = DeviceWant {
            name: self.device_name(),
            ..Default::default()
        };
        let Some(index) = self.dev_index else {
            return desired;
        };
        for peer in peers {
            let Some(TunnelPeer {
                mac,
                public,
                subnets,
            }) = tunnel::tunnel_peer(local, peer, "vxlan")
            else {
                continue;
            };
            if self.direct_routing && on_link(local, public) {
                for subnet in subnets {
                    if subnet.addr().is_ipv4() == public.is_ipv4() {
                        desired
                            .routes
                            .push(Route::new(subnet).via(public).dev(local.underlay.index));
                    }
                }
                continue;
            }
            dev.fdb.push(FdbWant { mac, dst: public });
            for subnet in subnets {
                let gw = subnet.network();
                dev.neighbours.push(NeighbourWant { ip: gw, mac });
                let mut route = Route::new(subnet).via(gw).dev(index);
                route.onlink = true;
                desired.routes.push(route);
            }
        }
        desired.devices.push(dev);
        desired
    }
}
