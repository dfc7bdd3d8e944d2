//! Namespaces and processes the bench makes outside any lab, commands run
//! inside a namespace, `ip` by hand, and guards that remove it all when
//! dropped — also when the bench panics.

use std::os::fd::IntoRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tweed_lab::procs;

use tweed_testkit::interrupt::check_interrupted;

/// A command that runs inside the named network namespace (entered between
/// fork and exec).
pub fn cmd_in(ns: &str, argv: &[&str]) -> Command {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open netns {ns}: {e}"));
    let fd = file.into_raw_fd();
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    // SAFETY: setns is async-signal-safe; the descriptor stays open (it is
    // deliberately leaked: one per command, closed at exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Runs a command to completion; panics with its stderr if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS...` (in the root namespace; use `-n NS` to reach one).
pub fn ip(args: &str) -> String {
    let argv: Vec<&str> = args.split_whitespace().collect();
    run(Command::new("ip").args(&argv))
}

/// `ip -n NS ARGS...`
pub fn ipn(ns: &str, args: &str) -> String {
    let mut argv = vec!["-n", ns];
    argv.extend(args.split_whitespace());
    run(Command::new("ip").args(&argv))
}

/// Namespaces and processes the bench made itself (outside any lab),
/// removed when dropped — also when the bench panics.
#[derive(Default)]
pub struct Scratch {
    pub namespaces: Vec<String>,
    pub pids: Vec<i32>,
    pub files: Vec<PathBuf>,
}

impl Scratch {
    /// `ip netns add NAME` with loopback up.
    pub fn netns(&mut self, name: &str) -> String {
        // A leftover of an earlier run that died without cleaning up.
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&format!("netns add {name}"));
        self.namespaces.push(name.to_string());
        ipn(name, "link set lo up");
        name.to_string()
    }

    /// Starts a long-running process (recorded by pid, stopped on drop).
    // The child is reaped by pid in `procs::stop`, which clippy cannot see.
    #[allow(clippy::zombie_processes)]
    pub fn spawn(&mut self, mut cmd: Command) -> i32 {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let pid = child.id() as i32;
        self.pids.push(pid);
        pid
    }

    pub fn stop(&mut self, pid: i32) {
        procs::stop(pid, Duration::from_secs(3));
        self.pids.retain(|p| *p != pid);
    }

    pub fn cleanup(&mut self) {
        for pid in std::mem::take(&mut self.pids) {
            procs::stop(pid, Duration::from_secs(3));
        }
        // Pods before nodes before the underlay (reverse order of creation).
        for ns in std::mem::take(&mut self.namespaces).into_iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        for f in std::mem::take(&mut self.files) {
            let _ = std::fs::remove_file(&f).or_else(|_| std::fs::remove_dir_all(&f));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A lab that goes down when dropped.
pub struct LabGuard(pub Option<tweed_lab::Lab>);

impl LabGuard {
    pub fn lab(&self) -> &tweed_lab::Lab {
        self.0.as_ref().expect("lab")
    }
    pub fn lab_mut(&mut self) -> &mut tweed_lab::Lab {
        self.0.as_mut().expect("lab")
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Some(lab) = self.0.take() {
            lab.down();
        }
    }
}

/// Waits until `f` is true, or panics after `secs` naming `what`.
pub fn wait_until(secs: f64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while !f() {
        check_interrupted();
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
