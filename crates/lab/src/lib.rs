//! `tweed-lab`: an emulated tweed cluster on one machine.
//!
//! N "nodes" are network namespaces cabled to an emulated underlay (a
//! bridge in its own namespace, 198.18.0.0/24 and fd00:198::/64); each runs
//! a real `tweedd` with a real store (the file store, Debian's etcd
//! started in the underlay namespace, or the Kubernetes API as served by
//! the workspace's fake API server, see [`kube`]), and pods are namespaces attached by
//! the real `tweed` plugin. Everything a lab makes is recorded under
//! `/run/tweed-lab/<name>/`, so labs with different names never collide and
//! `down` removes every namespace, process and file.

pub mod capabilities;
pub mod check;
pub mod converge;
pub mod kube;
mod membership;
pub mod pods;
pub mod procs;
pub mod segments;
pub mod state;
pub mod topology;
pub mod topology_file;

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use thiserror::Error;
use tweed_netlink::NetNs;

pub use state::{LabState, NodeState, PodState, SegmentPort};

#[derive(Debug, Error)]
pub enum LabError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Netlink(#[from] tweed_netlink::NetlinkError),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Usage(String),
    #[error("tweed {command} for {pod} failed: {output}")]
    Plugin {
        command: String,
        pod: String,
        output: String,
    },
}

impl LabError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> LabError {
        LabError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Where the programs the lab runs are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub tweedd: PathBuf,
    pub plugin: PathBuf,
    pub etcd: PathBuf,
}

impl Binaries {
    /// `tweedd` and `tweed` next to `exe` (the usual `target/<profile>/`),
    /// Debian's etcd.
    pub fn beside(exe: &Path) -> Binaries {
        let dir = exe.parent().unwrap_or(Path::new("."));
        Binaries {
            tweedd: dir.join("tweedd"),
            plugin: dir.join("tweed"),
            etcd: PathBuf::from("/usr/bin/etcd"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LabSpec {
    pub name: String,
    pub nodes: usize,
    /// `vxlan`, `geneve`, `host-gw`, `srv6` or `wireguard`.
    pub backend: String,
    /// `file`, `etcd` or `kube`.
    pub store: String,
    pub pods_per_node: usize,
    pub ip_masq: bool,
    /// Dual-stack pods (IPv6 network fd00:10:244::/56 next to 10.244.0.0/16).
    pub ipv6: bool,
    /// Underlay subnets behind the lab's router; nodes take turns. 1 is
    /// one L2 segment, more a routed underlay.
    pub underlay_subnets: u8,
    /// Keys merged into the generated net-conf.json (e.g. `SubnetMax`).
    pub net_conf_overrides: serde_json::Map<String, serde_json::Value>,
    pub binaries: Binaries,
}

pub const ETCD_PORT: u16 = 2379;
const HEALTH_PORT: u16 = 9695;
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running lab.
pub struct Lab {
    pub state: LabState,
    pub binaries: Binaries,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 16
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
}

/// Told about each step of [`Lab::up_reporting`] once it is done: what
/// was built or started, and how long it took.
pub type Progress<'a> = &'a mut dyn FnMut(&str, Duration);

impl Lab {
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        Lab::up_reporting(spec, &mut |_, _| {})
    }

    /// [`Lab::up`], reporting each step to `progress` (`tweedctl lab up`
    /// prints them: a lab takes seconds to minutes to build).
    pub fn up_reporting(spec: &LabSpec, progress: Progress<'_>) -> Result<Lab, LabError> {
        if !valid_name(&spec.name) {
            return Err(LabError::Usage(format!(
                "lab name {:?}: letters, digits and '-', starting with a letter, at most 16 characters",
                spec.name
            )));
        }
        if spec.nodes == 0 || spec.nodes > topology::MAX_NODES {
            return Err(LabError::Usage(format!(
                "--nodes must be 1..={}",
                topology::MAX_NODES
            )));
        }
        if !["vxlan", "geneve", "host-gw", "srv6", "wireguard"].contains(&spec.backend.as_str()) {
            return Err(LabError::Usage(format!(
                "--backend {:?}: vxlan, geneve, host-gw, srv6 or wireguard",
                spec.backend
            )));
        }
        if !["file", "etcd", "kube"].contains(&spec.store.as_str()) {
            return Err(LabError::Usage(format!(
                "--store {:?}: file, etcd or kube",
                spec.store
            )));
        }
        let fake_api = kube::binary(&spec.binaries.tweedd);
        let mut needed = vec![
            ("tweedd", &spec.binaries.tweedd),
            ("tweed", &spec.binaries.plugin),
        ];
        if spec.store == "kube" {
            needed.push(("fake-kube-apiserver", &fake_api));
        }
        for (what, p) in needed {
            if !p.is_file() {
                return Err(LabError::Usage(format!(
                    "{what} not found at {}; build it (cargo build --release) first",
                    p.display()
                )));
            }
        }
        if state::lab_dir(&spec.name).join("lab.json").exists() {
            return Err(LabError::Usage(format!(
                "lab {0:?} is already up; `tweedctl lab down --name {0}` first",
                spec.name
            )));
        }
        // Leftovers of a lab that died without `down`.
        teardown(&spec.name);
        let dir = state::lab_dir(&spec.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
        let mut lab = Lab {
            state: LabState {
                name: spec.name.clone(),
                backend: spec.backend.clone(),
                store: spec.store.clone(),
                store_url: String::new(),
                underlay_ns: format!("{}.ul", spec.name),
                underlay_subnets: spec.underlay_subnets.max(1),
                etcd_pid: None,
                api_pid: None,
                nodes: Vec::new(),
            },
            binaries: spec.binaries.clone(),
        };
        match lab.build(spec, progress) {
            Ok(()) => Ok(lab),
            Err(e) => {
                let logs = lab.agent_logs();
                teardown(&spec.name);
                Err(match e {
                    LabError::Setup(m) if !logs.is_empty() => {
                        LabError::Setup(format!("{m}\n{logs}"))
                    }
                    other => other,
                })
            }
        }
    }

    fn build(&mut self, spec: &LabSpec, progress: Progress<'_>) -> Result<(), LabError> {
        let mut step = Instant::now();
        let mut done = |what: &str| {
            progress(what, step.elapsed());
            step = Instant::now();
        };
        let dir = self.state.dir();
        let mut conf = serde_json::json!({
            "Network": "10.244.0.0/16",
            "SubnetLen": 24,
            "Backend": {"Type": spec.backend},
        });
        if spec.ipv6 {
            conf["EnableIPv6"] = serde_json::json!(true);
            conf["IPv6Network"] = serde_json::json!("fd00:10:244::/56");
        }
        for (k, v) in &spec.net_conf_overrides {
            conf[k] = v.clone();
        }
        write(
            &dir.join("net-conf.json"),
            &serde_json::to_vec_pretty(&conf).expect("json"),
        )?;
        topology::create_underlay(&self.state.underlay_ns, self.state.underlay_subnets)?;
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))?;
        done(&match self.state.underlay_subnets {
            1 => format!(
                "underlay namespace {} (198.18.0.0/24)",
                self.state.underlay_ns
            ),
            k => format!(
                "underlay namespace {} routing 198.18.0.0/24 to 198.18.{}.0/24",
                self.state.underlay_ns,
                k - 1
            ),
        });

        self.state.store_url = match spec.store.as_str() {
            "etcd" => {
                self.start_etcd()?;
                done("etcd started in the underlay namespace");
                format!("etcd://{}:{ETCD_PORT}", topology::ROUTER_IPV4)
            }
            "kube" => {
                self.start_fake_api()?;
                done("fake Kubernetes API server started in the underlay namespace");
                "kube".to_string()
            }
            _ => format!("file://{}", dir.join("store").display()),
        };
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))?;
        for _ in 0..spec.nodes {
            let node = self.add_node_no_wait(spec.ip_masq)?;
            done(&format!(
                "{node}: namespace cabled to the underlay, tweedd started"
            ));
        }
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))?;
        for n in 0..self.state.nodes.len() {
            self.wait_ready(n)?;
            let node = &self.state.nodes[n].name;
            let lease = self.lease_of(node).unwrap_or_else(|| "-".into());
            done(&format!("{node}: tweedd ready, lease {lease}"));
        }
        for n in 0..self.state.nodes.len() {
            for p in 0..spec.pods_per_node {
                let node = self.state.nodes[n].name.clone();
                self.add_pod(&node, &format!("p{}", p + 1))?;
            }
            let node = &self.state.nodes[n].name;
            match spec.pods_per_node {
                0 => {}
                1 => done(&format!("{node}: pod p1 added by the plugin")),
                k => done(&format!("{node}: pods p1-p{k} added by the plugin")),
            }
        }
        self.wait_converged()?;
        done(&format!(
            "every agent has programmed every peer ({} each)",
            self.state.nodes.len().saturating_sub(1)
        ));
        Ok(())
    }

    pub fn load(name: &str, binaries: Binaries) -> Result<Lab, LabError> {
        let state = LabState::load(name)
            .map_err(|e| LabError::Usage(format!("lab {name:?} is not up ({e})")))?;
        Ok(Lab { state, binaries })
    }

    /// Removes everything of the lab.
    pub fn down(self) {
        teardown(&self.state.name);
    }

    /// A node's directory: its subnet.env, IPAM store and plugin log.
    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.state.dir().join(node)
    }

    /// Stops the lab's etcd (store outage tests); agents keep running.
    pub fn stop_store(&mut self) -> Result<(), LabError> {
        if let Some(pid) = self.state.etcd_pid.take() {
            procs::stop(pid, Duration::from_secs(5));
        }
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))
    }

    /// Starts the lab's etcd again on the same data.
    pub fn start_store(&mut self) -> Result<(), LabError> {
        if self.state.store != "etcd" {
            return Err(LabError::Usage(
                "only an etcd store can be stopped and started".into(),
            ));
        }
        self.start_etcd()
    }

    fn start_etcd(&mut self) -> Result<(), LabError> {
        let data = self.state.dir().join("etcd");
        let ip = topology::ROUTER_IPV4;
        let argv: Vec<String> = vec![
            self.binaries.etcd.display().to_string(),
            "--name".into(),
            "lab".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client-urls".into(),
            format!("http://{ip}:{ETCD_PORT}"),
            "--advertise-client-urls".into(),
            format!("http://{ip}:{ETCD_PORT}"),
            "--listen-peer-urls".into(),
            format!("http://{ip}:{}", ETCD_PORT + 1),
            "--initial-advertise-peer-urls".into(),
            format!("http://{ip}:{}", ETCD_PORT + 1),
            "--initial-cluster".into(),
            format!("lab=http://{ip}:{}", ETCD_PORT + 1),
        ];
        let log = self.state.dir().join("etcd.log");
        // A restart keeps the previous run's log for post-mortems.
        let _ = std::fs::rename(&log, self.state.dir().join("etcd.log.prev"));
        let pid = procs::spawn_in(&self.state.underlay_ns, &argv, &log)?;
        self.state.etcd_pid = Some(pid);
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))?;
        // Ready when it accepts connections.
        let ns = NetNs::named(&self.state.underlay_ns)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ok = ns.run(|| {
                std::net::TcpStream::connect_timeout(
                    &(ip, ETCD_PORT).into(),
                    Duration::from_millis(200),
                )
                .is_ok()
            })?;
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline || !procs::alive(pid) {
                return Err(LabError::Setup(format!(
                    "etcd did not come up; see {}",
                    log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the fake API server (store `kube`) and writes the agents'
    /// kubeconfig.
    fn start_fake_api(&mut self) -> Result<(), LabError> {
        write(
            &self.state.dir().join("kubeconfig"),
            kube::kubeconfig().as_bytes(),
        )?;
        let argv = vec![
            kube::binary(&self.binaries.tweedd).display().to_string(),
            "--listen".into(),
            kube::api_addr().to_string(),
        ];
        let log = self.state.dir().join("fake-kube-apiserver.log");
        let pid = procs::spawn_in(&self.state.underlay_ns, &argv, &log)?;
        self.state.api_pid = Some(pid);
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while kube::call(&self.state.underlay_ns, "GET", "/version", None).is_err() {
            if Instant::now() > deadline || !procs::alive(pid) {
                return Err(LabError::Setup(format!(
                    "the fake API server did not come up; see {}",
                    log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// With the `kube` store: registers node `n<i>` with its pod CIDRs
    /// (unless a test registered it beforehand).
    fn register_kube_node(&self, name: &str, i: usize) -> Result<(), LabError> {
        if self.state.store != "kube" {
            return Ok(());
        }
        let ipv6 = self.net_conf()["EnableIPv6"] == serde_json::json!(true);
        kube::register_node(&self.state.underlay_ns, name, &kube::pod_cidrs(i, ipv6))
    }

    /// The lab's net-conf.json (null when unreadable).
    pub(crate) fn net_conf(&self) -> serde_json::Value {
        std::fs::read(self.state.dir().join("net-conf.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Adds a node and starts its agent without waiting for it to be
    /// ready (tests of an agent that cannot become ready).
    pub fn start_node(&mut self) -> Result<String, LabError> {
        self.add_node_no_wait(true)
    }

    /// Adds a node and starts its agent without waiting for it.
    fn add_node_no_wait(&mut self, ip_masq: bool) -> Result<String, LabError> {
        let i = (1..=topology::MAX_NODES)
            .find(|i| !self.state.nodes.iter().any(|n| n.name == format!("n{i}")))
            .ok_or_else(|| LabError::Usage("the lab is full".into()))?;
        let name = format!("n{i}");
        let ns = format!("{}.{name}", self.state.name);
        let subnet = topology::subnet_of(i, self.state.underlay_subnets);
        topology::create_node(&self.state.underlay_ns, &ns, i, subnet)?;
        let node = NodeState {
            name: name.clone(),
            ns,
            underlay_ipv4: topology::node_ipv4(i, subnet).to_string(),
            underlay_ipv6: topology::node_ipv6(i, subnet).to_string(),
            agent_pid: None,
            health_addr: format!("{}:{HEALTH_PORT}", topology::node_ipv4(i, subnet)),
            pods: Vec::new(),
        };
        std::fs::create_dir_all(self.node_dir(&name))
            .map_err(|e| LabError::io("create node dir", e))?;
        self.register_kube_node(&name, i)?;
        self.state.nodes.push(node);
        self.start_agent_with(&name, ip_masq, &[])?;
        Ok(name)
    }

    /// Adds a node, starts its agent and waits until it is ready.
    pub fn add_node(&mut self) -> Result<String, LabError> {
        let name = self.add_node_no_wait(true)?;
        let n = self.state.nodes.len() - 1;
        self.wait_ready(n)?;
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))?;
        self.wait_converged()?;
        Ok(name)
    }

    fn agent_argv(&self, node: &NodeState, ip_masq: bool) -> Vec<String> {
        let dir = self.node_dir(&node.name);
        let mut argv = vec![
            self.binaries.tweedd.display().to_string(),
            "--net-conf".into(),
            self.state.dir().join("net-conf.json").display().to_string(),
            "--store".into(),
            self.state.store_url.clone(),
            "--node-name".into(),
            node.name.clone(),
            "--iface".into(),
            "eth0".into(),
            "--subnet-file".into(),
            dir.join("subnet.env").display().to_string(),
            "--state-dir".into(),
            dir.join("state").display().to_string(),
            "--wire-dir".into(),
            dir.join("wires").display().to_string(),
            "--segment-dir".into(),
            dir.join("segments").display().to_string(),
            "--health-addr".into(),
            node.health_addr.clone(),
        ];
        if ip_masq {
            argv.push("--ip-masq".into());
        }
        if self.state.store == "kube" {
            argv.push("--kubeconfig".into());
            argv.push(self.state.dir().join("kubeconfig").display().to_string());
        }
        argv
    }

    fn start_agent_with(
        &mut self,
        node: &str,
        ip_masq: bool,
        extra: &[&str],
    ) -> Result<(), LabError> {
        let idx = self.index(node)?;
        let mut argv = self.agent_argv(&self.state.nodes[idx], ip_masq);
        argv.extend(extra.iter().map(|a| a.to_string()));
        let log = self.node_dir(node).join("tweedd.log");
        // Append across restarts: keep the history for post-mortems.
        let previous = std::fs::read(&log).unwrap_or_default();
        // With the DaemonSet's capabilities and no other.
        let caps: Vec<u32> = capabilities::AGENT.iter().map(|(_, c)| *c).collect();
        let pid = procs::spawn_in_with(&self.state.nodes[idx].ns, &argv, &log, Some(&caps))?;
        if !previous.is_empty() {
            let _ = std::fs::write(self.node_dir(node).join("tweedd.log.prev"), previous);
        }
        self.state.nodes[idx].agent_pid = Some(pid);
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))
    }

    /// Starts (again) the agent of a node.
    pub fn start_agent(&mut self, node: &str) -> Result<(), LabError> {
        self.start_agent_args(node, &[])
    }

    /// Starts (again) the agent of a node with extra flags (e.g.
    /// `--flannel-compat`) and waits until it is ready.
    pub fn start_agent_args(&mut self, node: &str, extra: &[&str]) -> Result<(), LabError> {
        self.start_agent_with(node, true, extra)?;
        let idx = self.index(node)?;
        self.wait_ready(idx)
    }

    /// Stops a node's agent (the data plane stays, as on a real node).
    pub fn stop_agent(&mut self, node: &str) -> Result<(), LabError> {
        let idx = self.index(node)?;
        if let Some(pid) = self.state.nodes[idx].agent_pid.take() {
            procs::stop(pid, Duration::from_secs(5));
        }
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))
    }

    /// Kills a node's agent with SIGKILL: no chance to clean up, as after
    /// a crash or the OOM killer. The data plane stays.
    pub fn kill_agent(&mut self, node: &str) -> Result<(), LabError> {
        let idx = self.index(node)?;
        if let Some(pid) = self.state.nodes[idx].agent_pid.take() {
            procs::kill(pid);
        }
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))
    }

    fn index(&self, node: &str) -> Result<usize, LabError> {
        self.state
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| LabError::Usage(format!("no node {node:?} in lab {}", self.state.name)))
    }

    fn wait_ready(&self, idx: usize) -> Result<(), LabError> {
        let node = &self.state.nodes[idx];
        let file = self.node_dir(&node.name).join("subnet.env");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.ready(node) {
                return Ok(());
            }
            if node.agent_pid.is_some_and(|p| !procs::alive(p)) {
                return Err(LabError::Setup(format!(
                    "the agent of {} exited",
                    node.name
                )));
            }
            if Instant::now() > deadline {
                return Err(LabError::Setup(format!(
                    "the agent of {} was not ready within {}s ({} missing)",
                    node.name,
                    READY_TIMEOUT.as_secs(),
                    file.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks the node's agent `/readyz`.
    pub fn ready(&self, node: &NodeState) -> bool {
        self.http_get(node, "/readyz")
            .is_some_and(|(code, _)| code == 200)
    }

    /// GET on the node agent's health address, from inside the node.
    pub fn http_get(&self, node: &NodeState, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let ns = NetNs::named(&node.ns).ok()?;
        let addr: std::net::SocketAddr = node.health_addr.parse().ok()?;
        let mut stream = ns
            .run(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)))
            .ok()?
            .ok()?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((code, body))
    }

    /// Creates a pod on `node` through the plugin.
    pub fn add_pod(&mut self, node: &str, pod: &str) -> Result<PodState, LabError> {
        self.add_pod_wired(node, pod, "")
    }

    /// Creates a pod whose `tweed.io/wires` annotation is `wires`
    /// (`eth1=r2:eth1, ...`; empty for none), passed to the plugin the way
    /// containerd and CRI-O pass pod annotations. Lab pods are in
    /// namespace `default` under their own names.
    pub fn add_pod_wired(
        &mut self,
        node: &str,
        pod: &str,
        wires: &str,
    ) -> Result<PodState, LabError> {
        let idx = self.index(node)?;
        // Wires name their far end by pod name alone (namespace `default`),
        // so a wired pod's name must be unique in the lab (plain pods are
        // p1, p2... on every node).
        if !wires.is_empty() && self.pods().iter().any(|(_, p)| p.name == pod) {
            return Err(LabError::Usage(format!(
                "a pod {pod:?} already runs in lab {}; wired pods need names of their own",
                self.state.name
            )));
        }
        let ns_name = format!("{}.{node}.{pod}", self.state.name);
        let container_id = format!("{}-{node}-{pod}", self.state.name);
        topology::create_pod_ns(&ns_name)?;
        let mut conf = pods::conflist(&self.node_dir(node));
        if !wires.is_empty() {
            conf["runtimeConfig"] = serde_json::json!({
                "io.kubernetes.cri.pod-annotations": {tweed_wire::ANNOTATION: wires}
            });
        }
        let cni_args = pods::k8s_args(pod);
        let result = pods::cni_with(
            &self.binaries.plugin,
            &self.state.nodes[idx].ns,
            &conf,
            &pods::Call {
                command: "ADD",
                container_id: &container_id,
                pod_ns: &ns_name,
                ifname: "eth0",
                cni_args: &cni_args,
            },
        );
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = NetNs::delete_named(&ns_name);
                return Err(e);
            }
        };
        let (ipv4, ipv6) = pods::addresses(&result);
        let state = PodState {
            name: pod.to_string(),
            ns: ns_name,
            container_id,
            ipv4,
            ipv6,
            wires: (!wires.is_empty()).then(|| wires.to_string()),
            segments: Vec::new(),
        };
        self.state.nodes[idx].pods.push(state.clone());
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))?;
        Ok(state)
    }

    /// The wire report of a node's agent (`<node dir>/wires/status.json`).
    pub fn wire_status(&self, node: &str) -> Vec<tweed_wire::WireStatus> {
        tweed_wire::status::read(&self.node_dir(node).join("wires")).unwrap_or_default()
    }

    /// Waits until every wire end of every node is up.
    pub fn wait_wires_up(&self, timeout: Duration) -> Result<(), LabError> {
        let want: usize = self
            .pods()
            .iter()
            .filter_map(|(_, p)| p.wires.as_deref())
            .map(|w| w.split(',').filter(|e| !e.trim().is_empty()).count())
            .sum();
        let deadline = Instant::now() + timeout;
        loop {
            let all: Vec<tweed_wire::WireStatus> = self
                .state
                .nodes
                .iter()
                .flat_map(|n| self.wire_status(&n.name))
                .collect();
            let up = all
                .iter()
                .filter(|s| matches!(s.state, tweed_wire::WireState::Up { .. }))
                .count();
            if up >= want {
                return Ok(());
            }
            if Instant::now() > deadline {
                let pending: Vec<String> = all
                    .iter()
                    .filter(|s| !matches!(s.state, tweed_wire::WireState::Up { .. }))
                    .map(|s| format!("{}: {}", s.local, s.state))
                    .collect();
                return Err(LabError::Setup(format!(
                    "{up} of {want} wire ends up after {}s; {}",
                    timeout.as_secs(),
                    pending.join("; ")
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Where pod `pod` of `node` is in the state: (node index, pod index).
    pub(crate) fn pod_index(&self, node: &str, pod: &str) -> Result<(usize, usize), LabError> {
        let idx = self.index(node)?;
        match self.state.nodes[idx]
            .pods
            .iter()
            .position(|p| p.name == pod)
        {
            Some(p) => Ok((idx, p)),
            None => Err(LabError::Usage(format!("no pod {pod:?} on {node}"))),
        }
    }

    /// Deletes a pod through the plugin (its segment interfaces first, as
    /// a runtime deletes the extra networks), then its namespace.
    pub fn del_pod(&mut self, node: &str, pod: &str) -> Result<(), LabError> {
        let (idx, p) = self.pod_index(node, pod)?;
        // Forgotten only once the plugin let go of it.
        let ps = self.state.nodes[idx].pods[p].clone();
        self.detach_segments(node, &ps)?;
        pods::cni(
            &self.binaries.plugin,
            &self.state.nodes[idx].ns,
            &self.node_dir(node),
            "DEL",
            &ps.container_id,
            &ps.ns,
        )?;
        NetNs::delete_named(&ps.ns)?;
        self.state.nodes[idx].pods.remove(p);
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))
    }

    /// Every pod with the node it runs on.
    pub fn pods(&self) -> Vec<(&NodeState, &PodState)> {
        self.state
            .nodes
            .iter()
            .flat_map(|n| n.pods.iter().map(move |p| (n, p)))
            .collect()
    }

    /// The pod-to-pod reachability matrix (IPv4, and IPv6 when pods have
    /// it): `matrix[i][j]` is whether pod i reaches pod j.
    pub fn check(&self) -> Result<Matrix, LabError> {
        let pods = self.pods();
        let labels: Vec<String> = pods
            .iter()
            .map(|(n, p)| format!("{}/{}", n.name, p.name))
            .collect();
        let mut ok = vec![vec![false; pods.len()]; pods.len()];
        std::thread::scope(|s| -> Result<(), LabError> {
            let mut handles = Vec::new();
            for (i, (_, from)) in pods.iter().enumerate() {
                let targets: Vec<(usize, Vec<IpAddr>)> = pods
                    .iter()
                    .enumerate()
                    .map(|(j, (_, to))| {
                        let addrs = [&to.ipv4, &to.ipv6]
                            .into_iter()
                            .flatten()
                            .filter_map(|a| a.parse().ok())
                            .collect();
                        (j, addrs)
                    })
                    .collect();
                let ns_name = from.ns.clone();
                handles.push(
                    s.spawn(move || -> Result<Vec<(usize, usize, bool)>, LabError> {
                        let ns = NetNs::named(&ns_name)?;
                        let mut out = Vec::new();
                        for (j, addrs) in targets {
                            let mut all = !addrs.is_empty();
                            for a in addrs {
                                // Patient enough for a machine busy with
                                // other labs (one CI run saw a healthy pair
                                // miss 3 × 500 ms); a broken path still
                                // fails, after 5 s.
                                all &= check::ping(&ns, a, 5, Duration::from_secs(1))?;
                            }
                            out.push((i, j, all));
                        }
                        Ok(out)
                    }),
                );
            }
            for h in handles {
                for (i, j, v) in h
                    .join()
                    .map_err(|_| LabError::Setup("ping thread panicked".into()))??
                {
                    ok[i][j] = v;
                }
            }
            Ok(())
        })?;
        Ok(Matrix { labels, ok })
    }

    /// Runs a command inside a node (`n1`) or pod (`n1/p1`) namespace, or
    /// `underlay`.
    pub fn command(&self, target: &str, argv: &[String]) -> Result<Command, LabError> {
        let ns = self.target_ns(target)?;
        let file = std::fs::File::open(format!("/run/netns/{ns}"))
            .map_err(|e| LabError::io("open netns", e))?;
        let mut cmd = Command::new(
            argv.first()
                .ok_or_else(|| LabError::Usage("no command given".into()))?,
        );
        cmd.args(&argv[1..]);
        let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
        // SAFETY: setns is async-signal-safe; fd is ours and stays open.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(cmd)
    }

    pub fn exec_output(&self, target: &str, argv: &[&str]) -> Result<Output, LabError> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.command(target, &argv)?
            .output()
            .map_err(|e| LabError::io(format!("run {} in {target}", argv.join(" ")), e))
    }

    pub fn target_ns(&self, target: &str) -> Result<String, LabError> {
        if target == "underlay" {
            return Ok(self.state.underlay_ns.clone());
        }
        let (node, pod) = match target.split_once('/') {
            Some((n, p)) => (n, Some(p)),
            None => (target, None),
        };
        let n = self.state.node(node).ok_or_else(|| {
            LabError::Usage(format!("no node {node:?} in lab {}", self.state.name))
        })?;
        match pod {
            None => Ok(n.ns.clone()),
            Some(p) => n
                .pods
                .iter()
                .find(|x| x.name == p)
                .map(|x| x.ns.clone())
                .ok_or_else(|| LabError::Usage(format!("no pod {p:?} on {node}"))),
        }
    }

    /// The lease key a node holds, from its state directory.
    pub fn lease_of(&self, node: &str) -> Option<String> {
        let bytes = std::fs::read(self.node_dir(node).join("state").join("state.json")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        v["lease"].as_str().map(str::to_string)
    }

    /// Deletes a node's lease from the store (the node "leaves"; with the
    /// `kube` store its Node object is deleted).
    pub fn delete_lease(&self, node: &str) -> Result<(), LabError> {
        if self.state.store == "kube" {
            kube::call_ok(
                &self.state.underlay_ns,
                "DELETE",
                &format!("/admin/nodes/{node}"),
                None,
            )?;
            return Ok(());
        }
        let key = self
            .lease_of(node)
            .ok_or_else(|| LabError::Usage(format!("{node} has no recorded lease")))?;
        match self.state.store.as_str() {
            "etcd" => {
                let out = self.exec_output(
                    "underlay",
                    &[
                        "etcdctl",
                        "--endpoints",
                        &format!("http://{}:{ETCD_PORT}", topology::ROUTER_IPV4),
                        "del",
                        &format!("/coreos.com/network/subnets/{key}"),
                    ],
                )?;
                if !out.status.success() {
                    return Err(LabError::Setup(format!(
                        "etcdctl del failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )));
                }
                Ok(())
            }
            _ => std::fs::remove_file(self.state.dir().join("store").join("subnets").join(&key))
                .map_err(|e| LabError::io(format!("delete lease {key}"), e)),
        }
    }

    /// The last lines of every agent's log (for error reports).
    pub fn agent_logs(&self) -> String {
        let mut out = String::new();
        for n in &self.state.nodes {
            let text = std::fs::read_to_string(self.node_dir(&n.name).join("tweedd.log"))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            out.push_str(&format!("--- {} tweedd.log ---\n", n.name));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// Pod-to-pod reachability.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub labels: Vec<String>,
    pub ok: Vec<Vec<bool>>,
}

impl Matrix {
    pub fn all_ok(&self) -> bool {
        self.ok.iter().all(|row| row.iter().all(|v| *v))
    }

    pub fn render(&self) -> String {
        let w = self
            .labels
            .iter()
            .map(|l| l.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut s = format!("{:w$}", "from\\to");
        for l in &self.labels {
            s.push_str(&format!(" {l:>w$}"));
        }
        s.push('\n');
        for (i, row) in self.ok.iter().enumerate() {
            s.push_str(&format!("{:w$}", self.labels[i]));
            for v in row {
                s.push_str(&format!(" {:>w$}", if *v { "ok" } else { "FAIL" }));
            }
            s.push('\n');
        }
        s
    }
}

/// Removes a lab by name: stops its processes by pid, deletes its
/// namespaces (which takes their devices, routes and sockets along) and
/// its directory. Works on half-built labs too.
pub fn teardown(name: &str) {
    if let Ok(state) = LabState::load(name) {
        for n in &state.nodes {
            if let Some(pid) = n.agent_pid {
                procs::stop(pid, Duration::from_secs(5));
            }
        }
        if let Some(pid) = state.etcd_pid {
            procs::stop(pid, Duration::from_secs(5));
        }
        if let Some(pid) = state.api_pid {
            procs::stop(pid, Duration::from_secs(5));
        }
    }
    // Lab names cannot contain dots, so "a." never matches lab "a-b".
    let prefix = format!("{name}.");
    if let Ok(rd) = std::fs::read_dir(tweed_netlink::NAMED_NETNS_DIR) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&prefix) {
                let _ = NetNs::delete_named(&n);
            }
        }
    }
    let _ = std::fs::remove_dir_all(state::lab_dir(name));
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), LabError> {
    std::fs::write(path, bytes).map_err(|e| LabError::io(format!("write {}", path.display()), e))
}
