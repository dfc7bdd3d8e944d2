//! Layer-2 segments on top of any backend: per segment a bridge
//! (`tws-<name>`) joined to a VXLAN device (`twx.<VNI>`, learning off), and
//! on that device one head-end replication entry per peer node (the
//! all-zero MAC → the peer's underlay address), so broadcast, multicast and
//! unknown unicast — ARP, DHCP, neighbour discovery, any EtherType — reach
//! every node, whose bridge delivers them to its ports.
//!
//! It wraps the pod network's backend: the reconciler still sees one
//! backend, whose devices and entries are the pod network's plus the
//! segments'.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;
use tweed_netlink::{Direction, LinkKind, MacAddr, Netlink, NewLink, VxlanSpec};
use tweed_segment::{Segment, bridge_name, vxlan_name};

use super::{Backend, BackendError, LocalNode};
use crate::backend::desired::{Desired, DeviceWant, FdbWant};
use crate::lease::Lease;

use super::vxlan::OVERHEAD_V4;

pub struct WithSegments {
    inner: Box<dyn Backend>,
    segments: Vec<Segment>,
    port: u16,
    underlay_mtu: u32,
}

impl WithSegments {
    /// `port`: the UDP port of the segments' VXLAN devices (the pod
    /// network's, so one firewall rule covers both).
    pub fn new(
        inner: Box<dyn Backend>,
        segments: Vec<Segment>,
        port: u16,
        underlay_mtu: u32,
    ) -> WithSegments {
        WithSegments {
            inner,
            segments,
            port,
            underlay_mtu,
        }
    }

    fn mtu(&self, s: &Segment) -> u32 {
        s.mtu
            .unwrap_or(self.underlay_mtu.saturating_sub(OVERHEAD_V4))
    }

    fn ensure_segment(
        &self,
        nl: &mut Netlink,
        local: &LocalNode,
        s: &Segment,
    ) -> Result<(), BackendError> {
        let mtu = self.mtu(s);
        let br_name = bridge_name(&s.name);
        let bridge = match nl.link_by_name(&br_name)? {
            Some(l) if l.kind.as_deref() == Some("bridge") => l,
            Some(l) => {
                return Err(BackendError::Setup(format!(
                    "segment {}: {br_name} exists but is a {} device, not a bridge",
                    s.name,
                    l.kind.as_deref().unwrap_or("physical")
                )));
            }
            None => {
                let mut spec = NewLink::new(&br_name, LinkKind::Bridge);
                spec.mtu = Some(mtu);
                spec.up = true;
                nl.create_link(&spec)?;
                tracing::info!(segment = %s.name, bridge = %br_name, mtu, "created segment bridge");
                nl.link_by_name(&br_name)?.ok_or_else(|| {
                    BackendError::Setup(format!("{br_name} vanished right after creation"))
                })?
            }
        };
        if !bridge.up {
            nl.set_link_up(bridge.index, true)?;
        }
        let local_ip = local.underlay.ipv4.map(IpAddr::V4);
        let vx_name = vxlan_name(s.vni);
        let existing = nl.link_by_name(&vx_name)?;
        let stale = existing.as_ref().is_some_and(|l| {
            l.vxlan
                .as_ref()
                .map(|v| (v.vni, v.port, v.local, v.learning))
                != Some((s.vni, self.port, local_ip, false))
        });
        if stale && let Some(l) = &existing {
            tracing::warn!(segment = %s.name, device = %vx_name, "segment VXLAN device has other parameters than configured; recreating it");
            nl.delete_link(l.index)?;
        }
        if existing.is_none() || stale {
            let mut spec = NewLink::new(
                &vx_name,
                LinkKind::Vxlan(VxlanSpec {
                    remote: None,
                    vni: s.vni,
                    port: self.port,
                    local: local_ip,
                    underlay_index: Some(local.underlay.index),
                    learning: false,
                }),
            );
            spec.mtu = Some(mtu);
            spec.master = Some(bridge.index);
            spec.up = true;
            nl.create_link(&spec)?;
            tracing::info!(segment = %s.name, device = %vx_name, vni = s.vni, port = self.port, mtu, "created segment VXLAN device");
        }
        let vx = nl.link_by_name(&vx_name)?.ok_or_else(|| {
            BackendError::Setup(format!("{vx_name} vanished right after creation"))
        })?;
        if vx.master != Some(bridge.index) {
            nl.set_link_master(vx.index, Some(bridge.index))?;
        }
        if vx.mtu != mtu {
            nl.set_link_mtu(vx.index, mtu)?;
        }
        if !vx.up {
            nl.set_link_up(vx.index, true)?;
        }
        vlan_tag(nl, s, vx.index)
    }
}

/// The segment's VLAN tag on its VXLAN device: a tc program pushes it on
/// every frame leaving for other nodes, another takes it off arriving
/// frames and drops those without it (see tweed_netlink::bpf for why BPF).
/// The programs' names carry the VLAN, so a changed tag is noticed.
fn vlan_tag(nl: &mut Netlink, s: &Segment, vx: u32) -> Result<(), BackendError> {
    let want = s
        .vlan
        .map(|vid| (format!("tw_vpush_{vid}"), format!("tw_vpop_{vid}")));
    let have = (
        nl.bpf_filters(vx, Direction::Egress)?,
        nl.bpf_filters(vx, Direction::Ingress)?,
    );
    match &want {
        Some((push, pop)) if have.0 == [push.clone()] && have.1 == [pop.clone()] => {
            return Ok(());
        }
        None if have.0.is_empty() && have.1.is_empty() => return Ok(()),
        _ => {}
    }
    nl.delete_clsact(vx)?;
    let Some(vid) = s.vlan else {
        tracing::info!(segment = %s.name, "segment VLAN tag removed");
        return Ok(());
    };
    let (push, pop) = want.expect("a VLAN");
    nl.ensure_clsact(vx)?;
    let prog = tweed_netlink::bpf::load_vlan_push(vid)?;
    nl.add_bpf_filter(vx, Direction::Egress, &prog, &push)?;
    let prog = tweed_netlink::bpf::load_vlan_pop(vid)?;
    nl.add_bpf_filter(vx, Direction::Ingress, &prog, &pop)?;
    tracing::info!(segment = %s.name, vlan = vid, "segment frames cross between nodes tagged");
    Ok(())
}

impl Backend for WithSegments {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn lease_data(&self) -> Value {
        self.inner.lease_data()
    }

    fn lease_v6_data(&self) -> Value {
        self.inner.lease_v6_data()
    }

    fn pod_mtu(&self) -> u32 {
        self.inner.pod_mtu()
    }

    fn sync_peers(&mut self, local: &LocalNode, peers: &[Arc<Lease>]) -> Result<(), BackendError> {
        self.inner.sync_peers(local, peers)
    }

    fn ensure_devices(&mut self, nl: &mut Netlink, local: &LocalNode) -> Result<(), BackendError> {
        let inner = self.inner.ensure_devices(nl, local);
        // One segment failing does not keep the others (or the pod
        // network) down; the first error is reported.
        let mut first_err = inner.err();
        for s in &self.segments {
            if let Err(e) = self.ensure_segment(nl, local, s) {
                tracing::error!(segment = %s.name, error = %e, "segment devices could not be set up");
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn desired(&self, local: &LocalNode, peers: &[Arc<Lease>]) -> Desired {
        let mut desired = self.inner.desired(local, peers);
        // Head-end replication: every peer node with an IPv4 underlay
        // address gets a copy of each flooded frame.
        let mut dsts: Vec<IpAddr> = peers
            .iter()
            .filter_map(|p| p.attrs.public_ip.map(IpAddr::V4))
            .collect();
        dsts.sort();
        dsts.dedup();
        for s in &self.segments {
            let mut fdb: Vec<FdbWant> = dsts
                .iter()
                .map(|&dst| FdbWant {
                    mac: MacAddr::ZERO,
                    dst,
                })
                .collect();
            // Unicast: the MACs each peer published for this segment go
            // straight to it (a MAC claimed by two nodes, say a guest
            // migrating, goes to the first; the flood covers the rest).
            let mut seen = std::collections::HashSet::new();
            for peer in peers {
                let (Some(ip), Some(macs)) =
                    (peer.attrs.public_ip, peer.attrs.segment_macs.get(&s.name))
                else {
                    continue;
                };
                for mac in macs.iter().filter_map(|m| m.parse::<MacAddr>().ok()) {
                    if !mac.is_zero() && !mac.is_multicast() && seen.insert(mac) {
                        fdb.push(FdbWant {
                            mac,
                            dst: IpAddr::V4(ip),
                        });
                    }
                }
            }
            desired.devices.push(DeviceWant {
                name: vxlan_name(s.vni),
                neighbours: Vec::new(),
                fdb,
            });
        }
        desired
    }
}
