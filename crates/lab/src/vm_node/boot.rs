//! Booting a VM node: its image, its tap on the underlay, QEMU in the
//! underlay namespace, and the wait until it serves.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{FAILED_FILE, READY_FILE, VmNodeState, channel};
use crate::{LabError, procs, topology};

pub const QEMU: &str = "qemu-system-x86_64";

/// How long a VM node may take from QEMU's start to serving: TCG boots
/// in seconds, but a machine busy with other VMs is slow.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// Under KVM the first console line comes within a second; where nested
/// KVM hangs the guest it never comes.
const KVM_PROBE: Duration = Duration::from_secs(20);
/// Printed by `guest/runner-init` when it starts the job.
const STARTED_MARKER: &str = "TWEED-VM-STARTED";
const FAILED_MARKER: &str = "TWEED-VM-FAILED";

/// The VM image: Debian's generic kernel and the runner's initramfs.
#[derive(Debug, Clone)]
pub struct VmImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// `TWEED_VM_IMAGE` (a directory with `vmlinuz` and `initramfs.cpio.gz`),
/// else what `scripts/build-runner-image.sh` of the checkout `exe` was
/// built in prints (it builds the image once, then finds it in its cache).
pub fn image(exe: &Path) -> Result<VmImage, LabError> {
    let dir = match std::env::var_os("TWEED_VM_IMAGE") {
        Some(d) => PathBuf::from(d),
        None => {
            let script = exe
                .ancestors()
                .map(|a| a.join("scripts/build-runner-image.sh"))
                .find(|s| s.is_file())
                .ok_or_else(|| {
                    LabError::Usage(format!(
                        "VM nodes need the VM runner's image: set TWEED_VM_IMAGE to a directory \
                         with vmlinuz and initramfs.cpio.gz, or run tweedctl from a checkout \
                         (none above {})",
                        exe.display()
                    ))
                })?;
            let out = Command::new(&script)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| LabError::io(format!("run {}", script.display()), e))?;
            if !out.status.success() {
                return Err(LabError::Setup(format!(
                    "{} failed: {}",
                    script.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            PathBuf::from(
                text.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim(),
            )
        }
    };
    let image = VmImage {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initramfs.cpio.gz"),
    };
    if !image.kernel.is_file() || !image.initrd.is_file() {
        return Err(LabError::Usage(format!(
            "no VM image in {} (vmlinuz, initramfs.cpio.gz)",
            dir.display()
        )));
    }
    Ok(image)
}

/// What a VM node is booted with.
pub struct Boot<'a> {
    pub underlay_ns: &'a str,
    pub lab_dir: &'a Path,
    /// The node's directory; the VM's channel is its `vm/`.
    pub node_dir: &'a Path,
    pub node_ns: &'a str,
    pub index: usize,
    pub subnet: u8,
    /// `tweedctl`, which serves inside the VM.
    pub tweedctl: &'a Path,
    pub image: &'a VmImage,
    /// `auto`, `kvm` or `tcg`.
    pub accel: &'a str,
    pub memory_mib: u32,
}

/// Boots the VM node and waits until it serves.
pub fn start(b: &Boot) -> Result<VmNodeState, LabError> {
    let mut accel = match b.accel {
        "auto" => auto_accel(),
        a @ ("kvm" | "tcg") => a.to_string(),
        other => {
            return Err(LabError::Usage(format!(
                "--vm-accel {other:?}: auto, kvm or tcg"
            )));
        }
    };
    let dir = b.node_dir.join("vm");
    let _ = std::fs::remove_dir_all(&dir);
    channel::create(&dir)?;
    write_job(b, &dir)?;
    let tap = topology::create_vm_port(b.underlay_ns, b.index, b.subnet)?;
    // From here a failure takes the tap away again: the node's number is
    // free for the next try.
    let booted = boot(b, &dir, &tap, &mut accel);
    if booted.is_err() {
        let _ = topology::delete_underlay_port(b.underlay_ns, &tap);
    }
    let (qemu_pid, kernel) = booted?;
    Ok(VmNodeState {
        qemu_pid,
        dir,
        tap,
        accel,
        kernel,
    })
}

/// QEMU started (KVM tried first under `auto`) and the VM serving: its
/// pid and kernel release.
fn boot(b: &Boot, dir: &Path, tap: &str, accel: &mut String) -> Result<(i32, String), LabError> {
    let mut qemu_pid = spawn_qemu(b, dir, tap, accel)?;
    if accel == "kvm" && b.accel == "auto" && !starts_within(dir, qemu_pid, KVM_PROBE) {
        // Nested KVM that hangs the guest: remember, and use TCG.
        procs::stop(qemu_pid, Duration::from_secs(2));
        let _ = std::fs::write(kvm_verdict_file(), "no");
        *accel = "tcg".into();
        qemu_pid = spawn_qemu(b, dir, tap, accel)?;
    } else if accel == "kvm" && b.accel == "auto" {
        let _ = std::fs::write(kvm_verdict_file(), "yes");
    }
    match wait_serving(dir, qemu_pid) {
        Ok(kernel) => Ok((qemu_pid, kernel)),
        Err(e) => {
            procs::stop(qemu_pid, Duration::from_secs(2));
            Err(e)
        }
    }
}

fn kvm_verdict_file() -> PathBuf {
    Path::new(crate::state::LAB_ROOT).join(".kvm-works")
}

/// `kvm` when /dev/kvm opens and no earlier VM node found that KVM hangs
/// its guest on this machine; `tcg` otherwise.
fn auto_accel() -> String {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let verdict = std::fs::read_to_string(kvm_verdict_file()).unwrap_or_default();
    if usable && verdict.trim() != "no" {
        "kvm".into()
    } else {
        "tcg".into()
    }
}

fn write_job(b: &Boot, dir: &Path) -> Result<(), LabError> {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let script = format!(
        "# written by tweed-lab for VM node {ns}\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
         exec {tweedctl} lab vm-serve --dir /run/tweed-vm-job --ns {ns} --index {index} --subnet {subnet} \
         >>/run/tweed-vm-job/serve.log 2>&1\n",
        tweedctl = quote(&b.tweedctl.display().to_string()),
        ns = quote(b.node_ns),
        index = b.index,
        subnet = b.subnet,
    );
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| LabError::io(format!("write {}", dir.join(name).display()), e))
    };
    write("job.sh", &script)?;
    // The binaries' directory comes back in the VM even where a tmpfs
    // (/tmp, /run, /var/*) would hide it: a checkout in /tmp works too.
    let build = b.tweedctl.parent().unwrap_or(Path::new("/"));
    write("keep", &format!("{}\n", build.display()))
}

fn spawn_qemu(b: &Boot, dir: &Path, tap: &str, accel: &str) -> Result<i32, LabError> {
    let console = dir.join("console.log");
    let _ = std::fs::remove_file(&console);
    let mut argv: Vec<String> = vec![QEMU.into(), "-accel".into(), accel.into()];
    if accel == "kvm" {
        argv.extend(["-cpu".into(), "host".into()]);
    }
    let mac = format!("52:54:00:12:{:02x}:{:02x}", b.subnet, b.index);
    argv.extend(
        [
            "-m",
            &b.memory_mib.to_string(),
            "-smp",
            "1",
            "-display",
            "none",
            "-monitor",
            "none",
            "-nodefaults",
            "-no-user-config",
            "-no-reboot",
            "-serial",
            &format!("file:{}", console.display()),
            "-kernel",
            &b.image.kernel.display().to_string(),
            "-initrd",
            &b.image.initrd.display().to_string(),
            "-append",
            &format!(
                "console=ttyS0 quiet loglevel=3 panic=-1 tweed.labdir={}",
                b.lab_dir.display()
            ),
            "-virtfs",
            // multidevs=remap: the host's root spans several file systems,
            // whose inode numbers would otherwise collide in the guest.
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs",
            &format!(
                "local,path={},mount_tag=job,security_model=none",
                dir.display()
            ),
            "-virtfs",
            &format!(
                "local,path={},mount_tag=lab,security_model=none",
                b.lab_dir.display()
            ),
            "-netdev",
            &format!("tap,id=ul,ifname={tap},script=no,downscript=no,vhost=off"),
            "-device",
            &format!("virtio-net-pci,netdev=ul,mac={mac}"),
        ]
        .map(String::from),
    );
    procs::spawn_in(b.underlay_ns, &argv, &dir.join("qemu.out")).map_err(|e| match e {
        LabError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            LabError::Usage(format!(
                "{QEMU} is not installed (Debian's qemu-system-x86; scripts/install-deps.sh)"
            ))
        }
        other => other,
    })
}

fn console(dir: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(dir.join("console.log")).unwrap_or_default())
        .replace('\r', "")
}

fn starts_within(dir: &Path, qemu_pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && procs::alive(qemu_pid) {
        if console(dir).contains(STARTED_MARKER) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Waits for the VM's ready file; returns its kernel release.
fn wait_serving(dir: &Path, qemu_pid: i32) -> Result<String, LabError> {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let failed = |why: String| {
        let tail: Vec<String> = console(dir)
            .lines()
            .rev()
            .take(15)
            .map(str::to_string)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let serve = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
        LabError::Setup(format!(
            "VM node in {}: {why}\n--- console ---\n{}\n--- vm-serve ---\n{}",
            dir.display(),
            tail.join("\n"),
            serve.trim()
        ))
    };
    loop {
        if let Ok(release) = std::fs::read_to_string(dir.join(READY_FILE))
            && !release.trim().is_empty()
        {
            return Ok(release.trim().to_string());
        }
        if let Ok(why) = std::fs::read_to_string(dir.join(FAILED_FILE)) {
            return Err(failed(why));
        }
        if console(dir).contains(FAILED_MARKER) {
            return Err(failed("the VM could not start".into()));
        }
        if !procs::alive(qemu_pid) {
            let out = std::fs::read_to_string(dir.join("qemu.out")).unwrap_or_default();
            return Err(failed(format!("QEMU exited: {}", out.trim())));
        }
        if Instant::now() > deadline {
            return Err(failed(format!(
                "not serving within {}s",
                BOOT_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
