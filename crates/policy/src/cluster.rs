//! The pods and namespaces NetworkPolicies speak about: labels, the
//! pod's addresses, its named container ports.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};

use crate::compile::Protocol;
use crate::selector::Labels;

/// A container port with a name, which policies may name instead of its
/// number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// A pod as policies see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// Its pod-network addresses (none yet: it cannot be a peer).
    pub ips: Vec<IpAddr>,
    pub ports: Vec<NamedPort>,
    /// The node it runs on.
    pub node: Option<String>,
}

impl PodView {
    /// A pod on the pod network; `None` for one on the host's network
    /// (NetworkPolicy does not apply to it) or one that has finished.
    pub fn from_pod(pod: &Pod) -> Option<PodView> {
        let spec = pod.spec.as_ref()?;
        if spec.host_network == Some(true) {
            return None;
        }
        let status = pod.status.as_ref();
        if status
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
        {
            return None;
        }
        let ips = status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.ip.parse().ok())
            .collect();
        let ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                Some(NamedPort {
                    name: p.name.clone()?,
                    protocol: Protocol::parse(p.protocol.as_deref())?,
                    port: u16::try_from(p.container_port).ok()?,
                })
            })
            .collect();
        Some(PodView {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ips,
            ports,
            node: spec.node_name.clone(),
        })
    }

    /// Its port named `name` for `protocol`, if it has one.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol == protocol)
            .map(|p| p.port)
    }
}

/// Every pod and namespace, as the policies see them.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub pods: Vec<PodView>,
    /// Namespace name → its labels.
    pub namespaces: BTreeMap<String, Labels>,
}

impl Cluster {
    pub fn from_objects<'a>(
        pods: impl IntoIterator<Item = &'a Pod>,
        namespaces: impl IntoIterator<Item = &'a Namespace>,
    ) -> Cluster {
        Cluster {
            pods: pods.into_iter().filter_map(PodView::from_pod).collect(),
            namespaces: namespaces
                .into_iter()
                .filter_map(|n| {
                    Some((
                        n.metadata.name.clone()?,
                        n.metadata.labels.clone().unwrap_or_default(),
                    ))
                })
                .collect(),
        }
    }

    /// The labels of namespace `name` (none if it is not known).
    pub fn namespace_labels(&self, name: &str) -> Labels {
        self.namespaces.get(name).cloned().unwrap_or_default()
    }
}
