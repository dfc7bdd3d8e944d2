//! Configuration inside the pod's namespace: addresses, link state,
//! routes, and the gratuitous ARP that tells neighbours about a reused IP.

use ipnet::IpNet;
use tweed_cni::error::CniError;
use tweed_netlink::{IPV4_DEVCONF_ARP_NOTIFY, NetNs, Netlink, Route, sysctl};

use super::{PodAddress, PodRoute};
use crate::errors;
use crate::faults;

/// Configures the pod end of the veth (interface `index`), which already
/// exists (down) in the pod namespace. `nl` is a handle opened inside that
/// namespace.
pub fn configure(
    ns: &NetNs,
    nl: &mut Netlink,
    ifname: &str,
    index: u32,
    addresses: &[PodAddress],
    routes: &[PodRoute],
) -> Result<(), CniError> {
    // With arp_notify the kernel announces the address when the link comes
    // up, so neighbours drop stale entries for a reused IP. Set over
    // netlink: no trip into the namespace's /proc/sys.
    faults::step("pod.arp-notify")?;
    nl.set_ipv4_devconf(index, &[(IPV4_DEVCONF_ARP_NOTIFY, 1)])
        .map_err(errors::kernel)?;
    if addresses.iter().any(|a| matches!(a.address, IpNet::V6(_))) {
        // Some runtimes create pod namespaces with IPv6 off.
        faults::step("pod.ipv6-enable")?;
        ns.run(|| sysctl::ensure(&["net", "ipv6", "conf", ifname, "disable_ipv6"], "0"))
            .map_err(errors::kernel)?
            .map_err(|e| CniError::io(e.to_string()))?;
    }
    for a in addresses {
        faults::step("pod.address")?;
        nl.add_address(index, a.address, true)
            .map_err(errors::kernel)?;
    }
    faults::step("pod.link-up")?;
    nl.set_link_up(index, true).map_err(errors::kernel)?;
    for r in routes {
        faults::step("pod.route")?;
        let mut route = Route::new(r.dst).dev(index);
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
    Ok(())
}

fn describe(r: &PodRoute) -> String {
    match r.gateway {
        Some(gw) => format!("{} via {gw}", r.dst),
        None => r.dst.to_string(),
    }
}
