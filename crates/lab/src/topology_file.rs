//! Topology files: a lab's pods, the nodes they run on and the wires
//! between them, in the shape containerlab users know.
//!
//! ```yaml
//! name: ring            # the lab's name (optional)
//! backend: vxlan        # optional
//! nodes: 2              # optional: at least the highest node a pod names
//! topology:
//!   nodes:              # the pods, each on a lab node (n1, n2, ...)
//!     r1: {node: n1}
//!     r2: {node: n2}
//!     r3: {node: n1}
//!   links:
//!     - endpoints: ["r1:eth1", "r2:eth1"]
//!     - endpoints: ["r1:eth2", "r3:eth1"]
//! ```
//!
//! Each link becomes the `tweed.io/wires` declaration of both pods, which
//! the plugin records and tweedd cables exactly as in a cluster.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::LabError;

/// The namespace lab pods are in (wires name pods `namespace/name`).
pub const POD_NAMESPACE: &str = "default";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyFile {
    pub name: Option<String>,
    pub backend: Option<String>,
    pub nodes: Option<usize>,
    pub topology: Topology,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub nodes: BTreeMap<String, PodSpec>,
    #[serde(default)]
    pub links: Vec<Link>,
}

#[derive(Debug, Deserialize)]
pub struct PodSpec {
    /// The lab node the pod runs on (`n1`...).
    pub node: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub endpoints: [String; 2],
}

/// One pod to create: where, and its wires annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPod {
    pub name: String,
    pub node: String,
    /// `eth1=r2:eth1, ...`; empty without wires.
    pub wires: String,
}

impl TopologyFile {
    pub fn read(path: &Path) -> Result<TopologyFile, LabError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LabError::io(format!("read {}", path.display()), e))?;
        Self::parse(&text).map_err(|e| LabError::Usage(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<TopologyFile, String> {
        let t: TopologyFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        t.pods()?;
        Ok(t)
    }

    /// The number of lab nodes: `nodes`, else the highest one a pod uses.
    pub fn node_count(&self) -> Result<usize, String> {
        let mut highest = 1;
        for (pod, spec) in &self.topology.nodes {
            let n = node_number(&spec.node).ok_or_else(|| {
                format!(
                    "topology.nodes.{pod}.node: {:?} is not a lab node (n1, n2, ...)",
                    spec.node
                )
            })?;
            highest = highest.max(n);
        }
        match self.nodes {
            Some(n) if n < highest => Err(format!("nodes: {n}, but a pod is placed on n{highest}")),
            Some(n) => Ok(n),
            None => Ok(highest),
        }
    }

    /// The pods with their wires, in a stable order.
    pub fn pods(&self) -> Result<Vec<PlannedPod>, String> {
        self.node_count()?;
        let mut wires: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut used: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (i, link) in self.topology.links.iter().enumerate() {
            let field = format!("topology.links[{i}].endpoints");
            let mut ends = Vec::new();
            for e in &link.endpoints {
                let (pod, ifname) = e
                    .split_once(':')
                    .ok_or_else(|| format!("{field}: {e:?} must be <pod>:<interface>"))?;
                if !self.topology.nodes.contains_key(pod) {
                    return Err(format!("{field}: {pod:?} is not in topology.nodes"));
                }
                tweed_wire::Endpoint::new(&format!("{POD_NAMESPACE}/{pod}"), ifname)
                    .map_err(|err| format!("{field}: {e:?}: {err}"))?;
                if ifname == "eth0" {
                    return Err(format!(
                        "{field}: {e:?}: eth0 is the pod network's interface"
                    ));
                }
                if let Some(j) = used.insert((pod.to_string(), ifname.to_string()), i) {
                    return Err(format!(
                        "{field}: {e:?} is already cabled by topology.links[{j}]"
                    ));
                }
                ends.push((pod, ifname));
            }
            let [(a, ai), (b, bi)] = [ends[0], ends[1]];
            if a == b {
                return Err(format!("{field}: both ends are in pod {a}"));
            }
            wires.entry(a).or_default().push(format!("{ai}={b}:{bi}"));
            wires.entry(b).or_default().push(format!("{bi}={a}:{ai}"));
        }
        Ok(self
            .topology
            .nodes
            .iter()
            .map(|(name, spec)| PlannedPod {
                name: name.clone(),
                node: spec.node.clone(),
                wires: wires
                    .get(name.as_str())
                    .map(|w| w.join(", "))
                    .unwrap_or_default(),
            })
            .collect())
    }
}

/// Creates the file's pods in a running lab (whose nodes it fits) and
/// waits until every wire is up.
pub fn build(lab: &mut crate::Lab, t: &TopologyFile) -> Result<(), LabError> {
    let pods = t.pods().map_err(LabError::Usage)?;
    let needed = t.node_count().map_err(LabError::Usage)?;
    if lab.state.nodes.len() < needed {
        return Err(LabError::Usage(format!(
            "the topology needs {needed} nodes; the lab has {}",
            lab.state.nodes.len()
        )));
    }
    for p in &pods {
        lab.add_pod_wired(&p.node, &p.name, &p.wires)?;
    }
    lab.wait_wires_up(std::time::Duration::from_secs(30))
}

fn node_number(node: &str) -> Option<usize> {
    node.strip_prefix('n')?
        .parse()
        .ok()
        .filter(|n| (1..=crate::topology::MAX_NODES).contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: &str = r#"
name: ring
topology:
  nodes:
    r1: {node: n1}
    r2: {node: n2}
    r3: {node: n1}
  links:
    - endpoints: ["r1:eth1", "r2:eth1"]
    - endpoints: ["r1:eth2", "r3:eth1"]
"#;

    #[test]
    fn links_become_both_pods_wires() {
        let t = TopologyFile::parse(RING).unwrap();
        assert_eq!(t.name.as_deref(), Some("ring"));
        assert_eq!(t.node_count().unwrap(), 2);
        let pods = t.pods().unwrap();
        assert_eq!(
            pods,
            vec![
                PlannedPod {
                    name: "r1".into(),
                    node: "n1".into(),
                    wires: "eth1=r2:eth1, eth2=r3:eth1".into()
                },
                PlannedPod {
                    name: "r2".into(),
                    node: "n2".into(),
                    wires: "eth1=r1:eth1".into()
                },
                PlannedPod {
                    name: "r3".into(),
                    node: "n1".into(),
                    wires: "eth1=r1:eth2".into()
                },
            ]
        );
        for p in &pods {
            let parsed =
                tweed_wire::parse_annotation(&p.wires, &format!("default/{}", p.name)).unwrap();
            assert!(!parsed.is_empty());
        }
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            (
                "topology: {nodes: {r1: {node: x1}}}",
                "topology.nodes.r1.node",
            ),
            ("nodes: 1\ntopology: {nodes: {r1: {node: n2}}}", "nodes: 1"),
            (
                "topology: {nodes: {r1: {node: n1}}, links: [{endpoints: [\"r1:eth1\", \"r9:eth1\"]}]}",
                "\"r9\" is not in topology.nodes",
            ),
            (
                "topology: {nodes: {r1: {node: n1}, r2: {node: n1}}, links: [{endpoints: [\"r1:eth1\", \"r2:eth1\"]}, {endpoints: [\"r1:eth1\", \"r2:eth2\"]}]}",
                "already cabled by topology.links[0]",
            ),
            (
                "topology: {nodes: {r1: {node: n1}, r2: {node: n1}}, links: [{endpoints: [\"r1:eth0\", \"r2:eth1\"]}]}",
                "eth0",
            ),
            (
                "topology: {nodes: {r1: {node: n1}}, links: [{endpoints: [\"r1:eth1\", \"r1:eth2\"]}]}",
                "both ends",
            ),
            ("topology: {nodes: {r1: {node: n1}}, linx: []}", "linx"),
        ] {
            let e = TopologyFile::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
