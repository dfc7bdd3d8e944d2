//! Running commands inside a lab node's or pod's namespace.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use crate::{Lab, LabError};

impl Lab {
    /// Runs a command inside a node (`n1`) or pod (`n1/p1`) namespace, or
    /// `underlay`.
    pub fn command(&self, target: &str, argv: &[String]) -> Result<Command, LabError> {
        let ns = self.target_ns(target)?;
        let file = std::fs::File::open(format!("/run/netns/{ns}"))
            .map_err(|e| LabError::io("open netns", e))?;
        let mut cmd = Command::new(
            argv.first()
                .ok_or_else(|| LabError::Usage("no command given".into()))?,
        );
        cmd.args(&argv[1..]);
        let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
        // SAFETY: setns is async-signal-safe; fd is ours and stays open.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(cmd)
    }

    pub fn exec_output(&self, target: &str, argv: &[&str]) -> Result<Output, LabError> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.command(target, &argv)?
            .output()
            .map_err(|e| LabError::io(format!("run {} in {target}", argv.join(" ")), e))
    }

    pub fn target_ns(&self, target: &str) -> Result<String, LabError> {
        if target == "underlay" {
            return Ok(self.state.underlay_ns.clone());
        }
        let (node, pod) = match target.split_once('/') {
            Some((n, p)) => (n, Some(p)),
            None => (target, None),
        };
        let n = self.state.node(node).ok_or_else(|| {
            LabError::Usage(format!("no node {node:?} in lab {}", self.state.name))
        })?;
        match pod {
            None => Ok(n.ns.clone()),
            Some(p) => n
                .pods
                .iter()
                .find(|x| x.name == p)
                .map(|x| x.ns.clone())
                .ok_or_else(|| LabError::Usage(format!("no pod {p:?} on {node}"))),
        }
    }
}
