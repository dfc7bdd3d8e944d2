//! The node's kernel is this machine's: namespaces entered with setns.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tweed_netlink::NetNs;

use super::{NodeKernel, ProcessSpec};
use crate::{LabError, check, procs, topology};

pub struct LocalKernel;

/// `process` as a command that enters namespace `ns` between fork and
/// exec.
pub(crate) fn command_in(ns: &str, process: &ProcessSpec) -> Result<Command, LabError> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))
        .map_err(|e| LabError::io(format!("open netns {ns}"), e))?;
    let program = process
        .argv
        .first()
        .ok_or_else(|| LabError::Usage("no command given".into()))?;
    let mut cmd = Command::new(program);
    cmd.args(&process.argv[1..]);
    if let Some(env) = &process.env {
        cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    // SAFETY: setns is async-signal-safe; the closure owns the namespace
    // file, so its descriptor is open whenever the closure runs.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

impl NodeKernel for LocalKernel {
    fn spawn(
        &self,
        ns: &str,
        argv: &[String],
        log: &Path,
        caps: Option<&[u32]>,
    ) -> Result<i32, LabError> {
        procs::spawn_in_with(ns, argv, log, caps)
    }

    fn stop(&self, pid: i32, grace: Duration) -> Result<(), LabError> {
        procs::stop(pid, grace);
        Ok(())
    }

    fn kill(&self, pid: i32) -> Result<(), LabError> {
        procs::kill(pid);
        Ok(())
    }

    fn alive(&self, pid: i32) -> bool {
        procs::alive(pid)
    }

    fn run(&self, ns: &str, process: &ProcessSpec) -> Result<Output, LabError> {
        let what = || format!("run {} in {ns}", process.argv.join(" "));
        let mut cmd = command_in(ns, process)?;
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if process.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().map_err(|e| LabError::io(what(), e))?;
        if let (Some(input), Some(mut pipe)) = (&process.stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .map_err(|e| LabError::io(what(), e))?;
        }
        child
            .wait_with_output()
            .map_err(|e| LabError::io(what(), e))
    }

    fn create_pod_ns(&self, name: &str) -> Result<(), LabError> {
        topology::create_pod_ns(name).map(drop)
    }

    fn delete_ns(&self, name: &str) -> Result<(), LabError> {
        Ok(NetNs::delete_named(name)?)
    }

    fn ping(&self, ns: &str, dst: IpAddr, tries: u32, timeout: Duration) -> Result<bool, LabError> {
        check::ping(&NetNs::named(ns)?, dst, tries, timeout)
    }

    fn http_get(
        &self,
        ns: &str,
        addr: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Option<(u16, String)> {
        let ns = NetNs::named(ns).ok()?;
        let (code, body) = ns
            .run(|| crate::http::get(addr, path, timeout))
            .ok()?
            .ok()?;
        Some((code?, body))
    }
}
