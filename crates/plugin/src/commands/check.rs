//! CHECK: verify the attachment is still as ADD left it.

use std::net::IpAddr;

use ipnet::IpNet;
use tweed_cni::error::CniError;
use tweed_cni::result::CniResult;
use tweed_guest::GuestRecord;
use tweed_guest::record::RecordError;
use tweed_netlink::{NetNs, Netlink, TABLE_MAIN};

use super::Call;
use crate::errors::{self, check_failed};
use crate::guest;
use crate::ipam::{IpamPlan, builtin, delegate};
use crate::names;

pub fn run(call: &mut Call) -> Result<(), CniError> {
    let conf = call.conf;
    if let Some(ends) = &conf.wire {
        return crate::wire_network::check(call, ends);
    }
    let prev = conf.net.prev_result.as_ref().ok_or_else(|| {
        CniError::invalid_config("prevResult", "CHECK needs the result of the ADD")
    })?;
    let prev = CniResult::from_json(prev)?;
    let (id, ifname) = (call.container_id(), call.ifname());
    let netns_path = call
        .env
        .netns
        .clone()
        .ok_or_else(|| super::missing("CNI_NETNS"))?;
    let ns =
        NetNs::open(&netns_path).map_err(|e| CniError::invalid_env("CNI_NETNS", e.to_string()))?;

    let (index, iface) = prev
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == ifname && i.sandbox.is_some())
        .ok_or_else(|| {
            check_failed(format!("prevResult has no interface {ifname} in a sandbox"))
        })?;

    // Inside the pod.
    let mut pod = Netlink::in_netns(&ns).map_err(errors::kernel)?;
    let link = pod
        .link_by_name(ifname)
        .map_err(errors::kernel)?
        .ok_or_else(|| {
            check_failed(format!(
                "interface {ifname} is missing from {}",
                netns_path.display()
            ))
        })?;
    if !link.up {
        return Err(check_failed(format!("interface {ifname} is down")));
    }
    // A guest attachment: the guest holds the addresses and routes (and,
    // behind a macvtap, the MAC); tweed chained after another plugin
    // checks only what it made.
    let state_dir = guest::request::state_dir(conf.guest.as_ref());
    let guest = match GuestRecord::read(&state_dir, id, ifname) {
        Ok(r) => Some(r),
        Err(RecordError::Missing { .. }) => None,
        Err(e) => return Err(check_failed(e.to_string())),
    };
    if let Some(record) = &guest {
        guest::check::verify(&mut pod, record, &link)?;
        if record.chained {
            return Ok(());
        }
        return check_node(call, &prev, index);
    }
    if let Some(mac) = &iface.mac
        && link.mac.map(|m| m.to_string()) != Some(mac.to_lowercase())
    {
        return Err(check_failed(format!(
            "interface {ifname} has MAC {} instead of {mac}",
            link.mac.map(|m| m.to_string()).unwrap_or_default()
        )));
    }
    if let Some(mtu) = iface.mtu
        && link.mtu != mtu
    {
        return Err(check_failed(format!(
            "interface {ifname} has MTU {} instead of {mtu}",
            link.mtu
        )));
    }
    let present: Vec<IpNet> = pod
        .addresses(Some(link.index))
        .map_err(errors::kernel)?
        .into_iter()
        .map(|a| a.addr)
        .collect();
    let ours = addresses_of(&prev, index);
    for addr in &ours {
        if !present.contains(addr) {
            return Err(check_failed(format!(
                "address {addr} is missing from {ifname}"
            )));
        }
    }
    for family_v6 in [false, true] {
        let table = pod.routes(family_v6, TABLE_MAIN).map_err(errors::kernel)?;
        for r in prev
            .routes
            .iter()
            .filter(|r| r.dst.addr().is_ipv6() == family_v6)
        {
            let found = table
                .iter()
                .any(|t| t.dst == r.dst && (r.gw.is_none() || t.gateway == r.gw));
            if !found {
                let via = r.gw.map(|g| format!(" via {g}")).unwrap_or_default();
                return Err(check_failed(format!(
                    "route {}{via} is missing in the pod",
                    r.dst
                )));
            }
        }
    }

    check_node(call, &prev, index)
}

/// The addresses `prev` gives the interface at `index`.
fn addresses_of(prev: &CniResult, index: usize) -> Vec<IpNet> {
    prev.ips
        .iter()
        .filter(|ip| ip.interface == Some(index))
        .map(|ip| ip.address)
        .collect()
}

/// The node side and the reservations.
fn check_node(call: &Call, prev: &CniResult, index: usize) -> Result<(), CniError> {
    let conf = call.conf;
    let (id, ifname) = (call.container_id(), call.ifname());
    let ours = addresses_of(prev, index);
    // On the node.
    let mut host = Netlink::new().map_err(errors::kernel)?;
    let host_name = names::host_veth(conf.name(), id, ifname);
    let host_link = host
        .link_by_name(&host_name)
        .map_err(errors::kernel)?
        .ok_or_else(|| check_failed(format!("host interface {host_name} is missing")))?;
    let bridge = host
        .link_by_name(&conf.bridge)
        .map_err(errors::kernel)?
        .ok_or_else(|| check_failed(format!("bridge {} is missing", conf.bridge)))?;
    if host_link.master != Some(bridge.index) {
        return Err(check_failed(format!(
            "host interface {host_name} is not a port of {}",
            conf.bridge
        )));
    }
    if !host_link.up {
        return Err(check_failed(format!("host interface {host_name} is down")));
    }

    // The reservations.
    let store_dir = match &conf.ipam {
        IpamPlan::Builtin(ipam) => Some(builtin::data_dir(ipam)),
        IpamPlan::SegmentBlock { data_dir } => Some(data_dir.clone()),
        IpamPlan::Delegate(_) => None,
    };
    match (&conf.ipam, store_dir) {
        (_, Some(dir)) => {
            let held = builtin::held(&dir, conf.name(), id, ifname)?;
            let missing: Vec<IpAddr> = ours
                .iter()
                .map(|n| n.addr())
                .filter(|ip| !held.contains(ip))
                .collect();
            if !missing.is_empty() {
                return Err(check_failed(format!(
                    "no IPAM reservation for {} held by {id}/{ifname}",
                    missing
                        .iter()
                        .map(|ip| ip.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        (IpamPlan::Delegate(plugin), None) => {
            delegate::run(plugin, &call.env.path, "CHECK", call.stdin)?;
        }
        (_, None) => {}
    }
    Ok(())
}
