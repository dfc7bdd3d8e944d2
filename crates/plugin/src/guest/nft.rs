//! The NAT rules of a guest's localhost plumbing, in a table of their own
//! inside the pod namespace (`ip tweed-guest-<ifname>`), built with the
//! `nftables` crate and applied as one transaction by
//! [`tweed_netlink::nft`], which also deletes it.
//!
//! ```text
//! table ip tweed-guest-eth0 {
//!   chain output {        # the pod's localhost to the guest
//!     type nat hook output priority -100;
//!     ip daddr 127.0.0.1 tcp dport 8080 dnat to <pod IP>
//!   }
//!   chain postrouting {   # ... seen by the guest as coming from 169.254.77.1
//!     type nat hook postrouting priority 100;
//!     oifname "tap0" ip saddr 127.0.0.0/8 snat to 169.254.77.1
//!   }
//!   chain prerouting {    # the guest to the pod's localhost services and DNS
//!     type nat hook prerouting priority -100;
//!     iifname "tap0" ip daddr 169.254.77.1 tcp dport 15000 dnat to 127.0.0.1
//!     iifname "tap0" ip daddr 169.254.77.1 udp dport 53 dnat to 127.0.0.53
//!   }
//! }
//! ```

use std::borrow::Cow;
use std::net::Ipv4Addr;

use nftables::batch::Batch;
use nftables::expr::{Expression, MetaKey};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{NAT, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use tweed_guest::{Port, Protocol};
use tweed_netlink::nft::expr::{eq, meta, net, payload, text};

/// What the table translates.
pub struct Plumbing<'a> {
    pub ifname: &'a str,
    pub tap: &'a str,
    pub pod_ip: Ipv4Addr,
    pub link_local: Ipv4Addr,
    pub localhost_ports: &'a [Port],
    /// The pod's localhost services the guest may reach, each to
    /// (address, port) in the pod.
    pub pod_services: Vec<(Port, Ipv4Addr)>,
}

pub fn table_name(ifname: &str) -> String {
    format!("tweed-guest-{ifname}")
}

fn table(name: &str) -> Table<'static> {
    Table {
        family: NfFamily::IP,
        name: Cow::Owned(name.to_string()),
        handle: None,
    }
}

fn chain(table: &str, name: &'static str, hook: NfHook, prio: i32) -> Chain<'static> {
    Chain {
        family: NfFamily::IP,
        table: Cow::Owned(table.to_string()),
        name: name.into(),
        _type: Some(NfChainType::NAT),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

fn rule(table: &str, chain: &'static str, expr: Vec<Statement<'static>>) -> Rule<'static> {
    Rule {
        family: NfFamily::IP,
        table: Cow::Owned(table.to_string()),
        chain: chain.into(),
        expr: expr.into(),
        ..Rule::default()
    }
}

fn dport(port: Port) -> Statement<'static> {
    let proto = match port.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    eq(
        payload(proto, "dport"),
        Expression::Number(port.number.into()),
    )
}

fn iface(key: MetaKey, name: &str) -> Statement<'static> {
    eq(meta(key), text(name))
}

fn nat_to(addr: Ipv4Addr, port: Option<u16>, source: bool) -> Statement<'static> {
    let nat = NAT {
        addr: Some(text(addr)),
        family: None,
        port: port.map(|p| Expression::Number(p.into())),
        flags: None,
    };
    if source {
        Statement::SNAT(Some(nat))
    } else {
        Statement::DNAT(Some(nat))
    }
}

/// The transaction that (re)creates the table.
pub fn ruleset(p: &Plumbing) -> Nftables<'static> {
    let name = table_name(p.ifname);
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table(&name)));
    batch.delete(NfListObject::Table(table(&name)));
    batch.add(NfListObject::Table(table(&name)));
    // -100 is `dstnat`, 100 `srcnat`.
    batch.add(NfListObject::Chain(chain(
        &name,
        "output",
        NfHook::Output,
        -100,
    )));
    batch.add(NfListObject::Chain(chain(
        &name,
        "postrouting",
        NfHook::Postrouting,
        100,
    )));
    batch.add(NfListObject::Chain(chain(
        &name,
        "prerouting",
        NfHook::Prerouting,
        -100,
    )));
    for port in p.localhost_ports {
        batch.add(NfListObject::Rule(rule(
            &name,
            "output",
            vec![
                eq(payload("ip", "daddr"), text(Ipv4Addr::LOCALHOST)),
                dport(*port),
                nat_to(p.pod_ip, None, false),
            ],
        )));
    }
    batch.add(NfListObject::Rule(rule(
        &name,
        "postrouting",
        vec![
            iface(MetaKey::Oifname, p.tap),
            eq(
                payload("ip", "saddr"),
                net(&"127.0.0.0/8".parse().expect("loopback network")),
            ),
            nat_to(p.link_local, None, true),
        ],
    )));
    for (port, to) in &p.pod_services {
        batch.add(NfListObject::Rule(rule(
            &name,
            "prerouting",
            vec![
                iface(MetaKey::Iifname, p.tap),
                eq(payload("ip", "daddr"), text(p.link_local)),
                dport(*port),
                nat_to(*to, None, false),
            ],
        )));
    }
    batch.to_nftables()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_has_the_three_chains_and_one_rule_per_port() {
        let p = Plumbing {
            ifname: "eth0",
            tap: "tap0",
            pod_ip: Ipv4Addr::new(10, 244, 1, 5),
            link_local: Ipv4Addr::new(169, 254, 77, 1),
            localhost_ports: &[Port::tcp(8080), Port::udp(5353)],
            pod_services: vec![(Port::udp(53), Ipv4Addr::new(127, 0, 0, 53))],
        };
        let json = serde_json::to_string(&ruleset(&p)).unwrap();
        assert!(json.contains("\"tweed-guest-eth0\""));
        for needle in [
            "\"output\"",
            "\"postrouting\"",
            "\"prerouting\"",
            "8080",
            "5353",
            "\"10.244.1.5\"",
            "\"127.0.0.53\"",
            "\"tap0\"",
        ] {
            assert!(json.contains(needle), "{needle} missing from {json}");
        }
        let rules = json.matches("\"rule\"").count();
        assert_eq!(rules, 4, "{json}");
    }
}
