//! Masquerade for pod traffic, in nftables table `inet tweed`.
//!
//! tweed keeps every rule in its own table, so it never edits, reorders or
//! flushes anybody else's rules, and removing tweed is one `delete table`.
//! One `inet` table serves IPv4 and IPv6 (NAT in `inet` tables needs Linux
//! 5.2). The rules reproduce flannel's (`pkg/trafficmngr`), per family:
//!
//! ```text
//! table inet tweed {
//!   chain postrouting {
//!     type nat hook postrouting priority srcnat; policy accept;
//!     meta mark & 0x4000 == 0x4000 return               # kube-proxy masquerades these itself
//!     ip saddr CLUSTER ip daddr CLUSTER return          # pod to pod keeps the pod's address
//!     ip saddr != CLUSTER ip daddr NODE return          # outside to this node's pods keeps the client's
//!     ip saddr CLUSTER ip daddr != 224.0.0.0/4 masquerade fully-random   # pods leaving the cluster
//!     ip saddr != CLUSTER ip daddr CLUSTER masquerade fully-random       # outside to other nodes' pods
//!   }
//!   chain forward {
//!     type filter hook forward priority filter; policy accept;
//!     ip saddr CLUSTER accept
//!     ip daddr CLUSTER accept
//!   }
//! }
//! ```
//!
//! The two `NODE` rules need this node's own pod subnet(s); [`install`]
//! knows only the cluster networks and leaves both out, so traffic from
//! outside the cluster to any pod keeps its client address.
//! [`install_for_node`] adds them, which is flannel's exact behaviour: replies
//! from pods on other nodes then come back through this node.
//!
//! The `forward` chain is flannel's "accept pod traffic" chain, kept for
//! parity and so `nft list ruleset` shows the intent. It cannot rescue pod
//! traffic from a drop elsewhere: in nftables an `accept` ends only the base
//! chain it is in, and a forward-hook chain in another table (iptables-nft's
//! `FORWARD` with policy drop, say) that drops a packet drops it whatever
//! tweed's chain said, before or after it (checked on Linux 6.18).
//!
//! The ruleset is built with the `nftables` crate's schema types and applied
//! as one JSON batch on `nft -j -f -`, so each call is a single kernel
//! transaction: it recreates the table (`add`, `delete`, `add` — the `add`
//! first makes the `delete` safe when the table is missing), so calling it
//! again leaves one copy of each rule, and new networks replace the old
//! ([`tweed_netlink::nft`] runs `nft`).

use std::collections::HashSet;

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{BinaryOperation, Expression, Meta, MetaKey, NamedExpression};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Accept, Match, NAT, NATFlag, Operator, Return, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use tweed_netlink::nft::{self, NftError, expr};

/// The nftables table (family `inet`) that holds all of tweed's rules.
pub const TABLE: &str = tweed_node::names::MASQ_TABLE;
/// NAT chain on the postrouting hook.
pub const POSTROUTING_CHAIN: &str = "postrouting";
/// Filter chain on the forward hook.
pub const FORWARD_CHAIN: &str = "forward";

/// The mark kube-proxy sets on packets it will masquerade itself; leaving
/// them alone avoids NATting twice.
const KUBE_PROXY_MASQ_MARK: u32 = 0x4000;
/// `srcnat`: where NAT that rewrites the source belongs.
const SRCNAT_PRIORITY: i32 = 100;
/// `filter`.
const FILTER_PRIORITY: i32 = 0;

/// What to masquerade.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasqRules {
    /// The cluster's pod networks, IPv4 and/or IPv6.
    pub cluster_networks: Vec<IpNet>,
}

#[derive(Debug, thiserror::Error)]
pub enum MasqError {
    #[error("no cluster network given: there is nothing to masquerade")]
    NoNetworks,
    #[error("node subnet {0} is not inside any cluster network")]
    SubnetOutsideCluster(IpNet),
    #[error(transparent)]
    Nft(#[from] NftError),
}

/// (Re)creates tweed's table with masquerade and forward rules for the
/// cluster networks, in one transaction. Traffic from outside the cluster
/// to pods is never masqueraded (see the module doc).
pub fn install(rules: &MasqRules) -> Result<(), MasqError> {
    install_for_node(rules, &[])
}

/// Like [`install`], knowing this node's pod subnet(s): traffic from outside
/// the cluster to this node's pods keeps its source, traffic from outside to
/// other nodes' pods is masqueraded (flannel's behaviour).
pub fn install_for_node(rules: &MasqRules, node_subnets: &[IpNet]) -> Result<(), MasqError> {
    let ruleset = ruleset(rules, node_subnets)?;
    Ok(nft::apply(&ruleset, "install the masquerade rules")?)
}

/// Deletes tweed's table; a missing table is fine. (`tweedctl
/// node-cleanup` does the same through [`nft::delete_table`].)
pub fn remove() -> Result<(), MasqError> {
    Ok(nft::delete_table(
        NfFamily::INet,
        TABLE,
        "remove the masquerade rules",
    )?)
}

/// One address family's view of the configuration.
struct Family {
    /// `ip` or `ip6`: the payload protocol the rules match on.
    proto: &'static str,
    cluster: Vec<IpNet>,
    node: Vec<IpNet>,
    multicast: IpNet,
}

impl Family {
    fn split(rules: &MasqRules, node_subnets: &[IpNet]) -> Result<Vec<Family>, MasqError> {
        if rules.cluster_networks.is_empty() {
            return Err(MasqError::NoNetworks);
        }
        for sub in node_subnets {
            if !rules.cluster_networks.iter().any(|c| c.contains(sub)) {
                return Err(MasqError::SubnetOutsideCluster(*sub));
            }
        }
        let pick = |v4: bool, nets: &[IpNet]| -> Vec<IpNet> {
            let mut out: Vec<IpNet> = nets
                .iter()
                .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                .map(IpNet::trunc)
                .collect();
            out.sort();
            out.dedup();
            out
        };
        let families = [
            (
                "ip",
                true,
                IpNet::V4(ipnet::Ipv4Net::new_assert([224, 0, 0, 0].into(), 4)),
            ),
            (
                "ip6",
                false,
                IpNet::V6(ipnet::Ipv6Net::new_assert(
                    [0xff00, 0, 0, 0, 0, 0, 0, 0].into(),
                    8,
                )),
            ),
        ];
        Ok(families
            .into_iter()
            .map(|(proto, v4, multicast)| Family {
                proto,
                cluster: pick(v4, &rules.cluster_networks),
                node: pick(v4, node_subnets),
                multicast,
            })
            .filter(|f| !f.cluster.is_empty())
            .collect())
    }
}

/// The whole transaction for [`install_for_node`].
fn ruleset(rules: &MasqRules, node_subnets: &[IpNet]) -> Result<Nftables<'static>, MasqError> {
    let families = Family::split(rules, node_subnets)?;
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch.add(NfListObject::Table(table()));
    batch.add(NfListObject::Chain(base_chain(
        POSTROUTING_CHAIN,
        NfChainType::NAT,
        NfHook::Postrouting,
        SRCNAT_PRIORITY,
    )));
    batch.add(NfListObject::Chain(base_chain(
        FORWARD_CHAIN,
        NfChainType::Filter,
        NfHook::Forward,
        FILTER_PRIORITY,
    )));
    let kube_proxy = Statement::Match(Match {
        left: Expression::BinaryOperation(Box::new(BinaryOperation::AND(
            Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::Mark })),
            Expression::Number(KUBE_PROXY_MASQ_MARK),
        ))),
        right: Expression::Number(KUBE_PROXY_MASQ_MARK),
        op: Operator::EQ,
    });
    batch.add(NfListObject::Rule(rule(
        POSTROUTING_CHAIN,
        vec![kube_proxy, ret()],
        "marked by kube-proxy, which masquerades it itself",
    )));
    let postrouting = families.iter().flat_map(Family::postrouting);
    let forward = families.iter().flat_map(Family::forward);
    for r in postrouting.chain(forward) {
        batch.add(NfListObject::Rule(r));
    }
    Ok(batch.to_nftables())
}

impl Family {
    fn m(&self, field: &'static str, op: Operator, nets: &[IpNet]) -> Statement<'static> {
        addr_match(self.proto, field, op, nets)
    }

    /// The NAT rules, in the order they must be evaluated.
    fn postrouting(&self) -> Vec<Rule<'static>> {
        let cluster = &self.cluster[..];
        let mut out = vec![rule(
            POSTROUTING_CHAIN,
            vec![
                self.m("saddr", Operator::EQ, cluster),
                self.m("daddr", Operator::EQ, cluster),
                ret(),
            ],
            "pod to pod keeps the pod's address",
        )];
        if !self.node.is_empty() {
            out.push(rule(
                POSTROUTING_CHAIN,
                vec![
                    self.m("saddr", Operator::NEQ, cluster),
                    self.m("daddr", Operator::EQ, &self.node),
                    ret(),
                ],
                "outside to this node's pods keeps the client's address",
            ));
        }
        out.push(rule(
            POSTROUTING_CHAIN,
            vec![
                self.m("saddr", Operator::EQ, cluster),
                self.m(
                    "daddr",
                    Operator::NEQ,
                    std::slice::from_ref(&self.multicast),
                ),
                masquerade(),
            ],
            "pods leaving the cluster network",
        ));
        if !self.node.is_empty() {
            out.push(rule(
                POSTROUTING_CHAIN,
                vec![
                    self.m("saddr", Operator::NEQ, cluster),
                    self.m("daddr", Operator::EQ, cluster),
                    masquerade(),
                ],
                "outside to other nodes' pods: replies come back through this node",
            ));
        }
        out
    }

    fn forward(&self) -> Vec<Rule<'static>> {
        let accept = || Statement::Accept(Some(Accept {}));
        vec![
            rule(
                FORWARD_CHAIN,
                vec![self.m("saddr", Operator::EQ, &self.cluster), accept()],
                "forward traffic from pods",
            ),
            rule(
                FORWARD_CHAIN,
                vec![self.m("daddr", Operator::EQ, &self.cluster), accept()],
                "forward traffic to pods",
            ),
        ]
    }
}

fn ret() -> Statement<'static> {
    Statement::Return(Some(Return {}))
}

/// `masquerade fully-random`: flannel's `--random-fully`, which avoids
/// source-port collisions between pods sharing the node's address.
fn masquerade() -> Statement<'static> {
    Statement::Masquerade(Some(NAT {
        addr: None,
        family: None,
        port: None,
        flags: Some(HashSet::from([NATFlag::FullyRandom])),
    }))
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }
}

fn base_chain(name: &'static str, kind: NfChainType, hook: NfHook, prio: i32) -> Chain<'static> {
    Chain {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: name.into(),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

fn rule(
    chain: &'static str,
    expr: Vec<Statement<'static>>,
    comment: &'static str,
) -> Rule<'static> {
    Rule {
        family: NfFamily::INet,
        table: TABLE.into(),
        chain: chain.into(),
        expr: expr.into(),
        comment: Some(comment.into()),
        ..Rule::default()
    }
}

/// `<proto> <field> [!=] <nets>`: one network, or an anonymous set of them.
fn addr_match(
    proto: &'static str,
    field: &'static str,
    op: Operator,
    networks: &[IpNet],
) -> Statement<'static> {
    expr::compare(expr::payload(proto, field), op, expr::nets(networks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test network")
    }

    fn rules_of(ruleset: &Nftables) -> Vec<serde_json::Value> {
        let v = serde_json::to_value(ruleset).expect("encode");
        v["nftables"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|o| o["add"].get("rule").cloned())
            .collect()
    }

    #[test]
    fn dual_stack_gets_rules_per_family() {
        let rules = MasqRules {
            cluster_networks: vec![net("10.244.0.0/16"), net("fd00:10:244::/56")],
        };
        let set = ruleset(&rules, &[]).expect("ruleset");
        let all = rules_of(&set);
        // mark + 2 per family in postrouting, 2 per family in forward.
        assert_eq!(all.len(), 1 + 2 * 2 + 2 * 2);
        let text = serde_json::to_string(&all).expect("encode");
        assert!(text.contains("\"ff00::\""), "{text}");
        assert!(text.contains("\"224.0.0.0\""), "{text}");
        assert!(text.contains("fully-random"), "{text}");
    }

    #[test]
    fn node_subnets_add_flannels_outside_rules() {
        let rules = MasqRules {
            cluster_networks: vec![net("10.244.0.0/16")],
        };
        let set = ruleset(&rules, &[net("10.244.1.0/24")]).expect("ruleset");
        assert_eq!(rules_of(&set).len(), 1 + 4 + 2);
        let outside = ruleset(&rules, &[net("10.9.0.0/24")]);
        assert!(matches!(outside, Err(MasqError::SubnetOutsideCluster(_))));
    }

    #[test]
    fn host_bits_are_dropped_and_duplicates_merged() {
        let rules = MasqRules {
            cluster_networks: vec![net("10.244.1.7/16"), net("10.244.0.0/16")],
        };
        let text = serde_json::to_string(&ruleset(&rules, &[]).expect("ruleset")).expect("encode");
        assert!(!text.contains("10.244.1.7"), "{text}");
        assert!(
            !text.contains("\"set\""),
            "one network needs no set: {text}"
        );
    }

    #[test]
    fn no_networks_is_an_error() {
        assert!(matches!(
            ruleset(&MasqRules::default(), &[]),
            Err(MasqError::NoNetworks)
        ));
    }
}
