//! Running commands inside a lab node's or pod's namespace.

use std::process::{Command, Output};

use crate::node_kernel::{LocalKernel, NodeKernel, ProcessSpec, local};
use crate::{Lab, LabError, NodeState};

impl Lab {
    /// A command that runs inside a node (`n1`) or pod (`n1/p1`) namespace
    /// of this machine, or `underlay`. A VM node's namespaces are in its
    /// own kernel: [`Lab::exec_output`] reaches those.
    pub fn command(&self, target: &str, argv: &[String]) -> Result<Command, LabError> {
        let (node, ns) = self.target(target)?;
        if node.is_some_and(|n| n.vm.is_some()) {
            return Err(LabError::Usage(format!(
                "{target} is on a VM node: its namespaces are in the VM's kernel"
            )));
        }
        local::command_in(
            &ns,
            &ProcessSpec {
                argv: argv.to_vec(),
                ..ProcessSpec::default()
            },
        )
    }

    /// Runs a command to completion inside a node, a pod or `underlay`, on
    /// whichever kernel it is.
    pub fn exec_output(&self, target: &str, argv: &[&str]) -> Result<Output, LabError> {
        let (node, ns) = self.target(target)?;
        let process = ProcessSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..ProcessSpec::default()
        };
        match node {
            Some(n) => self.kernel(n).run(&ns, &process),
            None => LocalKernel.run(&ns, &process),
        }
    }

    pub fn target_ns(&self, target: &str) -> Result<String, LabError> {
        Ok(self.target(target)?.1)
    }

    /// The node a target is on (none for `underlay`) and its namespace.
    pub fn target(&self, target: &str) -> Result<(Option<&NodeState>, String), LabError> {
        if target == "underlay" {
            return Ok((None, self.state.underlay_ns.clone()));
        }
        let (node, pod) = match target.split_once('/') {
            Some((n, p)) => (n, Some(p)),
            None => (target, None),
        };
        let n = self.state.node(node).ok_or_else(|| {
            LabError::Usage(format!("no node {node:?} in lab {}", self.state.name))
        })?;
        match pod {
            None => Ok((Some(n), n.ns.clone())),
            Some(p) => n
                .pods
                .iter()
                .find(|x| x.name == p)
                .map(|x| (Some(n), x.ns.clone()))
                .ok_or_else(|| LabError::Usage(format!("no pod {p:?} on {node}"))),
        }
    }
}
