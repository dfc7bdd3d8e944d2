//! Processes the lab runs inside its namespaces (agents, etcd): started in
//! a namespace by entering it between fork and exec, detached into their
//! own session so they outlive `tweedctl`, and stopped by pid only.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::LabError;

/// Starts `argv` inside the named namespace with output to `log`; returns
/// its pid.
pub fn spawn_in(ns: &str, argv: &[String], log: &Path) -> Result<i32, LabError> {
    spawn_in_with(ns, argv, log, None)
}

/// [`spawn_in`] with no capability but `caps` (numbers), when given.
pub fn spawn_in_with(
    ns: &str,
    argv: &[String],
    log: &Path,
    caps: Option<&[u32]>,
) -> Result<i32, LabError> {
    let ns_file = File::open(format!("/run/netns/{ns}"))
        .map_err(|e| LabError::io(format!("open netns {ns}"), e))?;
    let out =
        File::create(log).map_err(|e| LabError::io(format!("create {}", log.display()), e))?;
    let err = out.try_clone().map_err(|e| LabError::io("dup log", e))?;
    let fd = ns_file.as_raw_fd();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: only async-signal-safe calls (setns, setsid) between fork
    // and exec; the namespace fd stays open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::setsid();
            Ok(())
        });
    }
    if let Some(caps) = caps {
        crate::capabilities::keep_only(&mut cmd, caps)
            .map_err(|e| LabError::io("read the kernel's capabilities", e))?;
    }
    let child = cmd
        .spawn()
        .map_err(|e| LabError::io(format!("start {}", argv[0]), e))?;
    Ok(child.id() as i32)
}

/// True while the process runs. A child of ours that exited is reaped
/// first: a zombie still answers signal 0.
pub fn alive(pid: i32) -> bool {
    reap(pid);
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// SIGTERM, wait up to `grace`, then SIGKILL. Reaps the process if it is
/// our child.
pub fn stop(pid: i32, grace: Duration) {
    if pid <= 1 || !alive(pid) {
        return;
    }
    // SAFETY: plain kill(2) on a pid the lab recorded for its own process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reap(pid);
        if !alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) && Instant::now() < deadline {
        reap(pid);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL at once, as the OOM killer or a crash would end it; waits until
/// it is gone (reaped if it is our child).
pub fn kill(pid: i32) {
    if pid <= 1 || !alive(pid) {
        return;
    }
    // SAFETY: plain kill(2) on a pid the lab recorded for its own process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: non-blocking wait on a specific pid; harmless if it is not
    // our child (ECHILD).
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}
