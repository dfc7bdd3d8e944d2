//! Configuration inside the pod's namespace: addresses, link state,
//! routes, and the gratuitous ARP that tells neighbours about a reused IP.

use ipnet::IpNet;
use tweed_cni::error::CniError;
use tweed_netlink::{Link, NetNs, Netlink, Route, sysctl};

use super::{PodAddress, PodRoute};
use crate::errors;

/// Configures the pod end of the veth, which already exists (down) in the
/// pod namespace. `nl` is a handle opened inside that namespace.
pub fn configure(
    ns: &NetNs,
    nl: &mut Netlink,
    ifname: &str,
    addresses: &[PodAddress],
    routes: &[PodRoute],
) -> Result<Link, CniError> {
    let link = nl
        .link_by_name(ifname)
        .map_err(errors::kernel)?
        .ok_or_else(|| {
            CniError::custom(
                errors::KERNEL,
                format!("{ifname} vanished from the pod namespace"),
            )
        })?;
    let has_v6 = addresses.iter().any(|a| matches!(a.address, IpNet::V6(_)));
    ns.run(|| -> Result<(), CniError> {
        let io = |e: tweed_netlink::NetlinkError| CniError::io(e.to_string());
        // With arp_notify the kernel announces the address when the link
        // comes up, so neighbours drop stale entries for a reused IP.
        sysctl::write(&["net", "ipv4", "conf", ifname, "arp_notify"], "1").map_err(io)?;
        if has_v6 {
            // Some runtimes create pod namespaces with IPv6 off.
            sysctl::ensure(&["net", "ipv6", "conf", ifname, "disable_ipv6"], "0").map_err(io)?;
        }
        Ok(())
    })
    .map_err(errors::kernel)??;
    for a in addresses {
        nl.add_address(link.index, a.address, true)
            .map_err(errors::kernel)?;
    }
    nl.set_link_up(link.index, true).map_err(errors::kernel)?;
    for r in routes {
        let mut route = Route::new(r.dst).dev(link.index);
        route.gateway = r.gateway;
        nl.add_route(&route).map_err(|e| {
            let hint = if e.is_exists() && r.dst.prefix_len() == 0 {
                " (the pod already has a default route, probably from another interface; \
                 set isDefaultGateway to false on secondary networks)"
            } else {
                ""
            };
            CniError::custom(errors::KERNEL, format!("route {}: {e}{hint}", describe(r)))
        })?;
    }
    Ok(link)
}

fn describe(r: &PodRoute) -> String {
    match r.gateway {
        Some(gw) => format!("{} via {gw}", r.dst),
        None => r.dst.to_string(),
    }
}
