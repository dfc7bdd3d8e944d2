//! Podman (Debian, 4.3, CNI backend) as a real CNI runtime for tests.
//!
//! A [`Podman`] is one isolated podman "installation": its own image and
//! container storage, its own state and lock files, its own CNI network
//! directory and its own CNI plugin directory. Nothing of the system's podman
//! setup (`/etc/containers`, `/var/lib/containers/storage`, `/etc/cni/net.d`,
//! the `/dev/shm/libpod_lock` segment) is read or written, so several
//! instances can run side by side in one test binary.
//!
//! Every podman process is started inside an existing *node* network
//! namespace (`/run/netns/<name>`), so the links CNI plugins create on the
//! "host" side (bridges, veth peers, routes, nft rules, reserved ports) live in
//! that namespace and never in the root one. Podman creates each container's
//! namespace itself, as `/run/netns/netns-<uuid>`, and deletes it again on
//! `podman rm`.
//!
//! Why not `ip netns exec <node> podman ...`: `ip netns exec` also unshares
//! the mount namespace and remounts a fresh `/sys`, which hides the cgroup
//! mounts under `/sys/fs/cgroup`; runc then fails with "no cgroup mount found
//! in mountinfo". And as it makes `/` a slave mount, the netns bind mounts
//! (`/run/netns/netns-*`) and shm mounts podman makes would stay private to
//! the one podman process that made them, out of sight of a later `podman rm`. We therefore only switch the
//! network namespace (`setns(CLONE_NEWNET)` between fork and exec, like
//! `nsenter --net=/run/netns/<node>`) and stay in the root mount namespace,
//! where podman normally runs. Consequence: `/sys/class/net` inside podman
//! and its CNI plugins shows the *root* namespace's links; plugins must use
//! netlink (and `/proc/sys/net`, which follows the caller's netns), not sysfs.
//!
//! What podman 4.3 sends to CNI plugins (observed with a logging wrapper):
//! - `CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=<container name>`, plus
//!   `IP=<addr>` for `--ip` and `MAC=<mac>` for `--mac-address`. Static IPs
//!   and MACs are **not** sent as the `ips`/`mac` capabilities.
//! - `--ip` is checked against the subnets podman parses from the conflist
//!   for a `bridge` network ("requested static ip .. not in any subnet");
//!   for a plugin type podman does not know (e.g. `tweed`) it knows no
//!   subnets and passes the address through unchecked. A bridge network
//!   without `isGateway: true` is shown as `internal`.
//! - `runtimeConfig` (only for capabilities the plugin declares):
//!   `portMappings` (`[{hostPort, containerPort, protocol}]` from `-p`) and
//!   `aliases` (`{<network>: [<--network-alias>..., <short id>]}`). Nothing
//!   else (`dns`, `bandwidth`, `ipRanges`, `cgroupPath` are never filled).
//! - `CNI_PATH` = the plugin directory of this instance; the rest of the
//!   environment is podman's own (see [`Podman::set_env`]).
//! - Every podman command that loads networks first calls `VERSION` on each
//!   plugin of each network (libcni validation) with `CNI_NETNS`,
//!   `CNI_IFNAME` and `CNI_PATH` set to `dummy`.
//! - `DEL` carries the cached ADD result as `prevResult`. When a container
//!   exits by itself, conmon's exit command (`podman container cleanup`)
//!   runs `DEL`; a later `podman rm` does not repeat it.
//! - libcni caches results in the global `/var/lib/cni/results/`
//!   (`<network>-<container id>-eth0`, unique per container, removed on DEL);
//!   podman 4.3 has no setting to move it. host-local keeps its leases in
//!   `/var/lib/cni/networks/<network>` unless the IPAM config sets `dataDir`;
//!   tests should point `dataDir` under [`Podman::base_dir`].

use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The busybox image [`Podman::ensure_image`] imports.
pub const IMAGE: &str = "localhost/tweed-test-busybox:latest";

/// Where busybox-static (Debian `busybox-static`) puts its binary.
const BUSYBOX: &str = "/bin/busybox";

/// A fixed, system-only `PATH` for podman, conmon, runc and the CNI plugins:
/// runs do not depend on the caller's shell setup (`runc` is in /usr/sbin).
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Setting this environment variable (to anything) keeps an instance's
/// directory after the test, for post-mortems. Containers are removed anyway.
pub const KEEP_ENV: &str = "TWEED_KEEP_PODMAN";

/// One isolated podman installation whose processes run in a node netns.
///
/// Dropping it removes all its containers (running CNI `DEL` for them), then
/// unmounts anything left under its directory and deletes the directory.
/// The node namespace's name may be deleted before or after the drop: an
/// open descriptor keeps the namespace itself alive until then.
pub struct Podman {
    base: PathBuf,
    node_netns: String,
    /// Keeps the node namespace alive and lets us `setns` into it even if
    /// its name is removed before we are dropped.
    netns: File,
    env: Vec<(String, String)>,
    image: OnceLock<String>,
}

impl Podman {
    /// Creates the storage, state and config directories of a fresh
    /// instance under the system temp dir.
    ///
    /// `node_netns` names an existing namespace (`/run/netns/<name>`) that
    /// every podman process runs in. `cni_bin_dirs` lists where plugins come
    /// from: each entry is a directory (all its files are offered) or a
    /// single binary (offered under its file name); they are symlinked into
    /// one per-instance plugin directory, the first entry providing a name
    /// wins (like `CNI_PATH`). Use [`Podman::add_plugin`] to override one.
    pub fn new(node_netns: &str, cni_bin_dirs: &[&Path]) -> Podman {
        let ns_path = Path::new("/run/netns").join(node_netns);
        let netns = File::open(&ns_path)
            .unwrap_or_else(|e| panic!("opening node netns {}: {e}", ns_path.display()));
        let base = unique_dir("tweed-podman");
        let p = Podman {
            base,
            node_netns: node_netns.to_owned(),
            netns,
            env: Vec::new(),
            image: OnceLock::new(),
        };
        for d in [
            "root", "runroot", "tmp", "net.d", "cni-bin", "volumes", "home",
        ] {
            mkdir(&p.base.join(d));
        }
        for src in cni_bin_dirs {
            p.link_plugins(src);
        }
        p.write_configs();
        p
    }

    /// The instance's directory; put per-test state (a host-local `dataDir`,
    /// plugin logs) under it and it is cleaned up with the instance.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// The node namespace podman runs in.
    pub fn node_netns(&self) -> &str {
        &self.node_netns
    }

    /// The directory podman reads `*.conflist` files from.
    pub fn cni_config_dir(&self) -> PathBuf {
        self.base.join("net.d")
    }

    /// The single directory podman looks plugins up in (`CNI_PATH`).
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.base.join("cni-bin")
    }

    /// Offers `target` to podman as plugin `name`, replacing any plugin of
    /// that name (for example a logging wrapper around the real one).
    pub fn add_plugin(&self, name: &str, target: &Path) {
        let link = self.cni_bin_dir().join(name);
        let _ = fs::remove_file(&link);
        symlink(target, &link).unwrap_or_else(|e| {
            panic!(
                "linking plugin {} -> {}: {e}",
                link.display(),
                target.display()
            )
        });
    }

    /// Adds a variable to the environment of podman and so of the CNI
    /// plugins it runs for `run`/`rm`. Not passed on to the cleanup podman
    /// that conmon starts when a container exits by itself (conmon passes on
    /// only `PATH`, `HOME`, `CONTAINERS_CONF`, `XDG_RUNTIME_DIR` and `LC_*`),
    /// so plugin settings that `DEL` needs belong in the network config.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Writes `conflist` as `<name>.conflist` into the CNI config dir; podman
    /// rereads the directory on every command. Podman knows a network by the
    /// conflist's `"name"` field, so it must equal `name`.
    pub fn write_network(&self, name: &str, conflist: &serde_json::Value) {
        assert_eq!(
            conflist.get("name").and_then(|n| n.as_str()),
            Some(name),
            "the conflist's \"name\" must be {name:?}: podman's --network refers to it"
        );
        let path = self.cni_config_dir().join(format!("{name}.conflist"));
        let text = serde_json::to_string_pretty(conflist).expect("serializing conflist");
        fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Imports the busybox test image into this instance (once) and returns
    /// its reference. The rootfs tarball is built once per machine and
    /// cached in the temp dir. The image has `/bin/sh` and every busybox
    /// applet (`ip`, `ping`, `nc`, `httpd`, `wget`, `sleep`, ...) in `/bin`,
    /// and `/var/www/index.html` for `httpd -h /var/www`.
    pub fn ensure_image(&self) -> String {
        self.image
            .get_or_init(|| {
                if !self.podman(&["image", "exists", IMAGE]).status.success() {
                    let tar = busybox_tar();
                    let tar = tar.to_str().expect("utf-8 temp path");
                    let out = self.podman(&[
                        "import",
                        "--quiet",
                        "--change",
                        r#"CMD ["/bin/sh"]"#,
                        tar,
                        IMAGE,
                    ]);
                    check(&out, &format!("podman import {tar} {IMAGE}"));
                }
                IMAGE.to_owned()
            })
            .clone()
    }

    /// `podman run -d --name <name> --network <network> <extra...> IMAGE <cmd...>`;
    /// returns the container id. The CNI `ADD` has completed when this
    /// returns. On failure the container may remain (state "Created"): remove
    /// it with [`Podman::rm_force`] before reusing the name.
    pub fn run_detached(
        &self,
        name: &str,
        network: &str,
        extra: &[&str],
        cmd: &[&str],
    ) -> Result<String, String> {
        let image = self.ensure_image();
        let mut args = vec!["run", "--detach", "--name", name, "--network", network];
        args.extend_from_slice(extra);
        args.push(&image);
        args.extend_from_slice(cmd);
        let out = self.podman(&args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(describe(&out, &format!("podman {}", args.join(" "))))
        }
    }

    /// `podman exec <container> <cmd...>`; the command runs in the
    /// container's namespaces with the exit status and output returned.
    pub fn exec(&self, container: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", container];
        args.extend_from_slice(cmd);
        self.podman(&args)
    }

    /// The container's address on `network` as podman recorded it from the
    /// CNI result (IPv4 preferred, else IPv6); `None` if not attached.
    pub fn inspect_ip(&self, container: &str, network: &str) -> Option<std::net::IpAddr> {
        let out = self.podman(&[
            "inspect",
            "--type",
            "container",
            "--format",
            "{{json .NetworkSettings.Networks}}",
            container,
        ]);
        if !out.status.success() {
            return None;
        }
        let nets: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let net = nets.get(network)?;
        ["IPAddress", "GlobalIPv6Address"]
            .iter()
            .filter_map(|k| net.get(k)?.as_str())
            .find_map(|s| s.parse().ok())
    }

    /// The container's stdout and stderr so far (`podman logs`).
    pub fn logs(&self, container: &str) -> String {
        let out = self.podman(&["logs", container]);
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        s
    }

    /// `podman rm --force --time 0`: kills the container at once (no 10 s
    /// SIGTERM grace: busybox as PID 1 ignores SIGTERM), runs CNI `DEL` and
    /// removes the container namespace and storage.
    pub fn rm_force(&self, container: &str) -> Result<(), String> {
        let out = self.podman(&["rm", "--force", "--time", "0", container]);
        if out.status.success() {
            Ok(())
        } else {
            Err(describe(&out, &format!("podman rm --force {container}")))
        }
    }

    /// Runs `podman <args>` with this instance's isolation flags and
    /// environment, inside the node namespace, stdin closed.
    pub fn podman(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap_or_else(|e| {
            panic!(
                "starting podman {} in netns {}: {e}",
                args.join(" "),
                self.node_netns
            )
        })
    }

    /// The [`Command`] behind [`Podman::podman`], for callers that need to
    /// stream output or change stdio.
    pub fn command(&self, args: &[&str]) -> Command {
        let b = |d: &str| self.base.join(d).into_os_string();
        let mut c = Command::new("podman");
        // A clean environment: no CONTAINER_HOST/CONTAINER_CONNECTION
        // (would make podman a remote client), no user XDG dirs, no
        // REGISTRY_AUTH_FILE; only what we set below.
        c.env_clear()
            .env("PATH", SYSTEM_PATH)
            .env("HOME", b("home"))
            // Big-file temp dir of c/image (`podman import` copies there).
            .env("TMPDIR", b("tmp"))
            // Read this file *instead of* /usr/share and /etc containers.conf.
            .env("CONTAINERS_CONF", b("containers.conf"))
            // Ignore any /etc/containers/storage.conf.
            .env("CONTAINERS_STORAGE_CONF", b("storage.conf"))
            // No search registries: nothing can trigger a pull attempt.
            .env("CONTAINERS_REGISTRIES_CONF", b("registries.conf"));
        for (k, v) in &self.env {
            c.env(k, v);
        }
        // The same settings as in containers.conf/storage.conf, also on the
        // command line: podman copies these flags into the exit command it
        // gives conmon, so the cleanup podman of an exited container sees
        // this instance too, and the command is readable in `ps`.
        //
        // Images, containers and libpod's bolt DB.
        c.arg("--root").arg(b("root"));
        // Storage run state (container pid files, conmon pid files).
        c.arg("--runroot").arg(b("runroot"));
        // Libpod state: exit files, the file locks, the "alive" marker.
        c.arg("--tmpdir").arg(b("tmp"));
        c.arg("--volumepath").arg(b("volumes"));
        // vfs: plain directories, no overlay mounts that could outlive a
        // crashed test (the busybox layer is 2 MB, copying it is free).
        c.args(["--storage-driver", "vfs"]);
        // The backend that runs CNI plugins (netavark is not installed).
        c.args(["--network-backend", "cni"]);
        // Where podman reads *.conflist (`--cni-config-dir` is the hidden
        // old name of this flag in 4.3).
        c.arg("--network-config-dir").arg(b("net.d"));
        // No systemd on these machines: podman writes cgroups (v1) itself.
        c.args(["--cgroup-manager", "cgroupfs"]);
        // Debian's podman runs runc (crun is not installed).
        c.args(["--runtime", "runc"]);
        // Events go to this instance's events.log, never to journald.
        c.args(["--events-backend", "file"]);
        c.args(args).stdin(Stdio::null());
        let fd = self.netns.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only
        // makes the setns(2) system call (async-signal-safe, no allocation);
        // `fd` stays open in the parent for the lifetime of `self` and is
        // inherited by the child.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        c
    }

    fn link_plugins(&self, src: &Path) {
        let entries: Vec<PathBuf> = if src.is_dir() {
            let mut v: Vec<PathBuf> = fs::read_dir(src)
                .unwrap_or_else(|e| panic!("reading plugin dir {}: {e}", src.display()))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            v
        } else if src.is_file() {
            vec![src.to_path_buf()]
        } else {
            panic!(
                "CNI plugin source {} is neither a directory nor a file",
                src.display()
            );
        };
        for entry in entries {
            // The link keeps the entry's name; it points at the resolved
            // binary so a relative symlink in `src` still works.
            let link = self
                .cni_bin_dir()
                .join(entry.file_name().expect("plugin file name"));
            let target = fs::canonicalize(&entry).unwrap_or(entry);
            if fs::symlink_metadata(&link).is_err() {
                symlink(&target, &link)
                    .unwrap_or_else(|e| panic!("linking {}: {e}", link.display()));
            }
        }
    }

    fn write_configs(&self) {
        let b = |d: &str| self.base.join(d).display().to_string();
        let conf = format!(
            r#"# Written by tweed-testkit (podman.rs) for one test's podman instance.
[containers]
# Containers started without --network get only loopback, never the
# built-in "podman" network (cni-podman0, 10.88.0.0/16).
netns = "none"
# Podman's default rlimits for containers (1048576 open files) exceed the
# hard limits allowed here: runc fails with "error setting rlimit type 7".
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
# Container output in a file under this instance's storage: `podman logs`
# works without journald (which is not running here).
log_driver = "k8s-file"

[network]
network_backend = "cni"
# The only way to choose the plugin directory in podman 4.3 (no CLI flag);
# it becomes CNI_PATH for the plugins.
cni_plugin_dirs = ["{bin}"]
network_config_dir = "{netd}"
# Only matters if the built-in network were used; keep it in the test range.
default_subnet = "10.244.255.0/24"

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
events_logfile_path = "{events}"
# File locks under tmp_dir instead of the system-wide /dev/shm/libpod_lock
# segment, which a fresh instance would otherwise reset ("refresh") under
# every other podman on the machine.
lock_type = "file"
tmp_dir = "{tmp}"
static_dir = "{root}/libpod"
volume_path = "{volumes}"
image_copy_tmp_dir = "{tmp}"
# No registry is reachable: never try to pull.
pull_policy = "never"
"#,
            bin = b("cni-bin"),
            netd = b("net.d"),
            events = b("events.log"),
            tmp = b("tmp"),
            root = b("root"),
            volumes = b("volumes"),
        );
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            b("root"),
            b("runroot")
        );
        let registries = "unqualified-search-registries = []\n";
        for (file, text) in [
            ("containers.conf", conf.as_str()),
            ("storage.conf", storage.as_str()),
            ("registries.conf", registries),
        ] {
            let path = self.base.join(file);
            fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // The storage is ours alone, so --all only hits this test's containers.
        // rm runs CNI DEL (in the node netns) and removes the container
        // namespaces (/run/netns/netns-*) and the shm mounts under root/.
        match self
            .command(&["rm", "--all", "--force", "--time", "0"])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "tweed-testkit: {}",
                describe(&out, "podman rm --all --force")
            ),
            Err(e) => eprintln!("tweed-testkit: podman rm --all --force: {e}"),
        }
        // conmon runs its exit command (`podman container cleanup`) after
        // `rm` returns; let those helpers finish before their directories go,
        // or they would recreate parts of them.
        wait_for_helpers(&self.base);
        // Whatever podman left mounted under our directory (normally
        // nothing) is detached before deleting, so remove_dir_all can never
        // descend into a mount.
        let mut mounts = mounts_under(&self.base);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for m in &mounts {
            if let Ok(c) = CString::new(m.as_os_str().as_encoded_bytes()) {
                // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        if !mounts_under(&self.base).is_empty() {
            eprintln!(
                "tweed-testkit: mounts remain under {}; not deleting it",
                self.base.display()
            );
        } else if std::env::var_os(KEEP_ENV).is_some() {
            eprintln!(
                "tweed-testkit: keeping {} ({KEEP_ENV} is set)",
                self.base.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.base) {
            eprintln!("tweed-testkit: removing {}: {e}", self.base.display());
        }
    }
}

/// Waits (up to 10 s) until no process mentions `base` on its command line
/// (conmon and the cleanup podman it starts do, via `--root`/`-b`); kills the
/// stragglers by pid after that. Such processes can only have been started
/// by this instance: `base` is unique.
fn wait_for_helpers(base: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = pids_mentioning(base);
        if pids.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for pid in pids {
                eprintln!(
                    "tweed-testkit: killing leftover process {pid} of {}",
                    base.display()
                );
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Live processes (other than us) whose command line contains `path`.
fn pids_mentioning(path: &Path) -> Vec<libc::pid_t> {
    let needle = path.as_os_str().as_encoded_bytes();
    let me = std::process::id() as libc::pid_t;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Mount points at or below `dir` in our mount namespace.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The busybox rootfs tarball, built once per machine (keyed by the
/// busybox binary's size and mtime) under `$TMPDIR/tweed-testkit/`.
fn busybox_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let meta = fs::metadata(BUSYBOX).unwrap_or_else(|e| {
            panic!("{BUSYBOX}: {e} (install busybox-static: scripts/install-deps.sh)")
        });
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let cache = std::env::temp_dir().join("tweed-testkit");
        mkdir(&cache);
        let tar = cache.join(format!("busybox-rootfs-v1-{}-{mtime}.tar", meta.len()));
        if tar.exists() {
            return tar;
        }
        let work = unique_dir("tweed-rootfs");
        let rootfs = work.join("rootfs");
        build_rootfs(&rootfs);
        // Built aside and renamed into place: concurrent builders (several
        // test binaries) never see a partial tarball.
        let partial = work.join("rootfs.tar");
        let out = Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&partial)
            .arg(".")
            .output()
            .expect("running tar");
        check(&out, "tar (busybox rootfs)");
        fs::rename(&partial, &tar).unwrap_or_else(|e| panic!("renaming to {}: {e}", tar.display()));
        let _ = fs::remove_dir_all(&work);
        tar
    })
    .clone()
}

fn build_rootfs(root: &Path) {
    for d in [
        "bin", "etc", "tmp", "proc", "sys", "dev", "root", "run", "var/www",
    ] {
        mkdir(&root.join(d));
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copying busybox");
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    check(&list, "busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
            symlink("busybox", root.join("bin").join(applet)).expect("applet symlink");
        }
    }
    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("var/www/index.html", "tweed-test-busybox\n"),
    ];
    for (f, text) in files {
        fs::write(root.join(f), text).expect("writing rootfs file");
    }
}

/// A new, empty directory `$TMPDIR/<prefix>-<pid>-<n>-<nanos>`. Short on
/// purpose: conmon's attach and exit paths live under it.
fn unique_dir(prefix: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos:x}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("creating {}: {e}", dir.display()),
        }
    }
}

fn mkdir(p: &Path) {
    fs::create_dir_all(p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
}

fn describe(out: &Output, what: &str) -> String {
    format!(
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

fn check(out: &Output, what: &str) {
    assert!(out.status.success(), "{}", describe(out, what));
}
