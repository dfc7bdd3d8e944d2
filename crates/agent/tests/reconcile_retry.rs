//! The reconciler retries soon after a pass whose changes did not all
//! land, instead of waiting for the periodic resync: a peer's route that
//! the kernel refuses at first (the underlay address is not there yet, so
//! the gateway is not on-link) lands within moments of the address
//! appearing, with the resync an hour away. Root only: a namespace of the
//! test's own.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tweed_netlink::{NetNs, Netlink, Route};
use tweed_testkit::{TestNs, require_root};
use tweedd::backend::desired::Desired;
use tweedd::backend::{Backend, BackendError, LocalNode};
use tweedd::identity::Underlay;
use tweedd::lease::{Lease, LeaseAttrs};
use tweedd::metrics::Metrics;
use tweedd::reconcile::{Input, PeersMailbox, Reconciler};

/// A backend that wants one route per peer, via the peer's public
/// address, and counts its passes.
struct Routes {
    passes: Arc<AtomicU32>,
}

impl Backend for Routes {
    fn kind(&self) -> &'static str {
        "routes"
    }

    fn lease_data(&self) -> Value {
        json!({})
    }

    fn pod_mtu(&self) -> u32 {
        1500
    }

    fn ensure_devices(
        &mut self,
        _nl: &mut Netlink,
        _local: &LocalNode,
    ) -> Result<(), BackendError> {
        self.passes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn desired(&self, local: &LocalNode, peers: &[Arc<Lease>]) -> Desired {
        let mut desired = Desired::default();
        for p in peers {
            if let (Some(subnet), Some(via)) = (p.key.ipv4, p.attrs.public_ip) {
                desired.routes.push(
                    Route::new(subnet.into())
                        .via(via.into())
                        .dev(local.underlay.index),
                );
            }
        }
        desired
    }
}

fn lease(key: &str, public_ip: &str) -> Lease {
    Lease {
        key: key.parse().unwrap(),
        attrs: LeaseAttrs {
            public_ip: Some(public_ip.parse().unwrap()),
            public_ipv6: None,
            backend_type: "routes".into(),
            backend_data: json!({}).into(),
            backend_v6_data: tweedd::lease::BackendData::null(),
            node_name: key.into(),
            segment_macs: Default::default(),
            wire_ends: Default::default(),
        },
        expires: None,
    }
}

/// Node n1 in `ns` on an underlay `ul0` (one end of a veth pair, up; no
/// dummy driver in this kernel) meant to have 198.18.9.1/24, which the
/// caller adds when it wants.
fn node_on_veth(ns: &TestNs) -> LocalNode {
    ns.exec_ok(&[
        "ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul1",
    ]);
    ns.exec_ok(&["ip", "link", "set", "ul1", "up"]);
    ns.exec_ok(&["ip", "link", "set", "ul0", "up"]);
    let index = ns
        .exec_ok(&["cat", "/sys/class/net/ul0/ifindex"])
        .trim()
        .parse()
        .unwrap();
    LocalNode {
        name: "n1".into(),
        lease: lease("10.244.1.0-24", "198.18.9.1"),
        underlay: Underlay {
            iface: "ul0".into(),
            index,
            mtu: 1500,
            ipv4: Some(Ipv4Addr::new(198, 18, 9, 1)),
            ipv6: None,
            public_ipv4: Some(Ipv4Addr::new(198, 18, 9, 1)),
            public_ipv6: None,
            reason: "test".into(),
        },
        underlay_networks: vec!["198.18.9.0/24".parse().unwrap()],
    }
}

#[test]
fn a_pass_that_did_not_land_is_retried_soon() {
    require_root();
    let ns = TestNs::new("rretry");
    let local = node_on_veth(&ns);
    let nl = Netlink::in_netns(&NetNs::named(&ns.name).unwrap()).unwrap();
    let passes = Arc::new(AtomicU32::new(0));
    let mailbox = Arc::new(PeersMailbox::default());
    let reconciler = Reconciler::new(
        nl,
        Box::new(Routes {
            passes: passes.clone(),
        }),
        Arc::new(Metrics::new()),
        // The periodic resync is far away: only a retry can fix things.
        Duration::from_secs(3600),
        Arc::new(AtomicU32::new(0)),
        mailbox.clone(),
    );
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || reconciler.run(rx));
    mailbox.post((
        Arc::new(local),
        Arc::new(vec![Arc::new(lease("10.244.2.0-24", "198.18.9.2"))]),
    ));
    tx.send(Input::Peers).unwrap();

    // The first pass: the kernel refuses the route (no address on ul0,
    // so 198.18.9.2 is not on-link).
    let deadline = Instant::now() + Duration::from_secs(5);
    while passes.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(passes.load(Ordering::SeqCst) >= 1, "no first pass");
    let route = || ns.exec_ok(&["ip", "route", "show", "10.244.2.0/24"]);
    assert!(
        route().is_empty(),
        "the route landed without its gateway: {}",
        route()
    );

    // The underlay address arrives; nothing tells the reconciler.
    ns.exec_ok(&["ip", "addr", "add", "198.18.9.1/24", "dev", "ul0"]);
    let started = Instant::now();
    let mut routes = route();
    while !routes.contains("via 198.18.9.2") && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        routes = route();
    }
    let took = started.elapsed();
    tx.send(Input::Stop).unwrap();
    thread.join().unwrap();
    assert!(
        routes.contains("via 198.18.9.2 dev ul0"),
        "the peer's route never landed ({} passes): {routes:?}",
        passes.load(Ordering::SeqCst)
    );
    eprintln!("route in the kernel {took:?} after its gateway became reachable");
}

/// A peer that leaves takes its route in the peers pass that follows,
/// without a full pass (the resync an hour away, no neighbour whose
/// removal would kick one): the route is deleted as the protocol it was
/// installed with (77), not the backend's description of it.
#[test]
fn a_peer_that_leaves_takes_its_route_without_a_full_pass() {
    require_root();
    let ns = TestNs::new("rleave");
    let local = Arc::new(node_on_veth(&ns));
    ns.exec_ok(&["ip", "addr", "add", "198.18.9.1/24", "dev", "ul0"]);
    let netns = NetNs::named(&ns.name).unwrap();
    let passes = Arc::new(AtomicU32::new(0));
    let mailbox = Arc::new(PeersMailbox::default());
    let reconciler = Reconciler::new(
        Netlink::in_netns(&netns).unwrap(),
        Box::new(Routes {
            passes: passes.clone(),
        }),
        Arc::new(Metrics::new()),
        Duration::from_secs(3600),
        Arc::new(AtomicU32::new(0)),
        mailbox.clone(),
    );
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || reconciler.run(rx));
    let routes = || ns.exec_ok(&["ip", "route", "show", "proto", "77"]);
    let wait = |what: &str, f: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f(&routes()) {
            assert!(Instant::now() < deadline, "{what}: {}", routes());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    mailbox.post((
        local.clone(),
        Arc::new(vec![
            Arc::new(lease("10.244.2.0-24", "198.18.9.2")),
            Arc::new(lease("10.244.3.0-24", "198.18.9.3")),
        ]),
    ));
    tx.send(Input::Peers).unwrap();
    wait("both routes", &|r| r.lines().count() == 2);
    let before = passes.load(Ordering::SeqCst);
    mailbox.post((
        local,
        Arc::new(vec![Arc::new(lease("10.244.2.0-24", "198.18.9.2"))]),
    ));
    tx.send(Input::Peers).unwrap();
    wait("the leaving peer's route to go", &|r| {
        r.lines().count() == 1 && !r.contains("10.244.3.0/24")
    });
    tx.send(Input::Stop).unwrap();
    thread.join().unwrap();
    assert_eq!(
        passes.load(Ordering::SeqCst),
        before + 1,
        "one peers pass did it"
    );
}
