//! What a network's node agent costs: CPU time and memory of the agent
//! container of its DaemonSet pod on a node (tweedd; flanneld in
//! kube-flannel), read from the node's cgroup v1 hierarchies as the host
//! sees them: `cpuacct.usage` of the container's cgroup (the agent and
//! everything it runs, e.g. flanneld's iptables), and the agent process'
//! resident set now and at its peak (VmRSS, VmHWM).

use crate::Cluster;
use crate::side_by_side::Network;

/// One reading.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// CPU time of the container's cgroup since it started, in ms.
    pub cpu_ms: f64,
    /// The agent process' resident set now, in MiB.
    pub rss_mib: f64,
    /// Its peak resident set since it started, in MiB.
    pub peak_rss_mib: f64,
}

/// The container that runs the agent, in the network's DaemonSet pod.
fn agent_container(net: Network) -> &'static str {
    match net {
        Network::Flannel => "kube-flannel",
        Network::Tweed => "tweedd",
    }
}

/// `net`'s agent on node `i`, read now.
pub fn read(c: &Cluster, i: usize, net: Network) -> Usage {
    let node = c.node_name(i);
    let field = format!("spec.nodeName={node}");
    let pods = c.json(&[
        "-n",
        net.namespace(),
        "get",
        "pods",
        "--field-selector",
        &field,
    ]);
    let pod = &pods["items"][0];
    let uid = pod["metadata"]["uid"]
        .as_str()
        .expect("the agent pod's uid");
    let id = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == agent_container(net))
        .and_then(|s| s["containerID"].as_str())
        .and_then(|id| id.strip_prefix("containerd://"))
        .unwrap_or_else(|| panic!("{node}: no running {} container", agent_container(net)));
    let dir = container_cgroup("cpuacct", &node, uid, id);
    let read = |file: &str| {
        std::fs::read_to_string(format!("{dir}/{file}"))
            .unwrap_or_else(|e| panic!("{dir}/{file}: {e}"))
    };
    let cpu_ns: f64 = read("cpuacct.usage").trim().parse().expect("cpuacct.usage");
    // The agent is the container's first process (its entrypoint).
    let pid = read("cgroup.procs")
        .lines()
        .next()
        .unwrap_or_else(|| panic!("{dir}: no process"))
        .to_string();
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the agent's status");
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("/proc/{pid}/status has no {key}"))
    };
    Usage {
        cpu_ms: cpu_ns / 1e6,
        rss_mib: kib("VmRSS:") / 1024.0,
        peak_rss_mib: kib("VmHWM:") / 1024.0,
    }
}

/// The container's cgroup directory in hierarchy `controller`: kubelet's
/// cgroupfs layout under the node's cgroup root,
/// `<node>/kubepods/<qos>/pod<uid>/<container id>`.
fn container_cgroup(controller: &str, node: &str, uid: &str, id: &str) -> String {
    let base = format!("/sys/fs/cgroup/{controller}/{node}/kubepods");
    for qos in ["", "burstable/", "besteffort/"] {
        let dir = format!("{base}/{qos}pod{uid}/{id}");
        if std::path::Path::new(&dir).is_dir() {
            return dir;
        }
    }
    panic!("no cgroup for container {id} of pod {uid} under {base}")
}
