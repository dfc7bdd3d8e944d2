//! `tweedctl lab status`: a lab's nodes, agents, leases, pods and wires,
//! with a problem for every agent that is not running and ready or has not
//! programmed every peer (exit 3). Text for people, `--output json` for
//! scripts (schema in docs/tweedctl.md).

use serde::Serialize;
use tweed_lab::{Lab, LabError, SegmentPort};
use tweed_wire::WireStatus;

use crate::Verdict;
use crate::status::{Output, print_json};

#[derive(Debug, Serialize)]
pub struct LabStatus {
    pub name: String,
    pub backend: String,
    pub store: String,
    pub store_url: String,
    /// Leases in the store: each node holding one should program the
    /// others as peers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leases: Option<usize>,
    pub nodes: Vec<NodeStatus>,
    /// One sentence per problem; empty when all is well (exit 0, else 3).
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub underlay_ipv4: String,
    pub underlay_ipv6: String,
    /// The lease key the node's agent holds (its last record of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    pub agent: AgentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_pid: Option<i32>,
    /// Peers the agent reports having programmed (its `tweed_peers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<usize>,
    pub pods: Vec<PodStatus>,
    pub wires: Vec<WireStatus>,
    /// Set on a VM node: a kernel of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmStatus>,
}

/// A VM node's VM.
#[derive(Debug, Serialize)]
pub struct VmStatus {
    /// `tcg` or `kvm`.
    pub accel: String,
    /// The VM's kernel release.
    pub kernel: String,
    pub qemu_pid: i32,
    pub running: bool,
}

/// Where a node's agent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentState {
    Ready,
    NotReady,
    /// Its process is gone without `lab node stop`.
    Dead,
    /// Stopped with `lab node stop` (the data plane stays).
    Stopped,
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AgentState::Ready => "ready",
            AgentState::NotReady => "NOT READY",
            AgentState::Dead => "DEAD",
            AgentState::Stopped => "stopped",
        })
    }
}

#[derive(Debug, Serialize)]
pub struct PodStatus {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    pub segments: Vec<SegmentPort>,
}

/// Looks at the lab: its record, each agent's health and metrics, the
/// store's leases.
pub fn gather(lab: &Lab) -> LabStatus {
    let s = &lab.state;
    let mut problems = Vec::new();
    let leases = match lab.store_leases() {
        Ok(n) => Some(n),
        Err(e) => {
            problems.push(format!("cannot count the leases in the store: {e}"));
            None
        }
    };
    let nodes = s
        .nodes
        .iter()
        .map(|n| {
            let vm = n.vm.as_ref().map(|v| VmStatus {
                accel: v.accel.clone(),
                kernel: v.kernel.clone(),
                qemu_pid: v.qemu_pid,
                running: tweed_lab::procs::alive(v.qemu_pid),
            });
            if let (Some(v), Some(state)) = (&vm, &n.vm)
                && !v.running
            {
                problems.push(format!(
                    "{}: its VM is gone (QEMU pid {}); console: {}",
                    n.name,
                    v.qemu_pid,
                    state.dir.join("console.log").display()
                ));
            }
            let agent = match n.agent_pid {
                Some(_) if lab.agent_alive(n) => {
                    if lab.ready(n) {
                        AgentState::Ready
                    } else {
                        AgentState::NotReady
                    }
                }
                Some(_) => AgentState::Dead,
                None => AgentState::Stopped,
            };
            let peers = (agent == AgentState::Ready)
                .then(|| lab.peers_of(n))
                .flatten();
            match agent {
                AgentState::Ready => {}
                AgentState::Stopped => problems.push(format!(
                    "{}: tweedd is stopped (`tweedctl lab node start --name {} {}`)",
                    n.name, s.name, n.name
                )),
                other => problems.push(format!(
                    "{}: tweedd is {other}: see {}",
                    n.name,
                    lab.node_dir(&n.name).join("tweedd.log").display()
                )),
            }
            if let (Some(have), Some(total)) = (peers, leases) {
                let want = total.saturating_sub(1);
                if have != want {
                    problems.push(format!(
                        "{}: tweedd has programmed {have} peers, the store holds {want} other leases",
                        n.name
                    ));
                }
            }
            NodeStatus {
                name: n.name.clone(),
                underlay_ipv4: n.underlay_ipv4.clone(),
                underlay_ipv6: n.underlay_ipv6.clone(),
                lease: lab.lease_of(&n.name),
                agent,
                agent_pid: n.agent_pid,
                peers,
                pods: n
                    .pods
                    .iter()
                    .map(|p| PodStatus {
                        name: p.name.clone(),
                        ipv4: p.ipv4.clone(),
                        ipv6: p.ipv6.clone(),
                        segments: p.segments.clone(),
                    })
                    .collect(),
                wires: lab.wire_status(&n.name),
                vm,
            }
        })
        .collect();
    LabStatus {
        name: s.name.clone(),
        backend: s.backend.clone(),
        store: s.store.clone(),
        store_url: s.store_url.clone(),
        leases,
        nodes,
        problems,
    }
}

pub fn print_text(s: &LabStatus) {
    outln!("lab {} ({}, store {})", s.name, s.backend, s.store_url);
    for n in &s.nodes {
        let agent = match n.agent_pid {
            Some(pid) => format!("tweedd pid {pid} {}", n.agent),
            None => format!("tweedd {}", n.agent),
        };
        let peers = n.peers.map(|p| format!(", peers {p}")).unwrap_or_default();
        let agent = match &n.vm {
            Some(v) => format!("VM ({}, kernel {}), {agent}", v.accel, v.kernel),
            None => agent,
        };
        outln!(
            "  {:<4} {:<14} lease {:<18} {agent}{peers}",
            n.name,
            n.underlay_ipv4,
            n.lease.as_deref().unwrap_or("-")
        );
        for p in &n.pods {
            let addrs: Vec<&str> = [&p.ipv4, &p.ipv6]
                .into_iter()
                .flatten()
                .map(|s| s.as_str())
                .collect();
            outln!("       pod {:<6} {}", p.name, addrs.join(" "));
            for port in &p.segments {
                outln!(
                    "           {} on segment {} {}",
                    port.ifname,
                    port.segment,
                    port.addresses.join(" ")
                );
            }
        }
        for w in &n.wires {
            outln!("       wire {w}");
        }
    }
    for p in &s.problems {
        outln!("  ! {p}");
    }
}

/// `lab status`: prints the lab's status; `Problems` when it found any.
pub fn run(output: Output, lab: &Lab) -> Result<Verdict, LabError> {
    let status = gather(lab);
    match output {
        Output::Text => print_text(&status),
        Output::Json => print_json(&status),
    }
    Ok(if status.problems.is_empty() {
        Verdict::Fine
    } else {
        Verdict::Problems
    })
}
