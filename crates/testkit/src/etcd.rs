//! A real etcd for tests and the lab: Debian's `etcd-server` (3.4) run
//! inside a named network namespace.
//!
//! The server is entered into the namespace between fork and exec (like
//! nsenter), so it listens only there and the test's traffic never leaves
//! the namespaces the test created. Each server has its own scratch
//! directory (data dir, log, certificates), removed on drop; the process is
//! killed by its pid, never by name, so parallel tests and a developer's
//! own etcd are left alone.
//!
//! Options: TLS (a throwaway CA, a server certificate for the listen IP,
//! client certificates, and `--client-cert-auth`) and authentication (a
//! `root` user with a password, `etcdctl auth enable`). [`EtcdServer::stop`]
//! and [`EtcdServer::start_again`] keep the data dir, for outage tests.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use crate::pki::TlsFiles;

/// Debian's etcd server binary (`etcd-server`).
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// Debian's etcd command-line client (`etcd-client`).
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";

/// How long a start may take before the test fails: etcd needs well under a
/// second here, but a loaded CI machine is slower.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// How an [`EtcdServer`] is set up.
#[derive(Debug, Clone)]
pub struct EtcdOpts {
    /// Client port (`http(s)://<ip>:<client_port>`).
    pub client_port: u16,
    /// Peer (raft) port; nothing talks to it, but etcd must listen somewhere.
    pub peer_port: u16,
    /// Serve TLS with a throwaway CA and require client certificates.
    pub tls: bool,
    /// Enable authentication with user `root` and this password.
    pub root_password: Option<String>,
    /// Anything else to pass to etcd (e.g. `--auto-compaction-retention`).
    pub extra_args: Vec<String>,
}

impl Default for EtcdOpts {
    fn default() -> Self {
        EtcdOpts {
            client_port: 2379,
            peer_port: 2380,
            tls: false,
            root_password: None,
            extra_args: Vec::new(),
        }
    }
}

/// A running (or stopped, see [`EtcdServer::stop`]) etcd in a namespace.
#[derive(Debug)]
pub struct EtcdServer {
    netns: String,
    listen_ip: IpAddr,
    opts: EtcdOpts,
    /// Member name, and `--initial-cluster` (every member's name=peer URL).
    name: String,
    initial_cluster: String,
    /// Scratch directory: `data/`, `etcd.log`, `tls/`.
    dir: PathBuf,
    tls: Option<TlsFiles>,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts etcd in the named namespace `netns`, listening on
    /// `listen_ip`, and waits until it answers `etcdctl endpoint health`.
    /// Panics (with etcd's log) if it does not come up.
    pub fn start(netns: &str, listen_ip: IpAddr, opts: EtcdOpts) -> EtcdServer {
        let mut server = EtcdServer::prepare(netns, listen_ip, opts, "tweed-test".into());
        let peer_url = server.peer_url();
        server.initial_cluster = format!("{}={peer_url}", server.name);
        server.spawn();
        server.wait_healthy();
        if let Some(password) = server.opts.root_password.clone() {
            server.enable_auth(&password);
        }
        server
    }

    /// Starts a cluster of `members` etcds on `listen_ip`; member `i` uses
    /// the client and peer ports of `opts` plus `100 * i`. All members are
    /// started before any is waited for: none is healthy without a quorum.
    /// TLS is not supported for clusters (each member would get its own CA).
    pub fn start_cluster(
        netns: &str,
        listen_ip: IpAddr,
        members: usize,
        opts: EtcdOpts,
    ) -> Vec<EtcdServer> {
        assert!(!opts.tls, "start_cluster does not support TLS");
        let mut servers: Vec<EtcdServer> = (0..members)
            .map(|i| {
                let step = u16::try_from(100 * i).expect("member count");
                let member_opts = EtcdOpts {
                    client_port: opts.client_port + step,
                    peer_port: opts.peer_port + step,
                    ..opts.clone()
                };
                EtcdServer::prepare(netns, listen_ip, member_opts, format!("tweed-test-{i}"))
            })
            .collect();
        let initial_cluster = servers
            .iter()
            .map(|s| format!("{}={}", s.name, s.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for s in &mut servers {
            s.initial_cluster = initial_cluster.clone();
            s.spawn();
        }
        for s in &mut servers {
            s.wait_healthy();
        }
        if let Some(password) = opts.root_password.clone() {
            servers[0].enable_auth(&password);
        }
        servers
    }

    /// A member with its scratch directory (and certificates), not started.
    fn prepare(netns: &str, listen_ip: IpAddr, opts: EtcdOpts, name: String) -> EtcdServer {
        crate::require_root();
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tweed-etcd-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let tls = opts
            .tls
            .then(|| crate::pki::generate(&dir.join("tls"), listen_ip));
        EtcdServer {
            netns: netns.to_string(),
            listen_ip,
            opts,
            name,
            initial_cluster: String::new(),
            dir,
            tls,
            child: None,
        }
    }

    /// The client URL: `http://<ip>:<port>`, or `https://` with TLS.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host_port(self.opts.client_port))
    }

    /// `host:port` of the client URL (IPv6 in brackets), as tweed's
    /// `etcd://` URLs want it.
    pub fn client_addr(&self) -> String {
        self.host_port(self.opts.client_port)
    }

    /// The certificates, when started with `tls`.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The root password, when started with authentication.
    pub fn root_password(&self) -> Option<&str> {
        self.opts.root_password.as_deref()
    }

    /// The etcd process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Kills etcd (SIGKILL, like a crash or a power cut) and reaps it; the
    /// data dir stays for [`EtcdServer::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill signals this process by its pid.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same data dir and waits until it is healthy.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "etcd is still running");
        self.spawn();
        self.wait_healthy();
    }

    /// Runs `etcdctl` in the server's namespace with the endpoint, TLS and
    /// root credentials filled in.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let mut cmd = self.etcdctl_cmd();
        cmd.args(args);
        run_in_netns(&mut cmd, &self.netns)
    }

    /// [`EtcdServer::etcdctl`], panicking with its output on failure;
    /// returns stdout.
    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        stdout_of_success(args, &self.etcdctl(args))
    }

    /// The store's current revision (from `etcdctl endpoint status`).
    pub fn revision(&self) -> i64 {
        revision_of_status(&self.etcdctl_ok(STATUS_ARGS))
    }

    /// The last `bytes` of etcd's log, for failure messages.
    pub fn log_tail(&self, bytes: u64) -> String {
        let Ok(mut f) = File::open(self.dir.join("etcd.log")) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(bytes)));
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        s
    }

    fn host_port(&self, port: u16) -> String {
        match self.listen_ip {
            IpAddr::V4(ip) => format!("{ip}:{port}"),
            IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        }
    }

    /// Peers talk plain http: the tests are about the client side.
    fn peer_url(&self) -> String {
        format!("http://{}", self.host_port(self.opts.peer_port))
    }

    fn spawn(&mut self) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://{}", self.host_port(self.opts.client_port));
        let peer_url = self.peer_url();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap_or_else(|e| panic!("open etcd log: {e}"));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("dup etcd log: {e}"));
        let mut cmd = Command::new(ETCD_BIN);
        cmd.arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=tweed-test")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--trusted-ca-file={}", tls.ca_cert.display()))
                .arg(format!("--cert-file={}", tls.server_cert.display()))
                .arg(format!("--key-file={}", tls.server_key.display()))
                .arg("--client-cert-auth");
        }
        cmd.args(&self.opts.extra_args);
        let ns = open_netns(&self.netns);
        enter_netns_on_exec(&mut cmd, &ns);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {ETCD_BIN}: {e} (apt-get install etcd-server)"));
        drop(ns);
        self.child = Some(child);
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "etcd exited ({status}) while starting:\n{}",
                    self.log_tail(4000)
                );
            }
            let out = self.etcdctl(&["endpoint", "health", "--command-timeout=1s"]);
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "etcd in {} not healthy after {START_DEADLINE:?}: {}{}\n{}",
                    self.netns,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    self.log_tail(4000)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `root` with the root role, then `auth enable` (etcd refuses to enable
    /// authentication without a root user holding the root role).
    fn enable_auth(&self, password: &str) {
        let pw = format!("--new-user-password={password}");
        self.etcdctl_plain(&["user", "add", "root", &pw, "--interactive=false"]);
        // 3.4 may already have created the role along with the user.
        let _ = self.etcdctl(&["role", "add", "root"]);
        self.etcdctl_plain(&["user", "grant-role", "root", "root"]);
        self.etcdctl_plain(&["auth", "enable"]);
    }

    /// etcdctl without the root credentials (before auth is enabled).
    fn etcdctl_plain(&self, args: &[&str]) -> String {
        let mut cmd = self.etcdctl_base();
        cmd.args(args);
        stdout_of_success(args, &run_in_netns(&mut cmd, &self.netns))
    }

    fn etcdctl_base(&self) -> Command {
        let mut cmd = Command::new(ETCDCTL_BIN);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--dial-timeout=2s");
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cacert={}", tls.ca_cert.display()))
                .arg(format!("--cert={}", tls.client_cert.display()))
                .arg(format!("--key={}", tls.client_key.display()));
        }
        cmd
    }

    fn etcdctl_cmd(&self) -> Command {
        let mut cmd = self.etcdctl_base();
        if let Some(pw) = &self.opts.root_password {
            cmd.arg("--user=root").arg(format!("--password={pw}"));
        }
        cmd
    }
}

/// `etcdctl` arguments for the status [`revision_of_status`] reads.
pub const STATUS_ARGS: &[&str] = &["endpoint", "status", "-w", "json"];

/// The stdout of an etcdctl run with `args`, which must have succeeded
/// (else a panic with its output).
pub fn stdout_of_success(args: &[&str], out: &Output) -> String {
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The store's revision in the output of `etcdctl` [`STATUS_ARGS`].
pub fn revision_of_status(out: &str) -> i64 {
    let v: serde_json::Value =
        serde_json::from_str(out).unwrap_or_else(|e| panic!("etcdctl endpoint status: {e}: {out}"));
    v[0]["Status"]["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no revision in {out}"))
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn open_netns(name: &str) -> File {
    File::open(format!("/run/netns/{name}")).unwrap_or_else(|e| panic!("open netns {name}: {e}"))
}

/// Makes `cmd`'s child enter the namespace `ns` before it execs.
fn enter_netns_on_exec(cmd: &mut Command, ns: &File) {
    let fd = ns.as_raw_fd();
    // SAFETY: setns is async-signal-safe; the caller keeps `ns` (and so
    // the descriptor) open until spawn has returned.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs `cmd` to completion inside the named namespace.
fn run_in_netns(cmd: &mut Command, netns: &str) -> Output {
    let ns = open_netns(netns);
    enter_netns_on_exec(cmd, &ns);
    cmd.output()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()))
}
