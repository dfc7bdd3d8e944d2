//! The node bridge every pod of a network hangs off.
//!
//! Created on first use and then shared by all pods, so every step here
//! tolerates a concurrent ADD doing the same thing at the same moment.

use ipnet::IpNet;
use tweed_cni::error::CniError;
use tweed_netlink::{Link, LinkKind, MacAddr, Netlink, NewLink, sysctl};

use crate::errors;

/// Makes sure the bridge exists, is up, has `mtu`, and carries each gateway
/// address; enables forwarding for the families in use. Returns the bridge.
pub fn ensure(
    nl: &mut Netlink,
    name: &str,
    mtu: u32,
    gateways: &[IpNet],
) -> Result<Link, CniError> {
    let bridge = match nl.link_by_name(name).map_err(errors::kernel)? {
        Some(link) => link,
        None => create(nl, name, mtu)?,
    };
    if bridge.kind.as_deref() != Some("bridge") {
        return Err(CniError::custom(
            errors::BRIDGE_CONFLICT,
            format!(
                "bridge: device {name} exists but is a {} device, not a bridge",
                bridge.kind.as_deref().unwrap_or("physical")
            ),
        ));
    }
    if bridge.mtu != mtu {
        nl.set_link_mtu(bridge.index, mtu).map_err(errors::kernel)?;
    }
    if !bridge.up {
        nl.set_link_up(bridge.index, true).map_err(errors::kernel)?;
    }
    let mut added = Vec::new();
    for gw in gateways {
        match nl.add_address(bridge.index, *gw, true) {
            Ok(()) => added.push(*gw),
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(errors::kernel(e)),
        }
    }
    // Forwarding is switched on with the first gateway of each family; the
    // pods after it find it on (reading /proc/sys on every ADD is slow on
    // a node with many namespaces).
    enable_forwarding(&added)?;
    Ok(bridge)
}

/// The bridge of layer-2 segment `segment`, which tweedd makes: ADD waits
/// for it (error 11, try again later) rather than making a bridge that
/// reaches no other node. A configured `mtu` must be the segment's.
pub fn segment(nl: &mut Netlink, segment: &str, mtu: Option<u32>) -> Result<Link, CniError> {
    let name = tweed_segment::bridge_name(segment);
    let bridge = nl.link_by_name(&name).map_err(errors::kernel)?.ok_or_else(|| {
        CniError::try_again_later(format!(
            "segment {segment}: its bridge {name} does not exist on this node yet; tweedd creates it once net-conf.json lists the segment under Segments"
        ))
    })?;
    if bridge.kind.as_deref() != Some("bridge") {
        return Err(CniError::custom(
            errors::BRIDGE_CONFLICT,
            format!(
                "segment {segment}: {name} is a {} device, not a bridge",
                bridge.kind.as_deref().unwrap_or("physical")
            ),
        ));
    }
    if let Some(m) = mtu
        && m != bridge.mtu
    {
        return Err(CniError::invalid_config(
            "mtu",
            format!(
                "{m} differs from segment {segment}'s MTU {} on this node (set Segments[].MTU in net-conf.json, or leave mtu out)",
                bridge.mtu
            ),
        ));
    }
    Ok(bridge)
}

fn create(nl: &mut Netlink, name: &str, mtu: u32) -> Result<Link, CniError> {
    let mut spec = NewLink::new(name, LinkKind::Bridge);
    spec.mtu = Some(mtu);
    // A fixed address: otherwise the bridge takes the lowest MAC among its
    // ports and changes it as pods come and go, and every pod's ARP entry
    // for the gateway goes stale.
    spec.mac = Some(MacAddr::random());
    spec.up = true;
    match nl.create_link(&spec) {
        Ok(()) => {}
        // Another ADD created it between our lookup and now.
        Err(e) if e.is_exists() => {}
        Err(e) => return Err(errors::kernel(e)),
    }
    nl.link_by_name(name)
        .map_err(errors::kernel)?
        .ok_or_else(|| {
            CniError::custom(
                errors::KERNEL,
                format!("bridge {name} vanished after creation"),
            )
        })
}

/// The bridge routes pod traffic off the node, as the reference bridge
/// plugin does in gateway mode.
fn enable_forwarding(gateways: &[IpNet]) -> Result<(), CniError> {
    let io = |e: tweed_netlink::NetlinkError| CniError::io(e.to_string());
    if gateways.iter().any(|g| matches!(g, IpNet::V4(_))) {
        sysctl::ensure(&["net", "ipv4", "ip_forward"], "1").map_err(io)?;
    }
    if gateways.iter().any(|g| matches!(g, IpNet::V6(_))) {
        sysctl::ensure(&["net", "ipv6", "conf", "all", "forwarding"], "1").map_err(io)?;
    }
    Ok(())
}
