//! CHECK of a guest attachment: the device is there, is ours, and is still
//! joined to the pod interface.

use tweed_cni::error::CniError;
use tweed_guest::{GuestMode, GuestRecord};
use tweed_netlink::{Link, Netlink};

use super::device;
use crate::errors::{self, check_failed};

/// Verifies the record's device against the kernel; `eth` is the pod
/// interface.
pub fn verify(nl: &mut Netlink, record: &GuestRecord, eth: &Link) -> Result<(), CniError> {
    let name = &record.device;
    let dev = nl
        .link_by_name(name)
        .map_err(errors::kernel)?
        .ok_or_else(|| check_failed(format!("guest device {name} is missing")))?;
    let alias = device::alias(&record.container_id, &record.ifname);
    if dev.alias.as_deref() != Some(alias.as_str()) {
        return Err(check_failed(format!(
            "device {name} is not tweed's guest device for this attachment"
        )));
    }
    if !dev.up {
        return Err(check_failed(format!("guest device {name} is down")));
    }
    if dev.mtu != record.mtu {
        return Err(check_failed(format!(
            "guest device {name} has MTU {} instead of {}",
            dev.mtu, record.mtu
        )));
    }
    match record.mode {
        GuestMode::Tap => {
            let redirects = |nl: &mut Netlink, from: &Link, to: u32| -> Result<(), CniError> {
                let found = nl
                    .ingress_filters(from.index)
                    .map_err(errors::kernel)?
                    .iter()
                    .any(|f| f.redirect_to == Some(to));
                if found {
                    Ok(())
                } else {
                    Err(check_failed(format!(
                        "the redirect from {} to the guest's side is missing",
                        from.name
                    )))
                }
            };
            redirects(nl, eth, dev.index)?;
            redirects(nl, &dev, eth.index)?;
        }
        GuestMode::Macvtap => {
            if dev.peer_index != Some(eth.index) {
                return Err(check_failed(format!(
                    "macvtap {name} is not on {}",
                    eth.name
                )));
            }
            if dev.mac.map(|m| m.to_string()) != Some(record.mac.clone()) {
                return Err(check_failed(format!(
                    "macvtap {name} no longer has the guest's MAC {}",
                    record.mac
                )));
            }
        }
    }
    Ok(())
}
