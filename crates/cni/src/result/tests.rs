//! Round trips against the JSON the reference bridge and host-local plugins write.

use serde_json::{Value, json};

use super::*;
use crate::error::code;
use crate::version::{CniVersion, SUPPORTED};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A dual-stack bridge attachment with every 1.1.0 field set somewhere.
fn full() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "tw0".into(),
                mac: Some("6e:7c:3a:90:12:4f".into()),
                mtu: Some(1450),
                ..Interface::default()
            },
            Interface {
                name: "veth3a9f01c2".into(),
                mac: Some("ca:0b:55:1e:7d:21".into()),
                ..Interface::default()
            },
            Interface {
                name: "eth0".into(),
                mac: Some("0a:58:0a:f4:01:05".into()),
                mtu: Some(1450),
                sandbox: Some("/var/run/netns/cni-7f0e1a2b".into()),
                socket_path: Some("/run/vhost/eth0.sock".into()),
                pci_id: Some("0000:00:04.0".into()),
            },
        ],
        ips: vec![
            IpConfig {
                address: net("10.244.1.5/24"),
                gateway: Some(ip("10.244.1.1")),
                interface: Some(2),
            },
            IpConfig {
                address: net("fd00:10:244:1::5/64"),
                gateway: Some(ip("fd00:10:244:1::1")),
                interface: Some(2),
            },
        ],
        routes: vec![
            Route::new(net("0.0.0.0/0"), Some(ip("10.244.1.1"))),
            Route {
                mtu: Some(1400),
                advmss: Some(1360),
                priority: Some(100),
                table: Some(0),
                scope: Some(253),
                ..Route::new(net("10.96.0.0/12"), None)
            },
        ],
        dns: Dns {
            nameservers: vec!["10.96.0.10".into()],
            domain: Some("cluster.local".into()),
            search: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        },
    }
}

fn dns_json() -> Value {
    json!({"nameservers": ["10.96.0.10"], "domain": "cluster.local",
           "search": ["default.svc.cluster.local", "svc.cluster.local"],
           "options": ["ndots:5"]})
}

fn legacy_json(v: &str) -> Value {
    json!({
        "cniVersion": v,
        "interfaces": [
            {"name": "tw0", "mac": "6e:7c:3a:90:12:4f"},
            {"name": "veth3a9f01c2", "mac": "ca:0b:55:1e:7d:21"},
            {"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox": "/var/run/netns/cni-7f0e1a2b"}
        ],
        "ips": [
            {"version": "4", "interface": 2, "address": "10.244.1.5/24", "gateway": "10.244.1.1"},
            {"version": "6", "interface": 2, "address": "fd00:10:244:1::5/64",
             "gateway": "fd00:10:244:1::1"}
        ],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}, {"dst": "10.96.0.0/12"}],
        "dns": dns_json()
    })
}

#[test]
fn writes_0_3_and_0_4_shape() {
    for v in [CniVersion::V0_3_0, CniVersion::V0_3_1, CniVersion::V0_4_0] {
        assert_eq!(full().to_json(v), legacy_json(v.as_str()), "{v}");
    }
}

#[test]
fn writes_1_0_shape() {
    let mut want = legacy_json("1.0.0");
    for ipc in want["ips"].as_array_mut().unwrap() {
        ipc.as_object_mut().unwrap().remove("version");
    }
    assert_eq!(full().to_json(CniVersion::V1_0_0), want);
}

#[test]
fn writes_1_1_shape() {
    let want = json!({
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "tw0", "mac": "6e:7c:3a:90:12:4f", "mtu": 1450},
            {"name": "veth3a9f01c2", "mac": "ca:0b:55:1e:7d:21"},
            {"name": "eth0", "mac": "0a:58:0a:f4:01:05", "mtu": 1450,
             "sandbox": "/var/run/netns/cni-7f0e1a2b",
             "socketPath": "/run/vhost/eth0.sock", "pciID": "0000:00:04.0"}
        ],
        "ips": [
            {"interface": 2, "address": "10.244.1.5/24", "gateway": "10.244.1.1"},
            {"interface": 2, "address": "fd00:10:244:1::5/64", "gateway": "fd00:10:244:1::1"}
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.244.1.1"},
            {"dst": "10.96.0.0/12", "mtu": 1400, "advmss": 1360, "priority": 100,
             "table": 0, "scope": 253}
        ],
        "dns": dns_json()
    });
    assert_eq!(full().to_json(CniVersion::V1_1_0), want);
}

#[test]
fn round_trips_every_version() {
    for &v in SUPPORTED {
        let json = full().to_json(v);
        let back = CniResult::from_json(&json).unwrap();
        assert_eq!(back.to_json(v), json, "{v}");
    }
    // 1.1.0 carries everything, so nothing is lost.
    let back = CniResult::from_json(&full().to_json(CniVersion::V1_1_0)).unwrap();
    assert_eq!(back, full());
}

#[test]
fn reads_host_local_ipam_output() {
    // host-local 0.4.0 / 1.0.0 output: no interfaces, no ips[].interface.
    let v040 = json!({
        "cniVersion": "0.4.0",
        "ips": [{"version": "4", "address": "10.244.1.5/24", "gateway": "10.244.1.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {}
    });
    let r = CniResult::from_json_at(&v040, "IPAM result").unwrap();
    assert!(r.interfaces.is_empty());
    assert_eq!(r.ips[0].interface, None);
    assert_eq!(r.ips[0].address, net("10.244.1.5/24"));
    assert_eq!(r.routes[0], Route::new(net("0.0.0.0/0"), None));
    assert!(r.dns.is_empty());
    assert_eq!(r.to_json(CniVersion::V0_4_0), v040);

    let v100 = json!({
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1"}],
        "routes": [{"dst": "0.0.0.0/0"}]
    });
    let r = CniResult::from_json(&v100).unwrap();
    assert_eq!(r.to_json(CniVersion::V1_0_0), v100);
}

#[test]
fn empty_result_is_just_the_version() {
    assert_eq!(
        CniResult::default().to_json(CniVersion::V1_1_0),
        json!({"cniVersion": "1.1.0"})
    );
    assert_eq!(
        CniResult::default().to_json(CniVersion::V0_4_0),
        json!({"cniVersion": "0.4.0", "dns": {}})
    );
}

#[test]
fn go_style_empties_read_as_absent() {
    let r = CniResult::from_json(&json!({
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "", "sandbox": "", "mtu": 0}],
        "ips": [{"address": "10.0.0.2/24", "gateway": ""}],
        "routes": null,
        "dns": {"nameservers": null, "domain": ""}
    }))
    .unwrap();
    assert_eq!(
        r.interfaces[0],
        Interface {
            name: "eth0".into(),
            ..Interface::default()
        }
    );
    assert_eq!(r.ips[0].gateway, None);
    assert!(r.routes.is_empty());
    assert!(r.dns.is_empty());
}

#[test]
fn result_without_version_is_accepted() {
    let r = CniResult::from_json(&json!({"ips": [{"address": "10.0.0.2/24"}]})).unwrap();
    assert_eq!(r.ips.len(), 1);
}

#[test]
fn errors_name_the_prev_result_path() {
    let cases = [
        (
            json!({"ips": [{"address": "10.0.0.2/33"}]}),
            "prevResult.ips[0].address: invalid CIDR \"10.0.0.2/33\"",
        ),
        (
            json!({"ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.300"}]}),
            "prevResult.ips[0].gateway: invalid IP address \"10.0.0.300\"",
        ),
        (
            json!({"ips": [{"gateway": "10.0.0.1"}]}),
            "prevResult.ips[0]: missing field `address`",
        ),
        (
            json!({"interfaces": [{"mac": "aa"}]}),
            "prevResult.interfaces[0]: missing field `name`",
        ),
        (
            json!({"routes": [{"dst": "0.0.0.0/0", "scope": 300}]}),
            "prevResult.routes[0].scope: invalid value",
        ),
        (
            json!({"ips": [{"version": 4, "address": "10.0.0.2/24"}]}),
            "prevResult.ips[0].version: invalid type",
        ),
        (json!({"ips": {}}), "prevResult.ips: invalid type"),
        (json!([]), "prevResult: invalid type"),
    ];
    for (json, want) in cases {
        let e = CniResult::from_json(&json).unwrap_err();
        assert_eq!(e.code, code::DECODE, "{json}");
        assert!(
            e.msg.starts_with(want),
            "{:?} should start with {want:?}",
            e.msg
        );
    }
}

#[test]
fn unsupported_result_version_is_code_1() {
    let e = CniResult::from_json(&json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}}))
        .unwrap_err();
    assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
    assert!(e.msg.starts_with("prevResult.cniVersion: "), "{}", e.msg);
}

#[test]
fn interface_lookup_is_bounds_checked() {
    let mut r = full();
    assert_eq!(r.interface_of(&r.ips[0]).unwrap().name, "eth0");
    r.ips[0].interface = Some(9);
    assert!(r.interface_of(&r.ips[0]).is_none());
}

#[test]
fn reads_reference_bridge_1_0_output() {
    // Written by containernetworking-plugins 1.1.1 `bridge` + `host-local` on this
    // machine; that build still writes `"dns": {}` for 1.0.0, current libcni omits it.
    let mut bridge = json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cnitestbr0", "mac": "ee:6f:c4:08:20:07"},
            {"name": "veth81456db6", "mac": "f6:11:d3:5e:ef:5b"},
            {"name": "eth0", "mac": "ae:a3:21:7a:80:57", "sandbox": "/var/run/netns/cnitest-x"}
        ],
        "ips": [{"interface": 2, "address": "10.244.9.2/24", "gateway": "10.244.9.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {}
    });
    let r = CniResult::from_json(&bridge).unwrap();
    assert_eq!(r.interface_of(&r.ips[0]).unwrap().name, "eth0");
    bridge.as_object_mut().unwrap().remove("dns");
    assert_eq!(r.to_json(CniVersion::V1_0_0), bridge);
    // Down-converting to 0.3.1 adds ips[].version and the Go-style empty dns.
    let old = r.to_json(CniVersion::V0_3_1);
    assert_eq!(old["ips"][0]["version"], "4");
    assert_eq!(old["dns"], json!({}));
}
