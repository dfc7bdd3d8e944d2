//! Node objects ↔ leases, with nothing but data: which subnet a Node's
//! `spec.podCIDR(s)` give this cluster network, the `tweed.io/`
//! annotations that carry a lease record, and the patches that write them
//! and the `NetworkUnavailable` condition.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use thiserror::Error;

use crate::lease::{Lease, LeaseAttrs, LeaseKey};

/// tweed's own annotation prefix (flannel's is `flannel.alpha.coreos.com/`).
pub const PREFIX: &str = "tweed.io/";
/// `vxlan`, `host-gw`, `srv6`: [`LeaseAttrs::backend_type`].
pub const BACKEND_TYPE: &str = "tweed.io/backend-type";
/// [`LeaseAttrs::backend_data`] as compact JSON (`{"VNI":1,"VtepMAC":".."}`).
pub const BACKEND_DATA: &str = "tweed.io/backend-data";
/// [`LeaseAttrs::backend_v6_data`] as compact JSON, when there is any.
pub const BACKEND_V6_DATA: &str = "tweed.io/backend-v6-data";
/// The underlay address peers send to ([`LeaseAttrs::public_ip`]).
pub const PUBLIC_IP: &str = "tweed.io/public-ip";
pub const PUBLIC_IPV6: &str = "tweed.io/public-ipv6";
/// [`LeaseAttrs::segment_macs`] as compact JSON, when there are any.
pub const SEGMENT_MACS: &str = "tweed.io/segment-macs";
/// [`LeaseAttrs::wire_ends`] as compact JSON, when there are any.
pub const WIRE_ENDS: &str = "tweed.io/wire-ends";

/// The names of one set of lease annotations.
#[derive(Debug, Clone, Copy)]
pub struct AnnotationNames {
    pub backend_type: &'static str,
    pub backend_data: &'static str,
    pub backend_v6_data: &'static str,
    pub public_ip: &'static str,
    pub public_ipv6: &'static str,
}

/// tweed's own annotations.
pub const TWEED: AnnotationNames = AnnotationNames {
    backend_type: BACKEND_TYPE,
    backend_data: BACKEND_DATA,
    backend_v6_data: BACKEND_V6_DATA,
    public_ip: PUBLIC_IP,
    public_ipv6: PUBLIC_IPV6,
};

/// flannel's (kube subnet manager), read and written under
/// `--flannel-compat` so flannel nodes and tweed nodes see each other
/// during a rolling migration.
pub const FLANNEL: AnnotationNames = AnnotationNames {
    backend_type: "flannel.alpha.coreos.com/backend-type",
    backend_data: "flannel.alpha.coreos.com/backend-data",
    backend_v6_data: "flannel.alpha.coreos.com/backend-v6-data",
    public_ip: "flannel.alpha.coreos.com/public-ip",
    public_ipv6: "flannel.alpha.coreos.com/public-ipv6",
};

/// flannel marks the nodes it manages through the API with this.
pub const FLANNEL_SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

/// The condition tweed clears once the node's network is up.
pub const CONDITION: &str = "NetworkUnavailable";
pub const READY_REASON: &str = "TweedIsUp";

/// The cluster network(s) of net-conf.json: a lease has a subnet of each
/// family configured here, inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Networks {
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Net>,
}

/// Why a Node's pod CIDRs give this network no subnet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CidrProblem {
    #[error(
        "node {node} has no spec.podCIDR yet. With the kube store each node's pod subnet is the one kube-controller-manager allocates: run it with --allocate-node-cidrs=true and --cluster-cidr={network} (the Network of net-conf.json); waiting for it, not ready until then"
    )]
    Missing { node: String, network: String },
    #[error("node {node}: spec.podCIDRs holds {cidr:?}, which is not a CIDR")]
    Unparsable { node: String, cidr: String },
    #[error(
        "node {node} has no IPv{family} pod CIDR inside the configured network {network} (its podCIDRs: {cidrs}); kube-controller-manager's --cluster-cidr must match net-conf.json"
    )]
    Outside {
        node: String,
        family: u8,
        network: String,
        cidrs: String,
    },
}

fn name_of(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

fn networks_text(nets: &Networks) -> String {
    let v: Vec<String> = [nets.ipv4.map(IpNet::V4), nets.ipv6.map(IpNet::V6)]
        .into_iter()
        .flatten()
        .map(|n| n.to_string())
        .collect();
    v.join(",")
}

/// The node's subnet for this network: for each configured family the
/// first of its pod CIDRs inside the network (`podCIDRs`, or the older
/// single `podCIDR`).
pub fn pod_subnet(node: &Node, nets: &Networks) -> Result<LeaseKey, CidrProblem> {
    let name = name_of(node);
    let spec = node.spec.as_ref();
    let mut raw: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if raw.is_empty()
        && let Some(c) = spec
            .and_then(|s| s.pod_cidr.clone())
            .filter(|c| !c.is_empty())
    {
        raw.push(c);
    }
    if raw.is_empty() {
        return Err(CidrProblem::Missing {
            node: name,
            network: networks_text(nets),
        });
    }
    let mut cidrs = Vec::new();
    for c in &raw {
        let net: IpNet = c.parse().map_err(|_| CidrProblem::Unparsable {
            node: name.clone(),
            cidr: c.clone(),
        })?;
        cidrs.push(net.trunc());
    }
    let outside = |family: u8, network: String| CidrProblem::Outside {
        node: name.clone(),
        family,
        network,
        cidrs: raw.join(","),
    };
    // The first CIDR of the network's family inside it.
    let pick = |pool: IpNet, family: u8| {
        cidrs
            .iter()
            .find(|c| pool.contains(*c))
            .copied()
            .ok_or_else(|| outside(family, pool.to_string()))
    };
    let mut key = LeaseKey {
        ipv4: None,
        ipv6: None,
    };
    if let Some(pool) = nets.ipv4
        && let IpNet::V4(n) = pick(IpNet::V4(pool), 4)?
    {
        key.ipv4 = Some(n);
    }
    if let Some(pool) = nets.ipv6
        && let IpNet::V6(n) = pick(IpNet::V6(pool), 6)?
    {
        key.ipv6 = Some(n);
    }
    Ok(key)
}

/// Why a node that carries tweed's annotations is no peer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BadNode {
    #[error("{0}")]
    Cidr(#[from] CidrProblem),
    #[error("node {node}: annotation {annotation}: {reason}")]
    Annotation {
        node: String,
        annotation: &'static str,
        reason: String,
    },
}

fn annotations(node: &Node) -> Option<&BTreeMap<String, String>> {
    node.metadata.annotations.as_ref()
}

/// The lease a Node stands for: `None` when it carries no tweed record
/// (its agent has not published yet, or it runs no tweed).
pub fn node_lease(node: &Node, nets: &Networks) -> Result<Option<Lease>, BadNode> {
    lease_from(node, nets, &TWEED)
}

/// [`node_lease`], falling back on flannel's annotations when the node has
/// no tweed record and `flannel_compat` is on (a node still on flannel).
pub fn node_lease_or_flannel(
    node: &Node,
    nets: &Networks,
    flannel_compat: bool,
) -> Result<Option<Lease>, BadNode> {
    match node_lease(node, nets)? {
        None if flannel_compat => lease_from(node, nets, &FLANNEL),
        found => Ok(found),
    }
}

fn lease_from(
    node: &Node,
    nets: &Networks,
    names: &AnnotationNames,
) -> Result<Option<Lease>, BadNode> {
    let Some(ann) = annotations(node) else {
        return Ok(None);
    };
    let Some(backend_type) = ann.get(names.backend_type) else {
        return Ok(None);
    };
    let name = name_of(node);
    let bad = |annotation: &'static str, reason: String| BadNode::Annotation {
        node: name.clone(),
        annotation,
        reason,
    };
    let json_of = |annotation: &'static str| -> Result<Value, BadNode> {
        match ann.get(annotation) {
            None => Ok(Value::Null),
            Some(text) => serde_json::from_str(text).map_err(|e| bad(annotation, e.to_string())),
        }
    };
    // tweed's own additions, read only from tweed's annotation set (a
    // flannel node has none).
    fn typed<T: serde::de::DeserializeOwned + Default>(
        text: Option<&String>,
        annotation: &'static str,
        tweed: bool,
        bad: &dyn Fn(&'static str, String) -> BadNode,
    ) -> Result<T, BadNode> {
        match text {
            Some(t) if tweed => serde_json::from_str(t).map_err(|e| bad(annotation, e.to_string())),
            _ => Ok(T::default()),
        }
    }
    let is_tweed = names.backend_type == TWEED.backend_type;
    let public_ip = match ann.get(names.public_ip) {
        None => None,
        Some(t) => Some(
            t.parse::<Ipv4Addr>()
                .map_err(|e| bad(names.public_ip, format!("{t:?}: {e}")))?,
        ),
    };
    let public_ipv6 = match ann.get(names.public_ipv6) {
        None => None,
        Some(t) => Some(
            t.parse::<Ipv6Addr>()
                .map_err(|e| bad(names.public_ipv6, format!("{t:?}: {e}")))?,
        ),
    };
    let attrs = LeaseAttrs {
        public_ip,
        public_ipv6,
        backend_type: backend_type.clone(),
        backend_data: json_of(names.backend_data)?.into(),
        backend_v6_data: json_of(names.backend_v6_data)?.into(),
        node_name: name.clone(),
        segment_macs: typed(ann.get(SEGMENT_MACS), SEGMENT_MACS, is_tweed, &bad)?,
        wire_ends: typed(ann.get(WIRE_ENDS), WIRE_ENDS, is_tweed, &bad)?,
    };
    let key = pod_subnet(node, nets)?;
    Ok(Some(Lease {
        key,
        attrs,
        expires: None,
    }))
}

/// A merge patch that sets a node's annotations to `attrs` and removes the
/// ones `attrs` leaves out (a public IPv6 address that went away); with
/// `flannel_compat`, flannel's annotations too, so flannel nodes take this
/// node for one of theirs.
pub fn annotations_patch(attrs: &LeaseAttrs, flannel_compat: bool) -> Value {
    let mut ann = serde_json::Map::new();
    let sets: &[AnnotationNames] = if flannel_compat {
        &[TWEED, FLANNEL]
    } else {
        &[TWEED]
    };
    let json_or_null = |v: &crate::lease::BackendData| match v.text() {
        None => Value::Null,
        Some(text) => Value::String(text.to_string()),
    };
    for names in sets {
        ann.insert(names.backend_type.into(), json!(attrs.backend_type));
        ann.insert(names.backend_data.into(), json_or_null(&attrs.backend_data));
        ann.insert(
            names.backend_v6_data.into(),
            json_or_null(&attrs.backend_v6_data),
        );
        ann.insert(
            names.public_ip.into(),
            json!(attrs.public_ip.map(|a| a.to_string())),
        );
        ann.insert(
            names.public_ipv6.into(),
            json!(attrs.public_ipv6.map(|a| a.to_string())),
        );
    }
    ann.insert(
        SEGMENT_MACS.into(),
        if attrs.segment_macs.is_empty() {
            Value::Null
        } else {
            json!(serde_json::to_string(&attrs.segment_macs).expect("MAC lists serialise"))
        },
    );
    ann.insert(
        WIRE_ENDS.into(),
        if attrs.wire_ends.is_empty() {
            Value::Null
        } else {
            json!(serde_json::to_string(&attrs.wire_ends).expect("wire ends serialise"))
        },
    );
    if flannel_compat {
        ann.insert(FLANNEL_SUBNET_MANAGER.into(), json!("true"));
    }
    json!({"metadata": {"annotations": ann}})
}

/// A merge patch that removes every tweed annotation.
pub fn remove_annotations_patch() -> Value {
    let mut ann = serde_json::Map::new();
    for k in [
        BACKEND_TYPE,
        BACKEND_DATA,
        BACKEND_V6_DATA,
        PUBLIC_IP,
        PUBLIC_IPV6,
        SEGMENT_MACS,
        WIRE_ENDS,
    ] {
        ann.insert(k.to_string(), Value::Null);
    }
    json!({"metadata": {"annotations": ann}})
}

/// True when the node already says `NetworkUnavailable=False` because of
/// tweed (nothing to write).
pub fn is_marked_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == CONDITION
                    && c.status == "False"
                    && c.reason.as_deref() == Some(READY_REASON)
            })
        })
}

/// A strategic merge patch for the `status` subresource: the
/// `NetworkUnavailable` condition, merged by type into the node's list.
pub fn ready_condition_patch(now: Time) -> Value {
    let now = serde_json::to_value(now).expect("a time serialises");
    json!({
        "status": {
            "conditions": [{
                "type": CONDITION,
                "status": "False",
                "reason": READY_REASON,
                "message": "tweed is running on this node",
                "lastTransitionTime": now,
                "lastHeartbeatTime": now,
            }]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn nets(v4: Option<&str>, v6: Option<&str>) -> Networks {
        Networks {
            ipv4: v4.map(|s| s.parse().unwrap()),
            ipv6: v6.map(|s| s.parse().unwrap()),
        }
    }

    #[test]
    fn subnet_comes_from_pod_cidrs_of_the_configured_families() {
        let dual = node(json!({"metadata": {"name": "a"}, "spec": {
            "podCIDR": "10.244.3.0/24", "podCIDRs": ["10.244.3.0/24", "fd00:10:244:3::/64"]}}));
        let k = pod_subnet(&dual, &nets(Some("10.244.0.0/16"), None)).unwrap();
        assert_eq!(k.to_string(), "10.244.3.0-24");
        let k = pod_subnet(
            &dual,
            &nets(Some("10.244.0.0/16"), Some("fd00:10:244::/56")),
        )
        .unwrap();
        assert_eq!(k.to_string(), "10.244.3.0-24&fd00:10:244:3::-64");
        // Only the older single field.
        let old = node(json!({"metadata": {"name": "b"}, "spec": {"podCIDR": "10.244.4.0/24"}}));
        let k = pod_subnet(&old, &nets(Some("10.244.0.0/16"), None)).unwrap();
        assert_eq!(k.to_string(), "10.244.4.0-24");
    }

    #[test]
    fn missing_or_foreign_cidrs_say_what_to_fix() {
        let n = nets(Some("10.244.0.0/16"), None);
        let none = node(json!({"metadata": {"name": "a"}, "spec": {}}));
        let e = pod_subnet(&none, &n).unwrap_err();
        assert!(matches!(e, CidrProblem::Missing { .. }));
        let text = e.to_string();
        assert!(text.contains("--allocate-node-cidrs"), "{text}");
        assert!(text.contains("--cluster-cidr=10.244.0.0/16"), "{text}");
        let foreign =
            node(json!({"metadata": {"name": "a"}, "spec": {"podCIDRs": ["10.99.1.0/24"]}}));
        let e = pod_subnet(&foreign, &n).unwrap_err();
        assert!(
            e.to_string().contains("10.99.1.0/24") && e.to_string().contains("10.244.0.0/16"),
            "{e}"
        );
        let v4_only =
            node(json!({"metadata": {"name": "a"}, "spec": {"podCIDRs": ["10.244.1.0/24"]}}));
        let e = pod_subnet(&v4_only, &nets(Some("10.244.0.0/16"), Some("fd00::/56"))).unwrap_err();
        assert!(matches!(e, CidrProblem::Outside { family: 6, .. }), "{e}");
        let junk = node(json!({"metadata": {"name": "a"}, "spec": {"podCIDRs": ["nope"]}}));
        assert!(matches!(
            pod_subnet(&junk, &n).unwrap_err(),
            CidrProblem::Unparsable { .. }
        ));
    }

    #[test]
    fn annotations_round_trip_a_lease_record() {
        let attrs = LeaseAttrs {
            public_ip: Some("198.18.0.2".parse().unwrap()),
            public_ipv6: None,
            backend_type: "vxlan".into(),
            backend_data: json!({"VNI": 1, "VtepMAC": "02:00:00:00:00:02"}).into(),
            backend_v6_data: crate::lease::BackendData::null(),
            node_name: "n2".into(),
            segment_macs: Default::default(),
            wire_ends: Default::default(),
        };
        let mut attrs = attrs;
        attrs
            .segment_macs
            .insert("lab1".into(), vec!["02:00:00:00:aa:01".into()]);
        attrs
            .wire_ends
            .insert("lab/r1:eth1".into(), "lab/r2:eth1".into());
        let patch = annotations_patch(&attrs, false);
        let ann = &patch["metadata"]["annotations"];
        assert_eq!(ann[SEGMENT_MACS], r#"{"lab1":["02:00:00:00:aa:01"]}"#);
        assert_eq!(ann[WIRE_ENDS], r#"{"lab/r1:eth1":"lab/r2:eth1"}"#);
        assert_eq!(ann[BACKEND_TYPE], "vxlan");
        assert_eq!(
            ann[BACKEND_DATA],
            r#"{"VNI":1,"VtepMAC":"02:00:00:00:00:02"}"#
        );
        assert_eq!(ann[PUBLIC_IP], "198.18.0.2");
        assert!(ann[PUBLIC_IPV6].is_null(), "an absent address is removed");
        // As the API server stores it: nulls removed.
        let mut stored = serde_json::Map::new();
        for (k, v) in ann.as_object().unwrap() {
            if !v.is_null() {
                stored.insert(k.clone(), v.clone());
            }
        }
        let n = node(json!({"metadata": {"name": "n2", "annotations": stored},
            "spec": {"podCIDRs": ["10.244.2.0/24"]}}));
        let lease = node_lease(&n, &nets(Some("10.244.0.0/16"), None))
            .unwrap()
            .unwrap();
        assert_eq!(lease.attrs, attrs);
        assert_eq!(lease.key.to_string(), "10.244.2.0-24");
    }

    #[test]
    fn removing_the_record_nulls_every_annotation_publishing_can_write() {
        let mut attrs = LeaseAttrs {
            public_ip: Some("198.18.0.2".parse().unwrap()),
            public_ipv6: Some("fd00::2".parse().unwrap()),
            backend_type: "vxlan".into(),
            backend_data: json!({"VNI": 1}).into(),
            backend_v6_data: json!({"VNI": 1}).into(),
            node_name: "n2".into(),
            segment_macs: Default::default(),
            wire_ends: Default::default(),
        };
        attrs
            .segment_macs
            .insert("s".into(), vec!["02:00:00:00:aa:01".into()]);
        attrs.wire_ends.insert("a/b:eth1".into(), "a/c:eth1".into());
        let written = annotations_patch(&attrs, false);
        let removed = remove_annotations_patch();
        let removed = removed["metadata"]["annotations"].as_object().unwrap();
        for (k, v) in written["metadata"]["annotations"].as_object().unwrap() {
            assert!(!v.is_null(), "{k} is written");
            assert!(removed[k].is_null(), "{k} is not removed: {removed:?}");
        }
    }

    #[test]
    fn nodes_without_a_record_are_no_lease_and_bad_records_are_errors() {
        let n = nets(Some("10.244.0.0/16"), None);
        let plain = node(json!({"metadata": {"name": "a", "annotations": {"x": "y"}},
            "spec": {"podCIDRs": ["10.244.2.0/24"]}}));
        assert_eq!(node_lease(&plain, &n).unwrap(), None);
        let bad = node(json!({"metadata": {"name": "a", "annotations": {
            BACKEND_TYPE: "vxlan", BACKEND_DATA: "{nope"}},
            "spec": {"podCIDRs": ["10.244.2.0/24"]}}));
        let e = node_lease(&bad, &n).unwrap_err();
        assert!(e.to_string().contains(BACKEND_DATA), "{e}");
        let no_cidr =
            node(json!({"metadata": {"name": "a", "annotations": {BACKEND_TYPE: "vxlan"}}}));
        assert!(matches!(
            node_lease(&no_cidr, &n).unwrap_err(),
            BadNode::Cidr(CidrProblem::Missing { .. })
        ));
    }

    #[test]
    fn ready_condition() {
        let t = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let p = ready_condition_patch(t);
        let c = &p["status"]["conditions"][0];
        assert_eq!(c["type"], CONDITION);
        assert_eq!(c["status"], "False");
        assert_eq!(c["lastTransitionTime"], "2023-11-14T22:13:20Z");
        let mut n = node(json!({"metadata": {"name": "a"}}));
        assert!(!is_marked_ready(&n));
        n.status = serde_json::from_value(p["status"].clone()).unwrap();
        assert!(is_marked_ready(&n));
    }

    #[test]
    fn flannel_annotations_are_read_and_written_only_in_compat_mode() {
        let n = nets(Some("10.244.0.0/16"), None);
        // A node flannel's kube subnet manager annotated.
        let flannel = node(json!({"metadata": {"name": "f1", "annotations": {
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/backend-data": "{\"VNI\":1,\"VtepMAC\":\"0e:f1:00:00:00:01\"}",
            "flannel.alpha.coreos.com/public-ip": "198.18.0.7",
            "flannel.alpha.coreos.com/kube-subnet-manager": "true"}},
            "spec": {"podCIDR": "10.244.7.0/24"}}));
        assert_eq!(node_lease_or_flannel(&flannel, &n, false).unwrap(), None);
        let l = node_lease_or_flannel(&flannel, &n, true)
            .unwrap()
            .expect("a flannel peer");
        assert_eq!(l.key.to_string(), "10.244.7.0-24");
        assert_eq!(l.attrs.public_ip, Some("198.18.0.7".parse().unwrap()));
        assert_eq!(
            l.attrs.backend_data.get_str("VtepMAC").as_deref(),
            Some("0e:f1:00:00:00:01")
        );
        assert_eq!(l.attrs.node_name, "f1");

        // What a compat node writes: tweed's and flannel's, the same record.
        let patch = annotations_patch(&l.attrs, true);
        let ann = &patch["metadata"]["annotations"];
        for names in [TWEED, FLANNEL] {
            assert_eq!(ann[names.backend_type], "vxlan");
            assert_eq!(
                ann[names.backend_data],
                r#"{"VNI":1,"VtepMAC":"0e:f1:00:00:00:01"}"#
            );
            assert_eq!(ann[names.public_ip], "198.18.0.7");
        }
        assert_eq!(ann[FLANNEL_SUBNET_MANAGER], "true");
        let plain = annotations_patch(&l.attrs, false);
        assert!(
            plain["metadata"]["annotations"]
                .as_object()
                .unwrap()
                .keys()
                .all(|k| k.starts_with(PREFIX)),
            "{plain}"
        );
        // tweed's record wins over flannel's on a node carrying both.
        let mut both = flannel.clone();
        both.metadata
            .annotations
            .as_mut()
            .unwrap()
            .extend([(BACKEND_TYPE.to_string(), "host-gw".to_string())]);
        let l = node_lease_or_flannel(&both, &n, true).unwrap().unwrap();
        assert_eq!(l.attrs.backend_type, "host-gw");
    }
}
