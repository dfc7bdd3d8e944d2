//! The kernel side of a wire end, inside the pod's namespace: a veth pair
//! straight between two pods, or a VXLAN device whose tunnel runs over
//! this node's underlay. Every device tweedd makes carries an alias
//! (`tweed-wire vni=<VNI> <how>`), so it knows its own devices from the
//! pod's others and notices one made for something else.

use std::net::IpAddr;

use tweed_netlink::{LinkKind, NetNs, Netlink, NetlinkError, NewLink, VethPeer, VxlanSpec};
use tweed_wire::{ALIAS_PREFIX, end_alias};

/// Why a wire end is not cabled.
#[derive(Debug, thiserror::Error)]
pub enum CableError {
    #[error("{0}")]
    Netlink(#[from] NetlinkError),
    #[error("the pod already has an interface {0} that tweed did not make")]
    Foreign(String),
    #[error("the pod already has an interface {0} that tweed did not make (peer pod)")]
    ForeignPeer(String),
    #[error("creating the veth pair: {0}")]
    CreateVeth(#[source] NetlinkError),
    #[error("creating the tunnel end (VNI {vni}): {source}")]
    CreateTunnel { vni: u32, source: NetlinkError },
    #[error("{0} vanished right after it was made")]
    Vanished(String),
    #[error(
        "the wire's VNI {0} is taken by the pod network or a segment; rename an interface of the wire"
    )]
    VniTaken(u32),
}

/// A pod interface that is (or is to be) a wire end.
pub struct PodEnd<'a> {
    pub ns: &'a NetNs,
    pub ifname: &'a str,
}

/// What a pod's interface of that name is now.
enum Existing {
    Absent,
    /// Ours, made as `alias` says.
    Ours {
        index: u32,
        alias: String,
    },
    /// Not made by tweedd.
    Foreign,
}

fn existing(nl: &mut Netlink, ifname: &str) -> Result<Existing, CableError> {
    match nl.link_by_name(ifname)? {
        None => Ok(Existing::Absent),
        Some(l) => match l.alias {
            Some(a) if a.starts_with(ALIAS_PREFIX) => Ok(Existing::Ours {
                index: l.index,
                alias: a,
            }),
            _ => Ok(Existing::Foreign),
        },
    }
}

/// Makes sure `a` and `b` are the two ends of one veth pair. Returns
/// whether anything was created.
pub fn ensure_veth(a: &PodEnd, b: &PodEnd, vni: u32, mtu: u32) -> Result<bool, CableError> {
    let alias = end_alias(vni, "veth");
    let mut nl_a = Netlink::in_netns(a.ns)?;
    let mut nl_b = Netlink::in_netns(b.ns)?;
    let ea = existing(&mut nl_a, a.ifname)?;
    let eb = existing(&mut nl_b, b.ifname)?;
    if matches!(ea, Existing::Foreign) {
        return Err(CableError::Foreign(a.ifname.into()));
    }
    if matches!(eb, Existing::Foreign) {
        return Err(CableError::ForeignPeer(b.ifname.into()));
    }
    if let (Existing::Ours { alias: x, .. }, Existing::Ours { alias: y, .. }) = (&ea, &eb)
        && *x == alias
        && *y == alias
    {
        return Ok(false);
    }
    // Anything else of ours under these names is stale: a half of an old
    // pair, a tunnel from when the pods were on different nodes.
    for (nl, e) in [(&mut nl_a, &ea), (&mut nl_b, &eb)] {
        if let Existing::Ours { index, .. } = e {
            let _ = nl.delete_link(*index);
        }
    }
    let mut spec = NewLink::new(
        a.ifname,
        LinkKind::Veth(VethPeer {
            name: b.ifname.to_string(),
            mac: None,
            netns: Some(b.ns),
        }),
    );
    spec.mtu = Some(mtu);
    // The peer cannot be brought up in the same request (the kernel opens
    // it before the pair is joined and refuses with ENOTCONN): it follows.
    spec.up = true;
    spec.alias = Some(alias.clone());
    let made = nl_a
        .create_link_and_get(&spec)
        .map_err(CableError::CreateVeth)?;
    let label = nl_b
        .link_by_name(b.ifname)?
        .ok_or_else(|| CableError::Vanished(b.ifname.into()))
        .and_then(|l| {
            nl_b.set_link_alias(l.index, &alias)
                .and_then(|()| nl_b.set_link_up(l.index, true))
                .map_err(CableError::from)
        });
    if let Err(e) = label {
        let _ = nl_a.delete_link(made.index);
        return Err(e);
    }
    Ok(true)
}

/// The parameters of a wire's tunnel end.
pub struct Tunnel {
    pub vni: u32,
    pub port: u16,
    pub local: Option<IpAddr>,
    pub remote: IpAddr,
    pub mtu: u32,
}

/// Makes sure the pod's interface is a VXLAN device of the wire's VNI
/// towards `remote`, its UDP socket in this (the node's) namespace.
/// Returns whether anything was created.
pub fn ensure_vxlan(node: &mut Netlink, end: &PodEnd, t: &Tunnel) -> Result<bool, CableError> {
    let alias = end_alias(t.vni, &format!("vxlan to {}", t.remote));
    let mut nl = Netlink::in_netns(end.ns)?;
    match existing(&mut nl, end.ifname)? {
        Existing::Foreign => return Err(CableError::Foreign(end.ifname.into())),
        Existing::Ours { alias: a, .. } if a == alias => return Ok(false),
        Existing::Ours { index, .. } => {
            // Stale (the far pod moved, or it was a veth): replace it.
            let _ = nl.delete_link(index);
        }
        Existing::Absent => {}
    }
    let mut spec = NewLink::new(
        end.ifname,
        LinkKind::Vxlan(VxlanSpec {
            vni: t.vni,
            port: t.port,
            local: t.local,
            underlay_index: None,
            learning: false,
            remote: Some(t.remote),
        }),
    );
    spec.mtu = Some(t.mtu);
    spec.up = true;
    spec.netns = Some(end.ns);
    node.create_link(&spec)
        .map_err(|source| CableError::CreateTunnel { vni: t.vni, source })?;
    let label = nl
        .link_by_name(end.ifname)?
        .ok_or_else(|| CableError::Vanished(end.ifname.into()))
        .and_then(|l| {
            nl.set_link_alias(l.index, &alias)
                .map_err(CableError::from)
                .inspect_err(|_| {
                    // Unlabelled, it would pass for the pod's own device.
                    let _ = nl.delete_link(l.index);
                })
        });
    label.map(|()| true)
}

/// Removes the pod's interface if tweedd made it; returns whether it did.
pub fn remove(end: &PodEnd) -> Result<bool, CableError> {
    let mut nl = Netlink::in_netns(end.ns)?;
    match existing(&mut nl, end.ifname)? {
        Existing::Ours { index, .. } => nl
            .delete_link(index)
            .map(|()| true)
            .map_err(CableError::from),
        _ => Ok(false),
    }
}
