//! tweedd's report on this node's wire ends (`<dir>/status.json`), which
//! `tweedctl status` prints.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::Endpoint;

/// One wire end on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireStatus {
    pub wire: String,
    pub vni: u32,
    pub local: Endpoint,
    pub peer: Endpoint,
    #[serde(flatten)]
    pub state: WireState,
}

/// Where a wire end stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum WireState {
    /// Cabled: a veth to a pod on this node, or a VXLAN device to `node`.
    Up {
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    /// The far end's pod is not running (or has not declared this wire).
    WaitingForPeer { why: String },
    /// The kernel refused, or something else stands in the way.
    Error { why: String },
}

impl std::fmt::Display for WireState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireState::Up { kind, node: None } => write!(f, "up ({kind})"),
            WireState::Up {
                kind,
                node: Some(n),
            } => write!(f, "up ({kind} to {n})"),
            WireState::WaitingForPeer { why } => write!(f, "waiting for peer: {why}"),
            WireState::Error { why } => write!(f, "error: {why}"),
        }
    }
}

impl std::fmt::Display for WireStatus {
    /// One line for tools: `ns/a:eth1 -- ns/b:eth1 vni 123 up (veth)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<24} -- {:<24} vni {:<8} {}",
            self.local.to_string(),
            self.peer.to_string(),
            self.vni,
            self.state
        )
    }
}

pub fn status_path(dir: &Path) -> PathBuf {
    dir.join("status.json")
}

/// Replaces the report atomically.
pub fn write(dir: &Path, all: &[WireStatus]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let path = status_path(dir);
    let tmp = path.with_extension("json.tmp");
    fs::write(
        &tmp,
        serde_json::to_vec_pretty(all).expect("status serialises"),
    )?;
    fs::rename(&tmp, &path)
}

/// The last report (none yet: empty).
pub fn read(dir: &Path) -> io::Result<Vec<WireStatus>> {
    match fs::read(status_path(dir)) {
        Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let s = vec![
            WireStatus {
                wire: "a--b".into(),
                vni: 8400000,
                local: "lab/r1:eth1".parse().unwrap(),
                peer: "lab/r2:eth1".parse().unwrap(),
                state: WireState::Up {
                    kind: "vxlan".into(),
                    node: Some("n2".into()),
                },
            },
            WireStatus {
                wire: "c--d".into(),
                vni: 8400001,
                local: "lab/r1:eth2".parse().unwrap(),
                peer: "lab/r3:eth1".parse().unwrap(),
                state: WireState::WaitingForPeer {
                    why: "lab/r3 is not running".into(),
                },
            },
        ];
        assert!(read(dir.path()).unwrap().is_empty());
        write(dir.path(), &s).unwrap();
        assert_eq!(read(dir.path()).unwrap(), s);
        let text = fs::read_to_string(status_path(dir.path())).unwrap();
        assert!(text.contains("\"state\": \"waiting-for-peer\""), "{text}");
        assert_eq!(s[0].state.to_string(), "up (vxlan to n2)");
        assert!(
            s[1].to_string().starts_with("lab/r1:eth2")
                && s[1]
                    .to_string()
                    .ends_with("waiting for peer: lab/r3 is not running")
        );
    }
}
