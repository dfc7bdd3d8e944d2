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

mod agents;
pub mod capabilities;
pub mod check;
pub mod converge;
mod exec;
pub mod http;
pub mod kube;
mod matrix;
mod membership;
pub mod node_kernel;
mod pod_ops;
pub mod pods;
pub mod procs;
pub mod segments;
pub mod state;
mod store;
pub mod topology;
pub mod topology_file;
pub mod vm_node;
mod wires;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;
use tweed_netlink::NetNs;

pub use matrix::Matrix;
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

    /// `tweedctl`, beside `tweedd`: it serves inside VM nodes.
    pub fn tweedctl(&self) -> PathBuf {
        self.tweedd.with_file_name("tweedctl")
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
    /// The nodes (numbers: 1 is n1) that are VMs with their own kernel
    /// rather than namespaces of this machine's.
    pub vm_nodes: Vec<usize>,
    pub vm_options: vm_node::VmOptions,
    pub binaries: Binaries,
}

pub const ETCD_PORT: u16 = 2379;
const HEALTH_PORT: u16 = 9695;
/// How long `up` waits for a node's agent and store. Generous: a VM node
/// (or a test in the VM runner) under TCG on a loaded machine took over
/// 30 s to key two WireGuard devices.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);

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
        if let Some(n) = spec.vm_nodes.iter().find(|n| !(1..=spec.nodes).contains(n)) {
            return Err(LabError::Usage(format!(
                "VM node n{n}: the lab has nodes n1 to n{}",
                spec.nodes
            )));
        }
        if !spec.vm_nodes.is_empty() && spec.store == "file" {
            return Err(LabError::Usage(vm_node::FILE_STORE_REFUSED.into()));
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
                vm_options: spec.vm_options.clone(),
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
        for i in 1..=spec.nodes {
            let vm = spec.vm_nodes.contains(&i);
            let node = self.add_node_no_wait(spec.ip_masq, vm)?;
            done(&match &self.state.nodes[i - 1].vm {
                Some(v) => format!(
                    "{node}: VM ({}, kernel {}) on the underlay, tweedd started",
                    v.accel, v.kernel
                ),
                None => format!("{node}: namespace cabled to the underlay, tweedd started"),
            });
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
}

/// Removes a lab by name: stops its processes by pid, deletes its
/// namespaces (which takes their devices, routes and sockets along) and
/// its directory. Works on half-built labs too.
pub fn teardown(name: &str) {
    if let Ok(state) = LabState::load(name) {
        for n in &state.nodes {
            match (&n.vm, n.agent_pid) {
                // Its agent, namespaces and pods go with its kernel.
                (Some(vm), _) => procs::stop(vm.qemu_pid, Duration::from_secs(5)),
                (None, Some(pid)) => procs::stop(pid, Duration::from_secs(5)),
                (None, None) => {}
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
