//! What tweedd's DHCP server answers a guest that asks for its network.
//!
//! A guest that a runtime boots with only an address on its command line
//! (urunc gives a `linux` guest `ip=<addr>::<gw>:<mask>` and nothing else)
//! has no DNS servers, no search domains and the wrong MTU. tweed answers
//! the guest's DHCP on its tap with the pod's real settings. The side that
//! knows them (`tweed urunc-hook`, on the node when the guest starts)
//! writes one [`DhcpRecord`] per pod under [`DEFAULT_DIR`]; tweedd, which
//! lives as long as the node, serves every record whose pod still exists.
//! Both sides read this one definition of the file.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::GuestDns;

/// Where the records live on a node (tweedd's `--guest-dhcp-dir`).
pub const DEFAULT_DIR: &str = "/run/tweed/guest-dhcp";

/// The lease a guest is offered: every field is the pod's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DhcpRecord {
    /// The pod's network namespace, as a path tweedd can open
    /// (`/var/run/netns/cni-…`).
    pub netns: PathBuf,
    /// The guest's tap in that namespace, and its index: a tap made again
    /// under the same name (the guest restarted) is a new record.
    pub tap: String,
    pub tap_index: u32,
    /// The address tweedd answers from (the tap's link-local address).
    pub server: Ipv4Addr,
    /// The guest's address with the pod network's real prefix.
    pub address: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// The pod interface's MTU, which the guest's link must not exceed.
    pub mtu: u16,
    #[serde(default, skip_serializing_if = "GuestDns::is_empty")]
    pub dns: GuestDns,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

#[derive(Debug, Error)]
pub enum DhcpRecordError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the namespace path {0} has no file name")]
    NoName(PathBuf),
}

impl DhcpRecord {
    /// The record's file in `dir`: one per pod namespace, so a guest that
    /// restarts in the same pod replaces its predecessor's record.
    pub fn path(&self, dir: &Path) -> Result<PathBuf, DhcpRecordError> {
        let name = self
            .netns
            .file_name()
            .ok_or_else(|| DhcpRecordError::NoName(self.netns.clone()))?;
        Ok(dir.join(format!("{}.json", name.to_string_lossy())))
    }

    /// Writes the record whole (a temporary file renamed into place), so
    /// tweedd never reads half of one.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, DhcpRecordError> {
        let path = self.path(dir)?;
        let io = |source| DhcpRecordError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        let text = serde_json::to_vec_pretty(self).expect("a record serializes");
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }

    pub fn read(path: &Path) -> Result<DhcpRecord, DhcpRecordError> {
        let bytes = std::fs::read(path).map_err(|source| DhcpRecordError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| DhcpRecordError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Every record file in `dir` (`*.json`), read or not; a missing directory
/// holds none.
pub fn read_all(dir: &Path) -> Vec<(PathBuf, Result<DhcpRecord, DhcpRecordError>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let r = DhcpRecord::read(&p);
            (p, r)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> DhcpRecord {
        DhcpRecord {
            netns: "/var/run/netns/cni-1234".into(),
            tap: "tap0_urunc".into(),
            tap_index: 7,
            server: Ipv4Addr::new(169, 254, 77, 1),
            address: "10.244.1.6/24".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(10, 244, 1, 1)),
            mtu: 1450,
            dns: crate::dns::parse_resolv_conf(
                "nameserver 10.96.0.10\nsearch default.svc.cluster.local cluster.local\n",
            ),
            hostname: Some("web".into()),
        }
    }

    #[test]
    fn one_record_per_pod_namespace_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let r = record();
        let path = r.write(dir.path()).unwrap();
        assert_eq!(path, dir.path().join("cni-1234.json"));
        let mut again = r.clone();
        again.tap_index = 9;
        again.write(dir.path()).unwrap();
        let all = read_all(dir.path());
        assert_eq!(
            all.len(),
            1,
            "the restarted guest's record replaced the first"
        );
        assert_eq!(all[0].1.as_ref().unwrap(), &again);
    }

    #[test]
    fn a_broken_record_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cni-x.json"), "{").unwrap();
        let all = read_all(dir.path());
        let e = all[0].1.as_ref().unwrap_err().to_string();
        assert!(e.contains("cni-x.json"), "{e}");
        assert!(read_all(&dir.path().join("missing")).is_empty());
    }
}
