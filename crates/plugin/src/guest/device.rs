//! The guest's device in the pod namespace: a tap joined to the pod
//! interface by a two-way tc redirect, or a bridge-mode macvtap on it.

use std::path::PathBuf;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use tweed_cni::error::CniError;
use tweed_guest::{DeviceNumber, GuestMode};
use tweed_netlink::{Link, LinkKind, MacAddr, NetNs, Netlink, NewLink};
use tweed_netlink::{TapSpec, create_tap};

use super::request::GuestRequest;
use crate::errors;
use crate::faults;

/// Prefix of the alias on every guest device tweed makes; DEL and GC only
/// ever delete devices that carry it.
pub const ALIAS_PREFIX: &str = "tweed-guest/";

/// `tweed-guest/<containerID>/<ifname>`.
pub fn alias(container_id: &str, ifname: &str) -> String {
    format!("{ALIAS_PREFIX}{container_id}/{ifname}")
}

/// A device made for a guest.
#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub index: u32,
    pub mac: Option<MacAddr>,
    pub number: Option<DeviceNumber>,
}

/// What [`create`] needs about the pod side.
pub struct Target<'a> {
    pub ns: &'a NetNs,
    /// The pod interface the guest stands behind.
    pub eth: &'a Link,
    /// The MAC the guest will use (the pod interface's).
    pub guest_mac: MacAddr,
    /// The MAC to give a tap (the gateway's, so the pod's own stack accepts
    /// frames the guest addresses to its gateway; see `localhost`).
    pub tap_mac: Option<MacAddr>,
    pub alias: &'a str,
    /// The name a tap is created under until it is labelled
    /// ([`crate::names::guest_tap_pending`]).
    pub pending_name: &'a str,
}

/// Creates the device and joins it to the pod interface. On error nothing
/// of it is left.
pub fn create(nl: &mut Netlink, req: &GuestRequest, t: &Target) -> Result<Device, CniError> {
    match req.mode {
        GuestMode::Tap => create_tap_device(nl, req, t),
        GuestMode::Macvtap => create_macvtap(nl, req, t),
    }
}

fn exists_error(name: &str) -> CniError {
    CniError::custom(
        errors::INTERFACE_EXISTS,
        format!(
            "guest device {name} already exists in the pod namespace (choose another with guest.tapName / TWEED_GUEST_TAP)"
        ),
    )
}

/// A refused device creation; someone else's device of that name is left
/// alone.
fn create_error(e: tweed_netlink::NetlinkError, name: &str) -> CniError {
    if e.is_exists() {
        exists_error(name)
    } else {
        errors::kernel(e)
    }
}

fn create_tap_device(nl: &mut Netlink, req: &GuestRequest, t: &Target) -> Result<Device, CniError> {
    // Made under the attachment's pending name, labelled, and only then
    // given its final name: at every moment a kill can strike, the tap is
    // recognisably this attachment's (by name, or by label).
    let spec = TapSpec {
        name: t.pending_name.to_string(),
        vnet_hdr: req.vnet_hdr,
        owner: req.owner,
        group: req.group,
    };
    faults::step("tap.create")?;
    let make = || t.ns.run(|| create_tap(&spec)).map_err(errors::kernel);
    let tun = |e| errors::kernel_needing(e, errors::TUN);
    match make()? {
        // A leftover of this very attachment's ADD killed before it got
        // its final name: ours to replace.
        Err(e) if e.is_exists() => {
            delete_by_name(nl, t.pending_name);
            make()?.map_err(tun)?;
        }
        other => other.map_err(tun)?,
    }
    let tap = nl
        .link_by_name(t.pending_name)
        .map_err(errors::kernel)?
        .ok_or_else(|| {
            CniError::custom(
                errors::KERNEL,
                format!("tap {} vanished after creation", t.pending_name),
            )
        })?;
    let mut created_qdisc = false;
    let outcome = (|| -> Result<Device, CniError> {
        faults::step("tap.mtu")?;
        nl.set_link_mtu(tap.index, t.eth.mtu)
            .map_err(errors::kernel)?;
        if let Some(mac) = t.tap_mac {
            faults::step("tap.mac")?;
            nl.set_link_mac(tap.index, mac).map_err(errors::kernel)?;
        }
        faults::step("tap.alias")?;
        nl.set_link_alias(tap.index, t.alias)
            .map_err(errors::kernel)?;
        faults::step("tap.name")?;
        nl.set_link_name(tap.index, &req.device)
            .map_err(|e| create_error(e, &req.device))?;
        faults::step("tap.pod-ingress-qdisc")?;
        match nl.add_ingress_qdisc(t.eth.index) {
            Ok(()) => created_qdisc = true,
            // Another plugin in the chain made one; the filters go in it.
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(errors::kernel_needing(e, errors::SCH_INGRESS)),
        }
        if created_qdisc && t.eth.qlen == 0 {
            // The kernel gives a device without a transmit queue one of
            // 1000 when it gets a qdisc (the previous plugin's veth, made
            // by Go's netlink library, has none); deleting the qdisc does
            // not take it back. The ingress hook needs no queue: the pod
            // interface stays as the previous plugin made it.
            faults::step("tap.pod-txqueuelen")?;
            nl.set_link_qlen(t.eth.index, 0).map_err(errors::kernel)?;
        }
        faults::step("tap.tap-ingress-qdisc")?;
        nl.add_ingress_qdisc(tap.index)
            .map_err(|e| errors::kernel_needing(e, errors::SCH_INGRESS))?;
        faults::step("tap.redirect-pod-to-tap")?;
        nl.add_redirect(t.eth.index, tap.index)
            .map_err(|e| errors::kernel_needing(e, errors::REDIRECT))?;
        faults::step("tap.redirect-tap-to-pod")?;
        nl.add_redirect(tap.index, t.eth.index)
            .map_err(|e| errors::kernel_needing(e, errors::REDIRECT))?;
        faults::step("tap.up")?;
        nl.set_link_up(tap.index, true).map_err(errors::kernel)?;
        Ok(Device {
            name: req.device.clone(),
            index: tap.index,
            mac: t.tap_mac.or(tap.mac),
            number: None,
        })
    })();
    if outcome.is_err() {
        // This call's tap, by index: under either name it is ours, and a
        // device of the final name that refused the rename is not.
        let _ = nl.delete_link(tap.index);
        if created_qdisc {
            let _ = nl.delete_ingress_qdisc(t.eth.index);
            let _ = nl.set_link_qlen(t.eth.index, t.eth.qlen);
        }
    }
    outcome
}

/// A bridge-mode macvtap on the pod interface. The kernel refuses a
/// macvlan with its lower device's MAC, so the two swap: the macvtap (the
/// guest) takes the pod's MAC and the pod interface a new random one;
/// frames for the pod's MAC then reach the guest.
fn create_macvtap(nl: &mut Netlink, req: &GuestRequest, t: &Target) -> Result<Device, CniError> {
    let original = t.eth.mac;
    faults::step("macvtap.pod-mac")?;
    set_mac(nl, t.eth, MacAddr::random())?;
    let mut spec = NewLink::new(&req.device, LinkKind::MacVtap { lower: t.eth.index });
    spec.mtu = Some(t.eth.mtu);
    spec.mac = Some(t.guest_mac);
    spec.alias = Some(t.alias.to_string());
    spec.up = true;
    let outcome = match faults::step("macvtap.create").and_then(|()| {
        nl.create_link_and_get(&spec).map_err(|e| {
            if e.is_exists() {
                create_error(e, &req.device)
            } else {
                errors::kernel_needing(e, errors::MACVTAP)
            }
        })
    }) {
        Ok(link) => faults::step("macvtap.device-number")
            .and_then(|()| device_number(t.ns, &link))
            .map(|number| Device {
                name: link.name.clone(),
                index: link.index,
                mac: Some(t.guest_mac),
                number: Some(number),
            })
            .inspect_err(|_| {
                // Ours, made just now: removed by index, never by name (a
                // device of that name may belong to someone else).
                let _ = nl.delete_link(link.index);
            }),
        Err(e) => Err(e),
    };
    if outcome.is_err()
        && let Some(mac) = original
    {
        let _ = set_mac(nl, t.eth, mac);
    }
    outcome
}

/// Sets a MAC, taking the link down for it if the driver insists.
fn set_mac(nl: &mut Netlink, link: &Link, mac: MacAddr) -> Result<(), CniError> {
    match nl.set_link_mac(link.index, mac) {
        Ok(()) => Ok(()),
        Err(e) if e.errno() == Some(libc::EBUSY) => {
            nl.set_link_up(link.index, false).map_err(errors::kernel)?;
            let set = nl.set_link_mac(link.index, mac).map_err(errors::kernel);
            nl.set_link_up(link.index, link.up)
                .map_err(errors::kernel)?;
            set
        }
        Err(e) => Err(errors::kernel(e)),
    }
}

/// The macvtap's character device number, from sysfs as the pod's
/// namespace shows it. The node's /sys shows the node's devices only, so
/// a thread of ours takes a private mount namespace, enters the pod's
/// network namespace and mounts a sysfs of its own there; both vanish with
/// the thread.
fn device_number(ns: &NetNs, link: &Link) -> Result<DeviceNumber, CniError> {
    let file = PathBuf::from(format!(
        "/sys/class/net/{}/macvtap/tap{}/dev",
        link.name, link.index
    ));
    let read = std::thread::scope(|s| {
        s.spawn(|| -> Result<String, String> {
            unshare(CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("unshare mount namespace: {e}"))?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| format!("make mounts private: {e}"))?;
            ns.run(|| -> Result<String, String> {
                mount(
                    Some("sysfs"),
                    "/sys",
                    Some("sysfs"),
                    MsFlags::empty(),
                    None::<&str>,
                )
                .map_err(|e| format!("mount sysfs: {e}"))?;
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))
            })
            .map_err(|e| e.to_string())?
        })
        .join()
        .unwrap_or_else(|_| Err("the sysfs reader panicked".into()))
    });
    let text = read.map_err(|e| {
        CniError::custom(
            errors::KERNEL,
            format!("macvtap {}: cannot read its device number: {e}", link.name),
        )
    })?;
    parse_device_number(text.trim()).ok_or_else(|| {
        CniError::custom(
            errors::KERNEL,
            format!("macvtap {}: unexpected device number {text:?}", link.name),
        )
    })
}

fn parse_device_number(s: &str) -> Option<DeviceNumber> {
    let (major, minor) = s.split_once(':')?;
    Some(DeviceNumber {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
    })
}

/// Best-effort removal on rollback paths.
pub fn delete_by_name(nl: &mut Netlink, name: &str) {
    if let Ok(Some(link)) = nl.link_by_name(name) {
        let _ = nl.delete_link(link.index);
    }
}

/// DEL's half: removes the guest device if it is ours (carries `alias`),
/// and a tap still under the attachment's `pending` name (an ADD killed
/// before it finished the tap); then undoes what the attachment did to
/// the pod interface. Missing pieces are fine.
pub fn remove(
    nl: &mut Netlink,
    mode: GuestMode,
    device: &str,
    alias: &str,
    pending: &str,
    ifname: &str,
    pod_mac: Option<MacAddr>,
) -> Result<(), CniError> {
    if let Some(link) = nl.link_by_name(pending).map_err(errors::kernel)? {
        match nl.delete_link(link.index) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(errors::kernel(e)),
        }
    }
    if let Some(link) = nl.link_by_name(device).map_err(errors::kernel)?
        && link.alias.as_deref() == Some(alias)
    {
        match nl.delete_link(link.index) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(errors::kernel(e)),
        }
    }
    let Some(eth) = nl.link_by_name(ifname).map_err(errors::kernel)? else {
        return Ok(());
    };
    match mode {
        GuestMode::Tap => match nl.delete_ingress_qdisc(eth.index) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() || e.errno() == Some(libc::EINVAL) => Ok(()),
            Err(e) => Err(errors::kernel(e)),
        },
        // Give the pod interface its MAC back.
        GuestMode::Macvtap => match pod_mac {
            Some(mac) if eth.mac != Some(mac) => set_mac(nl, &eth, mac),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_parse() {
        assert_eq!(
            parse_device_number("241:3"),
            Some(DeviceNumber {
                major: 241,
                minor: 3
            })
        );
        assert_eq!(parse_device_number("241"), None);
        assert_eq!(parse_device_number("a:b"), None);
    }
}
