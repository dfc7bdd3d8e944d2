//! The guest in the CNI result, by the convention tc-redirect-tap set and
//! firecracker-go-sdk (and so firecracker-containerd) reads: the device
//! itself (sandbox = the pod namespace), then a pseudo-interface of the
//! same name for the VM (sandbox = the container ID, MAC = the guest's)
//! that the IP entries point at. The pod interface keeps its own IP entries
//! too, because CRI runtimes take the pod IP from the `CNI_IFNAME` entry.

use tweed_cni::result::{CniResult, Interface, IpConfig};

use super::Attached;

/// Appends the device and the VM pseudo-interface to `result`, and one IP
/// entry per guest address pointing at the latter.
pub fn add_guest(result: &mut CniResult, guest: &Attached, container_id: &str) {
    let record = &guest.record;
    result.interfaces.push(Interface {
        name: guest.device.name.clone(),
        mac: guest.device.mac.map(|m| m.to_string()),
        mtu: Some(record.mtu),
        sandbox: Some(record.netns.clone()),
        ..Default::default()
    });
    result.interfaces.push(Interface {
        name: guest.device.name.clone(),
        mac: Some(record.mac.clone()),
        mtu: Some(record.mtu),
        sandbox: Some(container_id.to_string()),
        ..Default::default()
    });
    let vm = result.interfaces.len() - 1;
    for a in &record.addresses {
        result.ips.push(IpConfig {
            address: a.address,
            gateway: a.gateway,
            interface: Some(vm),
        });
    }
}
