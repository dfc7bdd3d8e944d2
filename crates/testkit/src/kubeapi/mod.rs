//! A real Kubernetes control plane for tests: Debian's etcd and the
//! project's own build of kube-apiserver (`scripts/build-kubernetes.sh`,
//! the release `scripts/cluster.sh` runs), nothing else — no kubelet, no
//! controller-manager, no scheduler. Tests create Node objects themselves,
//! with the pod CIDRs kube-controller-manager would have allocated.
//!
//! Set up like the cluster's control plane (cluster/lib/control_plane.sh):
//! TLS everywhere (etcd too, client certificates required), one throwaway
//! CA, `--authorization-mode=RBAC`, service account tokens signed with the
//! fixture's own key. Each [`KubeApi`] has its own temporary directory
//! (certificates, etcd's data, logs, kubectl's cache) and its own free
//! ports on 127.0.0.1, so fixtures of tests running in parallel never
//! meet; dropping it stops both servers by their pids (also when the test
//! panics) and removes the directory. A test process killed outright takes
//! its servers with it (see [`daemon`]); the next fixture removes its
//! directory.
//!
//! [`KubeApi::apply_rbac`] applies a manifest's Namespace, ServiceAccount
//! and RBAC objects with the built kubectl, and [`KubeApi::token_kubeconfig`]
//! gives a kubeconfig with a service account's token (`kubectl create
//! token`): code under test then runs with exactly the permissions the
//! manifest grants.
//!
//! Outages: [`KubeApi::stop_apiserver`] / [`KubeApi::start_apiserver`]
//! (same port, same etcd), [`KubeApi::compact_etcd`].

mod binaries;
pub mod certs;
pub mod daemon;
mod ports;
mod rbac;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use binaries::{kube_bin, repo_root};
pub use certs::{Certs, Credentials};
use daemon::Daemon;
pub use rbac::ServiceAccount;

use crate::etcd::{self, ETCD_BIN, ETCDCTL_BIN};

/// How long a server may take to come up: a second or two here, much more
/// on a loaded CI machine.
const START_DEADLINE: Duration = Duration::from_secs(90);
/// Starts retried on fresh ports when another process took one first.
const START_ATTEMPTS: usize = 4;
/// Services' range (never routed: nothing here proxies Services).
const SERVICE_CIDR: &str = "198.19.0.0/24";

/// How the control plane is set up.
#[derive(Debug, Clone)]
pub struct KubeApiOpts {
    /// kube-apiserver's watch cache (`--watch-cache`), on in every real
    /// cluster. Off, watches are served straight from etcd, so a watch
    /// from a revision etcd compacted away is answered 410 Gone; with the
    /// cache, the API server keeps its own window of events and answers
    /// from it whatever etcd compacted.
    pub watch_cache: bool,
}

impl Default for KubeApiOpts {
    fn default() -> Self {
        KubeApiOpts { watch_cache: true }
    }
}

/// etcd + kube-apiserver, stopped and removed on drop.
#[derive(Debug)]
pub struct KubeApi {
    dir: PathBuf,
    bin: PathBuf,
    certs: Certs,
    opts: KubeApiOpts,
    etcd_port: u16,
    api_port: u16,
    admin_kubeconfig: PathBuf,
    // Field order is drop order: the API server before its etcd.
    apiserver: Option<Daemon>,
    etcd: Option<Daemon>,
}

impl KubeApi {
    /// etcd and kube-apiserver with the watch cache on, ready to serve.
    pub fn start() -> KubeApi {
        KubeApi::start_with(KubeApiOpts::default())
    }

    pub fn start_with(opts: KubeApiOpts) -> KubeApi {
        let bin = kube_bin().to_path_buf();
        remove_dead_processes_dirs();
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let certs = certs::make(&dir.join("pki"));
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        let mut api = KubeApi {
            dir,
            bin,
            certs,
            opts,
            etcd_port: 0,
            api_port: 0,
            admin_kubeconfig,
            apiserver: None,
            etcd: None,
        };
        api.start_etcd();
        api.start_apiserver_on_a_free_port();
        api
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    pub fn port(&self) -> u16 {
        self.api_port
    }

    pub fn certs(&self) -> &Certs {
        &self.certs
    }

    /// The fixture's scratch directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A kubeconfig for the cluster admin (`system:masters`).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// Writes a kubeconfig for this server, trusting `ca`, as `name` in
    /// the fixture's directory.
    pub fn write_kubeconfig(&self, name: &str, ca: &Path, user: &Credentials<'_>) -> PathBuf {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&path, certs::kubeconfig(&self.server(), ca, user))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    pub fn apiserver_pid(&self) -> Option<u32> {
        self.apiserver.as_ref().and_then(Daemon::pid)
    }

    pub fn etcd_pid(&self) -> Option<u32> {
        self.etcd.as_ref().and_then(Daemon::pid)
    }

    /// The built kubectl as the admin, with its discovery cache in the
    /// fixture's directory (not in $HOME).
    pub fn kubectl_cmd(&self) -> Command {
        self.kubectl_as(&self.admin_kubeconfig)
    }

    /// The built kubectl with another kubeconfig.
    pub fn kubectl_as(&self, kubeconfig: &Path) -> Command {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!(
                "--cache-dir={}",
                self.dir.join("kubectl-cache").display()
            ))
            .arg("--request-timeout=30s");
        cmd
    }

    /// Runs kubectl as the admin, `stdin` on its standard input.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run(self.kubectl_cmd().args(args), stdin)
    }

    /// [`KubeApi::kubectl`], panicking with its output (and the API
    /// server's log) on failure; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.kubectl_in_ok(args, None)
    }

    pub fn kubectl_in_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}\n--- kube-apiserver log (tail) ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.apiserver_log_tail(3000)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get <what> -o json` as the admin.
    pub fn get_json(&self, what: &[&str]) -> Value {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl_ok(&args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}: {out}"))
    }

    /// Creates Node `name` as kubelet registers one, with `pod_cidrs` set
    /// as kube-controller-manager's node IPAM sets them (none: not yet).
    pub fn create_node(&self, name: &str, pod_cidrs: &[&str]) {
        let mut spec = serde_json::json!({});
        if let Some(first) = pod_cidrs.first() {
            spec = serde_json::json!({"podCIDR": first, "podCIDRs": pod_cidrs});
        }
        let node = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": spec,
        });
        self.kubectl_in_ok(&["create", "-f", "-"], Some(&node.to_string()));
    }

    /// Sets a node's pod CIDRs once, as node IPAM does (the API server
    /// allows it only from none).
    pub fn set_pod_cidrs(&self, name: &str, pod_cidrs: &[&str]) {
        self.patch_node(
            name,
            &serde_json::json!({"spec": {"podCIDR": pod_cidrs[0], "podCIDRs": pod_cidrs}}),
        );
    }

    /// A JSON merge patch of Node `name` (the main resource) as the admin.
    pub fn patch_node(&self, name: &str, patch: &Value) {
        self.kubectl_ok(&[
            "patch",
            "node",
            name,
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]);
    }

    /// Runs etcdctl (v3 API) against the fixture's etcd with its client
    /// certificate.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(ETCDCTL_BIN);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=https://127.0.0.1:{}", self.etcd_port))
            .arg(format!("--cacert={}", self.certs.ca.display()))
            .arg(format!("--cert={}", self.certs.etcd_client_cert.display()))
            .arg(format!("--key={}", self.certs.etcd_client_key.display()))
            .arg("--dial-timeout=2s")
            .args(args);
        run(&mut cmd, None)
    }

    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        etcd::stdout_of_success(args, &self.etcdctl(args))
    }

    /// etcd's current revision: kube-apiserver's resourceVersions are these.
    pub fn etcd_revision(&self) -> u64 {
        let rev = etcd::revision_of_status(&self.etcdctl_ok(etcd::STATUS_ARGS));
        u64::try_from(rev).expect("etcd revisions are positive")
    }

    /// Compacts etcd's history up to its current revision (what the API
    /// server itself does every five minutes); returns that revision.
    pub fn compact_etcd(&self) -> u64 {
        let rev = self.etcd_revision();
        self.etcdctl_ok(&["compact", &rev.to_string(), "--physical"]);
        rev
    }

    /// Stops kube-apiserver (SIGTERM by its pid, SIGKILL if it lingers);
    /// etcd keeps running.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut d) = self.apiserver.take() {
            d.stop();
        }
    }

    /// Starts kube-apiserver again on the same port and waits until it is
    /// ready.
    pub fn start_apiserver(&mut self) {
        assert!(self.apiserver.is_none(), "kube-apiserver is still running");
        if let Err(e) = self.try_start_apiserver() {
            panic!(
                "kube-apiserver did not come back on port {}: {e}",
                self.api_port
            );
        }
    }

    /// The last `bytes` of kube-apiserver's log.
    pub fn apiserver_log_tail(&self, bytes: u64) -> String {
        self.apiserver
            .as_ref()
            .map(|d| d.log_tail(bytes))
            .unwrap_or_default()
    }

    fn start_etcd(&mut self) {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let (client, peer) = (ports::free_port(), ports::free_port());
            let data = self.dir.join("etcd");
            let _ = std::fs::remove_dir_all(&data);
            let client_url = format!("https://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut cmd = Command::new(ETCD_BIN);
            cmd.arg("--name=test")
                .arg(format!("--data-dir={}", data.display()))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster=test={peer_url}"))
                .arg(format!("--cert-file={}", self.certs.etcd_cert.display()))
                .arg(format!("--key-file={}", self.certs.etcd_key.display()))
                .arg(format!("--trusted-ca-file={}", self.certs.ca.display()))
                .arg("--client-cert-auth")
                .arg("--log-level=warn");
            self.etcd_port = client;
            let mut etcd = Daemon::spawn("etcd", cmd, &self.dir.join("etcd.log"));
            let healthy = wait_until(&mut etcd, || {
                self.etcdctl(&["endpoint", "health", "--command-timeout=1s"])
                    .status
                    .success()
            });
            match healthy {
                Ok(()) => {
                    self.etcd = Some(etcd);
                    return;
                }
                Err(e) => last = format!("{e}\n{}", etcd.log_tail(3000)),
            }
            if !last.contains("address already in use") {
                break;
            }
        }
        panic!("etcd did not start: {last}");
    }

    fn start_apiserver_on_a_free_port(&mut self) {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            self.api_port = ports::free_port();
            match self.try_start_apiserver() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            if !last.contains("address already in use") {
                break;
            }
        }
        panic!("kube-apiserver did not start: {last}");
    }

    fn try_start_apiserver(&mut self) -> Result<(), String> {
        std::fs::write(
            &self.admin_kubeconfig,
            certs::kubeconfig(
                &self.server(),
                &self.certs.ca,
                &Credentials::Cert {
                    cert: &self.certs.admin_cert,
                    key: &self.certs.admin_key,
                },
            ),
        )
        .map_err(|e| format!("write the admin kubeconfig: {e}"))?;
        let c = &self.certs;
        let mut cmd = Command::new(self.bin.join("kube-apiserver"));
        cmd.arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={}", self.api_port))
            .arg(format!(
                "--etcd-servers=https://127.0.0.1:{}",
                self.etcd_port
            ))
            .arg(format!("--etcd-cafile={}", c.ca.display()))
            .arg(format!("--etcd-certfile={}", c.etcd_client_cert.display()))
            .arg(format!("--etcd-keyfile={}", c.etcd_client_key.display()))
            .arg(format!("--tls-cert-file={}", c.apiserver_cert.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                c.apiserver_key.display()
            ))
            .arg(format!("--client-ca-file={}", c.ca.display()))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", c.sa_pub.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                c.sa_key.display()
            ))
            .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
            .arg("--authorization-mode=RBAC")
            .arg("--endpoint-reconciler-type=lease")
            .arg(format!("--watch-cache={}", self.opts.watch_cache))
            // On SIGTERM, end open watches within 2 s: by default the
            // server waits a minute for watch connections to go idle
            // before it gives up and exits.
            .arg("--shutdown-watch-termination-grace-period=2s")
            .arg("--profiling=false")
            .arg(format!(
                "--cert-dir={}",
                self.dir.join("apiserver-certs").display()
            ));
        let mut api = Daemon::spawn("kube-apiserver", cmd, &self.dir.join("apiserver.log"));
        let ready = wait_until(&mut api, || {
            self.kubectl(&["get", "--raw", "/readyz"], None)
                .status
                .success()
        });
        match ready {
            Ok(()) => {
                self.apiserver = Some(api);
                Ok(())
            }
            Err(e) => Err(format!("{e}\n{}", api.log_tail(4000))),
        }
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        // Servers first (they write into the directory), then the files.
        self.apiserver = None;
        self.etcd = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `<temp>/tweed-kubeapi-<pid>-<n>`: each fixture's directory.
const DIR_PREFIX: &str = "tweed-kubeapi-";

/// Removes the directories of fixtures whose test process no longer runs:
/// one killed outright (SIGKILL, a CI timeout) could not drop its fixture,
/// and its servers died with it (see [`daemon`]), but the files stayed.
fn remove_dead_processes_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Polls `ready` every 100 ms until it holds, the daemon exits or
/// [`START_DEADLINE`] passes.
fn wait_until(d: &mut Daemon, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Some(status) = d.exited() {
            return Err(format!("exited ({status}) while starting"));
        }
        if ready() {
            return Ok(());
        }
        if Instant::now() > deadline {
            d.stop();
            return Err(format!("not ready after {START_DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("write to {:?}: {e}", cmd.get_program()));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {:?}: {e}", cmd.get_program()))
}
