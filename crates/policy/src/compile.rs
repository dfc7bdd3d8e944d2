//! NetworkPolicies → what each pod of this node may receive and send.
//!
//! A pod is isolated for ingress (egress) when a policy of its namespace
//! selects it and lists `Ingress` (`Egress`) among its policy types; it
//! may then receive (send) what any rule of any such policy allows. A
//! rule allows traffic from (to) any of its peers on any of its ports; no
//! peers means every peer, no ports every port. Replies of allowed
//! connections, and traffic between a pod and its own node, are not the
//! policies' business (see [`crate::render`]).

use std::borrow::Borrow;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::cluster::{Cluster, PodView};
use crate::selector::matches;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The API's protocol name (`TCP` when absent, as the API defaults it).
    pub fn parse(name: Option<&str>) -> Option<Protocol> {
        match name.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nft's name for it (`meta l4proto tcp`).
    pub fn nft_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// An address block: `net` but not `except`. A pod peer is a block of one
/// address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Block {
    pub net: IpNet,
    pub except: Vec<IpNet>,
}

impl Block {
    fn host(ip: IpAddr) -> Block {
        Block {
            net: IpNet::from(ip),
            except: Vec::new(),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.net.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }
}

/// A protocol and, optionally, a range of its ports (none: all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortMatch {
    pub protocol: Protocol,
    pub ports: Option<(u16, u16)>,
}

/// One allow rule: peers (`None`: any peer) and ports (`None`: any port
/// of any protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub peers: Option<Vec<Block>>,
    pub ports: Option<Vec<PortMatch>>,
}

/// What a pod of this node may receive and send. `None`: not isolated in
/// that direction (everything passes); `Some(rules)`: only what one of
/// the rules allows (no rules: nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPolicy {
    pub namespace: String,
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
}

impl PodPolicy {
    pub fn isolated(&self) -> bool {
        self.ingress.is_some() || self.egress.is_some()
    }
}

/// Which directions a policy governs: its `policyTypes`, or, where the
/// API did not fill them in, Ingress always and Egress when it has egress
/// rules (the API's own default).
fn directions(p: &NetworkPolicy) -> (bool, bool) {
    let Some(spec) = &p.spec else {
        return (false, false);
    };
    match &spec.policy_types {
        Some(types) => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        None => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

/// The pods a peer names (for a policy in namespace `ns`), or its block.
fn peer_blocks(peer: &NetworkPolicyPeer, ns: &str, cluster: &Cluster) -> Vec<Block> {
    if let Some(b) = &peer.ip_block {
        let Ok(net) = b.cidr.parse::<IpNet>() else {
            return Vec::new();
        };
        let except = b
            .except
            .iter()
            .flatten()
            .filter_map(|e| e.parse::<IpNet>().ok())
            .map(|e| e.trunc())
            .collect();
        return vec![Block {
            net: net.trunc(),
            except,
        }];
    }
    let in_namespace = |pod: &PodView| match &peer.namespace_selector {
        None => pod.namespace == ns,
        Some(sel) => matches(sel, &cluster.namespace_labels(&pod.namespace)),
    };
    let by_labels = |pod: &PodView| {
        peer.pod_selector
            .as_ref()
            .is_none_or(|sel| matches(sel, &pod.labels))
    };
    if peer.namespace_selector.is_none() && peer.pod_selector.is_none() {
        return Vec::new();
    }
    cluster
        .pods
        .iter()
        .filter(|p| in_namespace(p) && by_labels(p))
        .flat_map(|p| p.ips.iter().copied().map(Block::host))
        .collect()
}

/// A rule's `from` or `to`: `None` for every peer.
fn peers(list: Option<&Vec<NetworkPolicyPeer>>, ns: &str, cluster: &Cluster) -> Option<Vec<Block>> {
    let list = list.filter(|l| !l.is_empty())?;
    let mut blocks: Vec<Block> = list
        .iter()
        .flat_map(|p| peer_blocks(p, ns, cluster))
        .collect();
    blocks.sort();
    blocks.dedup();
    Some(blocks)
}

/// A port entry: a number (with `endPort`, a range), a name, or none (all
/// ports of the protocol).
enum PortSpec {
    Numbers(PortMatch),
    Named(String, Protocol),
}

fn port_spec(p: &NetworkPolicyPort) -> Option<PortSpec> {
    let protocol = Protocol::parse(p.protocol.as_deref())?;
    let number = |n: i32| u16::try_from(n).ok().filter(|n| *n > 0);
    Some(match &p.port {
        None => PortSpec::Numbers(PortMatch {
            protocol,
            ports: None,
        }),
        Some(IntOrString::Int(n)) => {
            let first = number(*n)?;
            let last = p.end_port.map_or(Some(first), number)?;
            if last < first {
                return None;
            }
            PortSpec::Numbers(PortMatch {
                protocol,
                ports: Some((first, last)),
            })
        }
        Some(IntOrString::String(name)) => match name.parse::<i32>() {
            // "8080" is a number written as a string.
            Ok(n) => PortSpec::Numbers(PortMatch {
                protocol,
                ports: Some((number(n)?, number(n)?)),
            }),
            Err(_) => PortSpec::Named(name.clone(), protocol),
        },
    })
}

/// The rules one policy rule gives pod `target` in one direction.
/// Ingress resolves named ports on the target itself; egress on each
/// destination pod, so a named port there becomes one rule per pod that
/// has it.
fn rules_of(
    peers: Option<Vec<Block>>,
    ports: Option<&Vec<NetworkPolicyPort>>,
    target: &PodView,
    ingress: bool,
    cluster: &Cluster,
) -> Vec<Rule> {
    let Some(ports) = ports.filter(|p| !p.is_empty()) else {
        return vec![Rule { peers, ports: None }];
    };
    let mut numbered = Vec::new();
    let mut out = Vec::new();
    for spec in ports.iter().filter_map(port_spec) {
        match spec {
            PortSpec::Numbers(m) => numbered.push(m),
            PortSpec::Named(name, protocol) if ingress => {
                if let Some(port) = target.named_port(&name, protocol) {
                    numbered.push(PortMatch {
                        protocol,
                        ports: Some((port, port)),
                    });
                }
            }
            PortSpec::Named(name, protocol) => {
                for pod in &cluster.pods {
                    let Some(port) = pod.named_port(&name, protocol) else {
                        continue;
                    };
                    let ips: Vec<Block> = pod
                        .ips
                        .iter()
                        .filter(|ip| {
                            peers
                                .as_ref()
                                .is_none_or(|bs| bs.iter().any(|b| b.contains(**ip)))
                        })
                        .map(|ip| Block::host(*ip))
                        .collect();
                    if !ips.is_empty() {
                        out.push(Rule {
                            peers: Some(ips),
                            ports: Some(vec![PortMatch {
                                protocol,
                                ports: Some((port, port)),
                            }]),
                        });
                    }
                }
            }
        }
    }
    if !numbered.is_empty() {
        numbered.sort();
        numbered.dedup();
        out.insert(
            0,
            Rule {
                peers,
                ports: Some(numbered),
            },
        );
    }
    out
}

/// The policy of every pod `local` picks (this node's), in a stable order:
/// each pod's rules from every policy of its namespace that selects it.
pub fn compile<P: Borrow<NetworkPolicy>>(
    policies: &[P],
    cluster: &Cluster,
    local: impl Fn(&PodView) -> bool,
) -> Vec<PodPolicy> {
    let mut out: Vec<PodPolicy> = cluster
        .pods
        .iter()
        .filter(|p| local(p) && !p.ips.is_empty())
        .map(|pod| pod_policy(policies, cluster, pod))
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

fn pod_policy<P: Borrow<NetworkPolicy>>(
    policies: &[P],
    cluster: &Cluster,
    pod: &PodView,
) -> PodPolicy {
    let mut ingress: Option<Vec<Rule>> = None;
    let mut egress: Option<Vec<Rule>> = None;
    for policy in policies.iter().map(Borrow::borrow) {
        let ns = policy.metadata.namespace.as_deref().unwrap_or_default();
        let Some(spec) = &policy.spec else { continue };
        // An absent podSelector is the empty one: every pod.
        let selects = spec
            .pod_selector
            .as_ref()
            .is_none_or(|sel| matches(sel, &pod.labels));
        if ns != pod.namespace || !selects {
            continue;
        }
        let (governs_ingress, governs_egress) = directions(policy);
        if governs_ingress {
            let rules = ingress.get_or_insert_with(Vec::new);
            for r in spec.ingress.iter().flatten() {
                let from = peers(r.from.as_ref(), ns, cluster);
                rules.extend(rules_of(from, r.ports.as_ref(), pod, true, cluster));
            }
        }
        if governs_egress {
            let rules = egress.get_or_insert_with(Vec::new);
            for r in spec.egress.iter().flatten() {
                let to = peers(r.to.as_ref(), ns, cluster);
                rules.extend(rules_of(to, r.ports.as_ref(), pod, false, cluster));
            }
        }
    }
    // A rule whose peers resolved to nothing allows nothing.
    for rules in [&mut ingress, &mut egress].into_iter().flatten() {
        rules.retain(|r| r.peers.as_ref().is_none_or(|p| !p.is_empty()));
    }
    PodPolicy {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        ips: pod.ips.clone(),
        ingress,
        egress,
    }
}
