//! The node's kernel is a VM's: each operation is a request through the
//! VM's channel ([`crate::vm_node::channel`]), done inside by
//! `tweedctl lab vm-serve` with a [`super::LocalKernel`].

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::time::Duration;

use super::{NodeKernel, ProcessSpec};
use crate::LabError;
use crate::vm_node::channel::{self, Reply, Request};

/// A VM node's kernel, reached through its channel directory.
pub struct VmKernel {
    pub channel: PathBuf,
    /// QEMU's pid here: a request to a VM that is gone fails at once.
    pub qemu_pid: i32,
}

impl VmKernel {
    fn ask(&self, request: Request, timeout: Duration) -> Result<Reply, LabError> {
        match channel::call(&self.channel, self.qemu_pid, &request, timeout)? {
            Reply::Error { message } => Err(LabError::Setup(message)),
            reply => Ok(reply),
        }
    }
}

/// Long enough for a plugin call in a TCG guest on a busy machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
const SHORT: Duration = Duration::from_secs(60);

fn unexpected(reply: Reply) -> LabError {
    LabError::Setup(format!("the VM node answered {reply:?}"))
}

impl NodeKernel for VmKernel {
    fn spawn(
        &self,
        ns: &str,
        argv: &[String],
        log: &Path,
        caps: Option<&[u32]>,
    ) -> Result<i32, LabError> {
        let request = Request::Spawn {
            ns: ns.to_string(),
            argv: argv.to_vec(),
            log: log.to_path_buf(),
            caps: caps.map(<[u32]>::to_vec),
        };
        match self.ask(request, SHORT)? {
            Reply::Pid { pid } => Ok(pid),
            other => Err(unexpected(other)),
        }
    }

    fn stop(&self, pid: i32, grace: Duration) -> Result<(), LabError> {
        let request = Request::Stop {
            pid,
            grace_ms: grace.as_millis() as u64,
        };
        self.ask(request, SHORT + grace).map(drop)
    }

    fn kill(&self, pid: i32) -> Result<(), LabError> {
        self.ask(Request::Kill { pid }, SHORT).map(drop)
    }

    fn alive(&self, pid: i32) -> bool {
        matches!(
            self.ask(Request::Alive { pid }, SHORT),
            Ok(Reply::Bool { value: true })
        )
    }

    fn run(&self, ns: &str, process: &ProcessSpec) -> Result<Output, LabError> {
        let request = Request::Run {
            ns: ns.to_string(),
            process: process.clone(),
        };
        match self.ask(request, RUN_TIMEOUT)? {
            Reply::Output {
                wait_status,
                stdout,
                stderr,
            } => Ok(Output {
                status: ExitStatus::from_raw(wait_status),
                stdout: stdout.into_bytes(),
                stderr: stderr.into_bytes(),
            }),
            other => Err(unexpected(other)),
        }
    }

    fn create_pod_ns(&self, name: &str) -> Result<(), LabError> {
        let request = Request::CreatePodNs {
            name: name.to_string(),
        };
        self.ask(request, SHORT).map(drop)
    }

    fn delete_ns(&self, name: &str) -> Result<(), LabError> {
        let request = Request::DeleteNs {
            name: name.to_string(),
        };
        self.ask(request, SHORT).map(drop)
    }

    fn ping(&self, ns: &str, dst: IpAddr, tries: u32, timeout: Duration) -> Result<bool, LabError> {
        let request = Request::Ping {
            ns: ns.to_string(),
            dst,
            tries,
            timeout_ms: timeout.as_millis() as u64,
        };
        match self.ask(request, SHORT + timeout * tries)? {
            Reply::Bool { value } => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    fn http_get(
        &self,
        ns: &str,
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Option<(u16, String)> {
        let request = Request::HttpGet {
            ns: ns.to_string(),
            addr,
            path: path.to_string(),
            timeout_ms: timeout.as_millis() as u64,
        };
        match self.ask(request, SHORT + timeout).ok()? {
            Reply::Http { code, body } => Some((code, body)),
            _ => None,
        }
    }
}
