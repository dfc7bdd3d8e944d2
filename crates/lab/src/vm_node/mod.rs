//! VM nodes: a lab node that brings its own kernel.
//!
//! A VM node is a QEMU VM booted from the VM runner's image (Debian's
//! generic kernel, `scripts/build-runner-image.sh`, see docs/vm-runner.md),
//! which takes this machine's root directory read-only over virtio 9p as
//! its own: the node runs the very same `tweedd`, `tweed` and tools as a
//! namespace node, on the VM's kernel. Its NIC is a tap on the lab's
//! underlay bridge, so it sits on the underlay beside namespace nodes.
//! The lab's directory is shared read-write at the same path, so the
//! node's files (subnet.env, logs, IPAM) are where the lab looks for them.
//!
//! Inside, `tweedctl lab vm-serve` ([`inside`]) makes the node's namespace
//! (the NIC moved in and addressed as a namespace node's eth0) and then
//! does what the lab asks through [`channel`]; the lab reaches it through
//! [`crate::node_kernel::VmKernel`].

pub mod boot;
pub mod channel;
pub mod inside;

use serde::{Deserialize, Serialize};

/// What the lab keeps about a VM node (in `lab.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmNodeState {
    /// QEMU, running in the underlay namespace.
    pub qemu_pid: i32,
    /// The channel directory, also the VM's job directory (console log,
    /// QEMU's output).
    pub dir: std::path::PathBuf,
    /// The tap on the underlay bridge.
    pub tap: String,
    /// `tcg` or `kvm`.
    pub accel: String,
    /// The VM's kernel release.
    pub kernel: String,
}

/// How the lab boots its VM nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmOptions {
    /// `auto` (KVM where it works, else TCG), `kvm` or `tcg`.
    pub accel: String,
    pub memory_mib: u32,
}

impl Default for VmOptions {
    fn default() -> VmOptions {
        VmOptions {
            accel: "auto".into(),
            memory_mib: 1024,
        }
    }
}

/// Why a lab with the file store cannot have VM nodes.
pub const FILE_STORE_REFUSED: &str = "VM nodes need --store etcd or kube: the file store is a \
     directory whose locks do not reach across kernels";

/// The file the VM writes once its node namespace is up and it serves
/// requests; it holds the kernel release.
pub const READY_FILE: &str = "ready";
/// The file the VM writes when it could not make its node.
pub const FAILED_FILE: &str = "failed";

impl crate::Lab {
    /// Boots node `name` (number `index`, namespace `ns`) as a VM on
    /// underlay subnet `subnet`.
    pub(crate) fn boot_vm_node(
        &self,
        name: &str,
        ns: &str,
        index: usize,
        subnet: u8,
    ) -> Result<VmNodeState, crate::LabError> {
        if self.state.store == "file" {
            return Err(crate::LabError::Usage(FILE_STORE_REFUSED.into()));
        }
        let tweedctl = self.binaries.tweedctl();
        if !tweedctl.is_file() {
            return Err(crate::LabError::Usage(format!(
                "tweedctl not found at {} (it serves inside VM nodes); build it first",
                tweedctl.display()
            )));
        }
        let image = boot::image(&tweedctl)?;
        let dir = self.state.dir();
        boot::start(&boot::Boot {
            underlay_ns: &self.state.underlay_ns,
            lab_dir: &dir,
            node_dir: &self.node_dir(name),
            node_ns: ns,
            index,
            subnet,
            tweedctl: &tweedctl,
            image: &image,
            accel: &self.state.vm_options.accel,
            memory_mib: self.state.vm_options.memory_mib,
        })
    }
}
