//! DEL: take a container off the network.
//!
//! Must succeed when repeated, when the namespace is gone and when nothing
//! was ever created; must always release the reservation.

use tweed_cni::error::CniError;
use tweed_guest::GuestRecord;
use tweed_guest::record::RecordError;
use tweed_netlink::Netlink;

use super::Call;
use crate::dataplane::veth;
use crate::errors;
use crate::faults;
use crate::guest;
use crate::ipam::{IpamPlan, builtin, delegate};
use crate::names;

pub fn run(call: &mut Call) -> Result<(), CniError> {
    let conf = call.conf;
    if conf.wire.is_some() {
        return crate::wire_network::del(call);
    }
    let network = conf.name();
    let (id, ifname) = (call.container_id(), call.ifname());

    // The pod goes off the network before anything else, and above all
    // before its address is released: a DEL killed after the release must
    // not leave a pod answering on an address the next ADD hands out
    // again (the pod's eth0 loses its carrier with the host end). The host
    // end is found by name; a veth of that name without an alias is this
    // attachment's too: an ADD killed between creating the pair and
    // labelling it (the kernel takes no alias in the creating request).
    let mut host = Netlink::new().map_err(errors::kernel)?;
    let host_name = names::host_veth(network, id, ifname);
    let alias = names::alias(network, id, ifname);
    let host_link = host
        .link_by_name(&host_name)
        .map_err(errors::kernel)?
        .filter(|link| {
            link.kind.as_deref() == Some("veth")
                && (link.alias.as_deref() == Some(alias.as_str()) || link.alias.is_none())
        });
    let down = match &host_link {
        Some(link) if link.up => faults::step("del.host-veth-down").and_then(|()| {
            match host.set_link_up(link.index, false) {
                Ok(()) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(errors::kernel(e)),
            }
        }),
        _ => Ok(()),
    };

    // A guest attachment: its record says what was made and whether tweed
    // was chained after another plugin (then the guest is all there is to
    // remove here).
    let state_dir = guest::request::state_dir(conf.guest.as_ref());
    let record = match GuestRecord::read(&state_dir, id, ifname) {
        Ok(r) => Some(r),
        Err(RecordError::Missing { .. }) => None,
        Err(_) => {
            // Unreadable: it cannot guide the teardown; do not keep it.
            let _ = GuestRecord::remove(&state_dir, id, ifname);
            None
        }
    };
    if let Some(r) = &record
        && r.chained
    {
        return guest::chained::del(r, &state_dir);
    }
    // Without a record (a repeated DEL, or a record lost), the request
    // still names the device, which is removed only if it carries tweed's
    // alias.
    let fallback = guest::request::resolve(&guest::request::Sources {
        section: conf.guest.as_ref(),
        runtime_config: &conf.net.runtime_config.extra,
        args: &call.env.args.other,
        container_id: id,
        ifname,
    })
    .ok()
    .flatten();
    let guest_done = if record.is_some() || fallback.is_some() {
        guest::detach(
            &state_dir,
            record.as_ref(),
            fallback.as_ref().map(|r| (r, id, ifname)),
            call.env.netns.as_deref(),
        )
    } else {
        Ok(())
    };

    // The pod's wires (recorded by the pod network's ADD).
    let wires_done = match &conf.segment {
        None => faults::step("del.wires").and_then(|()| crate::wires::remove(&conf.wire_dir, id)),
        Some(_) => Ok(()),
    };

    // Release first: it needs nothing from the kernel, and a failure below
    // must not keep the address reserved. A failing release is reported
    // only after the interface is gone too, so one retry finishes the job.
    let known = addresses_in_prev_result(call);
    // Not while the pod may still be on the network (a retried DEL
    // releases it).
    let released = down
        .clone()
        .and_then(|()| faults::step("del.release"))
        .and_then(|()| match &conf.ipam {
            IpamPlan::Builtin(ipam) => {
                builtin::release(&builtin::data_dir(ipam), network, id, ifname, &known)
                    .map(|ips| call.record.ips = ips.iter().map(|ip| ip.to_string()).collect())
            }
            IpamPlan::Delegate(plugin) => {
                delegate::run(plugin, &call.env.path, "DEL", call.stdin).map(|_| ())
            }
            IpamPlan::SegmentBlock { data_dir } => {
                builtin::release(data_dir, network, id, ifname, &known)
                    .map(|ips| call.record.ips = ips.iter().map(|ip| ip.to_string()).collect())
            }
        });

    // The pair goes with its host end; if the pod namespace is already
    // gone, the kernel removed both.
    faults::step("del.host-veth")?;
    if let Some(link) = host_link {
        // Marked first, so an ADD of the same attachment that meets the
        // device before the kernel has finished removing it knows it may
        // take it down (a live attachment's device keeps its alias).
        let _ = host.set_link_alias(link.index, &names::deleting_alias(network, id, ifname));
        veth::delete_detached(link.index);
    }
    released.and(guest_done).and(wires_done)
}

/// The addresses `prevResult` gives this attachment's interface (none when
/// there is no usable prevResult: then DEL scans the store).
fn addresses_in_prev_result(call: &Call) -> Vec<std::net::IpAddr> {
    let Ok(Some(prev)) = call.conf.net.prev_result() else {
        return Vec::new();
    };
    let ifname = call.ifname();
    prev.ips
        .iter()
        .filter(|ip| {
            ip.interface
                .and_then(|i| prev.interfaces.get(i))
                .is_some_and(|iface| iface.name == ifname && iface.sandbox.is_some())
        })
        .map(|ip| ip.address.addr())
        .collect()
}
