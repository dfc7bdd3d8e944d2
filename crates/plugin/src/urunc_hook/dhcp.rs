//! DNS and MTU for the guest: urunc boots a `linux` guest with only its
//! address, gateway and prefix on the kernel command line. The hook lets
//! the guest's DHCP requests into the pod's stack (a pass filter for UDP
//! port 67 ahead of urunc's redirect, and the tap's link-local address to
//! answer from) and records the pod's real settings for tweedd, which
//! answers them (docs/urunc.md).

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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

/// Where CRI runtimes (containerd, CRI-O) name pods' namespaces, and where
/// tweedd's DaemonSet mounts them.
const RUNTIME_NETNS_DIR: &str = "/var/run/netns";

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
    let in_spec = spec.netns().ok_or_else(|| {
        HookError::State("the container's spec names no network namespace path".into())
    })?;
    let netns = named_netns(in_spec, Path::new(RUNTIME_NETNS_DIR))?;
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
        netns,
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

/// The pod's namespace as a path tweedd can open. containerd gives a pod's
/// containers the sandbox's namespace as `/proc/<sandbox pid>/ns/net`,
/// which means nothing in tweedd's own PID namespace; the same namespace
/// is also a file under `dir` (the CNI netns), found by its inode.
fn named_netns(in_spec: &Path, dir: &Path) -> Result<PathBuf, HookError> {
    if in_spec.starts_with(dir) {
        return Ok(in_spec.to_path_buf());
    }
    let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let wanted = id(in_spec)
        .map_err(|e| HookError::State(format!("the pod's namespace {}: {e}", in_spec.display())))?;
    std::fs::read_dir(dir)
        .map_err(|e| HookError::State(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| id(p).is_ok_and(|i| i == wanted))
        .ok_or_else(|| {
            HookError::State(format!(
                "the pod's namespace {} has no name under {}",
                in_spec.display(),
                dir.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_given_by_pid_is_found_by_its_name() {
        // Plain files stand in for the namespace: the name under the
        // runtime's directory and the /proc path are one inode (a hard
        // link here, a bind mount of the same nsfs inode on a node).
        let dir = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cni-1111"), "").unwrap();
        let named = dir.path().join("cni-1234");
        std::fs::write(&named, "").unwrap();
        let by_pid = proc.path().join("net");
        std::fs::hard_link(&named, &by_pid).unwrap();
        assert_eq!(named_netns(&by_pid, dir.path()).unwrap(), named);
        assert_eq!(named_netns(&named, dir.path()).unwrap(), named);
        let e = named_netns(Path::new("/nonexistent/ns/net"), dir.path()).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ns/net"), "{e}");
    }
}
