//! A node leaving the lab for good, as a drained and decommissioned node
//! leaves a cluster (joining is [`Lab::add_node`]).

use crate::{Lab, LabError};
use tweed_netlink::NetNs;

impl Lab {
    /// Removes a node: its pods are deleted through the plugin, its agent
    /// stopped, its lease deleted (with the `kube` store, its Node object),
    /// then its namespace and directory. The other agents forget it by
    /// watching the store.
    pub fn remove_node(&mut self, node: &str) -> Result<(), LabError> {
        let idx = self.index(node)?;
        let pods: Vec<String> = self.state.nodes[idx]
            .pods
            .iter()
            .map(|p| p.name.clone())
            .collect();
        for pod in pods {
            self.del_pod(node, &pod)?;
        }
        self.stop_agent(node)?;
        self.delete_lease(node)?;
        match &self.state.nodes[idx].vm {
            // The node's namespaces go with its kernel; the tap with QEMU.
            Some(vm) => {
                crate::procs::stop(vm.qemu_pid, std::time::Duration::from_secs(5));
                crate::topology::delete_underlay_port(&self.state.underlay_ns, &vm.tap)?;
            }
            None => NetNs::delete_named(&self.state.nodes[idx].ns)?,
        }
        let dir = self.node_dir(node);
        std::fs::remove_dir_all(&dir)
            .map_err(|e| LabError::io(format!("remove {}", dir.display()), e))?;
        self.state.nodes.remove(idx);
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))
    }
}
