//! The kernel side of a wire end, inside the pod's namespace: a veth pair
//! straight between two pods, or a VXLAN device whose tunnel runs over
//! this node's underlay. Every device tweedd makes carries an alias
//! (`tweed-wire vni=<VNI> <how>`), so it knows its own devices from the
//! pod's others and notices one made for something else.

use std::net::IpAddr;

use tweed_netlink::{LinkKind, NetNs, Netlink, NewLink, VethPeer, VxlanSpec};
use tweed_wire::{ALIAS_PREFIX, end_alias};

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

fn existing(nl: &mut Netlink, ifname: &str) -> Result<Existing, String> {
    match nl.link_by_name(ifname).map_err(|e| e.to_string())? {
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

fn foreign(ifname: &str) -> String {
    format!("the pod already has an interface {ifname} that tweed did not make")
}

/// Makes sure `a` and `b` are the two ends of one veth pair. Returns
/// whether anything was created.
pub fn ensure_veth(a: &PodEnd, b: &PodEnd, vni: u32, mtu: u32) -> Result<bool, String> {
    let alias = end_alias(vni, "veth");
    let mut nl_a = Netlink::in_netns(a.ns).map_err(|e| e.to_string())?;
    let mut nl_b = Netlink::in_netns(b.ns).map_err(|e| e.to_string())?;
    let ea = existing(&mut nl_a, a.ifname)?;
    let eb = existing(&mut nl_b, b.ifname)?;
    if matches!(ea, Existing::Foreign) {
        return Err(foreign(a.ifname));
    }
    if matches!(eb, Existing::Foreign) {
        return Err(format!("{} (peer pod)", foreign(b.ifname)));
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
        .map_err(|e| format!("creating the veth pair: {e}"))?;
    let label = nl_b
        .link_by_name(b.ifname)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} vanished right after it was made", b.ifname))
        .and_then(|l| {
            nl_b.set_link_alias(l.index, &alias)
                .and_then(|()| nl_b.set_link_up(l.index, true))
                .map_err(|e| e.to_string())
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
pub fn ensure_vxlan(node: &mut Netlink, end: &PodEnd, t: &Tunnel) -> Result<bool, String> {
    let alias = end_alias(t.vni, &format!("vxlan to {}", t.remote));
    let mut nl = Netlink::in_netns(end.ns).map_err(|e| e.to_string())?;
    match existing(&mut nl, end.ifname)? {
        Existing::Foreign => return Err(foreign(end.ifname)),
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
        .map_err(|e| format!("creating the tunnel end (VNI {}): {e}", t.vni))?;
    let label = nl
        .link_by_name(end.ifname)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} vanished right after it was made", end.ifname))
        .and_then(|l| {
            nl.set_link_alias(l.index, &alias)
                .map_err(|e| e.to_string())
                .inspect_err(|_| {
                    // Unlabelled, it would pass for the pod's own device.
                    let _ = nl.delete_link(l.index);
                })
        });
    label.map(|()| true)
}

/// Removes the pod's interface if tweedd made it; returns whether it did.
pub fn remove(end: &PodEnd) -> Result<bool, String> {
    let mut nl = Netlink::in_netns(end.ns).map_err(|e| e.to_string())?;
    match existing(&mut nl, end.ifname)? {
        Existing::Ours { index, .. } => nl
            .delete_link(index)
            .map(|()| true)
            .map_err(|e| e.to_string()),
        _ => Ok(false),
    }
}
