//! Pod policies → one nftables transaction: table `inet tweed-policy`,
//! deleted and made anew in the same batch, so the kernel switches from
//! the old rules to the new ones at once (no packet sees half of each).
//!
//! ```text
//! chain forward   (filter hook forward, priority filter, policy accept)
//!   ct state established,related accept      replies, and connections
//!                                            already allowed, carry on
//!   ip saddr vmap { <pod ip> : jump pod-<k>-egress, ... }   (ip6 too)
//!   ip daddr vmap { <pod ip> : jump pod-<k>-ingress, ... }
//! chain pod-<k>-egress                       one per isolated direction
//!   <an allow rule> return                   on to the ingress check
//!   drop
//! ```
//!
//! A packet between two isolated pods passes the sender's egress chain
//! and then the receiver's ingress chain. Traffic between a pod and its
//! own node never crosses the forward hook (it is the node's input and
//! output), so it is always allowed, as the API asks. Pod-to-pod traffic
//! on one node crosses it only when the bridge hands bridged packets to
//! the IP hooks (`net.bridge.bridge-nf-call-iptables` and `-ip6tables`,
//! which tweedd turns on where they are off).

use std::net::IpAddr;

use ipnet::IpNet;
use nftables::batch::Batch;
use nftables::expr::{Expression, MetaKey, NamedExpression, SetItem, Verdict};
use nftables::schema::{Chain, NfListObject, Nftables, Rule as NftRule, Table};
use nftables::stmt::{Accept, Drop, JumpTarget, Operator, Return, Statement, VerdictMap};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use tweed_netlink::nft::expr::{compare, ct, eq, meta, nets, payload, range, text};

use crate::compile::{Block, PodPolicy, PortMatch, Rule};

pub const TABLE: &str = "tweed-policy";
const FORWARD: &str = "forward";
const FILTER_PRIORITY: i32 = 0;

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }
}

fn chain(name: String) -> Chain<'static> {
    Chain {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: name.into(),
        ..Chain::default()
    }
}

fn rule(chain: &str, expr: Vec<Statement<'static>>, comment: Option<String>) -> NftRule<'static> {
    NftRule {
        family: NfFamily::INet,
        table: TABLE.into(),
        chain: chain.to_string().into(),
        expr: expr.into(),
        comment: comment.map(Into::into),
        ..NftRule::default()
    }
}

/// `ip` or `ip6`: the header an address of this family is in.
fn header(ip: &IpNet) -> &'static str {
    match ip {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ip6",
    }
}

/// The peer half of allow rules: one statement list per group of blocks.
/// Blocks without exceptions share one set per family; each block with
/// exceptions is a rule of its own (`ip daddr <net> ip daddr != {..}`).
fn peer_matches(peers: &Option<Vec<Block>>, field: &'static str) -> Vec<Vec<Statement<'static>>> {
    let Some(blocks) = peers else {
        return vec![Vec::new()];
    };
    let mut out = Vec::new();
    for v4 in [true, false] {
        let plain: Vec<IpNet> = blocks
            .iter()
            .filter(|b| b.except.is_empty() && matches!(b.net, IpNet::V4(_)) == v4)
            .map(|b| b.net)
            .collect();
        if let Some(first) = plain.first() {
            out.push(vec![eq(payload(header(first), field), nets(&plain))]);
        }
    }
    for b in blocks.iter().filter(|b| !b.except.is_empty()) {
        let h = header(&b.net);
        out.push(vec![
            eq(payload(h, field), nets(&[b.net])),
            compare(payload(h, field), Operator::NEQ, nets(&b.except)),
        ]);
    }
    out
}

/// The port half: one statement list per port entry.
fn port_matches(ports: &Option<Vec<PortMatch>>) -> Vec<Vec<Statement<'static>>> {
    let Some(ports) = ports else {
        return vec![Vec::new()];
    };
    ports
        .iter()
        .map(|p| {
            let mut s = vec![eq(meta(MetaKey::L4proto), text(p.protocol.nft_name()))];
            if let Some((first, last)) = p.ports {
                s.push(eq(payload("th", "dport"), range(first, last)));
            }
            s
        })
        .collect()
}

/// A pod's chain for one direction: each allow rule returns (on to the
/// next check), anything else is dropped.
fn pod_chain(
    name: &str,
    rules: &[Rule],
    field: &'static str,
    comment: String,
) -> Vec<NftRule<'static>> {
    let mut out = Vec::new();
    for r in rules {
        for peer in peer_matches(&r.peers, field) {
            for port in port_matches(&r.ports) {
                let mut expr = peer.clone();
                expr.extend(port);
                expr.push(Statement::Return(Some(Return {})));
                out.push(rule(name, expr, Some(comment.clone())));
            }
        }
    }
    out.push(rule(
        name,
        vec![Statement::Drop(Some(Drop {}))],
        Some(format!("{comment}: not allowed")),
    ));
    out
}

/// `ip saddr vmap { ... }` (or `ip6`, `daddr`) over the pods' addresses.
fn dispatch(
    entries: &[(IpAddr, String)],
    v4: bool,
    field: &'static str,
) -> Option<NftRule<'static>> {
    let items: Vec<SetItem<'static>> = entries
        .iter()
        .filter(|(ip, _)| ip.is_ipv4() == v4)
        .map(|(ip, target)| {
            SetItem::Mapping(
                text(ip),
                Expression::Verdict(Verdict::Jump(JumpTarget {
                    target: target.clone().into(),
                })),
            )
        })
        .collect();
    if items.is_empty() {
        return None;
    }
    let key = payload(if v4 { "ip" } else { "ip6" }, field);
    Some(rule(
        FORWARD,
        vec![Statement::VerdictMap(VerdictMap {
            key,
            data: Expression::Named(NamedExpression::Set(items)),
        })],
        None,
    ))
}

/// The transaction that replaces the table with `pods`' rules.
pub fn ruleset(pods: &[PodPolicy]) -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch.add(NfListObject::Table(table()));
    batch.add(NfListObject::Chain(Chain {
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Forward),
        prio: Some(FILTER_PRIORITY),
        policy: Some(NfChainPolicy::Accept),
        ..chain(FORWARD.into())
    }));
    batch.add(NfListObject::Rule(rule(
        FORWARD,
        vec![
            eq(
                ct("state"),
                Expression::Named(NamedExpression::Set(vec![
                    SetItem::Element(text("established")),
                    SetItem::Element(text("related")),
                ])),
            ),
            Statement::Accept(Some(Accept {})),
        ],
        Some("replies and allowed connections".into()),
    )));
    let mut egress = Vec::new();
    let mut ingress = Vec::new();
    let mut chains = Vec::new();
    for (k, pod) in pods.iter().enumerate() {
        let who = format!("{}/{}", pod.namespace, pod.name);
        for (rules, dir, field, dispatch_to) in [
            (&pod.egress, "egress", "daddr", &mut egress),
            (&pod.ingress, "ingress", "saddr", &mut ingress),
        ] {
            let Some(rules) = rules else { continue };
            let name = format!("pod-{k}-{dir}");
            dispatch_to.extend(pod.ips.iter().map(|ip| (*ip, name.clone())));
            chains.push((
                name.clone(),
                pod_chain(&name, rules, field, format!("{who} {dir}")),
            ));
        }
    }
    // The pods' chains first: a jump to a chain not yet made fails.
    for (name, rules) in chains {
        batch.add(NfListObject::Chain(chain(name)));
        for r in rules {
            batch.add(NfListObject::Rule(r));
        }
    }
    for (entries, field) in [(&egress, "saddr"), (&ingress, "daddr")] {
        for v4 in [true, false] {
            if let Some(r) = dispatch(entries, v4, field) {
                batch.add(NfListObject::Rule(r));
            }
        }
    }
    batch.to_nftables()
}
