//! Shared by the lab benchmarks: the workspace's binaries, namespaces and
//! processes the bench makes (and removes), `ip` by hand, statistics, the
//! machine line, and Ctrl-C that still cleans up.

#![allow(dead_code)]

use std::os::fd::IntoRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tweed_lab::{Binaries, procs};

/// Fails unless run as root (namespaces, raw sockets).
pub fn require_root(bench: &str) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("{bench}: must run as root (sudo cargo bench -p tweed-lab --bench {bench})");
        std::process::exit(1);
    }
}

/// True when `cargo bench` asked for another bench by name (it passes the
/// filter through to every bench binary).
pub fn filtered_out(bench: &str) -> bool {
    std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !bench.contains(a.as_str()))
}

/// `tweedd` and `tweed` from the profile directory this bench was built
/// into (`<target>/x86_64-unknown-linux-gnu/release/`; the bench itself is
/// in `deps/` below it), Debian's etcd.
pub fn binaries() -> Binaries {
    let exe = std::env::current_exe().expect("bench exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let b = Binaries {
        tweedd: profile_dir.join("tweedd"),
        plugin: profile_dir.join("tweed"),
        etcd: PathBuf::from("/usr/bin/etcd"),
    };
    for p in [&b.tweedd, &b.plugin] {
        if !p.is_file() {
            eprintln!(
                "{} missing: `cargo bench -p tweed-lab` does not build other packages' binaries; \
                 run `cargo build --release --workspace` (same CARGO_TARGET_DIR) first",
                p.display()
            );
            std::process::exit(1);
        }
    }
    b
}

/// One line naming the binaries used and when they were built (a stale
/// `tweedd` would silently measure old code).
pub fn binaries_line(b: &Binaries) -> String {
    let age = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| format!("built {} min ago", d.as_secs() / 60))
            .unwrap_or_default()
    };
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| format!("{} KiB", m.len() / 1024))
            .unwrap_or_default()
    };
    format!(
        "binaries: {} ({}, {}), {} ({}, {})",
        b.tweedd.display(),
        size(&b.tweedd),
        age(&b.tweedd),
        b.plugin.display(),
        size(&b.plugin),
        age(&b.plugin)
    )
}

fn first_line(cmd: &[&str]) -> String {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Kernel, CPUs, CPU model, memory.
pub fn machine_line() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| format!("{} GiB RAM", kib / 1024 / 1024))
        .unwrap_or_default();
    format!(
        "machine: Linux {}, nproc {}, {model}, {mem}",
        first_line(&["uname", "-r"]),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
    )
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn tool_version(cmd: &[&str]) -> String {
    first_line(cmd)
}

// ---------------------------------------------------------------- Ctrl-C

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT / SIGTERM set a flag the bench checks between steps, so it
/// stops at the next step and still removes what it made.
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Panics (unwinding through the cleanup guards) once interrupted.
pub fn check_interrupted() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        panic!("interrupted; cleaning up");
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------- namespaces and processes

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

// ---------------------------------------------------------------- statistics

/// Nearest-rank percentile of an unsorted sample (`p` in 0..=100).
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// The median (mean of the two middle values for an even count).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn min(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a number")),
        Err(_) => default,
    }
}

pub fn yes_no(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}

/// The date in UTC (YYYY-MM-DD) for the report header.
pub fn today() -> String {
    first_line(&["date", "-u", "+%Y-%m-%d %H:%M UTC"])
}
