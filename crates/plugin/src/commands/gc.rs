//! GC: remove every reservation and host interface of this network whose
//! attachment is not in the runtime's list of valid attachments.

use tweed_cni::error::CniError;
use tweed_netlink::Netlink;

use super::Call;
use crate::errors;
use crate::guest;
use crate::ipam::{IpamPlan, builtin, delegate};
use crate::names;

pub fn run(call: &mut Call) -> Result<(), CniError> {
    let conf = call.conf;
    let valid = tweed_cni::gc::valid_attachments(&conf.raw)?.ok_or_else(|| {
        CniError::invalid_config(
            "cni.dev/valid-attachments",
            "GC needs the list of valid attachments",
        )
    })?;
    let valid: Vec<(String, String)> = valid
        .into_iter()
        .map(|a| (a.container_id, a.ifname))
        .collect();

    if conf.wire.is_some() {
        // A wire network reserves nothing and makes no host device.
        crate::wire_network::gc(&conf.wire_dir, conf.name(), &valid);
        return Ok(());
    }
    let released = match &conf.ipam {
        IpamPlan::Builtin(ipam) => builtin::gc(&builtin::data_dir(ipam), conf.name(), &valid)?,
        IpamPlan::Delegate(plugin) => {
            delegate::run(plugin, &call.env.path, "GC", call.stdin)?;
            Vec::new()
        }
        IpamPlan::SegmentBlock { data_dir } => builtin::gc(data_dir, conf.name(), &valid)?,
    };
    call.record.ips = released.iter().map(|(ip, _)| ip.to_string()).collect();

    // Guest records (and what they describe, where the pod namespace still
    // exists) of this network's vanished attachments.
    let state_dir = guest::request::state_dir(conf.guest.as_ref());
    for (path, record) in tweed_guest::record::list(&state_dir) {
        let Some(record) = record else { continue };
        if record.network != conf.name()
            || valid
                .iter()
                .any(|(id, ifname)| *id == record.container_id && *ifname == record.ifname)
        {
            continue;
        }
        let netns = std::path::PathBuf::from(&record.netns);
        if guest::detach(&state_dir, Some(&record), None, Some(&netns)).is_err() {
            let _ = std::fs::remove_file(&path);
        }
    }

    // Wire records of pods that are gone (the pod network's call keeps
    // them; see wires.rs).
    if conf.segment.is_none() {
        let (records, _) = tweed_wire::record::read_all(&conf.wire_dir);
        for r in records {
            if !valid.iter().any(|(id, _)| *id == r.container_id) {
                let _ = crate::wires::remove(&conf.wire_dir, &r.container_id);
            }
        }
    }

    // Records an ADD killed while writing left half-written (never read:
    // only complete records are renamed into place).
    for (path, record_file) in tweed_guest::record::temps(&state_dir) {
        if !valid
            .iter()
            .any(|(id, ifname)| record_file == tweed_guest::record::file_name(id, ifname))
        {
            let _ = std::fs::remove_file(path);
        }
    }

    let mut host = Netlink::new().map_err(errors::kernel)?;
    // The host veth of a released attachment that never got its label (an
    // ADD killed between creating the pair and labelling it): its name is
    // derived from the attachment the reservation names.
    for (id, ifname) in released.iter().filter_map(|(_, owner)| owner.as_ref()) {
        let name = names::host_veth(conf.name(), id, ifname);
        if let Ok(Some(link)) = host.link_by_name(&name)
            && link.kind.as_deref() == Some("veth")
            && link.alias.is_none()
        {
            let _ = host.delete_link(link.index);
        }
    }
    for link in host.links().map_err(errors::kernel)? {
        let Some(alias) = link.alias.as_deref() else {
            continue;
        };
        // A device whose detached deletion died half-way.
        if names::is_deleting_alias(alias, conf.name()) {
            let _ = host.delete_link(link.index);
            continue;
        }
        let Some((id, ifname)) = names::parse_alias(alias, conf.name()) else {
            continue;
        };
        if valid
            .iter()
            .any(|(v_id, v_if)| v_id == id && v_if == ifname)
        {
            continue;
        }
        match host.delete_link(link.index) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(errors::kernel(e)),
        }
    }
    Ok(())
}
