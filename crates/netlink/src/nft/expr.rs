//! Builders for the nftables expressions and statements tweed writes
//! (masquerade, guest plumbing, NetworkPolicy), so each reads as the nft
//! rule it makes: `eq(payload("ip", "daddr"), text(addr))` is
//! `ip daddr <addr>`.

use std::borrow::Cow;

use ipnet::IpNet;
use nftables::expr::{
    CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, Range, SetItem,
};
use nftables::stmt::{Match, Operator, Statement};

/// A header field: `ip daddr`, `tcp dport`, `th dport`.
pub fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

/// A meta key: `meta l4proto`, `meta iifname`.
pub fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

/// A conntrack key: `ct state`.
pub fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: None,
    }))
}

/// A string immediate (an address, a protocol name, a state).
pub fn text(s: impl ToString) -> Expression<'static> {
    Expression::String(Cow::Owned(s.to_string()))
}

/// A network as nft writes it: a plain address for a host prefix, else
/// `addr/len`.
pub fn net(n: &IpNet) -> Expression<'static> {
    if n.prefix_len() == n.max_prefix_len() {
        return text(n.addr());
    }
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(text(n.network())),
        len: u32::from(n.prefix_len()),
    }))
}

/// One network, or an anonymous set of them.
pub fn nets(nets: &[IpNet]) -> Expression<'static> {
    match nets {
        [one] => net(one),
        many => Expression::Named(NamedExpression::Set(
            many.iter().map(|n| SetItem::Element(net(n))).collect(),
        )),
    }
}

/// `first-last`, or the one number when they are equal.
pub fn range(first: u16, last: u16) -> Expression<'static> {
    if first == last {
        return Expression::Number(first.into());
    }
    Expression::Range(Box::new(Range {
        range: [
            Expression::Number(first.into()),
            Expression::Number(last.into()),
        ],
    }))
}

/// `left op right`.
pub fn compare(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

/// `left == right` (nft's implicit match).
pub fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    compare(left, Operator::EQ, right)
}
