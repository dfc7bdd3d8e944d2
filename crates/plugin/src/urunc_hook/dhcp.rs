//! DNS and MTU for the guest: urunc boots a `linux` guest with only its
//! address, gateway and prefix on the kernel command line. The hook lets
//! the guest's DHCP requests into the pod's stack (a pass filter for UDP
//! port 67 ahead of urunc's redirect, and the tap's link-local address to
//! answer from) and records the pod's real settings for tweedd, which
//! answers them (docs/urunc.md).

use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::{IpNet, Ipv4Net};
use tweed_guest::DhcpRecord;
use tweed_netlink::{Link, Netlink};

use super::HookError;
use super::bundle::Spec;
use crate::guest::localhost::POD_LINK_LOCAL;

/// The DHCP server's port.
const BOOTPS: u16 = 67;
/// Ahead of urunc's redirect, after the localhost pass filter (1).
const PASS_PRIORITY: u16 = 2;

/// What the guest is told, besides what the spec holds.
pub struct Lease {
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
}

/// Opens the tap to DHCP and writes the guest's record into `dir`.
pub fn offer(
    nl: &mut Netlink,
    tap: &Link,
    spec: &Spec,
    lease: &Lease,
    dir: &Path,
) -> Result<(), HookError> {
    let net = |e: tweed_netlink::NetlinkError| HookError::Network(e.to_string());
    let netns = spec.netns().ok_or_else(|| {
        HookError::State("the container's spec names no network namespace path".into())
    })?;
    let server = IpNet::V4(Ipv4Net::new(POD_LINK_LOCAL, 32).expect("/32"));
    // The localhost plumbing may have given the tap this address already.
    if !nl
        .addresses(Some(tap.index))
        .map_err(net)?
        .iter()
        .any(|a| a.addr == server)
    {
        nl.add_address(tap.index, server, true).map_err(net)?;
    }
    nl.add_pass_udp_dst_port(tap.index, BOOTPS, PASS_PRIORITY)
        .map_err(net)?;
    let record = DhcpRecord {
        netns: netns.to_path_buf(),
        tap: tap.name.clone(),
        tap_index: tap.index,
        server: POD_LINK_LOCAL,
        address: lease.address,
        gateway: Some(lease.gateway),
        mtu: u16::try_from(lease.mtu).unwrap_or(u16::MAX),
        dns: spec.dns()?.unwrap_or_default(),
        hostname: spec.hostname().map(str::to_string),
    };
    record
        .write(dir)
        .map(|_| ())
        .map_err(|e| HookError::State(format!("writing the guest's DHCP record: {e}")))
}
