//! What the two UDP tunnel backends (vxlan, geneve) share: the pod MTU
//! under the encapsulation, the device's settings kept as configured, the
//! node subnet's network address on the device, and which peers can be
//! reached through the tunnel and how.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Value, json};
use tweed_netlink::{Link, LinkKind, MacAddr, Netlink, NewLink};

use super::{BackendError, LocalNode};
use crate::lease::Lease;

/// Outer overhead over IPv4: IPv4 (20) + UDP (8) + VXLAN or Geneve
/// without options (8) + inner Ethernet (14).
pub const OVERHEAD_V4: u32 = 50;
/// The same over an IPv6 underlay (40-byte outer header): flannel uses 50
/// here too, which is one of its known MTU bugs.
const OVERHEAD_V6: u32 = 70;

/// The pod MTU: the override, else the underlay's minus the encapsulation.
pub fn pod_mtu(underlay_mtu: u32, ipv6_underlay: bool, mtu_override: Option<u32>) -> u32 {
    let overhead = if ipv6_underlay {
        OVERHEAD_V6
    } else {
        OVERHEAD_V4
    };
    mtu_override.unwrap_or(underlay_mtu.saturating_sub(overhead))
}

/// The underlay address tunnels leave from: IPv4 when the node has it.
pub fn local_ip(local: &LocalNode) -> Option<IpAddr> {
    local
        .underlay
        .ipv4
        .map(IpAddr::V4)
        .or(local.underlay.ipv6.map(IpAddr::V6))
}

/// The lease record's `BackendData` of both: flannel's VXLAN shape.
pub fn lease_data(vni: u32, vtep_mac: MacAddr) -> Value {
    json!({"VNI": vni, "VtepMAC": vtep_mac.to_string()})
}

/// A tunnel device to create: up, with the node's stable MAC, the pod
/// MTU and the configured queue length.
pub fn device_spec(
    name: String,
    kind: LinkKind<'static>,
    vtep_mac: MacAddr,
    mtu: u32,
    qlen: Option<u32>,
) -> NewLink<'static> {
    let mut spec = NewLink::new(name, kind);
    spec.mtu = Some(mtu);
    spec.qlen = qlen;
    spec.mac = Some(vtep_mac);
    spec.up = true;
    spec
}

/// Makes the tunnel device `spec` exist as configured: created when
/// missing, deleted and created again when `current` says its parameters
/// (kind, VNI, port, ...) are not the configured ones — the kernel cannot
/// change those in place — and then kept by [`keep_device`]. `what` names
/// the kind in logs. Returns the device.
pub fn ensure_device(
    nl: &mut Netlink,
    spec: &NewLink,
    what: &str,
    current: impl Fn(&Link) -> bool,
    local: &LocalNode,
) -> Result<Link, BackendError> {
    let name = &spec.name;
    let link = match nl.link_by_name(name)? {
        Some(l) if current(&l) => l,
        stale => {
            match stale {
                None => tracing::warn!(device = %name, "{what} device missing; creating it"),
                Some(l) => {
                    tracing::warn!(device = %name, "{what} device has other parameters than configured; recreating it");
                    nl.delete_link(l.index)?;
                }
            }
            let l = nl.create_link_and_get(spec)?;
            tracing::info!(device = %name, mac = %l.mac.map(|m| m.to_string()).unwrap_or_default(), mtu = l.mtu, qlen = l.qlen, kind = ?spec.kind, "created {what} device");
            l
        }
    };
    keep_device(nl, &link, spec, local)?;
    Ok(link)
}

/// Puts back the MAC, MTU, queue length and up state of `spec` where they
/// were changed by hand, then
/// the node subnet's network address(es) on the device (as flannel does:
/// the kernel then has a source address for traffic it originates towards
/// peers' pods).
pub fn keep_device(
    nl: &mut Netlink,
    link: &Link,
    want: &NewLink,
    local: &LocalNode,
) -> Result<(), BackendError> {
    if let Some(mac) = want.mac
        && link.mac != Some(mac)
    {
        nl.set_link_mac(link.index, mac)?;
    }
    if let Some(mtu) = want.mtu
        && link.mtu != mtu
    {
        nl.set_link_mtu(link.index, mtu)?;
    }
    if let Some(qlen) = want.qlen
        && link.qlen != qlen
    {
        nl.set_link_qlen(link.index, qlen)?;
    }
    if !link.up {
        nl.set_link_up(link.index, true)?;
    }
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
    Ok(())
}

/// A peer reachable through the tunnel.
pub struct TunnelPeer {
    /// The MAC of its tunnel device (`VtepMAC` in its lease).
    pub mac: MacAddr,
    /// Its underlay address of this node's underlay family.
    pub public: IpAddr,
    /// Its pod subnets.
    pub subnets: Vec<IpNet>,
}

/// `peer` as a tunnel peer of backend `kind`, or `None` (logged) when it
/// runs another backend or lacks what the tunnel needs.
pub fn tunnel_peer(local: &LocalNode, peer: &Lease, kind: &str) -> Option<TunnelPeer> {
    if peer.attrs.backend_type != kind {
        tracing::debug!(peer = %peer.key, kind = %peer.attrs.backend_type, "skipping peer with another backend");
        return None;
    }
    let Some(mac) = peer
        .attrs
        .backend_data
        .get_str("VtepMAC")
        .and_then(|s| s.parse::<MacAddr>().ok())
    else {
        tracing::debug!(peer = %peer.key, "skipping peer without a VTEP MAC");
        return None;
    };
    let public: IpAddr = match local_ip(local)? {
        IpAddr::V4(_) => IpAddr::V4(peer.attrs.public_ip?),
        IpAddr::V6(_) => IpAddr::V6(peer.attrs.public_ipv6?),
    };
    let subnets = [peer.key.ipv4.map(IpNet::V4), peer.key.ipv6.map(IpNet::V6)]
        .into_iter()
        .flatten()
        .collect();
    Some(TunnelPeer {
        mac,
        public,
        subnets,
    })
}
