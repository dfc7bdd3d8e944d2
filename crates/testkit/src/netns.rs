//! Throwaway named network namespaces for tests.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A named namespace (`/run/netns/<name>`), deleted on drop.
#[derive(Debug)]
pub struct TestNs {
    pub name: String,
}

/// Panics unless running as root: the tests program the kernel, and a
/// test that quietly does nothing without privileges would report success.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test programs network namespaces and must run as root"
    );
}

impl TestNs {
    /// Creates `tt-<tag>-<pid>-<n>`: unique per process and call, and
    /// recognisable as a test leftover should a run be killed.
    pub fn new(tag: &str) -> TestNs {
        require_root();
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tt-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        assert!(name.len() < 64);
        run_ok("ip", &["netns", "add", &name]);
        // Loopback up, as every runtime does before calling plugins.
        run_ok("ip", &["-n", &name, "link", "set", "lo", "up"]);
        TestNs { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .expect("run ip netns exec")
    }

    /// Runs a command inside the namespace and panics if it fails.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "in {}: {argv:?} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// True when `ping -c1` to `ip` succeeds from inside the namespace.
    pub fn ping(&self, ip: &str) -> bool {
        let out = self.exec(&["ping", "-c", "1", "-W", "2", ip]);
        out.status.success()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

/// Runs a command and panics with its output if it fails.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
