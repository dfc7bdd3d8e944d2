//! NetworkPolicy semantics, one case per rule of `networking.k8s.io/v1`:
//! policies written as the API serves them, a small cluster, and what
//! each pod of the node may then receive and send.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};
use tweed_policy::cluster::NamedPort;
use tweed_policy::{Block, Cluster, PodPolicy, PodView, PortMatch, Protocol, Rule, compile};

fn pod(ns: &str, name: &str, ip: &str, labels: &[(&str, &str)], node: &str) -> PodView {
    PodView {
        namespace: ns.into(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ips: vec![ip.parse().unwrap()],
        ports: Vec::new(),
        node: Some(node.into()),
    }
}

/// Namespaces `prod` (team=a) and `dev` (team=b); on node n1 `prod/web`
/// (app=web, port "http" 8080), `prod/db` (app=db) and `dev/tool`; on n2
/// `prod/api` (app=api, port "http" 9090) and `dev/web` (app=web).
fn cluster() -> Cluster {
    let mut web = pod("prod", "web", "10.244.1.2", &[("app", "web")], "n1");
    web.ports.push(NamedPort {
        name: "http".into(),
        protocol: Protocol::Tcp,
        port: 8080,
    });
    let mut api = pod("prod", "api", "10.244.2.2", &[("app", "api")], "n2");
    api.ports.push(NamedPort {
        name: "http".into(),
        protocol: Protocol::Tcp,
        port: 9090,
    });
    let ns = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Cluster {
        pods: vec![
            web,
            pod("prod", "db", "10.244.1.3", &[("app", "db")], "n1"),
            pod("dev", "tool", "10.244.1.4", &[], "n1"),
            api,
            pod("dev", "web", "10.244.2.3", &[("app", "web")], "n2"),
        ],
        namespaces: [
            ("prod".to_string(), ns(&[("team", "a")])),
            ("dev".to_string(), ns(&[("team", "b")])),
        ]
        .into_iter()
        .collect(),
    }
}

fn policy(ns: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": ns},
        "spec": spec,
    }))
    .expect("a NetworkPolicy")
}

/// The policy of `ns/name` among n1's pods.
fn of(policies: &[NetworkPolicy], ns: &str, name: &str) -> PodPolicy {
    compile(policies, &cluster(), |p| p.node.as_deref() == Some("n1"))
        .into_iter()
        .find(|p| p.namespace == ns && p.name == name)
        .unwrap_or_else(|| panic!("{ns}/{name} is not on n1"))
}

fn hosts(ips: &[&str]) -> Option<Vec<Block>> {
    Some(
        ips.iter()
            .map(|ip| Block {
                net: IpNet::from(ip.parse::<IpAddr>().unwrap()),
                except: Vec::new(),
            })
            .collect(),
    )
}

fn tcp(first: u16, last: u16) -> PortMatch {
    PortMatch {
        protocol: Protocol::Tcp,
        ports: Some((first, last)),
    }
}

#[test]
fn without_policies_nothing_is_isolated() {
    let pods = compile::<NetworkPolicy>(&[], &cluster(), |p| p.node.as_deref() == Some("n1"));
    assert_eq!(pods.len(), 3, "only n1's pods: {pods:?}");
    assert!(pods.iter().all(|p| !p.isolated()));
}

#[test]
fn default_deny_ingress_isolates_every_pod_of_its_namespace_only() {
    let p = [policy(
        "prod",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    )];
    assert_eq!(of(&p, "prod", "web").ingress, Some(vec![]));
    assert_eq!(of(&p, "prod", "web").egress, None);
    assert_eq!(of(&p, "prod", "db").ingress, Some(vec![]));
    assert!(!of(&p, "dev", "tool").isolated());
}

#[test]
fn a_policy_that_selects_no_pod_changes_nothing() {
    let p = [policy(
        "prod",
        json!({"podSelector": {"matchLabels": {"app": "nothing"}}, "policyTypes": ["Ingress", "Egress"]}),
    )];
    for name in ["web", "db"] {
        assert!(!of(&p, "prod", name).isolated());
    }
}

#[test]
fn pod_selector_peers_are_pods_of_the_policys_namespace() {
    let p = [policy(
        "prod",
        json!({
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
        }),
    )];
    // prod/web, not dev/web (another namespace).
    assert_eq!(
        of(&p, "prod", "db").ingress,
        Some(vec![Rule {
            peers: hosts(&["10.244.1.2"]),
            ports: None
        }])
    );
    assert!(!of(&p, "prod", "web").isolated());
}

#[test]
fn namespace_selector_alone_and_combined_with_a_pod_selector() {
    let alone = [policy(
        "prod",
        json!({
            "podSelector": {},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}],
        }),
    )];
    assert_eq!(
        of(&alone, "prod", "db").ingress.unwrap()[0].peers,
        hosts(&["10.244.1.4", "10.244.2.3"])
    );
    let both = [policy(
        "prod",
        json!({
            "podSelector": {},
            "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"team": "b"}},
                "podSelector": {"matchLabels": {"app": "web"}},
            }]}],
        }),
    )];
    assert_eq!(
        of(&both, "prod", "db").ingress.unwrap()[0].peers,
        hosts(&["10.244.2.3"])
    );
    // Two peers (either) rather than one peer with both (and).
    let either = [policy(
        "prod",
        json!({
            "podSelector": {},
            "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"team": "b"}}},
                {"podSelector": {"matchLabels": {"app": "web"}}},
            ]}],
        }),
    )];
    assert_eq!(
        of(&either, "prod", "db").ingress.unwrap()[0].peers,
        hosts(&["10.244.1.2", "10.244.1.4", "10.244.2.3"])
    );
}

#[test]
fn ip_block_with_except() {
    let p = [policy(
        "prod",
        json!({
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}]}],
        }),
    )];
    let egress = of(&p, "prod", "web").egress.unwrap();
    assert_eq!(
        egress,
        vec![Rule {
            peers: Some(vec![Block {
                net: "192.0.2.0/24".parse().unwrap(),
                except: vec!["192.0.2.128/25".parse().unwrap()],
            }]),
            ports: None,
        }]
    );
    assert_eq!(of(&p, "prod", "web").ingress, None, "egress only");
}

#[test]
fn ports_protocols_ranges_and_named_ports() {
    let p = [policy(
        "prod",
        json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"ports": [
                {"port": 80},
                {"protocol": "UDP", "port": 53},
                {"protocol": "SCTP"},
                {"port": 30000, "endPort": 30100},
                {"port": "http"},
                {"port": "missing"},
            ]}],
        }),
    )];
    let rules = of(&p, "prod", "web").ingress.unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].peers, None, "no from: every peer");
    let mut want = vec![
        tcp(80, 80),
        PortMatch {
            protocol: Protocol::Udp,
            ports: Some((53, 53)),
        },
        PortMatch {
            protocol: Protocol::Sctp,
            ports: None,
        },
        tcp(30000, 30100),
        // "http" is 8080 on prod/web itself; "missing" names nothing.
        tcp(8080, 8080),
    ];
    want.sort();
    assert_eq!(rules[0].ports, Some(want));
}

#[test]
fn an_egress_named_port_is_each_destination_pods_own() {
    let p = [policy(
        "prod",
        json!({
            "podSelector": {"matchLabels": {"app": "db"}},
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": "http"}]}],
        }),
    )];
    let rules = of(&p, "prod", "db").egress.unwrap();
    assert_eq!(
        rules,
        vec![
            Rule {
                peers: hosts(&["10.244.1.2"]),
                ports: Some(vec![tcp(8080, 8080)])
            },
            Rule {
                peers: hosts(&["10.244.2.2"]),
                ports: Some(vec![tcp(9090, 9090)])
            },
        ]
    );
}

#[test]
fn rules_of_several_policies_add_up() {
    let p = [
        policy(
            "prod",
            json!({
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}],
            }),
        ),
        policy(
            "prod",
            json!({
                "podSelector": {},
                "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.2.0/24"}}]}],
            }),
        ),
    ];
    let rules = of(&p, "prod", "db").ingress.unwrap();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(rules[0].ports, Some(vec![tcp(5432, 5432)]));
    assert_eq!(
        rules[1].peers.as_ref().unwrap()[0].net.to_string(),
        "10.244.2.0/24"
    );
}

#[test]
fn a_peer_that_matches_no_pod_allows_nothing() {
    let p = [policy(
        "prod",
        json!({
            "podSelector": {},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "ghost"}}}]}],
        }),
    )];
    assert_eq!(of(&p, "prod", "db").ingress, Some(vec![]));
}

#[test]
fn policy_types_default_as_the_api_defaults_them() {
    // No policyTypes, egress rules present: both directions.
    let p = [policy(
        "prod",
        json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}),
    )];
    let web = of(&p, "prod", "web");
    assert_eq!(web.ingress, Some(vec![]));
    assert_eq!(web.egress.map(|e| e.len()), Some(1));
}
