//! Validation of the `ipam` section: host-local's defaults and every error,
//! each of which must name its field.

mod common;

use std::path::PathBuf;

use common::{conf, invalid, ip, spec};
use ipnet::IpNet;
use tweed_ipam::{DEFAULT_DATA_DIR, IpamSpec, Range, RangeSet, Route};

#[test]
fn ipv4_defaults_match_host_local() {
    let s = spec(r#"{"type": "tweed", "ranges": [[{"subnet": "10.244.1.0/24"}]]}"#);
    let r = &s.range_sets[0].0[0];
    assert_eq!(r.subnet, "10.244.1.0/24".parse::<IpNet>().unwrap());
    assert_eq!(r.start, ip("10.244.1.1"), "start = network + 1");
    assert_eq!(r.end, ip("10.244.1.254"), "end = broadcast - 1");
    assert_eq!(r.gateway, Some(ip("10.244.1.1")), "gateway = network + 1");
    assert_eq!(s.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert!(s.routes.is_empty());
}

#[test]
fn ipv6_defaults_end_at_last_address() {
    let s = spec(r#"{"ranges": [[{"subnet": "fd00:10::/120"}]]}"#);
    let r = &s.range_sets[0].0[0];
    assert_eq!(r.start, ip("fd00:10::1"));
    assert_eq!(r.end, ip("fd00:10::ff"), "IPv6 has no broadcast to spare");
    assert_eq!(r.gateway, Some(ip("fd00:10::1")));
}

#[test]
fn explicit_values_are_kept() {
    let s = spec(
        r#"{"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10",
            "rangeEnd": "10.0.0.20", "gateway": "10.0.0.254"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.96.0.0/12", "gw": "10.0.0.254"}],
            "dataDir": "/run/tweed/ipam"}"#,
    );
    let r = &s.range_sets[0].0[0];
    assert_eq!((r.start, r.end), (ip("10.0.0.10"), ip("10.0.0.20")));
    assert_eq!(r.gateway, Some(ip("10.0.0.254")));
    assert_eq!(s.data_dir, PathBuf::from("/run/tweed/ipam"));
    assert_eq!(
        s.routes,
        vec![
            Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: None
            },
            Route {
                dst: "10.96.0.0/12".parse().unwrap(),
                gw: Some(ip("10.0.0.254"))
            },
        ]
    );
}

#[test]
fn smallest_subnets_host_local_accepts() {
    let s = spec(r#"{"ranges": [[{"subnet": "10.0.0.4/30"}], [{"subnet": "fd00::/126"}]]}"#);
    let v4 = &s.range_sets[0].0[0];
    assert_eq!((v4.start, v4.end), (ip("10.0.0.5"), ip("10.0.0.6")));
    let v6 = &s.range_sets[1].0[0];
    assert_eq!((v6.start, v6.end), (ip("fd00::1"), ip("fd00::3")));
}

#[test]
fn legacy_subnet_becomes_range_set_zero() {
    let s = spec(
        r#"{"subnet": "10.1.0.0/16", "rangeStart": "10.1.2.0", "gateway": "10.1.0.1",
            "ranges": [[{"subnet": "fd00::/64"}]]}"#,
    );
    assert_eq!(s.range_sets.len(), 2);
    let legacy = &s.range_sets[0].0[0];
    assert_eq!(legacy.start, ip("10.1.2.0"));
    assert_eq!(legacy.end, ip("10.1.255.254"));
    assert!(s.range_sets[1].0[0].subnet.addr().is_ipv6());
}

#[test]
fn empty_data_dir_means_default_and_unknown_keys_are_ignored() {
    let s = spec(
        r#"{"dataDir": "", "resolvConf": "/etc/resolv.conf", "somethingElse": 1,
            "ranges": [[{"subnet": "10.0.0.0/24"}]]}"#,
    );
    assert_eq!(s.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
}

#[test]
fn disjoint_ranges_of_one_subnet_are_allowed() {
    // host-local compares start..end windows, not subnets.
    let s = spec(
        r#"{"ranges": [[
            {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.2", "rangeEnd": "10.0.0.100"},
            {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.101", "rangeEnd": "10.0.0.200"}]]}"#,
    );
    assert_eq!(s.range_sets[0].0.len(), 2);
    assert_eq!(
        s.range_sets[0].to_string(),
        "10.0.0.2-10.0.0.100,10.0.0.101-10.0.0.200"
    );
}

#[test]
fn ipv4_mapped_addresses_are_canonicalised() {
    let s = spec(r#"{"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "::ffff:10.0.0.9"}]]}"#);
    assert_eq!(s.range_sets[0].0[0].start, ip("10.0.0.9"));
}

/// (config, field, substring of the reason)
const INVALID: &[(&str, &str, &str)] = &[
    (r#"{"type": "tweed"}"#, "ipam.ranges", "no address ranges"),
    (r#"{"ranges": []}"#, "ipam.ranges", "no address ranges"),
    (r#"{"ranges": [[]]}"#, "ipam.ranges[0]", "empty range set"),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24"}], []]}"#,
        "ipam.ranges[1]",
        "empty range set",
    ),
    (
        r#"{"ranges": [[{"subnet": "banana"}]]}"#,
        "ipam.ranges[0][0].subnet",
        "not a CIDR subnet",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/33"}]]}"#,
        "ipam.ranges[0][0].subnet",
        "not a CIDR subnet",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.1"}]]}"#,
        "ipam.ranges[0][0].subnet",
        "single address",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/31"}]]}"#,
        "ipam.ranges[0][0].subnet",
        "too small to allocate from (the prefix length must be at most 30)",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.1/32"}]]}"#,
        "ipam.ranges[0][0].subnet",
        "too small",
    ),
    (
        r#"{"ranges": [[{"subnet": "fd00::/127"}]]}"#,
        "ipam.ranges[0][0].subnet",
        "at most 126",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.5/24"}]]}"#,
        "ipam.ranges[0][0].subnet",
        "host bits set; for a /24 the network address is 10.0.0.0",
    ),
    (
        r#"{"ranges": [[{"subnet": "::ffff:10.0.0.0/120"}]]}"#,
        "ipam.ranges[0][0].subnet",
        "IPv4-mapped",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "ten"}]]}"#,
        "ipam.ranges[0][0].rangeStart",
        "\"ten\" is not an IP address",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.1"}]]}"#,
        "ipam.ranges[0][0].rangeStart",
        "10.0.1.1 is not inside subnet 10.0.0.0/24",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.1.1"}]]}"#,
        "ipam.ranges[0][0].rangeEnd",
        "not inside subnet",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24", "rangeEnd": "fd00::1"}]]}"#,
        "ipam.ranges[0][0].rangeEnd",
        "not of the same address family",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.50", "rangeEnd": "10.0.0.40"}]]}"#,
        "ipam.ranges[0][0].rangeEnd",
        "rangeEnd 10.0.0.40 is before rangeStart 10.0.0.50",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.255"}]]}"#,
        "ipam.ranges[0][0].rangeStart",
        "after the default rangeEnd 10.0.0.254",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "10.9.9.9"}]]}"#,
        "ipam.ranges[0][0].gateway",
        "not inside subnet",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "nope"}]]}"#,
        "ipam.ranges[0][0].gateway",
        "not an IP address",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}"#,
        "ipam.ranges[0][1]",
        "mixed address families: this range is IPv6 but ipam.ranges[0][0] is IPv4",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/25"}]]}"#,
        "ipam.ranges[0][1]",
        "range 10.0.0.1-10.0.0.126 overlaps ipam.ranges[0][0] (10.0.0.1-10.0.0.254)",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.1.0/24"}, {"subnet": "10.0.0.128/25"}]]}"#,
        "ipam.ranges[1][1]",
        "overlaps ipam.ranges[0][0]",
    ),
    (
        r#"{"subnet": "10.0.0.0/16", "ranges": [[{"subnet": "10.0.3.0/24"}]]}"#,
        "ipam.ranges[0][0]",
        "overlaps ipam (10.0.0.1-10.0.255.254)",
    ),
    (
        r#"{"subnet": "10.0.0.0/16", "rangeStart": "10.1.0.0"}"#,
        "ipam.rangeStart",
        "not inside subnet",
    ),
    (
        r#"{"subnet": "10.0.0.0/16", "gateway": "10.1.0.0"}"#,
        "ipam.gateway",
        "not inside subnet",
    ),
    (r#"{"subnet": "nope"}"#, "ipam.subnet", "not a CIDR subnet"),
    (
        r#"{"rangeStart": "10.0.0.2", "ranges": [[{"subnet": "10.0.0.0/24"}]]}"#,
        "ipam.rangeStart",
        "set without ipam.subnet",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24"}]], "routes": [{"dst": "default"}]}"#,
        "ipam.routes[0].dst",
        "not a CIDR destination",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}, {"dst": "0.0.0.0/0", "gw": "x"}]}"#,
        "ipam.routes[1].gw",
        "not an IP address",
    ),
    (
        r#"{"ranges": [[{"subnet": "10.0.0.0/24"}]], "routes": [{"dst": "::/0", "gw": "10.0.0.1"}]}"#,
        "ipam.routes[0].gw",
        "not of the same address family as dst ::/0",
    ),
];

#[test]
fn every_validation_error_names_its_field() {
    for (json, field, reason) in INVALID {
        let (got_field, message) = invalid(json);
        assert_eq!(&got_field, field, "field for {json}");
        assert!(
            message.starts_with(&format!("invalid IPAM config: {field}: ")),
            "message {message:?} should start with the field path"
        );
        assert!(
            message.contains(reason),
            "message {message:?} for {json} should contain {reason:?}"
        );
    }
}

#[test]
fn a_range_needs_a_subnet_key() {
    let err =
        serde_json::from_str::<tweed_ipam::IpamConf>(r#"{"ranges": [[{"gateway": "1.2.3.4"}]]}"#)
            .expect_err("subnet is required");
    assert!(err.to_string().contains("subnet"), "{err}");
}

#[test]
fn range_new_uses_the_given_field_prefix() {
    let subnet: IpNet = "10.244.3.0/24".parse().unwrap();
    let r = Range::new(subnet, None, None, None, "lease").expect("valid");
    assert_eq!((r.start, r.end), (ip("10.244.3.1"), ip("10.244.3.254")));
    let err = Range::new(subnet, Some(ip("10.244.4.1")), None, None, "lease.ipv4").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid IPAM config: lease.ipv4.rangeStart: 10.244.4.1 is not inside subnet 10.244.3.0/24"
    );
    assert!(err.is_invalid_config());
}

#[test]
fn ipam_spec_new_checks_sets() {
    let r = |s: &str| Range::new(s.parse().unwrap(), None, None, None, "x").unwrap();
    assert!(
        IpamSpec::new(vec![], vec![], "/tmp".into())
            .unwrap_err()
            .is_invalid_config()
    );
    let err = IpamSpec::new(vec![RangeSet(vec![])], vec![], "/tmp".into()).unwrap_err();
    assert!(
        err.to_string().contains("range_sets[0]: empty range set"),
        "{err}"
    );
    let err = IpamSpec::new(
        vec![
            RangeSet(vec![r("10.0.0.0/24")]),
            RangeSet(vec![r("10.0.0.0/16")]),
        ],
        vec![],
        "/tmp".into(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("range_sets[1][0]: range 10.0.0.1-10.0.255.254 overlaps range_sets[0][0]"),
        "{err}"
    );
    // Public fields: a hand-built range with start > end is caught.
    let mut bad = r("10.1.0.0/24");
    bad.start = ip("10.1.0.200");
    bad.end = ip("10.1.0.100");
    let err = IpamSpec::new(vec![RangeSet(vec![bad])], vec![], "/tmp".into()).unwrap_err();
    assert!(
        err.to_string().contains("range_sets[0][0].rangeEnd"),
        "{err}"
    );
    let routes = vec![Route {
        dst: "::/0".parse().unwrap(),
        gw: Some(ip("10.0.0.1")),
    }];
    let err = IpamSpec::new(
        vec![RangeSet(vec![r("10.0.0.0/24")])],
        routes,
        "/tmp".into(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("routes[0].gw"), "{err}");
    let ok = IpamSpec::new(
        vec![
            RangeSet(vec![r("10.0.0.0/24")]),
            RangeSet(vec![r("fd00::/64")]),
        ],
        vec![],
        "/tmp".into(),
    )
    .expect("valid");
    assert_eq!(ok.range_set_for(ip("fd00::5")), Some(1));
    assert_eq!(
        ok.range_set_for(ip("10.0.0.255")),
        None,
        "broadcast is outside the range"
    );
}

#[test]
fn conf_round_trips_through_json() {
    let c = conf(
        r#"{"type": "tweed", "subnet": "10.0.0.0/24", "rangeStart": "10.0.0.5", "dataDir": "/d"}"#,
    );
    let back: serde_json::Value = serde_json::to_value(&c).unwrap();
    assert_eq!(
        back,
        serde_json::json!({"type": "tweed", "subnet": "10.0.0.0/24", "rangeStart": "10.0.0.5", "dataDir": "/d"})
    );
    assert!(matches!(c.validate(), Ok(IpamSpec { .. })));
}

#[test]
fn runtime_ip_ranges_come_first() {
    let c = conf(r#"{"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "fd00::/64"}]]}"#);
    let runtime = vec![vec![tweed_ipam::RangeConf {
        subnet: "10.2.0.0/24".into(),
        ..Default::default()
    }]];
    let s = c.validate_with_runtime_ranges(&runtime).unwrap();
    let subnets: Vec<String> = s
        .range_sets
        .iter()
        .map(|r| r.0[0].subnet.to_string())
        .collect();
    assert_eq!(subnets, ["10.2.0.0/24", "10.1.0.0/24", "fd00::/64"]);

    let clash = vec![vec![tweed_ipam::RangeConf {
        subnet: "10.1.0.0/16".into(),
        ..Default::default()
    }]];
    let err = c.validate_with_runtime_ranges(&clash).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid IPAM config: ipam: range 10.1.0.1-10.1.0.254 overlaps runtimeConfig.ipRanges[0][0]"),
        "{err}"
    );
    let bad = vec![vec![tweed_ipam::RangeConf {
        subnet: "10.3.0.0/24".into(),
        range_start: Some("x".into()),
        ..Default::default()
    }]];
    let err = c.validate_with_runtime_ranges(&bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("runtimeConfig.ipRanges[0][0].rangeStart"),
        "{err}"
    );
    // Runtime ranges alone are enough.
    let s = conf("{}").validate_with_runtime_ranges(&runtime).unwrap();
    assert_eq!(s.range_sets.len(), 1);
}
