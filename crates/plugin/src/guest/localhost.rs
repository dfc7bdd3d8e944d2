//! localhost for sidecars: after the redirect every frame that reaches the
//! pod interface goes to the guest, so the pod's own processes (sidecars,
//! kubelet probes and port-forward, which dial 127.0.0.1 in the pod) have
//! no path to the guest. tweed gives them an L3 one through the tap:
//!
//! - the tap gets a link-local address (169.254.77.1/32), `route_localnet`,
//!   a route to the pod IP and a permanent neighbour entry for it (the
//!   guest's MAC), so the pod's stack can send to the guest;
//! - a u32 filter ahead of the tap's redirect lets IPv4 packets for
//!   169.254.77.1 into the pod's stack instead of on to the pod interface
//!   (the tap's MAC is the gateway's, the MAC the guest puts on them);
//! - NAT in the pod namespace ([`super::nft`]): 127.0.0.1:<port> to the
//!   guest, and 169.254.77.1:<port> from the guest to the pod's
//!   127.0.0.1:<port> (and :53 to a loopback resolver).
//!
//! A userspace forwarder would need a process per pod for the pod's life;
//! DNAT needs none and adds no copy. Everything here lives on the tap or in
//! one nft table, so deleting both undoes it.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use nftables::types::NfFamily;
use tweed_cni::error::CniError;
use tweed_guest::Port;
use tweed_netlink::{IPV4_DEVCONF_ROUTE_LOCALNET, MacAddr, NetNs, Netlink, Route};

use super::device::Device;
use super::nft;
use crate::errors;
use crate::faults;

/// The pod's address on the guest's link: what the guest dials for the
/// pod's services and DNS forward.
pub const POD_LINK_LOCAL: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);

/// Priority of the pass filter; the redirect's is higher (later).
const PASS_PRIORITY: u16 = 1;

pub struct Plan<'a> {
    pub ifname: &'a str,
    pub pod_ip: Ipv4Addr,
    pub guest_mac: MacAddr,
    pub localhost_ports: &'a [Port],
    pub pod_services: &'a [Port],
    /// A loopback resolver the guest's port 53 goes to.
    pub dns_forward: Option<Ipv4Addr>,
}

impl Plan<'_> {
    pub fn is_empty(&self) -> bool {
        self.localhost_ports.is_empty()
            && self.pod_services.is_empty()
            && self.dns_forward.is_none()
    }
}

/// Installs the plumbing on `tap`. On error, the nft table is removed; the
/// rest lives on the tap, which the caller deletes.
pub fn install(ns: &NetNs, nl: &mut Netlink, tap: &Device, plan: &Plan) -> Result<(), CniError> {
    let k = errors::kernel;
    faults::step("localhost.route-localnet")?;
    nl.set_ipv4_devconf(tap.index, &[(IPV4_DEVCONF_ROUTE_LOCALNET, 1)])
        .map_err(k)?;
    faults::step("localhost.address")?;
    nl.add_address(
        tap.index,
        IpNet::V4(Ipv4Net::new(POD_LINK_LOCAL, 32).expect("/32")),
        true,
    )
    .map_err(k)?;
    faults::step("localhost.neighbour")?;
    nl.set_neighbour(tap.index, IpAddr::V4(plan.pod_ip), plan.guest_mac)
        .map_err(k)?;
    faults::step("localhost.route")?;
    nl.add_route(
        &Route::new(IpNet::V4(Ipv4Net::new(plan.pod_ip, 32).expect("/32"))).dev(tap.index),
    )
    .map_err(k)?;
    faults::step("localhost.pass-filter")?;
    nl.add_pass_ipv4_dst(tap.index, POD_LINK_LOCAL, PASS_PRIORITY)
        .map_err(k)?;

    let mut services: Vec<(Port, Ipv4Addr)> = plan
        .pod_services
        .iter()
        .map(|p| (*p, Ipv4Addr::LOCALHOST))
        .collect();
    if let Some(resolver) = plan.dns_forward {
        for p in [Port::udp(53), Port::tcp(53)] {
            if !services.iter().any(|(s, _)| *s == p) {
                services.push((p, resolver));
            }
        }
    }
    let rules = nft::ruleset(&nft::Plumbing {
        ifname: plan.ifname,
        tap: &tap.name,
        pod_ip: plan.pod_ip,
        link_local: POD_LINK_LOCAL,
        localhost_ports: plan.localhost_ports,
        pod_services: services,
    });
    faults::step("localhost.nft")?;
    let applied = ns
        .run(|| tweed_netlink::nft::apply(&rules, "apply the guest's table"))
        .map_err(k)?;
    applied.map_err(|e| {
        CniError::custom(
            errors::KERNEL,
            format!("guest localhost plumbing in the pod: {e}"),
        )
    })
}

/// Removes the nft table (the rest goes with the tap).
pub fn remove(ns: &NetNs, ifname: &str) -> Result<(), CniError> {
    let table = nft::table_name(ifname);
    ns.run(|| tweed_netlink::nft::delete_table(NfFamily::IP, &table, "delete the guest's table"))
        .map_err(errors::kernel)?
        .map_err(|e| CniError::custom(errors::KERNEL, format!("guest localhost plumbing: {e}")))
}
