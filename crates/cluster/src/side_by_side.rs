//! flannel and tweed on one cluster, each node running one of them as its
//! label `tweed.io/network` says: the procedure of docs/migration.md.
//! flannel's DaemonSet keeps to nodes labelled `flannel`; tweed's
//! (deploy/tweed.yaml with deploy/flannel-compat.yaml, so it adopts
//! flannel's device, bridge and CNI network name) stays off them. The
//! migration test moves the nodes one by one; the flannel benchmark moves
//! all of them back and forth to measure both on the same machines.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pods::{Pod, condition, pod_netns};
use crate::{Cluster, flannel, install};

/// The label that says which network runs on a node.
pub const LABEL: &str = "tweed.io/network";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Flannel,
    Tweed,
}

impl Network {
    /// The label's value, which is also the network's name.
    pub fn label(self) -> &'static str {
        match self {
            Network::Flannel => "flannel",
            Network::Tweed => "tweed",
        }
    }

    /// The namespace of the network's DaemonSet.
    pub fn namespace(self) -> &'static str {
        match self {
            Network::Flannel => "kube-flannel",
            Network::Tweed => "kube-tweed",
        }
    }
}

/// Step 1 of the migration: every node labelled `flannel`, and flannel's
/// DaemonSet given a node affinity for that label.
pub fn keep_flannel_to_its_nodes(c: &Cluster) {
    c.kubectl_ok(&["label", "nodes", "--all", &format!("{LABEL}=flannel")]);
    let affinity = format!(
        r#"[{{"op": "add", "path": "/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/-", "value": {{"key": "{LABEL}", "operator": "In", "values": ["flannel"]}}}}]"#
    );
    c.kubectl_ok(&[
        "-n",
        "kube-flannel",
        "patch",
        "ds",
        "kube-flannel-ds",
        "--type=json",
        "-p",
        &affinity,
    ]);
    flannel::daemonset_ready(c, c.nodes);
}

/// Step 2: tweed installed from `tweed_manifest` with
/// deploy/flannel-compat.yaml, running on no node yet.
pub fn install_tweed_beside(c: &Cluster, tweed_manifest: &str) {
    c.apply(&format!(
        "{tweed_manifest}\n---\n{}",
        install::deploy_file("flannel-compat.yaml")
    ));
    std::thread::sleep(Duration::from_secs(5));
    let ds = c.json(&["-n", "kube-tweed", "get", "ds", "tweed"]);
    assert_eq!(
        ds["status"]["desiredNumberScheduled"], 0,
        "tweed scheduled onto flannel's nodes"
    );
}

/// Whether namespace `ns` has a pod on `node` (terminating ones count),
/// and if so whether it is ready. One listing: a pod looked up again by
/// name may be gone by then.
pub fn pod_on(c: &Cluster, ns: &str, node: &str) -> Option<bool> {
    let field = format!("spec.nodeName={node}");
    let pods = c.json(&["-n", ns, "get", "pods", "--field-selector", &field]);
    let pod = pods["items"].as_array()?.first()?.clone();
    Some(condition(&pod, "Ready") == "True")
}

/// True once `node` runs `to`'s pod, ready, and nothing of the other.
pub fn runs_only(c: &Cluster, node: &str, to: Network) -> bool {
    let flannel = pod_on(c, Network::Flannel.namespace(), node);
    let tweed = pod_on(c, Network::Tweed.namespace(), node);
    match to {
        Network::Tweed => flannel.is_none() && tweed == Some(true),
        Network::Flannel => tweed.is_none() && flannel == Some(true),
    }
}

/// Labels node `i` for `to` and waits until it runs `to` only; how long
/// the switch took.
pub fn switch_node(c: &Cluster, i: usize, to: Network) -> Duration {
    let node = c.node_name(i);
    let started = Instant::now();
    c.kubectl_ok(&[
        "label",
        "node",
        &node,
        &format!("{LABEL}={}", to.label()),
        "--overwrite",
    ]);
    c.wait_until(180, &format!("{node} running {} only", to.label()), || {
        runs_only(c, &node, to)
    });
    started.elapsed()
}

/// Every node switched to `to` at once.
pub fn switch_all(c: &Cluster, to: Network) {
    c.kubectl_ok(&[
        "label",
        "nodes",
        "--all",
        &format!("{LABEL}={}", to.label()),
        "--overwrite",
    ]);
    for i in 1..=c.nodes {
        let node = c.node_name(i);
        c.wait_until(180, &format!("{node} running {} only", to.label()), || {
            runs_only(c, &node, to)
        });
    }
}

/// The name and alias of the host end of `pod`'s eth0.
pub fn host_veth_of(c: &Cluster, pod: &Pod) -> (String, String) {
    let i = c.node_index(&pod.node);
    let netns = pod_netns(c, pod);
    let inside = c.on_node(i, &["ip", "-n", &netns, "-j", "link", "show", "eth0"]);
    let inside: Value = serde_json::from_slice(&inside.stdout).expect("ip -j link");
    let peer = inside[0]["link_index"].as_u64().expect("eth0's peer index");
    let host = c.on_node(i, &["ip", "-j", "-d", "link", "show"]);
    let host: Value = serde_json::from_slice(&host.stdout).expect("ip -j link");
    let dev = host
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifindex"].as_u64() == Some(peer))
        .unwrap_or_else(|| panic!("no host device {peer} for {}", pod.name));
    let text = |k: &str| dev[k].as_str().unwrap_or_default().to_string();
    (text("ifname"), text("ifalias"))
}
