//! Driving the real Kubernetes cluster of `scripts/cluster.sh` from tests:
//! bring it up (and down again when the handle drops), run `kubectl` as
//! its admin, wait for conditions, look inside a node (its network
//! namespace and its own mount namespace, where /var/lib/cni and
//! /var/log/tweed are the node's), and on failure print the kubelet,
//! containerd and tweedd log lines that explain it.

pub mod agent_usage;
pub mod containerd_metrics;
pub mod e2e;
pub mod flannel;
pub mod install;
pub mod iperf;
pub mod pods;
pub mod ready;
pub mod side_by_side;
pub mod stream;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where `scripts/cluster.sh` keeps its state and pids (its defaults).
pub const STATE: &str = "/var/lib/tweed-cluster";
pub const RUN: &str = "/run/tweed-cluster";
/// The control plane's network namespace, where the API server listens.
pub const CP_NS: &str = "tkc-cp";

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/cluster has a repository root")
        .to_path_buf()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running cluster; `scripts/cluster.sh down` when dropped.
pub struct Cluster {
    pub nodes: usize,
    kubectl: PathBuf,
    /// Held while this cluster exists: there is one cluster per machine, so
    /// tests (threads or processes) that want one take turns.
    _turn: File,
}

/// Waits for the machine's one cluster to be free (an exclusive `flock`,
/// which also excludes other open file descriptions in this process).
fn take_turn() -> File {
    std::fs::create_dir_all(RUN).expect("create the cluster's run directory");
    let file = File::create(format!("{RUN}.lock")).expect("create the cluster lock file");
    // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    file
}

impl Cluster {
    /// A fresh cluster of `nodes` nodes: whatever an earlier run left is
    /// taken down first. Panics with the script's output if `up` fails.
    pub fn up(nodes: usize) -> Cluster {
        Cluster::up_with(nodes, &[])
    }

    /// As [`Cluster::up`], with more arguments for `scripts/cluster.sh up`
    /// (e.g. `--no-pod-cidrs`).
    pub fn up_with(nodes: usize, args: &[&str]) -> Cluster {
        assert_eq!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() },
            0,
            "the cluster makes namespaces and mounts: run as root"
        );
        let turn = take_turn();
        let script = repo_root().join("scripts/cluster.sh");
        let _ = Command::new(&script).arg("down").output();
        let started = Instant::now();
        let out = Command::new(&script)
            .args(["up", "--nodes", &nodes.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/cluster.sh");
        let cluster = Cluster {
            nodes,
            kubectl: PathBuf::from(STATE).join("bin/kubectl"),
            _turn: turn,
        };
        assert!(
            out.status.success(),
            "cluster.sh up failed:\n{}",
            text(&out)
        );
        println!(
            "cluster up ({nodes} nodes) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        cluster
    }

    /// Node `i`'s name (1-based), as cluster.sh names them.
    pub fn node_name(&self, i: usize) -> String {
        format!("tweed-n{i}")
    }

    /// `kubectl ARGS` as the cluster admin; the whole output.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .env("KUBECONFIG", format!("{STATE}/pki/admin.kubeconfig"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// `kubectl ARGS`; panics unless it succeeds; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl ARGS -o json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&full)).expect("kubectl printed JSON")
    }

    /// `kubectl apply -f -` with `yaml` on stdin.
    pub fn apply(&self, yaml: &str) {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .env("KUBECONFIG", format!("{STATE}/pki/admin.kubeconfig"))
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl apply");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write manifest");
        let out = child.wait_with_output().expect("kubectl apply");
        assert!(out.status.success(), "kubectl apply:\n{}", text(&out));
    }

    /// Runs `argv` inside node `i`: its network namespace, and the mount,
    /// UTS and PID namespaces of its process tree.
    pub fn on_node(&self, i: usize, argv: &[&str]) -> Output {
        self.node_command(i, argv).output().expect("run nsenter")
    }

    /// The command [`Cluster::on_node`] runs, to spawn it instead.
    pub fn node_command(&self, i: usize, argv: &[&str]) -> Command {
        let init = self.node_init_pid(i);
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &init.to_string(), "-n", "-m", "-u", "-p", "--"])
            .args(argv)
            .stdin(Stdio::null());
        cmd
    }

    /// The number of the node named `name` (`tweed-n2` is 2).
    pub fn node_index(&self, name: &str) -> usize {
        name.strip_prefix("tweed-n")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name} is not one of cluster.sh's nodes"))
    }

    /// Switches node `i` off (`scripts/cluster.sh stop-node`): kubelet,
    /// containerd and its containers end; its network namespace stays.
    pub fn stop_node(&self, i: usize) {
        self.script(&["stop-node", &i.to_string()]);
    }

    /// A fresh machine joins as node `i` (`scripts/cluster.sh join-node`),
    /// with `labels` (`key=value`) given by its kubelet at registration;
    /// returns once its Node object exists.
    pub fn join_node(&self, i: usize, labels: &[&str]) {
        let index = i.to_string();
        let mut args = vec!["join-node", index.as_str()];
        for label in labels {
            args.extend(["--label", label]);
        }
        self.script(&args);
    }

    /// Node `i` retired for good (`scripts/cluster.sh remove-node`): its
    /// processes end, its Node object is deleted, its disk and network
    /// namespace are wiped.
    pub fn remove_node(&self, i: usize) {
        self.script(&["remove-node", &i.to_string()]);
    }

    /// Stops the API server (`scripts/cluster.sh stop-apiserver`).
    pub fn stop_apiserver(&self) {
        self.script(&["stop-apiserver"]);
    }

    /// Starts whatever of the cluster is not running (`up` again).
    pub fn start_missing(&self) {
        self.script(&["up", "--nodes", &self.nodes.to_string()]);
    }

    fn script(&self, args: &[&str]) {
        let out = Command::new(repo_root().join("scripts/cluster.sh"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/cluster.sh");
        assert!(out.status.success(), "cluster.sh {args:?}:\n{}", text(&out));
    }

    /// `etcdctl ARGS` against the cluster's etcd, as tweed's client
    /// certificate would (from the control plane's namespace).
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let pki = format!("{STATE}/pki");
        Command::new("ip")
            .args(["netns", "exec", CP_NS, "etcdctl"])
            .args(["--endpoints", "https://127.0.0.1:2379"])
            .args(["--cacert", &format!("{pki}/ca.crt")])
            .args(["--cert", &format!("{pki}/etcd-client-tweed.crt")])
            .args(["--key", &format!("{pki}/etcd-client-tweed.key")])
            .args(args)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .output()
            .expect("run etcdctl")
    }

    /// The pid of node `i`'s init (the child of the `unshare` whose pid
    /// cluster.sh recorded).
    pub fn node_init_pid(&self, i: usize) -> u32 {
        let file = format!("{RUN}/node-{}.pid", self.node_name(i));
        let unshare: u32 = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .trim()
            .parse()
            .expect("a pid");
        let children = format!("/proc/{unshare}/task/{unshare}/children");
        std::fs::read_to_string(&children)
            .unwrap_or_else(|e| panic!("{children}: {e}"))
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("node {i}'s unshare ({unshare}) has no child"))
    }

    /// Polls `cond` every half second; panics with `what` and the cluster's
    /// explanation after `secs`.
    pub fn wait_until(&self, secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond() {
            if Instant::now() >= deadline {
                panic!("after {secs}s still not: {what}\n{}", self.explain());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// What a failing test prints: pods and events, the last lines of every
    /// node's kubelet, containerd and tweedd logs that report trouble, and
    /// tweed's urunc hook errors.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        for args in [
            &["get", "nodes", "-o", "wide"][..],
            &["get", "pods", "-A", "-o", "wide"],
            &["get", "events", "-A", "--sort-by=.lastTimestamp"],
        ] {
            out.push_str(&format!(
                "--- kubectl {}\n{}\n",
                args.join(" "),
                text(&self.kubectl(args))
            ));
        }
        let tweedd = self.kubectl(&[
            "-n",
            "kube-tweed",
            "logs",
            "-l",
            "app=tweed",
            "--tail",
            "20",
            "--prefix",
        ]);
        out.push_str(&format!("--- tweedd\n{}\n", text(&tweedd)));
        for i in 1..=self.nodes {
            let name = self.node_name(i);
            for part in ["kubelet", "containerd"] {
                let path = format!("{STATE}/logs/{name}-{part}.log");
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                let trouble: Vec<&str> = log
                    .lines()
                    .filter(|l| l.starts_with('E') || l.contains("level=error"))
                    .collect();
                let tail = &trouble[trouble.len().saturating_sub(8)..];
                out.push_str(&format!("--- {path} (errors)\n{}\n", tail.join("\n")));
            }
            // tweed's urunc hook (docs/urunc.md) keeps its errors there.
            let hook = self.on_node(i, &["cat", "/run/tweed/urunc-hook.log"]);
            if hook.status.success() {
                out.push_str(&format!(
                    "--- {name}: tweed urunc-hook errors\n{}\n",
                    text(&hook)
                ));
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.explain());
        }
        if std::env::var_os("TWEED_CLUSTER_KEEP").is_some() {
            eprintln!("TWEED_CLUSTER_KEEP: the cluster stays up (scripts/cluster.sh down)");
            return;
        }
        let _ = Command::new(repo_root().join("scripts/cluster.sh"))
            .arg("down")
            .output();
    }
}
