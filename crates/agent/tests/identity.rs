//! Choosing the underlay interface on a node with two NICs: every rule, and
//! the reason the agent gives.

use tweed_netlink::{LinkKind, NetNs, Netlink, NewLink, Route, VethPeer};
use tweed_testkit::TestNs;
use tweedd::identity::{IdentityOptions, choose};

/// A node with eth0 (198.18.0.1/24, default route) and eth1 (198.18.1.1/24,
/// fd00:1::1/64), each cabled to a namespace of its own.
fn two_nics() -> (TestNs, TestNs, TestNs) {
    let node = TestNs::new("id");
    let a = TestNs::new("ida");
    let b = TestNs::new("idb");
    let ns = NetNs::named(&node.name).unwrap();
    let mut nl = Netlink::in_netns(&ns).unwrap();
    for (name, far, v4, v6) in [
        ("eth0", &a, "198.18.0.1/24", None),
        ("eth1", &b, "198.18.1.1/24", Some("fd00:1::1/64")),
    ] {
        let far_ns = NetNs::named(&far.name).unwrap();
        let mut l = NewLink::new(
            name,
            LinkKind::Veth(VethPeer {
                name: "x".into(),
                mac: None,
                netns: Some(&far_ns),
            }),
        );
        l.up = true;
        nl.create_link(&l).unwrap();
        let idx = nl.link_by_name(name).unwrap().unwrap().index;
        nl.add_address(idx, v4.parse().unwrap(), true).unwrap();
        if let Some(v6) = v6 {
            nl.add_address(idx, v6.parse().unwrap(), true).unwrap();
        }
    }
    let eth0 = nl.link_by_name("eth0").unwrap().unwrap().index;
    nl.add_route(
        &Route::new("0.0.0.0/0".parse().unwrap())
            .via("198.18.0.254".parse().unwrap())
            .dev(eth0),
    )
    .unwrap();
    (node, a, b)
}

fn pick(node: &TestNs, opts: IdentityOptions) -> Result<tweedd::identity::Underlay, String> {
    let ns = NetNs::named(&node.name).unwrap();
    let mut nl = Netlink::in_netns(&ns).unwrap();
    ns.run(|| choose(&mut nl, &opts))
        .unwrap()
        .map_err(|e| e.to_string())
}

fn v4() -> IdentityOptions {
    IdentityOptions {
        need_ipv4: true,
        ..Default::default()
    }
}

#[test]
fn every_rule_picks_the_right_interface_and_says_why() {
    let (node, _a, _b) = two_nics();

    let u = pick(&node, v4()).unwrap();
    assert_eq!(u.iface, "eth0");
    assert!(u.reason.contains("default route"), "{}", u.reason);
    assert_eq!(u.public_ipv4, Some("198.18.0.1".parse().unwrap()));

    let u = pick(
        &node,
        IdentityOptions {
            iface: vec!["eth1".into()],
            ..v4()
        },
    )
    .unwrap();
    assert_eq!(
        (u.iface.as_str(), u.reason.as_str()),
        ("eth1", "--iface eth1")
    );

    let u = pick(
        &node,
        IdentityOptions {
            iface: vec!["198.18.1.1".into()],
            ..v4()
        },
    )
    .unwrap();
    assert_eq!(u.iface, "eth1");

    // A missing first choice falls through to the next.
    let u = pick(
        &node,
        IdentityOptions {
            iface: vec!["wlan7".into(), "eth1".into()],
            ..v4()
        },
    )
    .unwrap();
    assert_eq!(u.iface, "eth1");

    let u = pick(
        &node,
        IdentityOptions {
            iface_regex: vec!["^eth1$".into()],
            ..v4()
        },
    )
    .unwrap();
    assert_eq!(u.iface, "eth1");
    assert!(u.reason.contains("--iface-regex"), "{}", u.reason);

    let u = pick(
        &node,
        IdentityOptions {
            iface_can_reach: Some("198.18.1.77".parse().unwrap()),
            ..v4()
        },
    )
    .unwrap();
    assert_eq!(u.iface, "eth1");
    assert!(u.reason.contains("--iface-can-reach"), "{}", u.reason);

    let u = pick(
        &node,
        IdentityOptions {
            public_ip: Some("198.19.0.9".parse().unwrap()),
            ..v4()
        },
    )
    .unwrap();
    assert_eq!(
        (u.iface.as_str(), u.public_ipv4),
        ("eth0", Some("198.19.0.9".parse().unwrap()))
    );
    assert_eq!(u.ipv4, Some("198.18.0.1".parse().unwrap()));

    // SRv6 needs IPv6: only eth1 has it, but no rule names it and no IPv6
    // default route exists.
    let err = pick(
        &node,
        IdentityOptions {
            need_ipv6: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.contains("IPv6"), "{err}");
    let u = pick(
        &node,
        IdentityOptions {
            need_ipv6: true,
            iface: vec!["eth1".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(u.ipv6, Some("fd00:1::1".parse().unwrap()));

    let err = pick(
        &node,
        IdentityOptions {
            iface_regex: vec!["([".into()],
            ..v4()
        },
    )
    .unwrap_err();
    assert!(err.contains("--iface-regex"), "{err}");
}
