//! VXLAN: one device `tweed.<VNI>` with learning off, and per peer exactly
//! one permanent neighbour (peer subnet's network address → peer VTEP MAC),
//! one permanent FDB entry (VTEP MAC → peer public IP) and one onlink route
//! (`<peer subnet> via <its network address> dev tweed.<VNI> onlink`).
//! With `DirectRouting`, peers on the same L2 segment get a plain route via
//! their underlay address instead.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::{Value, json};
use tweed_netlink::{LinkKind, MacAddr, Netlink, NewLink, Route, VxlanSpec};

use super::{Backend, BackendError, LocalNode, on_link};
use crate::lease::Lease;
use crate::reconcile::desired::{Desired, DeviceWant, FdbWant, NeighbourWant};

/// Outer Ethernet-less overhead: IPv4 (20) + UDP (8) + VXLAN (8) + inner
/// Ethernet (14).
pub const OVERHEAD_V4: u32 = 50;
/// The same over an IPv6 underlay (40-byte outer header): flannel uses 50
/// here too, which is one of its known MTU bugs.
const OVERHEAD_V6: u32 = 70;

/// tweed's own device prefix: `tweed.<VNI>`.
pub const DEVICE_PREFIX: &str = "tweed";
/// flannel's: `flannel.<VNI>`, adopted under `--flannel-compat`.
pub const FLANNEL_DEVICE_PREFIX: &str = "flannel";

pub fn device_name(prefix: &str, vni: u32) -> String {
    format!("{prefix}.{vni}")
}

pub struct VxlanBackend {
    pub vni: u32,
    pub port: u16,
    pub direct_routing: bool,
    /// Stable across restarts: peers' neighbour entries point at it.
    pub vtep_mac: MacAddr,
    mtu: u32,
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
        let overhead = if ipv6_underlay {
            OVERHEAD_V6
        } else {
            OVERHEAD_V4
        };
        VxlanBackend {
            vni,
            port,
            direct_routing,
            vtep_mac,
            mtu: mtu_override.unwrap_or(underlay_mtu.saturating_sub(overhead)),
            dev_index: None,
            device_prefix: DEVICE_PREFIX,
        }
    }

    /// Names the device `<prefix>.<VNI>` instead of `tweed.<VNI>`.
    pub fn with_device_prefix(mut self, prefix: &'static str) -> VxlanBackend {
        self.device_prefix = prefix;
        self
    }

    pub fn device_name(&self) -> String {
        device_name(self.device_prefix, self.vni)
    }

    fn local_ip(local: &LocalNode) -> Option<IpAddr> {
        local
            .underlay
            .ipv4
            .map(IpAddr::V4)
            .or(local.underlay.ipv6.map(IpAddr::V6))
    }

    fn create(&self, nl: &mut Netlink, local: &LocalNode) -> Result<(), BackendError> {
        let mut spec = NewLink::new(
            self.device_name(),
            LinkKind::Vxlan(VxlanSpec {
                remote: None,
                vni: self.vni,
                port: self.port,
                local: Self::local_ip(local),
                underlay_index: Some(local.underlay.index),
                learning: false,
            }),
        );
        spec.mtu = Some(self.mtu);
        spec.mac = Some(self.vtep_mac);
        spec.up = true;
        nl.create_link(&spec)?;
        tracing::info!(device = %self.device_name(), vni = self.vni, port = self.port, mac = %self.vtep_mac, mtu = self.mtu, "created VXLAN device");
        Ok(())
    }
}

impl Backend for VxlanBackend {
    fn kind(&self) -> &'static str {
        "vxlan"
    }

    fn lease_data(&self) -> Value {
        json!({"VNI": self.vni, "VtepMAC": self.vtep_mac.to_string()})
    }

    fn pod_mtu(&self) -> u32 {
        self.mtu
    }

    fn ensure_devices(&mut self, nl: &mut Netlink, local: &LocalNode) -> Result<(), BackendError> {
        let name = self.device_name();
        let wanted_local = Self::local_ip(local);
        let existing = nl.link_by_name(&name)?;
        let stale = existing.as_ref().is_some_and(|l| {
            let v = l.vxlan.as_ref();
            l.kind.as_deref() != Some("vxlan")
                || v.map(|v| (v.vni, v.port, v.local, v.learning))
                    != Some((self.vni, self.port, wanted_local, false))
        });
        if stale && let Some(l) = &existing {
            tracing::warn!(device = %name, "VXLAN device has other parameters than configured; recreating it");
            nl.delete_link(l.index)?;
        }
        if existing.is_none() || stale {
            if existing.is_none() {
                tracing::warn!(device = %name, "VXLAN device missing; creating it");
            }
            self.create(nl, local)?;
        }
        let link = nl
            .link_by_name(&name)?
            .ok_or_else(|| BackendError::Setup(format!("{name} vanished right after creation")))?;
        if link.mac != Some(self.vtep_mac) {
            nl.set_link_mac(link.index, self.vtep_mac)?;
        }
        if link.mtu != self.mtu {
            nl.set_link_mtu(link.index, self.mtu)?;
        }
        if !link.up {
            nl.set_link_up(link.index, true)?;
        }
        // The subnet's network address on the device (as flannel does):
        // the kernel then has a source address for traffic it originates
        // towards peers' pods.
        for net in [
            local
                .lease
                .key
                .ipv4
                .map(|n| IpNet::new(IpAddr::V4(n.network()), 32)),
            local
                .lease
                .key
                .ipv6
                .map(|n| IpNet::new(IpAddr::V6(n.network()), 128)),
        ]
        .into_iter()
        .flatten()
        .flatten()
        {
            match nl.add_address(link.index, net, true) {
                Ok(()) => {}
                Err(e) if e.is_exists() => {}
                Err(e) => return Err(e.into()),
            }
        }
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
            if peer.attrs.backend_type != "vxlan" {
                tracing::debug!(peer = %peer.key, kind = %peer.attrs.backend_type, "skipping peer with another backend");
                continue;
            }
            let Some(mac) = peer
                .attrs
                .backend_data
                .get_str("VtepMAC")
                .and_then(|s| s.parse::<MacAddr>().ok())
            else {
                tracing::debug!(peer = %peer.key, "skipping peer without a VTEP MAC");
                continue;
            };
            let public: Option<IpAddr> = match Self::local_ip(local) {
                Some(IpAddr::V4(_)) => peer.attrs.public_ip.map(IpAddr::V4),
                Some(IpAddr::V6(_)) => peer.attrs.public_ipv6.map(IpAddr::V6),
                None => None,
            };
            let Some(public) = public else {
                continue;
            };
            let subnets: Vec<IpNet> = [peer.key.ipv4.map(IpNet::V4), peer.key.ipv6.map(IpNet::V6)]
                .into_iter()
                .flatten()
                .collect();
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
