//! tweed chained after another plugin (flannel, Calico, the reference
//! bridge): the pod interface and its addresses are that plugin's; tweed
//! adds only the guest. This is how a urunc user on flannel or Calico gets
//! guest support without changing fabric.
//!
//! ADD takes the interface named CNI_IFNAME from `prevResult`, the guest's
//! addresses from the IP entries that point at it and the guest's routes
//! from the kernel (the routes the previous plugin installed through that
//! interface — results often leave some out, Calico's link-scoped gateway
//! route for one).
//!
//! The pod interface keeps those addresses and routes (as with
//! tc-redirect-tap, so the previous plugin's CHECK still passes): after the
//! redirect its stack never sees a frame anyway. Only when the pod asks for
//! localhost plumbing does the pod's stack give them up, because a pod that
//! holds the guest's address delivers traffic for it to itself instead of
//! through the tap; the previous plugin's CHECK then reports the address
//! missing (kubelet's runtimes do not run CHECK).

use std::net::IpAddr;

use serde_json::Value;
use tweed_cni::error::CniError;
use tweed_cni::result::CniResult;
use tweed_guest::GuestRecord;
use tweed_guest::record::DnsSource;
use tweed_netlink::{NetNs, Netlink, Route, TABLE_MAIN};

use super::{GuestRequest, Identity, PodSide};
use crate::commands::Call;
use crate::dataplane::{PodAddress, PodRoute};
use crate::errors;
use crate::faults;

/// `RTPROT_KERNEL`: routes the kernel derives from addresses.
const PROTO_KERNEL: u8 = 2;

/// The index of the CNI_IFNAME interface in `prev`, if the previous plugin
/// made one in a sandbox.
pub fn pod_interface(prev: &CniResult, ifname: &str) -> Option<usize> {
    prev.interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox.is_some())
}

pub fn add(
    call: &mut Call,
    req: &GuestRequest,
    mut prev: CniResult,
    index: usize,
) -> Result<Value, CniError> {
    let ifname = call.ifname();
    let netns_path = call
        .env
        .netns
        .clone()
        .ok_or_else(|| crate::commands::missing("CNI_NETNS"))?;
    let ns =
        NetNs::open(&netns_path).map_err(|e| CniError::invalid_env("CNI_NETNS", e.to_string()))?;
    let mut nl = Netlink::in_netns(&ns).map_err(errors::kernel)?;
    let eth = nl
        .link_by_name(ifname)
        .map_err(errors::kernel)?
        .ok_or_else(|| {
            CniError::invalid_config(
                "prevResult",
                format!(
                    "interface {ifname} of the previous plugin is not in {}",
                    netns_path.display()
                ),
            )
        })?;
    let guest_mac = eth
        .mac
        .ok_or_else(|| CniError::custom(errors::KERNEL, format!("{ifname} has no MAC address")))?;
    let addresses: Vec<PodAddress> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(index))
        .map(|ip| PodAddress {
            address: ip.address,
            gateway: ip.gateway,
        })
        .collect();
    if addresses.is_empty() {
        return Err(CniError::invalid_config(
            "prevResult.ips",
            format!("the previous plugin gave {ifname} no address for the guest"),
        ));
    }
    let kernel_routes = routes_through(&mut nl, eth.index)?;
    let routes: Vec<PodRoute> = kernel_routes
        .iter()
        .map(|r| PodRoute {
            dst: r.dst,
            gateway: r.gateway,
        })
        .collect();

    let gateway_mac = match req.mode {
        tweed_guest::GuestMode::Tap => ipv4_gateway(&addresses, &routes)
            .and_then(|gw| super::gateway::learn_mac(&ns, &mut nl, eth.index, gw)),
        tweed_guest::GuestMode::Macvtap => None,
    };
    let offer = super::offer([
        (
            call.conf.net.runtime_config.dns.as_ref(),
            DnsSource::RuntimeConfig,
        ),
        (call.conf.net.dns.as_ref(), DnsSource::NetworkConfig),
        (Some(&prev.dns), DnsSource::PrevResult),
    ]);
    let who = Identity {
        network: call.conf.name(),
        container_id: call.container_id(),
        ifname,
        hostname: call.env.args.k8s_pod_name.as_deref(),
    };
    let pod = PodSide {
        ns: &ns,
        netns_path: &netns_path,
        eth: &eth,
        guest_mac,
        mtu: eth.mtu,
        addresses: &addresses,
        routes: &routes,
        gateway_mac,
        chained: true,
    };
    let attached = super::attach(&mut nl, &who, req, &pod, &offer)?;

    let handed_over = match attached.record.localhost {
        Some(_) => hand_over(&mut nl, eth.index, &addresses, &kernel_routes),
        None => Ok(()),
    }
    // Where a step added after the last one would fail.
    .and_then(|()| faults::step("chained.done"));
    if let Err(e) = handed_over {
        let _ = super::detach(
            &req.state_dir,
            Some(&attached.record),
            None,
            Some(&netns_path),
        );
        restore(&mut nl, eth.index, &addresses, &kernel_routes);
        return Err(e);
    }
    call.record.ips = addresses.iter().map(|a| a.address.to_string()).collect();
    super::result::add_guest(&mut prev, &attached, call.container_id());
    Ok(prev.to_json(call.conf.version))
}

/// Non-kernel routes of the main tables that leave through `index`.
fn routes_through(nl: &mut Netlink, index: u32) -> Result<Vec<Route>, CniError> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        out.extend(
            nl.routes(v6, TABLE_MAIN)
                .map_err(errors::kernel)?
                .into_iter()
                .filter(|r| r.oif == Some(index) && r.protocol != PROTO_KERNEL),
        );
    }
    Ok(out)
}

fn ipv4_gateway(addresses: &[PodAddress], routes: &[PodRoute]) -> Option<std::net::Ipv4Addr> {
    let from_address = addresses.iter().find_map(|a| match a.gateway {
        Some(IpAddr::V4(g)) => Some(g),
        _ => None,
    });
    from_address.or_else(|| {
        routes
            .iter()
            .find_map(|r| match (r.dst.prefix_len(), r.gateway) {
                (0, Some(IpAddr::V4(g))) => Some(g),
                _ => None,
            })
    })
}

/// The pod's stack gives the guest its addresses and routes.
fn hand_over(
    nl: &mut Netlink,
    index: u32,
    addresses: &[PodAddress],
    routes: &[Route],
) -> Result<(), CniError> {
    for r in routes {
        faults::step("chained.route-handover")?;
        match nl.delete_route(r) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(errors::kernel(e)),
        }
    }
    for a in addresses {
        faults::step("chained.address-handover")?;
        match nl.delete_address(index, a.address) {
            Ok(()) => {}
            Err(e) if e.is_not_found() || e.errno() == Some(libc::EADDRNOTAVAIL) => {}
            Err(e) => return Err(errors::kernel(e)),
        }
    }
    Ok(())
}

/// Best effort: put back what [`hand_over`] took.
fn restore(nl: &mut Netlink, index: u32, addresses: &[PodAddress], routes: &[Route]) {
    for a in addresses {
        let _ = nl.add_address(index, a.address, true);
    }
    // Routes without a gateway first: the gateways' routes need them.
    let (direct, via): (Vec<&Route>, Vec<&Route>) =
        routes.iter().partition(|r| r.gateway.is_none());
    for r in direct.into_iter().chain(via) {
        let _ = nl.add_route(r);
    }
}

/// DEL of a chained attachment: the guest only; the interface and its
/// addresses belong to the previous plugin, whose DEL runs too.
pub fn del(record: &GuestRecord, state_dir: &std::path::Path) -> Result<(), CniError> {
    let netns = std::path::PathBuf::from(&record.netns);
    super::detach(state_dir, Some(record), None, Some(&netns))
}
