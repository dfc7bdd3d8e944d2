//! What the agent remembers across restarts, in `--state-dir`
//! (default `/var/lib/tweed`): the VTEP MAC, so peers' neighbour entries
//! stay valid (flannel's changing MAC after a reboot leaves stale entries on
//! every peer), and the last lease, so the node gets its subnet back.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tweed_netlink::MacAddr;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
}

fn file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

impl NodeState {
    /// Loads the state; a missing or unreadable file is a fresh start.
    pub fn load(dir: &Path) -> NodeState {
        match fs::read(file(dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ignoring unreadable state file");
                NodeState::default()
            }),
            Err(_) => NodeState::default(),
        }
    }

    pub fn save(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let tmp = dir.join(".state.json.tmp");
        fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).expect("state serialises"),
        )?;
        fs::rename(tmp, file(dir))
    }

    pub fn vtep_mac(&self) -> Option<MacAddr> {
        self.vtep_mac.as_deref().and_then(|s| s.parse().ok())
    }
}

/// A MAC derived from the node name: stable even if the state directory
/// is lost, distinct between nodes (40 bits of hash), locally administered.
pub fn derived_mac(node_name: &str) -> MacAddr {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node_name.bytes().chain(*b"tweed-vtep") {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    MacAddr([0x02, b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(NodeState::load(dir.path()), NodeState::default());
        let s = NodeState {
            vtep_mac: Some("02:01:02:03:04:05".into()),
            lease: Some("10.244.1.0-24".into()),
        };
        s.save(dir.path()).unwrap();
        assert_eq!(NodeState::load(dir.path()), s);
    }

    #[test]
    fn derived_macs_are_stable_and_distinct() {
        assert_eq!(derived_mac("node-1"), derived_mac("node-1"));
        assert_ne!(derived_mac("node-1"), derived_mac("node-2"));
        assert_eq!(derived_mac("x").0[0], 0x02);
    }
}
