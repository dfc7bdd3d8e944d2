//! The nodes' agents: a node added, its `tweedd` started with the lab's
//! flags, stopped or killed, asked over its health address, its log read.

use std::time::{Duration, Instant};

use crate::{HEALTH_PORT, Lab, LabError, NodeState, READY_TIMEOUT, capabilities, topology};

impl Lab {
    /// Adds a node and starts its agent without waiting for it to be
    /// ready (tests of an agent that cannot become ready).
    pub fn start_node(&mut self) -> Result<String, LabError> {
        self.add_node_no_wait(true, false)
    }

    /// Adds a node and starts its agent without waiting for it.
    /// With `vm`, the node is a VM with its own kernel
    /// ([`crate::vm_node`]).
    pub(crate) fn add_node_no_wait(&mut self, ip_masq: bool, vm: bool) -> Result<String, LabError> {
        let i = (1..=topology::MAX_NODES)
            .find(|i| !self.state.nodes.iter().any(|n| n.name == format!("n{i}")))
            .ok_or_else(|| LabError::Usage("the lab is full".into()))?;
        let name = format!("n{i}");
        let ns = format!("{}.{name}", self.state.name);
        let subnet = topology::subnet_of(i, self.state.underlay_subnets);
        std::fs::create_dir_all(self.node_dir(&name))
            .map_err(|e| LabError::io("create node dir", e))?;
        let vm = if vm {
            match self.boot_vm_node(&name, &ns, i, subnet) {
                Ok(v) => Some(v),
                Err(e) => {
                    // Nothing of the node is left: its number stays free.
                    let _ = std::fs::remove_dir_all(self.node_dir(&name));
                    return Err(e);
                }
            }
        } else {
            topology::create_node(&self.state.underlay_ns, &ns, i, subnet)?;
            None
        };
        let node = NodeState {
            name: name.clone(),
            ns,
            underlay_ipv4: topology::node_ipv4(i, subnet).to_string(),
            underlay_ipv6: topology::node_ipv6(i, subnet).to_string(),
            agent_pid: None,
            health_addr: format!("{}:{HEALTH_PORT}", topology::node_ipv4(i, subnet)),
            pods: Vec::new(),
            vm,
        };
        self.register_kube_node(&name, i)?;
        self.state.nodes.push(node);
        self.start_agent_with(&name, ip_masq, &[])?;
        Ok(name)
    }

    /// Adds a node, starts its agent and waits until it is ready.
    pub fn add_node(&mut self) -> Result<String, LabError> {
        self.add_node_as(false)
    }

    /// [`Lab::add_node`]; with `vm`, a VM node.
    pub fn add_node_as(&mut self, vm: bool) -> Result<String, LabError> {
        let name = self.add_node_no_wait(true, vm)?;
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
            "--guest-dhcp-dir".into(),
            dir.join("guest-dhcp").display().to_string(),
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
        // A running agent is stopped first: recording the new pid over it
        // would leave it running where `down` can no longer find it. Its
        // pid stays recorded until the stop has worked.
        if let Some(pid) = self.state.nodes[idx].agent_pid {
            self.kernel(&self.state.nodes[idx])
                .stop(pid, Duration::from_secs(5))?;
            self.state.nodes[idx].agent_pid = None;
        }
        let mut argv = self.agent_argv(&self.state.nodes[idx], ip_masq);
        argv.extend(extra.iter().map(|a| a.to_string()));
        let log = self.node_dir(node).join("tweedd.log");
        // Append across restarts: keep the history for post-mortems.
        let previous = std::fs::read(&log).unwrap_or_default();
        // With the DaemonSet's capabilities and no other.
        let caps: Vec<u32> = capabilities::AGENT.iter().map(|(_, c)| *c).collect();
        let n = &self.state.nodes[idx];
        let pid = self.kernel(n).spawn(&n.ns, &argv, &log, Some(&caps))?;
        if !previous.is_empty() {
            let _ = std::fs::write(self.node_dir(node).join("tweedd.log.prev"), previous);
        }
        self.state.nodes[idx].agent_pid = Some(pid);
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))
    }

    /// Starts (again) the agent of a node; one already running is stopped
    /// first.
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
            self.kernel(&self.state.nodes[idx])
                .stop(pid, Duration::from_secs(5))?;
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
            self.kernel(&self.state.nodes[idx]).kill(pid)?;
        }
        self.state
            .save()
            .map_err(|e| LabError::io("save lab state", e))
    }

    pub(crate) fn index(&self, node: &str) -> Result<usize, LabError> {
        self.state
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| LabError::Usage(format!("no node {node:?} in lab {}", self.state.name)))
    }

    pub(crate) fn wait_ready(&self, idx: usize) -> Result<(), LabError> {
        let node = &self.state.nodes[idx];
        let file = self.node_dir(&node.name).join("subnet.env");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.ready(node) {
                return Ok(());
            }
            if node.agent_pid.is_some_and(|p| !self.kernel(node).alive(p)) {
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
        let addr: std::net::SocketAddr = node.health_addr.parse().ok()?;
        self.kernel(node)
            .http_get(&node.ns, addr, path, Duration::from_millis(300))
    }

    /// Whether the node's agent runs.
    pub fn agent_alive(&self, node: &NodeState) -> bool {
        node.agent_pid.is_some_and(|p| self.kernel(node).alive(p))
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
