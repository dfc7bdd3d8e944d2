//! The VM runner: a test that needs a kernel feature the host kernel lacks
//! (SRv6 on some machines here; Geneve and WireGuard on all of them) runs
//! inside a QEMU VM whose kernel has it, instead of nowhere.
//!
//! The VM boots Debian's generic amd64 kernel (`scripts/build-runner-image.sh`,
//! `guest/runner-init`) and takes the host's root directory, read-only over
//! virtio 9p, as its own, with fresh tmpfs on `/run`, `/tmp` and `/var/*`.
//! So the very same test binary, the workspace's binaries and every
//! installed tool (ip, etcd, ping, ...) run there unchanged; the test's
//! namespaces, devices and processes live in the VM's kernel and vanish
//! with it. The test's output is relayed, and its exit status decides.
//!
//! ```no_run
//! use tweed_testkit::vm::{KernelFeature, on_a_kernel_with};
//! #[test]
//! fn srv6_pods_talk() {
//!     if !on_a_kernel_with(&[KernelFeature::Seg6]) {
//!         return; // it ran, and passed, in the VM runner
//!     }
//!     // ... the test itself ...
//! }
//! ```
//!
//! QEMU runs with TCG: on these machines KVM (nested) hangs the guest
//! before its first console line. `TWEED_VM_ACCEL=kvm` tries KVM where it
//! works; `TWEED_VM_TIMEOUT` (seconds, default 1200) bounds a run;
//! `TWEED_VM_KEEP=1` keeps the job directory (console log) for a look.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::qemu::{GuestImage, QEMU, read_lossy};

/// Set inside the VM runner, so a test knows not to go round again.
pub const IN_VM_ENV: &str = "TWEED_IN_VM_RUNNER";

/// A kernel feature a test may need, probed by trying it in a throwaway
/// network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFeature {
    /// SRv6 encapsulation routes and seg6local End.DX4/End.DX6.
    Seg6,
    /// Geneve devices.
    Geneve,
    /// WireGuard devices.
    Wireguard,
    /// SCTP sockets (pods serving SCTP, for NetworkPolicy's SCTP ports).
    Sctp,
}

impl KernelFeature {
    /// The kernel build option that provides it.
    pub fn config_option(self) -> &'static str {
        match self {
            KernelFeature::Seg6 => "CONFIG_IPV6_SEG6_LWTUNNEL",
            KernelFeature::Geneve => "CONFIG_GENEVE",
            KernelFeature::Wireguard => "CONFIG_WIREGUARD",
            KernelFeature::Sctp => "CONFIG_IP_SCTP",
        }
    }

    /// Does the running kernel have it? Probed once per process.
    pub fn present(self) -> bool {
        static SEG6: OnceLock<bool> = OnceLock::new();
        static GENEVE: OnceLock<bool> = OnceLock::new();
        static WIREGUARD: OnceLock<bool> = OnceLock::new();
        static SCTP: OnceLock<bool> = OnceLock::new();
        let cell = match self {
            KernelFeature::Seg6 => &SEG6,
            KernelFeature::Geneve => &GENEVE,
            KernelFeature::Wireguard => &WIREGUARD,
            KernelFeature::Sctp => &SCTP,
        };
        *cell.get_or_init(|| self.probe())
    }

    /// The `ip` commands that succeed only with the feature, run in a
    /// namespace of their own (no traffic is sent); for SCTP, a socket.
    fn probe(self) -> bool {
        let commands: &[&[&str]] = match self {
            KernelFeature::Sctp => return sctp_socket_opens(),
            KernelFeature::Seg6 => &[
                &["-6", "addr", "add", "fd00:5e6::1/64", "dev", "lo"],
                &[
                    "-6",
                    "route",
                    "add",
                    "fd00:5e6:1::/64",
                    "encap",
                    "seg6",
                    "mode",
                    "encap",
                    "segs",
                    "fd00:5e6::2",
                    "dev",
                    "lo",
                ],
                &[
                    "-6",
                    "route",
                    "add",
                    "fd00:5e6:2::/128",
                    "encap",
                    "seg6local",
                    "action",
                    "End.DX6",
                    "nh6",
                    "fd00:5e6::2",
                    "dev",
                    "lo",
                ],
            ],
            KernelFeature::Geneve => &[&[
                "link",
                "add",
                "probe0",
                "type",
                "geneve",
                "id",
                "1",
                "remote",
                "198.18.0.1",
            ]],
            KernelFeature::Wireguard => &[&["link", "add", "probe0", "type", "wireguard"]],
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let ns = format!(
            "tt-probe-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        crate::run_ok("ip", &["netns", "add", &ns]);
        crate::run_ok("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        let ok = commands.iter().all(|args| {
            Command::new("ip")
                .args(["-n", &ns])
                .args(*args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        ok
    }
}

/// Whether an SCTP socket can be made (the kernel loads `sctp` on demand).
fn sctp_socket_opens() -> bool {
    // SAFETY: plain socket(2); the descriptor is closed right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    if fd < 0 {
        return false;
    }
    // SAFETY: our own descriptor, closed once.
    unsafe { libc::close(fd) };
    true
}

impl fmt::Display for KernelFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_option())
    }
}

/// Decides where the calling test runs. `true`: the running kernel has
/// every feature, so the caller runs its body here. `false`: the host
/// lacks one, so this very test (named by its thread, as libtest names
/// them) has just run inside the VM runner and passed there — the caller
/// returns. A failure in the VM panics here with the VM's output; inside
/// the VM a feature still missing panics too, naming it.
pub fn on_a_kernel_with(features: &[KernelFeature]) -> bool {
    crate::require_root();
    let missing: Vec<KernelFeature> = features.iter().copied().filter(|f| !f.present()).collect();
    if missing.is_empty() {
        return true;
    }
    let names: Vec<&str> = missing.iter().map(|f| f.config_option()).collect();
    assert!(
        std::env::var_os(IN_VM_ENV).is_none(),
        "the VM runner's kernel lacks {}: see scripts/build-runner-image.sh",
        names.join(", ")
    );
    let test = current_test();
    eprintln!(
        "vm runner: this kernel lacks {}; running {test} in a VM",
        names.join(", ")
    );
    run_test_in_vm(&test);
    false
}

/// The running test's name: libtest names each test's thread after it.
fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_string)
        .expect("libtest names each test's thread after the test")
}

/// Runs `test` of the current test binary inside the VM runner and panics
/// unless it passed.
pub fn run_test_in_vm(test: &str) {
    run_test_in_vm_without(test, &[]);
}

/// Decides where a test of the kernel *lacking* something runs: inside
/// the VM runner booted without the kernel modules `modules` (the VM
/// cannot load a module it was not given, so they are truly absent).
/// `true`: we are that VM, and the modules are indeed not there — the
/// caller runs its body. `false`: this very test has just run in such a VM
/// and passed there — the caller returns.
pub fn on_a_kernel_without(modules: &[&str]) -> bool {
    crate::require_root();
    if std::env::var_os(IN_VM_ENV).is_some() {
        for m in modules {
            assert!(
                !Path::new("/sys/module").join(m).exists(),
                "the VM runner was to boot without {m}, but it is loaded"
            );
        }
        return true;
    }
    let test = current_test();
    eprintln!(
        "vm runner: running {test} in a VM without {}",
        modules.join(", ")
    );
    run_test_in_vm_without(&test, modules);
    false
}

fn run_test_in_vm_without(test: &str, modules: &[&str]) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let cwd = std::env::current_dir().expect("the working directory");
    let argv = vec![
        exe.display().to_string(),
        "--exact".to_string(),
        test.to_string(),
        "--nocapture".to_string(),
        "--test-threads".to_string(),
        "1".to_string(),
    ];
    // A test binary filtered to one test still says "1 passed"; an empty
    // filter match would say "0 passed" and exit 0, so the count is checked.
    let run = Job::new(&cwd, &argv).without_modules(modules).run();
    let summary = run
        .output
        .lines()
        .rev()
        .find(|l| l.starts_with("test result:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        run.status == Some(0) && summary.contains(" 1 passed"),
        "{test} in the VM runner: exit status {:?}, {summary:?}; console:\n{}",
        run.status,
        run.output
    );
    println!(
        "--- {test} in the VM runner ({:.1} s) ---\n{}",
        run.elapsed.as_secs_f64(),
        run.output
    );
}

/// One command run as root inside the VM runner, in `cwd`, with this
/// process's environment.
pub struct Job {
    dir: PathBuf,
    /// Modules the VM's init leaves out (`tweed.without=` on the kernel
    /// command line; guest/runner-init reads it).
    without: Vec<String>,
}

/// What a [`Job`] left: its exit status (`None` when it never finished),
/// the console output, and how long the VM ran.
pub struct JobOutcome {
    pub status: Option<i32>,
    pub output: String,
    pub elapsed: Duration,
}

impl Job {
    /// Writes the job directory: `job.sh` changes to `cwd`, exports the
    /// environment and runs `argv`.
    pub fn new(cwd: &Path, argv: &[String]) -> Job {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tweed-vm-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut script = String::from("# written by tweed_testkit::vm\n");
        for (k, v) in std::env::vars() {
            // Only plain names; the shell would refuse others.
            if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                script.push_str(&format!("export {k}={}\n", quote(&v)));
            }
        }
        script.push_str(&format!("export {IN_VM_ENV}=1\n"));
        script.push_str(&format!(
            "cd {} || exit 125\n",
            quote(&cwd.display().to_string())
        ));
        let words: Vec<String> = argv.iter().map(|a| quote(a)).collect();
        script.push_str(&format!("{} 2>&1\n", words.join(" ")));
        std::fs::write(dir.join("job.sh"), script).expect("write job.sh");
        // The working directory and the program's build directory come back
        // in the VM even where its tmpfs (/tmp, /run, /var/*) would hide
        // them: a checkout in /tmp works like one anywhere else.
        let mut keep = vec![cwd.to_path_buf()];
        if let Some(build) = argv
            .first()
            .map(Path::new)
            .filter(|p| p.is_absolute())
            .and_then(|p| p.ancestors().nth(2))
        {
            keep.push(build.to_path_buf());
        }
        let keep: String = keep.iter().map(|p| format!("{}\n", p.display())).collect();
        std::fs::write(dir.join("keep"), keep).expect("write keep");
        Job {
            dir,
            without: Vec::new(),
        }
    }

    /// Boots the VM without these of the runner's modules.
    pub fn without_modules(mut self, modules: &[&str]) -> Job {
        self.without = modules.iter().map(|m| m.to_string()).collect();
        self
    }

    /// Boots the VM, waits for it to power off (or the timeout), and
    /// returns what the job left.
    pub fn run(self) -> JobOutcome {
        let image = GuestImage::build_runner();
        let console = self.dir.join("console.log");
        let accel = std::env::var("TWEED_VM_ACCEL").unwrap_or_else(|_| "tcg".into());
        let timeout = std::env::var("TWEED_VM_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1200);
        let qemu_log = std::fs::File::create(self.dir.join("qemu.out")).expect("qemu.out");
        let mut cmdline = String::from("console=ttyS0 quiet loglevel=3 panic=-1");
        if !self.without.is_empty() {
            cmdline.push_str(&format!(" tweed.without={}", self.without.join(",")));
        }
        let started = Instant::now();
        let mut child = Command::new(QEMU)
            .args(["-accel", &accel, "-m", "3072", "-smp", "2"])
            .args([
                "-display",
                "none",
                "-monitor",
                "none",
                "-nodefaults",
                "-no-user-config",
            ])
            .arg("-no-reboot")
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .args(["-append", &cmdline])
            .arg("-virtfs")
            // multidevs=remap: the host's root spans several file systems,
            // whose inode numbers would otherwise collide in the guest.
            .arg("local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap")
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag=job,security_model=none",
                self.dir.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::from(qemu_log.try_clone().expect("dup")))
            .stderr(Stdio::from(qemu_log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {QEMU}: {e} (scripts/install-deps.sh)"));
        let deadline = started + Duration::from_secs(timeout);
        let finished = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break true;
            }
            if Instant::now() >= deadline {
                // Our own child, not yet reaped: its pid is still ours.
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let elapsed = started.elapsed();
        let mut output = read_lossy(&console).replace('\r', "");
        let qemu = read_lossy(&self.dir.join("qemu.out"));
        if !qemu.trim().is_empty() {
            output.push_str("\n--- qemu ---\n");
            output.push_str(&qemu);
        }
        if !finished {
            output.push_str(&format!(
                "\n--- killed after {timeout} s (TWEED_VM_TIMEOUT) ---\n"
            ));
        }
        let status = std::fs::read_to_string(self.dir.join("status"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        JobOutcome {
            status,
            output,
            elapsed,
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if std::env::var_os("TWEED_VM_KEEP").is_some() {
            eprintln!("vm runner: job directory kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Single-quoted for the shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
