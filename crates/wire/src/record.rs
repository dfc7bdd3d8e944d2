//! The plugin's record of a pod's wire ends, left for tweedd.
//!
//! One file per pod, `<dir>/pods/<container-id>.json`, written atomically
//! at the end of a successful ADD and removed by DEL (or by tweedd once the
//! pod's namespace is gone). Whoever changes records or wire devices holds
//! [`DirLock`], so the agent never cables a pod that DEL is taking apart.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::spec::Endpoint;

pub const RECORD_VERSION: u32 = 1;

/// A pod's wire ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireRecord {
    pub version: u32,
    pub container_id: String,
    /// `namespace/name`.
    pub pod: String,
    /// The pod's network namespace, as CNI_NETNS gave it.
    pub netns: PathBuf,
    /// Device and inode of that namespace when the pod was added: a path
    /// such as /proc/<pid>/ns/net can later name another namespace.
    pub netns_id: (u64, u64),
    pub ends: Vec<WireEnd>,
}

/// One of the pod's interfaces and the far end of its wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireEnd {
    pub ifname: String,
    pub peer: Endpoint,
    /// The network config that recorded this end when it is a wire
    /// network of its own (a NetworkAttachmentDefinition with `wire`),
    /// whose DEL and GC then take this end alone; `None` for the ends the
    /// pod annotation declares, which go with the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

impl WireRecord {
    /// This pod's end of each of its wires.
    pub fn endpoints(&self) -> impl Iterator<Item = (Endpoint, &WireEnd)> {
        self.ends.iter().map(|e| {
            (
                Endpoint {
                    pod: self.pod.clone(),
                    ifname: e.ifname.clone(),
                },
                e,
            )
        })
    }
}

#[derive(Debug, Error)]
pub enum RecordError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a wire record: {why}")]
    Invalid { path: PathBuf, why: ParseError },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RecordError + use<> {
    let path = path.to_path_buf();
    move |source| RecordError::Io { what, path, source }
}

/// The directory of pod records.
pub fn pods_dir(dir: &Path) -> PathBuf {
    dir.join("pods")
}

fn record_path(dir: &Path, container_id: &str) -> PathBuf {
    pods_dir(dir).join(format!("{container_id}.json"))
}

/// An exclusive lock on the wire directory (flock on `<dir>/lock`), held
/// while records or wire devices change.
pub struct DirLock {
    _lock: Flock<File>,
}

impl DirLock {
    pub fn take(dir: &Path) -> Result<DirLock, RecordError> {
        fs::create_dir_all(pods_dir(dir)).map_err(io_err("create", dir))?;
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err("lock", &path)(io::Error::from(e)))?;
        Ok(DirLock { _lock: lock })
    }
}

/// Writes (replaces) a pod's record atomically.
pub fn write(dir: &Path, record: &WireRecord, _lock: &DirLock) -> Result<(), RecordError> {
    let path = record_path(dir, &record.container_id);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(record).expect("records serialise");
    let written = fs::write(&tmp, text)
        .map_err(io_err("write", &tmp))
        .and_then(|()| fs::rename(&tmp, &path).map_err(io_err("rename into place", &path)));
    if written.is_err() {
        // A failed ADD leaves nothing, not even half a record.
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Whether a pod has a record (a stat; no lock).
pub fn exists(dir: &Path, container_id: &str) -> bool {
    record_path(dir, container_id).exists()
}

/// A pod's record, if there is one.
pub fn read(dir: &Path, container_id: &str) -> Result<Option<WireRecord>, RecordError> {
    read_path(&record_path(dir, container_id))
}

fn read_path(path: &Path) -> Result<Option<WireRecord>, RecordError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    parse(&bytes).map(Some).map_err(|why| RecordError::Invalid {
        path: path.to_path_buf(),
        why,
    })
}

/// Why a record file's content is not a record this tweed reads.
#[derive(Debug, Error)]
pub enum ParseError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("version {0} (this tweed reads {RECORD_VERSION})")]
    Version(u32),
}

/// A record file's content, checked for the format this tweed reads.
pub fn parse(bytes: &[u8]) -> Result<WireRecord, ParseError> {
    let rec: WireRecord = serde_json::from_slice(bytes)?;
    if rec.version != RECORD_VERSION {
        return Err(ParseError::Version(rec.version));
    }
    Ok(rec)
}

/// Removes a pod's record (absent is fine).
pub fn remove(dir: &Path, container_id: &str, _lock: &DirLock) -> Result<(), RecordError> {
    let path = record_path(dir, container_id);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
        _ => Ok(()),
    }
}

/// Every record in the directory, with the unreadable ones reported
/// separately (a missing directory is an empty one).
pub fn read_all(dir: &Path) -> (Vec<WireRecord>, Vec<RecordError>) {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    let entries = match fs::read_dir(pods_dir(dir)) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (ok, bad),
        Err(e) => {
            bad.push(io_err("list", dir)(e));
            return (ok, bad);
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match read_path(&path) {
            Ok(Some(r)) => ok.push(r),
            Ok(None) => {}
            Err(e) => bad.push(e),
        }
    }
    ok.sort_by(|a, b| a.pod.cmp(&b.pod));
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, pod: &str) -> WireRecord {
        WireRecord {
            version: RECORD_VERSION,
            container_id: id.into(),
            pod: pod.into(),
            netns: "/run/netns/x".into(),
            netns_id: (4, 4026532000),
            ends: vec![WireEnd {
                ifname: "eth1".into(),
                peer: "lab/r2:eth1".parse().unwrap(),
                network: None,
            }],
        }
    }

    #[test]
    fn records_are_written_read_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::take(dir.path()).unwrap();
        write(dir.path(), &rec("c1", "lab/r1"), &lock).unwrap();
        write(dir.path(), &rec("c0", "lab/r0"), &lock).unwrap();
        fs::write(pods_dir(dir.path()).join("junk.json"), "{").unwrap();
        assert_eq!(read(dir.path(), "c1").unwrap(), Some(rec("c1", "lab/r1")));
        assert!(exists(dir.path(), "c1") && !exists(dir.path(), "c9"));
        let (all, bad) = read_all(dir.path());
        assert_eq!(
            all.iter().map(|r| r.pod.as_str()).collect::<Vec<_>>(),
            ["lab/r0", "lab/r1"]
        );
        assert_eq!(bad.len(), 1, "{bad:?}");
        remove(dir.path(), "c1", &lock).unwrap();
        remove(dir.path(), "c1", &lock).unwrap();
        assert_eq!(read(dir.path(), "c1").unwrap(), None);
        let ends: Vec<String> = rec("c", "lab/r1")
            .endpoints()
            .map(|(e, w)| format!("{e}>{}", w.peer))
            .collect();
        assert_eq!(ends, ["lab/r1:eth1>lab/r2:eth1"]);
    }
}
