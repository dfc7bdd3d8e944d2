//! The guest record: everything a guest needs to configure its network,
//! written by the plugin at ADD, read by `tweedctl guest-args` and by
//! runtimes that prefer a file to a CNI result.

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dns::GuestDns;
use crate::port::Port;

/// The record format this crate writes; readers refuse newer ones.
pub const RECORD_VERSION: u32 = 1;
/// Where records live unless configured otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/tweed";

/// How the guest is joined to the pod's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestMode {
    /// A tap device in the pod, joined to eth0 by a two-way tc redirect.
    Tap,
    /// A bridge-mode macvtap on eth0.
    Macvtap,
}

impl GuestMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestMode::Tap => "tap",
            GuestMode::Macvtap => "macvtap",
        }
    }
}

/// The character device of a macvtap (`/dev/tapN` is named after an
/// ifindex, which is per namespace and so collides between pods: runtimes
/// create their own node with these numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNumber {
    pub major: u32,
    pub minor: u32,
}

/// One address of the guest, with host bits (`10.244.1.5/24`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestAddress {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestRoute {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// The pod-side plumbing that lets the pod's localhost reach the guest
/// and the guest reach services on the pod's localhost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Localhost {
    /// The pod's own address on the guest's link (link-local), which the
    /// guest dials for the pod's services.
    pub address: Ipv4Addr,
    /// `127.0.0.1:<port>` in the pod reaches the guest's `<port>`.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// `<address>:<port>` from the guest reaches `127.0.0.1:<port>` in the
    /// pod.
    #[serde(default)]
    pub pod_services: Vec<Port>,
    /// The loopback nameserver that `<address>:53` forwards to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_forward: Option<IpAddr>,
}

/// Where the DNS settings were taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DnsSource {
    /// The runtime's `dns` capability (kubelet: the cluster DNS).
    RuntimeConfig,
    /// The network configuration's `dns` key.
    NetworkConfig,
    /// The result of the plugin before tweed in the chain (or of a
    /// delegated IPAM plugin).
    PrevResult,
    /// The pod's resolv.conf (`guest.resolvConf`).
    ResolvConf,
    /// Nothing gave any: the guest gets no nameserver.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestRecord {
    pub version: u32,
    /// The CNI network name (GC of one network leaves others' records).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    pub container_id: String,
    /// The pod interface the guest stands behind (CNI_IFNAME).
    pub ifname: String,
    pub netns: String,
    pub mode: GuestMode,
    /// The tap or macvtap device in the pod namespace.
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_number: Option<DeviceNumber>,
    /// True when tweed was chained after another plugin that made the
    /// interface (so DEL leaves the interface and its IPAM alone).
    #[serde(default)]
    pub chained: bool,
    /// The guest's MAC: the pod interface's.
    pub mac: String,
    pub mtu: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub addresses: Vec<GuestAddress>,
    #[serde(default)]
    pub routes: Vec<GuestRoute>,
    #[serde(default)]
    pub dns: GuestDns,
    pub dns_source: DnsSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost: Option<Localhost>,
}

/// Why a record file's content is not a record this tool reads.
#[derive(Debug, Error)]
pub enum ParseError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("format version {0} is newer than this tool understands ({RECORD_VERSION})")]
    Newer(u32),
}

#[derive(Debug, Error)]
pub enum RecordError {
    #[error(
        "no guest record at {path}: is there a guest attachment for this container and interface?"
    )]
    Missing { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a guest record: {reason}")]
    Invalid { path: PathBuf, reason: ParseError },
}

/// `<state_dir>/guests/<container_id>-<ifname>.json`.
pub fn path(state_dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    state_dir
        .join("guests")
        .join(file_name(container_id, ifname))
}

/// `<container_id>-<ifname>.json`, the record's file name.
pub fn file_name(container_id: &str, ifname: &str) -> String {
    format!("{container_id}-{ifname}.json")
}

/// The temporary file [`GuestRecord::write`] renames into place:
/// `.<record file>.<pid>.tmp`.
fn temp_name(record_file: &str) -> String {
    format!(".{record_file}.{}.tmp", std::process::id())
}

/// The record file a temporary file of [`GuestRecord::write`] was for,
/// and the writer's pid.
fn temp_of(name: &str) -> Option<(&str, u32)> {
    let (record, pid) = name
        .strip_prefix('.')?
        .strip_suffix(".tmp")?
        .rsplit_once('.')?;
    Some((record, pid.parse().ok()?))
}

/// Temporary files whose writer is no longer running — killed before its
/// rename — with the record file each was for (for GC). A writer still
/// running (another network's ADD, say) keeps its file.
pub fn temps(state_dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = fs::read_dir(state_dir.join("guests")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (record, pid) = temp_of(&name)?;
            let running = Path::new("/proc").join(pid.to_string()).exists();
            (!running).then(|| (e.path(), record.to_string()))
        })
        .collect()
}

impl GuestRecord {
    /// The first IPv4 address, with its gateway (the address's own, else
    /// the gateway of an IPv4 default route).
    pub fn ipv4(&self) -> Option<(Ipv4Net, Option<Ipv4Addr>)> {
        match self.first_address(false)? {
            (IpNet::V4(net), gw) => Some((
                net,
                gw.and_then(|g| match g {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                }),
            )),
            (IpNet::V6(_), _) => None,
        }
    }

    /// The first IPv6 address and its gateway.
    pub fn ipv6(&self) -> Option<(Ipv6Net, Option<std::net::Ipv6Addr>)> {
        match self.first_address(true)? {
            (IpNet::V6(net), gw) => Some((
                net,
                gw.and_then(|g| match g {
                    IpAddr::V6(v6) => Some(v6),
                    IpAddr::V4(_) => None,
                }),
            )),
            (IpNet::V4(_), _) => None,
        }
    }

    /// The first address of a family and its gateway, falling back to the
    /// family's default route.
    fn first_address(&self, v6: bool) -> Option<(IpNet, Option<IpAddr>)> {
        let a = self
            .addresses
            .iter()
            .find(|a| a.address.addr().is_ipv6() == v6)?;
        let gw = a.gateway.or_else(|| self.default_gateway(v6));
        Some((a.address, gw))
    }

    fn default_gateway(&self, v6: bool) -> Option<IpAddr> {
        self.routes
            .iter()
            .find(|r| r.dst.prefix_len() == 0 && r.dst.addr().is_ipv6() == v6)
            .and_then(|r| r.gw)
    }

    /// Writes the record where [`path`] says, atomically (a temporary file
    /// renamed into place), so a reader never sees half of it.
    pub fn write(&self, state_dir: &Path) -> Result<PathBuf, RecordError> {
        let target = path(state_dir, &self.container_id, &self.ifname);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RecordError::Io { path, source }
        };
        let dir = target.parent().expect("record path has a parent");
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = dir.join(temp_name(&file_name(&self.container_id, &self.ifname)));
        let body = serde_json::to_vec_pretty(self).expect("a record always serializes");
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &target)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(RecordError::Io {
                path: target,
                source: e,
            });
        }
        Ok(target)
    }

    /// Reads the record of one attachment.
    pub fn read(
        state_dir: &Path,
        container_id: &str,
        ifname: &str,
    ) -> Result<GuestRecord, RecordError> {
        Self::read_path(&path(state_dir, container_id, ifname))
    }

    pub fn read_path(path: &Path) -> Result<GuestRecord, RecordError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RecordError::Missing {
                    path: path.to_path_buf(),
                });
            }
            Err(source) => {
                return Err(RecordError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Self::parse(&bytes).map_err(|reason| RecordError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// A record file's content, checked for a format this tool reads.
    pub fn parse(bytes: &[u8]) -> Result<GuestRecord, ParseError> {
        let record: GuestRecord = serde_json::from_slice(bytes)?;
        if record.version > RECORD_VERSION {
            return Err(ParseError::Newer(record.version));
        }
        Ok(record)
    }

    /// Removes the record, and any temporary file of it a writer killed
    /// mid-write left; a missing one is fine.
    pub fn remove(state_dir: &Path, container_id: &str, ifname: &str) -> Result<(), RecordError> {
        let record_file = file_name(container_id, ifname);
        for (tmp, of) in temps(state_dir) {
            if of == record_file {
                let _ = fs::remove_file(tmp);
            }
        }
        let p = path(state_dir, container_id, ifname);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RecordError::Io { path: p, source }),
        }
    }
}

/// Every record in a state directory, as (container ID, ifname) read from
/// the records themselves (for GC).
pub fn list(state_dir: &Path) -> Vec<(PathBuf, Option<GuestRecord>)> {
    let Ok(entries) = fs::read_dir(state_dir.join("guests")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let r = GuestRecord::read_path(&p).ok();
            (p, r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_name_their_record() {
        let rec = file_name("c-1", "eth0");
        let own = temp_name(&rec);
        assert_eq!(temp_of(&own), Some(("c-1-eth0.json", std::process::id())));
        assert_eq!(
            temp_of(".c-1-eth0.json.12.tmp"),
            Some(("c-1-eth0.json", 12))
        );
        assert_eq!(temp_of("c-1-eth0.json"), None);
        assert_eq!(temp_of(".c-1-eth0.json.tmp"), None);
        assert_eq!(temp_of(".x.12a.tmp"), None);
    }

    fn sample() -> GuestRecord {
        GuestRecord {
            version: RECORD_VERSION,
            network: "tweed".into(),
            container_id: "abc".into(),
            ifname: "eth0".into(),
            netns: "/run/netns/x".into(),
            mode: GuestMode::Macvtap,
            device: "macvtap0".into(),
            device_number: Some(DeviceNumber {
                major: 240,
                minor: 3,
            }),
            chained: true,
            mac: "02:00:00:00:00:01".into(),
            mtu: 1500,
            hostname: None,
            addresses: vec![],
            routes: vec![],
            dns: GuestDns::default(),
            dns_source: DnsSource::None,
            localhost: Some(Localhost {
                address: Ipv4Addr::new(169, 254, 77, 1),
                ports: vec![Port::tcp(8080)],
                pod_services: vec![],
                dns_forward: None,
            }),
        }
    }

    #[test]
    fn write_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let r = sample();
        let p = r.write(dir.path()).unwrap();
        assert_eq!(p, dir.path().join("guests/abc-eth0.json"));
        assert_eq!(GuestRecord::read(dir.path(), "abc", "eth0").unwrap(), r);
        assert_eq!(list(dir.path()).len(), 1);
        GuestRecord::remove(dir.path(), "abc", "eth0").unwrap();
        GuestRecord::remove(dir.path(), "abc", "eth0").unwrap();
        let err = GuestRecord::read(dir.path(), "abc", "eth0").unwrap_err();
        assert!(matches!(err, RecordError::Missing { .. }), "{err}");
    }

    #[test]
    fn refuses_newer_or_garbled_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = sample();
        r.version = RECORD_VERSION + 1;
        let p = r.write(dir.path()).unwrap();
        let err = GuestRecord::read_path(&p).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
        fs::write(&p, b"{").unwrap();
        assert!(matches!(
            GuestRecord::read_path(&p),
            Err(RecordError::Invalid { .. })
        ));
    }
}
