//! QEMU guests for tests: the tweed test guest (a Debian cloud kernel and a
//! busybox initramfs, built by `scripts/build-guest-image.sh` from
//! `guest/init`) booted under TCG inside a pod's network namespace, on a tap
//! device that already exists there — the device the plugin joins to the
//! pod's `eth0`.
//!
//! The guest takes its whole network configuration from its boot arguments
//! (`ip=...` for Linux, `netdev.ip=...` for Unikraft; `guest/init` documents
//! every form), serves HTTP on port 80 (`/` says `tweed-guest <hostname>
//! <ip>`, `/config.txt`, `/net.txt`, `/lookup.txt`) and prints one
//! `TWEED-GUEST-READY ip=<ip>/<len> gw=.. dns=.. ...` line on its serial
//! console when it is up; [`ready_fields`] parses that line.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The QEMU binary (Debian's `qemu-system-x86`).
pub const QEMU: &str = "qemu-system-x86_64";

/// Marker of the line the guest prints once it serves HTTP.
pub const READY_MARKER: &str = "TWEED-GUEST-READY";
/// Marker of the line the guest prints before powering off on an error.
pub const FAILED_MARKER: &str = "TWEED-GUEST-FAILED";

/// Kernel and initramfs of the test guest.
#[derive(Debug, Clone)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The repository root (two levels above this crate).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit has a repository root")
        .to_path_buf()
}

impl GuestImage {
    /// Runs `scripts/build-guest-image.sh` once per process (it only looks
    /// its cache up when the image is current, and installs QEMU and the
    /// tools it needs when they are missing); panics with its output on
    /// failure.
    pub fn build() -> GuestImage {
        static IMAGE: OnceLock<GuestImage> = OnceLock::new();
        IMAGE
            .get_or_init(|| GuestImage::from_script("scripts/build-guest-image.sh"))
            .clone()
    }

    /// The VM runner's image (`scripts/build-runner-image.sh`: Debian's
    /// generic kernel with 9p, `guest/runner-init`), once per process.
    pub fn build_runner() -> GuestImage {
        static IMAGE: OnceLock<GuestImage> = OnceLock::new();
        IMAGE
            .get_or_init(|| GuestImage::from_script("scripts/build-runner-image.sh"))
            .clone()
    }

    /// Runs an image script of the repository. It prints either the
    /// directory holding `vmlinuz` and `initramfs.cpio.gz` (or
    /// `initrd.img`), or the two file paths.
    fn from_script(relative: &str) -> GuestImage {
        let root = repo_root();
        let script = root.join(relative);
        let out = Command::new(&script)
            .current_dir(&root)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{} failed ({}):\n{stdout}{stderr}",
            script.display(),
            out.status
        );
        let image = GuestImage::from_script_output(&stdout).unwrap_or_else(|| {
            panic!(
                "{} printed no usable image:\n{stdout}{stderr}",
                script.display()
            )
        });
        assert!(
            image.kernel.is_file() && image.initrd.is_file(),
            "{} printed {image:?}, which do not exist:\n{stderr}",
            script.display()
        );
        image
    }

    fn from_script_output(stdout: &str) -> Option<GuestImage> {
        let lines: Vec<&str> = stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let last = Path::new(*lines.last()?);
        if last.is_dir() {
            let initrd = ["initramfs.cpio.gz", "initrd.img"]
                .iter()
                .map(|f| last.join(f))
                .find(|p| p.is_file())?;
            return Some(GuestImage {
                kernel: last.join("vmlinuz"),
                initrd,
            });
        }
        let [.., kernel, initrd] = lines[..] else {
            return None;
        };
        Some(GuestImage {
            kernel: PathBuf::from(kernel),
            initrd: PathBuf::from(initrd),
        })
    }
}

/// One running QEMU guest; killed (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Guest {
    child: Mutex<Child>,
    pid: u32,
    netns: String,
    dir: PathBuf,
    serial: PathBuf,
    qemu_out: PathBuf,
}

/// MTU of `dev` in the named namespace, read with `ip`; panics (naming the
/// namespace and device) if the device is not there.
fn link_mtu(netns: &str, dev: &str) -> u32 {
    let out = Command::new("ip")
        .args(["-n", netns, "-o", "link", "show", "dev", dev])
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "no device {dev} in netns {netns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mtu"
            && let Some(Ok(mtu)) = words.next().map(str::parse)
        {
            return mtu;
        }
    }
    panic!("no mtu in `ip link show` of {dev} in {netns}: {text}");
}

impl Guest {
    /// Starts QEMU (TCG, one vCPU, 256 MiB, no display, serial console to a
    /// log file) inside the named netns `netns`, on the existing tap `tap`
    /// there (`-netdev tap,ifname=..,script=no,downscript=no,vhost=off`;
    /// QEMU asks for `IFF_VNET_HDR` itself, and the kernel accepts that for a
    /// persistent tap created with or without it), as a virtio-net-pci NIC
    /// with MAC `mac` and the tap's MTU (`host_mtu`, so the guest's eth0
    /// gets it without a boot argument). The kernel command line is
    /// `console=ttyS0 panic=-1 ` + `append`; a guest that fails or panics
    /// powers off and QEMU exits (`-no-reboot`).
    ///
    /// Never KVM: on these machines guests crash under nested KVM.
    pub fn start(netns: &str, tap: &str, mac: &str, append: &str, image: &GuestImage) -> Guest {
        crate::require_root();
        let mtu = link_mtu(netns, tap);
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tweed-guest-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let serial = dir.join("serial.log");
        let qemu_out = dir.join("qemu.out");
        // Created here, so that log() works before QEMU opens it.
        File::create(&serial).unwrap_or_else(|e| panic!("create {}: {e}", serial.display()));
        let out_file = File::create(&qemu_out)
            .unwrap_or_else(|e| panic!("create {}: {e}", qemu_out.display()));
        let err_file = out_file.try_clone().expect("dup qemu output file");

        let mut cmd = Command::new(QEMU);
        cmd.args(["-accel", "tcg", "-smp", "1", "-m", "256"])
            .args(["-nographic", "-nodefaults", "-no-user-config", "-no-reboot"])
            .args(["-monitor", "none"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .arg("-append")
            .arg(format!("console=ttyS0 panic=-1 {append}"))
            .arg("-netdev")
            .arg(format!(
                "tap,id=net0,ifname={tap},script=no,downscript=no,vhost=off"
            ))
            .arg("-device")
            // romfile= : no PXE option ROM, the guest boots from -kernel.
            .arg(format!(
                "virtio-net-pci,netdev=net0,mac={mac},host_mtu={mtu},romfile="
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_file))
            .stderr(Stdio::from(err_file));

        let ns_file = File::open(format!("/run/netns/{netns}"))
            .unwrap_or_else(|e| panic!("open netns {netns}: {e}"));
        let fd = ns_file.as_raw_fd();
        // SAFETY: setns is async-signal-safe; the fd stays open in the parent
        // (and so in the child) until after spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {QEMU} in netns {netns}: {e} (install qemu-system-x86: scripts/install-deps.sh)")
        });
        drop(ns_file);
        Guest {
            pid: child.id(),
            child: Mutex::new(child),
            netns: netns.to_string(),
            dir,
            serial,
            qemu_out,
        }
    }

    /// Waits for the guest's `TWEED-GUEST-READY` line and returns it. On a
    /// `TWEED-GUEST-FAILED` line, a kernel panic, QEMU exiting, or the
    /// timeout, returns the tail of the log instead.
    pub fn wait_ready(&self, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let serial = read_lossy(&self.serial);
            // Complete lines only: QEMU writes the console byte by byte.
            for line in serial.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
                let line = line.trim_end_matches(['\r', '\n']);
                if let Some(at) = line.find(READY_MARKER) {
                    return Ok(line[at..].to_string());
                }
                if line.contains(FAILED_MARKER) || line.contains("Kernel panic") {
                    return Err(self.failure(&format!("guest failed: {}", line.trim())));
                }
            }
            let exited = self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_wait()
                .ok()
                .flatten();
            if let Some(status) = exited {
                return Err(self.failure(&format!(
                    "QEMU exited ({status}) before the guest was ready"
                )));
            }
            if Instant::now() >= deadline {
                return Err(self.failure(&format!("guest not ready after {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The serial console so far, followed by QEMU's own output if any.
    pub fn log(&self) -> String {
        let mut log = read_lossy(&self.serial).replace('\r', "");
        let qemu = read_lossy(&self.qemu_out);
        if !qemu.trim().is_empty() {
            log.push_str("\n--- qemu output ---\n");
            log.push_str(&qemu);
        }
        log
    }

    /// Process id of QEMU.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Path of the serial console log.
    pub fn log_path(&self) -> &Path {
        &self.serial
    }

    fn failure(&self, what: &str) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(80)..].join("\n");
        format!(
            "{what} (QEMU pid {} in netns {}, log {}):\n{tail}",
            self.pid,
            self.netns,
            self.serial.display()
        )
    }
}

pub(crate) fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl Drop for Guest {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: kill has no memory-safety preconditions; the pid is our
            // own child, not yet reaped, so it cannot have been reused.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
        }
        let _ = child.wait();
        if std::thread::panicking() || std::env::var_os("TWEED_KEEP_GUEST_LOGS").is_some() {
            eprintln!("guest logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The `key=value` words of a ready line (`TWEED-GUEST-READY ip=10.244.1.5/24
/// gw=10.244.1.1 ...`), e.g. `fields["ip"] == "10.244.1.5/24"`.
pub fn ready_fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_fields() {
        let f = ready_fields(
            "TWEED-GUEST-READY ip=10.244.1.5/24 gw=10.244.1.1 dns=10.96.0.10,10.96.0.11 lookup=web.lab.test:10.244.1.77 uptime=3.1",
        );
        assert_eq!(f["ip"], "10.244.1.5/24");
        assert_eq!(f["dns"], "10.96.0.10,10.96.0.11");
        assert_eq!(f["lookup"], "web.lab.test:10.244.1.77");
        assert!(!f.contains_key("TWEED-GUEST-READY"));
    }
}
