//! One node leaving and joining again.
//!
//! Leaving: its agent stops, its lease is deleted, and the bench waits
//! until every other node's kernel has dropped the route to its subnet.
//! Then (cold join) its own overlay goes too — the `tweed.*` devices and
//! every route of protocol 77 — so that it comes back like a freshly booted
//! node: only its pods (namespaces, addresses, bridge) are already there.
//!
//! Joining: its agent starts; it leases the same subnet again (it keeps it
//! in its state directory), which is the moment the lease appears; every
//! other node must then program it, and it must program them (the replies'
//! way back).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tweed_lab::Lab;
use tweed_netlink::{NetNs, Netlink, TABLE_MAIN};

use crate::common::{ipn, wait_until};
use crate::lease_watch::LeaseWatch;
use crate::probe::Probe;

const PROTO: u8 = 77;
const DEADLINE: Duration = Duration::from_secs(30);

/// What one join measured, in milliseconds.
pub struct Join {
    pub node: String,
    pub subnet: String,
    /// From spawning the agent until its lease appeared in the store.
    pub start_to_lease: f64,
    /// From the lease until the agent answered /readyz (polled every 50 ms
    /// by the lab, so late by up to that).
    pub lease_to_ready: f64,
    /// Every other node's pod, with the time from the lease until its
    /// first echo reply from the joining node's pod.
    pub reached: Vec<(String, f64)>,
}

impl Join {
    /// Reachable from every other node.
    pub fn all(&self) -> f64 {
        self.reached
            .iter()
            .map(|r| r.1)
            .fold(f64::NEG_INFINITY, f64::max)
    }

    pub fn slowest(&self) -> &str {
        let all = self.all();
        self.reached
            .iter()
            .find(|r| r.1 == all)
            .map_or("?", |r| r.0.as_str())
    }
}

/// The subnet (CIDR) of a lease key like `10.244.3.0-24`.
fn subnet_of(key: &str) -> IpNet {
    let (net, len) = key
        .split('&')
        .next()
        .and_then(|k| k.rsplit_once('-'))
        .expect("lease key");
    format!("{net}/{len}").parse().expect("subnet")
}

fn has_route(ns: &str, dst: IpNet) -> bool {
    let handle = NetNs::named(ns).expect("netns");
    let mut nl = Netlink::in_netns(&handle).expect("netlink");
    nl.routes(dst.addr().is_ipv6(), TABLE_MAIN)
        .expect("routes")
        .iter()
        .any(|r| r.dst == dst && r.protocol == PROTO)
}

/// The node leaves; returns its lease key.
pub fn leave(lab: &mut Lab, node: &str, cold: bool) -> String {
    let key = lab.lease_of(node).expect("lease key");
    let subnet = subnet_of(&key);
    lab.stop_agent(node).expect("stop agent");
    lab.delete_lease(node).expect("delete lease");
    let others: Vec<String> = lab
        .state
        .nodes
        .iter()
        .filter(|n| n.name != node)
        .map(|n| n.ns.clone())
        .collect();
    wait_until(
        DEADLINE.as_secs_f64(),
        &format!("every node to drop {subnet}"),
        || others.iter().all(|ns| !has_route(ns, subnet)),
    );
    if cold {
        let ns = lab.state.node(node).expect("node").ns.clone();
        let handle = NetNs::named(&ns).expect("netns");
        let mut nl = Netlink::in_netns(&handle).expect("netlink");
        for link in nl.links().expect("links") {
            if link.name.starts_with("tweed.") {
                nl.delete_link(link.index).expect("delete overlay device");
            }
        }
        ipn(&ns, &format!("route flush proto {PROTO}"));
        ipn(&ns, &format!("-6 route flush proto {PROTO}"));
    }
    key
}

/// The node joins again; `sources` are the other nodes' pods (label,
/// namespace), `dst` the address of the joining node's pod.
pub fn join(
    lab: &mut Lab,
    node: &str,
    key: &str,
    sources: &[(String, String)],
    dst: IpAddr,
    interval: Duration,
) -> Join {
    let subnets: PathBuf = lab.state.dir().join("store").join("subnets");
    let lease = LeaseWatch::start(&subnets, key, DEADLINE);
    let probe = Probe::start(sources, dst, interval, DEADLINE);
    let spawned = Instant::now();
    lab.start_agent(node).expect("start agent");
    let ready = Instant::now();
    let replies = probe.finish();
    let Some(leased) = lease.finish() else {
        panic!(
            "{node}: its lease {key} did not appear within {}s\n{}",
            DEADLINE.as_secs(),
            lab.agent_logs()
        );
    };
    assert_eq!(
        lab.lease_of(node).as_deref(),
        Some(key),
        "{node} came back with another subnet"
    );
    let ms = |a: Instant, b: Instant| {
        if b >= a {
            (b - a).as_secs_f64() * 1e3
        } else {
            -((a - b).as_secs_f64() * 1e3)
        }
    };
    let reached = replies
        .into_iter()
        .map(|(label, at)| {
            let Some(at) = at else {
                panic!(
                    "{label} never reached {node}'s pod {dst} within {}s\n{}",
                    DEADLINE.as_secs(),
                    lab.agent_logs()
                );
            };
            assert!(
                at >= leased,
                "{label} reached {node}'s pod before its lease appeared: stale state"
            );
            (label, ms(leased, at))
        })
        .collect();
    Join {
        node: node.to_string(),
        subnet: subnet_of(key).to_string(),
        start_to_lease: ms(spawned, leased),
        lease_to_ready: ms(leased, ready),
        reached,
    }
}
