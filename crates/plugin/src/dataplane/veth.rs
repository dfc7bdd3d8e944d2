//! The veth pair joining a pod to the node bridge.

use tweed_cni::error::CniError;
use tweed_netlink::{Link, LinkKind, MacAddr, NetNs, Netlink, NewLink, VethPeer};

use crate::errors;
use crate::faults;
use crate::names;

/// What to create.
pub struct VethPlan<'a> {
    pub host_name: &'a str,
    pub alias: &'a str,
    /// The alias DEL gives the device while deleting it.
    pub deleting_alias: &'a str,
    pub bridge_index: u32,
    pub hairpin: bool,
    pub mtu: u32,
    pub pod_ifname: &'a str,
    pub pod_mac: Option<MacAddr>,
    pub pod_netns: &'a NetNs,
}

/// Creates the pair with the pod end directly in the pod's namespace under
/// its final name, and the host end already enslaved and up. On any error
/// nothing of the pair exists (the netlink layer deletes a pair it made
/// but could not finish); a device that was already there is never
/// touched.
pub fn create(nl: &mut Netlink, plan: &VethPlan) -> Result<Link, CniError> {
    let mut spec = NewLink::new(
        plan.host_name,
        LinkKind::Veth(VethPeer {
            name: plan.pod_ifname.to_string(),
            mac: plan.pod_mac,
            netns: Some(plan.pod_netns),
        }),
    );
    spec.mtu = Some(plan.mtu);
    spec.master = Some(plan.bridge_index);
    spec.up = true;
    spec.queues = Some(1);
    let mut link = nl
        .create_link_and_get(&spec)
        .map_err(|e| create_error(e, plan))?;
    // The kernel takes no alias (and no bridge-port flag) in the creating
    // request: until this second one the pair is unlabelled, which DEL
    // and GC allow for (the host name is derived from the attachment).
    let labelled = faults::step("add.veth-label").and_then(|()| {
        nl.set_alias_and_hairpin(link.index, Some(plan.alias), Some(plan.hairpin))
            .map_err(errors::kernel)
    });
    if let Err(e) = labelled {
        delete_created(nl, link.index);
        return Err(e);
    }
    link.alias = Some(plan.alias.to_string());
    Ok(link)
}

fn create_error(e: tweed_netlink::NetlinkError, plan: &VethPlan) -> CniError {
    if e.is_exists() {
        CniError::custom(
            errors::INTERFACE_EXISTS,
            format!(
                "CNI_IFNAME: interface {} or host device {} already exists",
                plan.pod_ifname, plan.host_name
            ),
        )
    } else {
        errors::kernel(e)
    }
}

/// Best-effort removal of a pair this very call created, on rollback
/// paths. By index, never by name: the name is derived from the
/// attachment, so a device of that name may be a live attachment's.
pub fn delete_created(nl: &mut Netlink, index: u32) {
    let _ = nl.delete_link(index);
}

/// [`create`], but when the host name is held by a leftover of this very
/// attachment — a DEL whose detached teardown has not finished — the
/// leftover is removed and creation tried once more. A live attachment's
/// device (still carrying its normal alias) is never touched: repeating an
/// ADD fails as the spec requires.
pub fn create_replacing_leftover(nl: &mut Netlink, plan: &VethPlan) -> Result<Link, CniError> {
    match create(nl, plan) {
        Err(e) if e.code == errors::INTERFACE_EXISTS => match nl.link_by_name(plan.host_name) {
            Ok(Some(old)) if old.alias.as_deref() == Some(plan.deleting_alias) => {
                match nl.delete_link(old.index) {
                    Ok(()) => {}
                    Err(d) if d.is_not_found() => {}
                    Err(d) => return Err(errors::kernel(d)),
                }
                create(nl, plan)
            }
            _ => Err(e),
        },
        other => other,
    }
}

/// Deletes, and waits for, the host end of the pod interface `pod_end` if
/// a DEL of `network` marked it for the detached deleter (the pod end
/// goes with it): a DEL that answered is done, even if the kernel has not
/// finished yet, so the interface name is free for the next ADD — of this
/// attachment or of another container in the same namespace. `true` if
/// the host end was marked or is gone; a live attachment's (still
/// carrying its normal alias) is never touched.
pub fn finish_pending_delete(
    nl: &mut Netlink,
    pod_end: &Link,
    network: &str,
) -> Result<bool, CniError> {
    let Some(peer) = pod_end.peer_index else {
        return Ok(false);
    };
    match nl.link_by_index(peer).map_err(errors::kernel)? {
        // The alias makes it tweed's, marked by DEL, whatever device the
        // index names; it is on its way out in any case.
        Some(host)
            if host.kind.as_deref() == Some("veth")
                && host
                    .alias
                    .as_deref()
                    .is_some_and(|a| names::is_deleting_alias(a, network)) =>
        {
            match nl.delete_link(host.index) {
                Ok(()) => Ok(true),
                Err(e) if e.is_not_found() => Ok(true),
                Err(e) => Err(errors::kernel(e)),
            }
        }
        // Gone already: the detached deleter finished first.
        None => Ok(true),
        Some(_) => Ok(false),
    }
}

/// The environment variable that turns a `tweed` process into the
/// detached deleter of one link (see [`delete_detached`]).
pub const DETACHED_DELETE_ENV: &str = "TWEED_DETACHED_DELETE_LINK";

/// Deletes a link without making the caller wait for the kernel.
///
/// Unregistering a network device waits for an RCU grace period (about
/// 18 ms on the test machines), which would dominate DEL. The request is
/// therefore made by a detached copy of this program, started with
/// `posix_spawn` (the parent only waits for the exec) with stdin, stdout and
/// stderr on /dev/null, so the runtime's pipe closes the moment DEL exits.
/// DEL returns once the address is released, and the device disappears a
/// few milliseconds later. ADD copes with a device still on its way out
/// (see [`create_replacing_leftover`]).
pub fn delete_detached(index: u32) {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let spawned = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .env_clear()
            .env(DETACHED_DELETE_ENV, index.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a signal to the runtime's group must
            // not cut the deletion short.
            .process_group(0)
            .spawn()
    });
    if spawned.is_err() {
        // No helper process (e.g. the binary was replaced during an
        // upgrade): delete here and wait, rather than leak the device.
        if let Ok(mut nl) = Netlink::new() {
            let _ = nl.delete_link(index);
        }
    }
}

/// The detached deleter's whole job; returns the exit code.
pub fn run_detached_delete(index: &str) -> i32 {
    let Ok(index) = index.parse::<u32>() else {
        return 2;
    };
    match Netlink::new().and_then(|mut nl| nl.delete_link(index)) {
        Ok(()) => 0,
        Err(e) if e.is_not_found() => 0,
        Err(_) => 1,
    }
}
