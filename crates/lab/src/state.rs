//! The lab's record of what it made (`/run/tweed-lab/<name>/lab.json`),
//! so `lab status`, `lab exec` and `lab down` find every namespace,
//! process and file — and so two labs never touch each other's.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const LAB_ROOT: &str = "/run/tweed-lab";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub backend: String,
    pub store: String,
    /// The store URL the agents use.
    pub store_url: String,
    pub underlay_ns: String,
    /// How many underlay subnets the router joins (1: one L2 segment).
    #[serde(default = "one_subnet")]
    pub underlay_subnets: u8,
    pub etcd_pid: Option<i32>,
    /// How VM nodes (at `up` or added later) are booted.
    #[serde(default)]
    pub vm_options: crate::vm_node::VmOptions,
    /// The fake API server of a `kube` store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_pid: Option<i32>,
    pub nodes: Vec<NodeState>,
}

fn one_subnet() -> u8 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub ns: String,
    pub underlay_ipv4: String,
    pub underlay_ipv6: String,
    /// The agent's pid, in the node's kernel (a VM node's is the VM's).
    pub agent_pid: Option<i32>,
    pub health_addr: String,
    /// Set on a node that is a VM with its own kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<crate::vm_node::VmNodeState>,
    pub pods: Vec<PodState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodState {
    pub name: String,
    pub ns: String,
    pub container_id: String,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    /// The pod's `tweed.io/wires` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wires: Option<String>,
    /// The pod's interfaces on layer-2 segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentPort>,
}

/// A pod interface on a layer-2 segment, with the addresses the segment
/// gave it (none on a segment without a subnet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentPort {
    pub ifname: String,
    pub segment: String,
    /// With prefix, as the plugin's result has them.
    pub addresses: Vec<String>,
}

pub fn lab_dir(name: &str) -> PathBuf {
    Path::new(LAB_ROOT).join(name)
}

impl LabState {
    pub fn load(name: &str) -> io::Result<LabState> {
        let bytes = fs::read(lab_dir(name).join("lab.json"))?;
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    pub fn save(&self) -> io::Result<()> {
        let dir = lab_dir(&self.name);
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(".lab.json.tmp");
        fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).expect("lab state serialises"),
        )?;
        fs::rename(tmp, dir.join("lab.json"))
    }

    pub fn dir(&self) -> PathBuf {
        lab_dir(&self.name)
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// Names of labs that exist on this machine.
pub fn labs() -> Vec<String> {
    fs::read_dir(LAB_ROOT)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("lab.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
