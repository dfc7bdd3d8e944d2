//! Topology files: a lab's pods, the nodes they run on, the wires between
//! them and the layer-2 segments they share, in the shape containerlab
//! users know.
//!
//! ```yaml
//! name: ring            # the lab's name (optional)
//! backend: vxlan        # optional
//! nodes: 2              # optional: at least the highest node a pod names
//! vm-nodes: [n2]        # optional: nodes that are VMs with their own kernel
//! segments:             # optional: layer-2 segments across the nodes
//!   lan: {vni: 4001, subnet: 192.168.50.0/24}
//! topology:
//!   nodes:              # the pods, each on a lab node (n1, n2, ...)
//!     r1: {node: n1}
//!     r2: {node: n2}
//!     r3: {node: n1}
//!   links:
//!     - endpoints: ["r1:eth1", "r2:eth1"]
//!     - endpoints: ["r1:eth2", "r3:eth1"]
//!     - endpoints: ["r2:eth2", "lan"]     # an interface on a segment
//!     - endpoints: ["r3:eth2", "lan"]
//! ```
//!
//! Each link between two pods becomes the `tweed.io/wires` declaration of
//! both, which the plugin records and tweedd cables exactly as in a
//! cluster. Each segment becomes an entry of the lab's net-conf
//! `Segments` (keys as there, in kebab-case: `vni`, `vlan`, `mtu`,
//! `subnet`, `block-len`, `ipv6-subnet`, `ipv6-block-len`), and a link to
//! it an attachment through the segment's own network configuration, as
//! Multus would add a second network.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tweed_segment::Segment;

use crate::LabError;

/// Why a topology file is refused; the text names the file's field.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{0}")]
    Yaml(#[from] serde_saphyr::Error),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A segment problem the file's words cannot name (not expected:
    /// every entry comes from a named segment).
    #[error(transparent)]
    Segment(tweed_segment::SegmentError),
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> TopologyError {
    TopologyError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The namespace lab pods are in (wires name pods `namespace/name`).
pub const POD_NAMESPACE: &str = "default";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyFile {
    pub name: Option<String>,
    pub backend: Option<String>,
    pub nodes: Option<usize>,
    /// Lab nodes booted as VMs ([`crate::vm_node`]).
    #[serde(default, rename = "vm-nodes")]
    pub vm_nodes: Vec<String>,
    #[serde(default)]
    pub segments: BTreeMap<String, SegmentSpec>,
    pub topology: Topology,
}

/// A segment as a topology file declares it: net-conf's keys, kebab-case.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SegmentSpec {
    #[serde(rename(serialize = "VNI"))]
    pub vni: u32,
    #[serde(
        default,
        rename(serialize = "VLAN"),
        skip_serializing_if = "Option::is_none"
    )]
    pub vlan: Option<u16>,
    #[serde(
        default,
        rename(serialize = "MTU"),
        skip_serializing_if = "Option::is_none"
    )]
    pub mtu: Option<u32>,
    #[serde(
        default,
        rename(serialize = "Subnet"),
        skip_serializing_if = "Option::is_none"
    )]
    pub subnet: Option<String>,
    #[serde(
        default,
        rename(serialize = "BlockLen"),
        skip_serializing_if = "Option::is_none"
    )]
    pub block_len: Option<u8>,
    #[serde(
        default,
        rename(serialize = "IPv6Subnet"),
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_subnet: Option<String>,
    #[serde(
        default,
        rename(serialize = "IPv6BlockLen"),
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_block_len: Option<u8>,
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

/// One pod to create: where, its wires annotation and its interfaces on
/// segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPod {
    pub name: String,
    pub node: String,
    /// `eth1=r2:eth1, ...`; empty without wires.
    pub wires: String,
    /// (interface, segment) pairs.
    pub segments: Vec<(String, String)>,
}

impl TopologyFile {
    pub fn read(path: &Path) -> Result<TopologyFile, LabError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LabError::io(format!("read {}", path.display()), e))?;
        Self::parse(&text).map_err(|e| LabError::Usage(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<TopologyFile, TopologyError> {
        let t: TopologyFile = serde_saphyr::from_str(text)?;
        t.net_conf_segments()?;
        t.pods()?;
        t.vm_node_numbers()?;
        Ok(t)
    }

    /// The numbers of the nodes `vm-nodes` names, each a node of the lab.
    pub fn vm_node_numbers(&self) -> Result<Vec<usize>, TopologyError> {
        let count = self.node_count()?;
        self.vm_nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                node_number(n).filter(|k| *k <= count).ok_or_else(|| {
                    invalid(
                        format!("vm-nodes[{i}]"),
                        format!("{n:?} is not a node of this lab (n1 to n{count})"),
                    )
                })
            })
            .collect()
    }

    /// The file's segments as net-conf `Segments` entries, checked as
    /// tweedd checks them (errors name `segments.<name>`).
    pub fn net_conf_segments(&self) -> Result<Vec<serde_json::Value>, TopologyError> {
        let entries: Vec<serde_json::Value> = self
            .segments
            .iter()
            .map(|(name, spec)| {
                let mut entry = serde_json::to_value(spec).expect("a segment serialises");
                entry["Name"] = name.clone().into();
                entry
            })
            .collect();
        let names: Vec<&String> = self.segments.keys().collect();
        let parsed = entries
            .iter()
            .zip(&names)
            .map(|(e, name)| {
                serde_json::from_value::<Segment>(e.clone()).map_err(|err| {
                    invalid(format!("segments.{name}"), kebab_keys(&err.to_string()))
                })
            })
            .collect::<Result<Vec<Segment>, TopologyError>>()?;
        tweed_segment::validate(&parsed).map_err(|e| {
            // `Segments[i].Field: why` → `segments.<name>: Field: why`.
            match names.get(e.index) {
                Some(name) => invalid(
                    format!("segments.{name}"),
                    kebab_keys(&e.problem.to_string()),
                ),
                None => TopologyError::Segment(e),
            }
        })?;
        Ok(entries)
    }

    /// The number of lab nodes: `nodes`, else the highest one a pod uses.
    pub fn node_count(&self) -> Result<usize, TopologyError> {
        let mut highest = 1;
        for (pod, spec) in &self.topology.nodes {
            let n = node_number(&spec.node).ok_or_else(|| {
                invalid(
                    format!("topology.nodes.{pod}.node"),
                    format!("{:?} is not a lab node (n1, n2, ...)", spec.node),
                )
            })?;
            highest = highest.max(n);
        }
        match self.nodes {
            Some(n) if n < highest => Err(invalid(
                "nodes",
                format!("{n}, but a pod is placed on n{highest}"),
            )),
            Some(n) => Ok(n),
            None => Ok(highest),
        }
    }

    /// The pods with their wires, in a stable order.
    pub fn pods(&self) -> Result<Vec<PlannedPod>, TopologyError> {
        self.node_count()?;
        let mut wires: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut segments: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
        let mut used: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (i, link) in self.topology.links.iter().enumerate() {
            let field = format!("topology.links[{i}].endpoints");
            let mut ends = Vec::new();
            let mut segment = None;
            for e in &link.endpoints {
                if self.segments.contains_key(e.as_str()) {
                    if segment.replace(e.as_str()).is_some() {
                        return Err(invalid(
                            field,
                            "both ends are segments; a link joins a pod interface to a pod interface or to a segment",
                        ));
                    }
                    continue;
                }
                let (pod, ifname) = e.split_once(':').ok_or_else(|| {
                    invalid(
                        &field,
                        format!("{e:?} must be <pod>:<interface> or a segment of `segments`"),
                    )
                })?;
                if !self.topology.nodes.contains_key(pod) {
                    return Err(invalid(field, format!("{pod:?} is not in topology.nodes")));
                }
                tweed_wire::Endpoint::new(&format!("{POD_NAMESPACE}/{pod}"), ifname)
                    .map_err(|err| invalid(&field, format!("{e:?}: {err}")))?;
                if ifname == "eth0" {
                    return Err(invalid(
                        field,
                        format!("{e:?}: eth0 is the pod network's interface"),
                    ));
                }
                if let Some(j) = used.insert((pod.to_string(), ifname.to_string()), i) {
                    return Err(invalid(
                        field,
                        format!("{e:?} is already cabled by topology.links[{j}]"),
                    ));
                }
                ends.push((pod, ifname));
            }
            if let Some(segment) = segment {
                let (pod, ifname) = ends[0];
                segments
                    .entry(pod)
                    .or_default()
                    .push((ifname.to_string(), segment.to_string()));
                continue;
            }
            let [(a, ai), (b, bi)] = [ends[0], ends[1]];
            if a == b {
                return Err(invalid(field, format!("both ends are in pod {a}")));
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
                segments: segments.remove(name.as_str()).unwrap_or_default(),
            })
            .collect())
    }
}

/// Creates the file's pods in a running lab (whose nodes it fits) and
/// waits until every wire is up.
pub fn build(lab: &mut crate::Lab, t: &TopologyFile) -> Result<(), LabError> {
    let pods = t.pods().map_err(|e| LabError::Usage(e.to_string()))?;
    let needed = t.node_count().map_err(|e| LabError::Usage(e.to_string()))?;
    if lab.state.nodes.len() < needed {
        return Err(LabError::Usage(format!(
            "the topology needs {needed} nodes; the lab has {}",
            lab.state.nodes.len()
        )));
    }
    for p in &pods {
        lab.add_pod_wired(&p.node, &p.name, &p.wires)?;
        for (ifname, segment) in &p.segments {
            lab.attach_to_segment(&p.node, &p.name, ifname, segment)?;
        }
    }
    lab.wait_wires_up(std::time::Duration::from_secs(30))
}

/// A net-conf message about a segment in the topology file's words: its
/// keys in kebab-case.
fn kebab_keys(text: &str) -> String {
    [
        ("IPv6BlockLen", "ipv6-block-len"),
        ("IPv6Subnet", "ipv6-subnet"),
        ("BlockLen", "block-len"),
        ("Subnet", "subnet"),
        ("VLAN", "vlan"),
        ("VNI", "vni"),
        ("MTU", "mtu"),
        ("Name", "name"),
    ]
    .iter()
    .fold(text.to_string(), |t, (from, to)| t.replace(from, to))
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
                    wires: "eth1=r2:eth1, eth2=r3:eth1".into(),
                    segments: vec![]
                },
                PlannedPod {
                    name: "r2".into(),
                    node: "n2".into(),
                    wires: "eth1=r1:eth1".into(),
                    segments: vec![]
                },
                PlannedPod {
                    name: "r3".into(),
                    node: "n1".into(),
                    wires: "eth1=r1:eth2".into(),
                    segments: vec![]
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
    fn links_to_a_segment_attach_the_interface() {
        let t = TopologyFile::parse(
            r#"
segments:
  lan: {vni: 4001, subnet: 192.168.50.0/24, ipv6-subnet: "fd00:50::/48"}
  dmz: {vni: 4002, vlan: 20, mtu: 1400}
topology:
  nodes:
    pc1: {node: n1}
    vm1: {node: n2}
  links:
    - endpoints: ["pc1:eth1", "lan"]
    - endpoints: ["dmz", "vm1:eth1"]
    - endpoints: ["pc1:eth2", "vm1:eth2"]
"#,
        )
        .unwrap();
        let pods = t.pods().unwrap();
        assert_eq!(pods[0].name, "pc1");
        assert_eq!(pods[0].segments, vec![("eth1".into(), "lan".into())]);
        assert_eq!(pods[0].wires, "eth2=vm1:eth2");
        assert_eq!(pods[1].segments, vec![("eth1".into(), "dmz".into())]);
        assert_eq!(
            serde_json::Value::from(t.net_conf_segments().unwrap()),
            serde_json::json!([
                {"Name": "dmz", "VNI": 4002, "VLAN": 20, "MTU": 1400},
                {"Name": "lan", "VNI": 4001, "Subnet": "192.168.50.0/24", "IPv6Subnet": "fd00:50::/48"},
            ])
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            (
                "vm-nodes: [n3]\ntopology: {nodes: {r1: {node: n2}}}",
                "vm-nodes[0]: \"n3\" is not a node of this lab (n1 to n2)",
            ),
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
            (
                "segments: {lan: {vni: 0}}\ntopology: {nodes: {r1: {node: n1}}}",
                "segments.lan: vni: 0 is outside",
            ),
            (
                "segments: {lan: {vni: 5, subnet: \"fd00::/64\"}}\ntopology: {nodes: {r1: {node: n1}}}",
                "segments.lan: \"fd00::/64\" is not an IPv4 prefix (a.b.c.d/len); an IPv6 prefix goes in ipv6-subnet",
            ),
            (
                "segments: {lan: {vni: 5, vni-x: 1}}\ntopology: {nodes: {r1: {node: n1}}}",
                "vni-x",
            ),
            (
                "segments: {Lan: {vni: 5}}\ntopology: {nodes: {r1: {node: n1}}}",
                "segments.Lan: name",
            ),
            (
                "segments: {a: {vni: 5}, b: {vni: 5}}\ntopology: {nodes: {r1: {node: n1}}}",
                "segments.b: vni 5 is used by an earlier segment",
            ),
            (
                "segments: {a: {vni: 5}, b: {vni: 6}}\ntopology: {nodes: {r1: {node: n1}}, links: [{endpoints: [\"a\", \"b\"]}]}",
                "both ends are segments",
            ),
            (
                "segments: {a: {vni: 5}}\ntopology: {nodes: {r1: {node: n1}, r2: {node: n1}}, links: [{endpoints: [\"r1:eth1\", \"a\"]}, {endpoints: [\"r1:eth1\", \"r2:eth1\"]}]}",
                "already cabled by topology.links[0]",
            ),
            (
                "topology: {nodes: {r1: {node: n1}}, links: [{endpoints: [\"r1:eth1\", \"lan\"]}]}",
                "or a segment of `segments`",
            ),
        ] {
            let e = TopologyFile::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
