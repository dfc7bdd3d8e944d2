//! Where a lab node's kernel is, and the few things the lab does in it.
//!
//! A node is either network namespaces on this machine's kernel (the
//! default) or a QEMU VM with a kernel of its own ([`crate::vm_node`]).
//! Everything the lab does on a node — start and stop its agent, make and
//! delete pod namespaces, run the plugin or a command, ping, ask the
//! agent's health address — goes through [`NodeKernel`], so the rest of
//! the lab reads the same for both. [`LocalKernel`] does it here;
//! [`VmKernel`] asks the VM, where `tweedctl lab vm-serve` does it with a
//! [`LocalKernel`] of its own.

pub(crate) mod local;
mod remote;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::LabError;

pub use local::LocalKernel;
pub use remote::VmKernel;

/// A program to run to completion inside a namespace.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    /// `Some`: exactly this environment (as a runtime calls a plugin);
    /// `None`: the caller's.
    pub env: Option<Vec<(String, String)>>,
    /// Written to its stdin, which is then closed; `None`: no stdin.
    pub stdin: Option<String>,
}

/// The operations the lab needs from a node's kernel.
pub trait NodeKernel: Send + Sync {
    /// Starts `argv` detached inside namespace `ns`, output to `log`, with
    /// no capability but `caps` when given; returns its pid (in that
    /// kernel's pid space).
    fn spawn(
        &self,
        ns: &str,
        argv: &[String],
        log: &Path,
        caps: Option<&[u32]>,
    ) -> Result<i32, LabError>;
    /// SIGTERM, up to `grace`, then SIGKILL.
    fn stop(&self, pid: i32, grace: Duration) -> Result<(), LabError>;
    /// SIGKILL at once.
    fn kill(&self, pid: i32) -> Result<(), LabError>;
    fn alive(&self, pid: i32) -> bool;
    fn run(&self, ns: &str, process: &ProcessSpec) -> Result<Output, LabError>;
    /// An empty namespace with loopback up.
    fn create_pod_ns(&self, name: &str) -> Result<(), LabError>;
    fn delete_ns(&self, name: &str) -> Result<(), LabError>;
    /// Echo requests from inside `ns`: true on the first reply.
    fn ping(&self, ns: &str, dst: IpAddr, tries: u32, timeout: Duration) -> Result<bool, LabError>;
    /// GET `path` on `addr` from inside `ns`: status and body.
    fn http_get(
        &self,
        ns: &str,
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Option<(u16, String)>;
}

impl crate::Lab {
    /// The kernel `node` runs on.
    pub fn kernel(&self, node: &crate::NodeState) -> Box<dyn NodeKernel> {
        match &node.vm {
            Some(vm) => Box::new(VmKernel {
                channel: vm.dir.clone(),
                qemu_pid: vm.qemu_pid,
            }),
            None => Box::new(LocalKernel),
        }
    }
}
