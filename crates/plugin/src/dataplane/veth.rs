//! The veth pair joining a pod to the node bridge.

use tweed_cni::error::CniError;
use tweed_netlink::{Link, LinkKind, MacAddr, NetNs, Netlink, NewLink, VethPeer};

use crate::errors;

/// What to create.
pub struct VethPlan<'a> {
    pub host_name: &'a str,
    pub alias: &'a str,
    pub bridge_index: u32,
    pub hairpin: bool,
    pub mtu: u32,
    pub pod_ifname: &'a str,
    pub pod_mac: Option<MacAddr>,
    pub pod_netns: &'a NetNs,
}

/// Creates the pair with the pod end directly in the pod's namespace under
/// its final name, and the host end already enslaved and up. On any error
/// the pair is deleted again before returning.
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
    spec.alias = Some(plan.alias.to_string());
    if let Err(e) = nl.create_link(&spec) {
        // The alias is set after creation; if that failed, the pair exists.
        if !e.is_exists() {
            delete_by_name(nl, plan.host_name);
        }
        return Err(create_error(e, plan));
    }
    let finish = |nl: &mut Netlink| -> Result<Link, CniError> {
        let host = nl
            .link_by_name(plan.host_name)
            .map_err(errors::kernel)?
            .ok_or_else(|| {
                CniError::custom(
                    errors::KERNEL,
                    format!("{} vanished after creation", plan.host_name),
                )
            })?;
        if plan.hairpin {
            nl.set_bridge_port(host.index, true)
                .map_err(errors::kernel)?;
        }
        Ok(host)
    };
    finish(nl).inspect_err(|_| delete_by_name(nl, plan.host_name))
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

/// Best-effort removal used on rollback paths.
pub fn delete_by_name(nl: &mut Netlink, name: &str) {
    if let Ok(Some(link)) = nl.link_by_name(name) {
        let _ = nl.delete_link(link.index);
    }
}

/// [`create`], but when the host name is held by a leftover of this very
/// attachment — a DEL whose detached teardown has not finished, or an ADD
/// that crashed — the leftover is removed and creation tried once more.
pub fn create_replacing_leftover(nl: &mut Netlink, plan: &VethPlan) -> Result<Link, CniError> {
    match create(nl, plan) {
        Err(e) if e.code == errors::INTERFACE_EXISTS => match nl.link_by_name(plan.host_name) {
            Ok(Some(old)) if old.alias.as_deref() == Some(plan.alias) => {
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

/// Deletes a link without making the caller wait for the kernel.
///
/// Unregistering a network device waits for an RCU grace period (about
/// 18 ms on the test machines), which would dominate DEL. The request is
/// therefore sent from a detached child process: DEL returns once the
/// address is released, and the device disappears a few milliseconds later.
/// ADD copes with a device still on its way out (see
/// [`create_replacing_leftover`]).
pub fn delete_detached(index: u32) {
    use nix::unistd::{ForkResult, fork, setsid};
    // SAFETY: the plugin is single-threaded, so the child starts with no
    // lock held by a vanished thread; it only makes system calls and leaves
    // with _exit, never returning into the parent's code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let _ = setsid();
            // Let go of the runtime's pipes at once: a runtime reads our
            // stdout until every writer has closed it.
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                use std::os::fd::AsRawFd;
                for fd in 0..3 {
                    // SAFETY: dup2 onto the standard descriptors of this
                    // process; `null` stays open across the calls.
                    unsafe { libc::dup2(null.as_raw_fd(), fd) };
                }
            }
            if let Ok(mut nl) = Netlink::new() {
                let _ = nl.delete_link(index);
            }
            // SAFETY: ends the child without running the parent's exit
            // handlers or flushing buffers the parent owns.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { .. }) => {}
        // No child: delete here and wait, rather than leak the device.
        Err(_) => {
            if let Ok(mut nl) = Netlink::new() {
                let _ = nl.delete_link(index);
            }
        }
    }
}
