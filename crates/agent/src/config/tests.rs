//! The net-conf.json tables: every field, its defaults and its errors.

use super::*;

#[test]
fn flannel_defaults() {
    let c =
        NetConfig::parse(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#).unwrap();
    let p = c.pools.ipv4.unwrap();
    assert_eq!(p.subnet_len, 24);
    assert_eq!(p.min, "10.244.1.0/24".parse().unwrap());
    assert_eq!(p.max, "10.244.255.0/24".parse().unwrap());
    assert_eq!(p.size(), 255);
    assert_eq!(p.subnet(0), Some("10.244.1.0/24".parse().unwrap()));
    assert_eq!(p.subnet(255), None);
    assert_eq!(
        c.backend,
        BackendConfig::Vxlan {
            vni: 1,
            port: 8472,
            direct_routing: false
        }
    );
    assert!(c.pools.ipv6.is_none());
}

#[test]
fn dual_stack_and_bounds() {
    let c = NetConfig::parse(
        r#"{"Network": "10.244.0.0/16", "SubnetLen": 26, "SubnetMin": "10.244.8.0", "SubnetMax": "10.244.9.192",
            "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "IPv6SubnetLen": 64,
            "Backend": {"Type": "vxlan", "VNI": 4096, "Port": 4789, "DirectRouting": true, "MTU": 1400},
            "SomethingFlannelHas": 1}"#,
    )
    .unwrap();
    assert_eq!(c.pools.ipv4.as_ref().unwrap().size(), 8);
    assert!(
        c.pools
            .ipv4
            .as_ref()
            .unwrap()
            .contains(&"10.244.9.64/26".parse().unwrap())
    );
    assert!(
        !c.pools
            .ipv4
            .as_ref()
            .unwrap()
            .contains(&"10.244.10.0/26".parse().unwrap())
    );
    let v6 = c.pools.ipv6.unwrap();
    assert_eq!(v6.min, "fd00:10:244:1::/64".parse().unwrap());
    assert_eq!(v6.size(), 255);
    assert_eq!(
        c.backend,
        BackendConfig::Vxlan {
            vni: 4096,
            port: 4789,
            direct_routing: true
        }
    );
    assert_eq!(c.mtu, Some(1400));
}

#[test]
fn errors_name_the_field() {
    let cases = [
        ("not json", "net-conf.json"),
        (r#"[]"#, "net-conf.json"),
        (r#"{}"#, "Network"),
        (r#"{"Network": "10.244.0.0/33"}"#, "Network"),
        (r#"{"Network": "10.244.1.0/16"}"#, "Network"),
        (
            r#"{"Network": "10.244.0.0/16", "SubnetLen": 16}"#,
            "SubnetLen",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "SubnetLen": 31}"#,
            "SubnetLen",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "SubnetLen": "24"}"#,
            "SubnetLen",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.245.0.0"}"#,
            "SubnetMin",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.0.5"}"#,
            "SubnetMin",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.9.0", "SubnetMax": "10.244.8.0"}"#,
            "SubnetMin",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}"#,
            "Backend.Type",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "Backend": {"VNI": 0}}"#,
            "Backend.VNI",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "Backend": {"VNI": "one"}}"#,
            "Backend.VNI",
        ),
        (
            r#"{"Network": "10.244.0.0/16", "Backend": {"MTU": 20}}"#,
            "Backend.MTU",
        ),
        (r#"{"Network": "10.244.0.0/16", "Backend": []}"#, "Backend"),
        (
            r#"{"EnableIPv4": false, "EnableIPv6": true}"#,
            "IPv6Network",
        ),
        (r#"{"EnableIPv4": false}"#, "EnableIPv4"),
        (
            r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "srv6", "Locator": "fd00::/96"}}"#,
            "Backend.Locator",
        ),
    ];
    for (text, field) in cases {
        let e = NetConfig::parse(text).unwrap_err();
        assert_eq!(e.field, field, "{text}: {e}");
    }
}

#[test]
fn the_wire_mtu_is_parsed_and_checked() {
    let c = NetConfig::parse(r#"{"Network": "10.244.0.0/16", "Wires": {"MTU": 9000}}"#).unwrap();
    assert_eq!(c.wire_mtu, Some(9000));
    assert_eq!(
        NetConfig::parse(r#"{"Network": "10.244.0.0/16"}"#)
            .unwrap()
            .wire_mtu,
        None
    );
    for (wires, field) in [
        (r#"{"MTU": 100}"#, "Wires.MTU"),
        (r#"{"Mtu": 1400}"#, "Wires"),
    ] {
        let e = NetConfig::parse(&format!(
            r#"{{"Network": "10.244.0.0/16", "Wires": {wires}}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains(field), "{wires}: {e}");
    }
}

#[test]
fn segments_are_parsed_and_checked() {
    let c = NetConfig::parse(
        r#"{"Network": "10.244.0.0/16", "Segments": [{"Name": "lab1", "VNI": 4001, "MTU": 1400}]}"#,
    )
    .unwrap();
    assert_eq!(c.segments.len(), 1);
    assert_eq!(c.segments[0].name, "lab1");
    assert_eq!(c.segments[0].mtu, Some(1400));
    assert!(
        NetConfig::parse(r#"{"Network": "10.244.0.0/16"}"#)
            .unwrap()
            .segments
            .is_empty()
    );
    for (text, field) in [
        (r#"[{"Name": "Lab", "VNI": 5}]"#, "Segments[0].Name"),
        (r#"[{"Name": "a", "VNI": 0}]"#, "Segments[0].VNI"),
        (r#"[{"Name": "a", "VNI": "x"}]"#, "Segments[0].VNI"),
        (
            r#"[{"Name": "a", "VNI": 5}, {"Name": "b", "VNI": 5}]"#,
            "Segments[1]",
        ),
        (r#"[{"Name": "a", "VNI": 1}]"#, "Segments[0].VNI"),
        (r#"{"Name": "a"}"#, "Segments"),
        (
            r#"[{"Name": "a", "VNI": 5, "Subnet": "10.244.9.0/24"}]"#,
            "Segments[0].Subnet",
        ),
        (
            r#"[{"Name": "a", "VNI": 5, "Subnet": "192.168.0.1/24"}]"#,
            "Segments[0].Subnet",
        ),
        (
            r#"[{"Name": "a", "VNI": 5, "Subnet": "fd00:50::/64"}]"#,
            "Segments[0].Subnet",
        ),
        (
            r#"[{"Name": "a", "VNI": 5, "Subnet": "192.168.0.0/24", "BlockLen": 8}]"#,
            "Segments[0].BlockLen",
        ),
    ] {
        let e = NetConfig::parse(&format!(
            r#"{{"Network": "10.244.0.0/16", "Segments": {text}}}"#
        ))
        .unwrap_err();
        assert!(e.field.starts_with(field), "{text}: {e}");
    }
    let dual = |segment: &str| {
        NetConfig::parse(&format!(
            r#"{{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/56", "Segments": [{segment}]}}"#
        ))
    };
    let ok = dual(
        r#"{"Name": "a", "VNI": 5, "Subnet": "192.168.0.0/24", "IPv6Subnet": "fd00:50::/48"}"#,
    )
    .unwrap();
    assert_eq!(ok.segments[0].ipv6_block_len(), Some(64));
    let e = dual(r#"{"Name": "a", "VNI": 5, "IPv6Subnet": "fd00:10:244:1::/64"}"#).unwrap_err();
    assert_eq!(e.field, "Segments[0].IPv6Subnet", "{e}");
    assert!(
        e.to_string()
            .contains("overlaps the pod network fd00:10:244::/56"),
        "{e}"
    );
    let e = dual(r#"{"Name": "a", "VNI": 5, "IPv6Subnet": "fd00:50::/64", "IPv6BlockLen": 130}"#)
        .unwrap_err();
    assert_eq!(e.field, "Segments[0].IPv6BlockLen", "{e}");
}

#[test]
fn geneve_defaults_and_settings() {
    let c =
        NetConfig::parse(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "geneve"}}"#).unwrap();
    assert_eq!(c.backend, BackendConfig::Geneve { vni: 1, port: 6081 });
    assert_eq!(c.backend.type_name(), "geneve");
    assert_eq!(c.qlen, None);
    let c = NetConfig::parse(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "geneve", "VNI": 16777215, "Port": 7000, "Qlen": 2000, "MTU": 1400}}"#,
    )
    .unwrap();
    assert_eq!(
        c.backend,
        BackendConfig::Geneve {
            vni: 16777215,
            port: 7000
        }
    );
    assert_eq!((c.qlen, c.mtu), (Some(2000), Some(1400)));
    // The VNI of geneve is not a VXLAN VNI: a segment may share it.
    NetConfig::parse(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "geneve"}, "Segments": [{"Name": "a", "VNI": 1}]}"#,
    )
    .unwrap();
}

#[test]
fn qlen_for_both_tunnel_backends_in_either_spelling() {
    for (backend, qlen) in [
        (r#"{"Type": "vxlan", "Qlen": 0}"#, 0),
        (r#"{"Type": "vxlan", "qlen": 500}"#, 500),
        (r#"{"Type": "geneve", "qlen": 10000}"#, 10000),
    ] {
        let c = NetConfig::parse(&format!(
            r#"{{"Network": "10.244.0.0/16", "Backend": {backend}}}"#
        ))
        .unwrap();
        assert_eq!(c.qlen, Some(qlen), "{backend}");
    }
}

#[test]
fn geneve_and_qlen_errors_name_the_field() {
    for (backend, field, says) in [
        (
            r#"{"Type": "geneve", "VNI": 0}"#,
            "Backend.VNI",
            "outside 1..16777215",
        ),
        (
            r#"{"Type": "geneve", "VNI": 16777216}"#,
            "Backend.VNI",
            "outside",
        ),
        (
            r#"{"Type": "geneve", "Port": 0}"#,
            "Backend.Port",
            "must not be 0",
        ),
        (r#"{"Type": "geneve", "Port": 70000}"#, "Backend.Port", ""),
        (
            r#"{"Type": "geneve", "Port": 8472}"#,
            "Backend.Port",
            "VXLAN port",
        ),
        (
            r#"{"Type": "geneve", "DirectRouting": true}"#,
            "Backend.DirectRouting",
            "vxlan",
        ),
        (r#"{"Type": "geneve", "Qlen": -1}"#, "Backend.Qlen", ""),
        (r#"{"Type": "vxlan", "Qlen": "long"}"#, "Backend.Qlen", ""),
        (
            r#"{"Type": "geneve", "qlen": 4294967296}"#,
            "Backend.qlen",
            "",
        ),
        (
            r#"{"Type": "host-gw", "Qlen": 100}"#,
            "Backend.Qlen",
            "host-gw backend has no tunnel device",
        ),
        (r#"{"Type": "srv6", "Qlen": 100}"#, "Backend.Qlen", "srv6"),
        (
            r#"{"Type": "gre"}"#,
            "Backend.Type",
            "vxlan, geneve, host-gw, srv6 and wireguard",
        ),
    ] {
        let e = NetConfig::parse(&format!(
            r#"{{"Network": "10.244.0.0/16", "Backend": {backend}}}"#
        ))
        .unwrap_err();
        assert_eq!(e.field, field, "{backend}: {e}");
        assert!(e.reason.contains(says), "{backend}: {e}");
    }
}

#[test]
fn srv6_locator_default() {
    let c =
        NetConfig::parse(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "srv6"}}"#).unwrap();
    assert_eq!(
        c.backend,
        BackendConfig::Srv6 {
            locator: "fd00:5::/48".parse().unwrap()
        }
    );
}

#[test]
fn wireguard_defaults_are_flannels() {
    let c = NetConfig::parse(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard"}}"#)
        .unwrap();
    assert_eq!(c.backend.type_name(), "wireguard");
    assert_eq!(
        c.backend,
        BackendConfig::Wireguard(WireguardConfig {
            listen_port: 51820,
            listen_port_v6: 51821,
            keepalive: 0,
            mode: WireguardMode::Separate,
            psk: None,
        })
    );
}

#[test]
fn wireguard_settings_in_flannels_names() {
    let psk = "YLvHZ1gwN2kaQ7jkmGl6EYf5IvTPrYDtJ1yg0WJDLWs=";
    let c = NetConfig::parse(&format!(
        r#"{{"Network": "10.244.0.0/16", "Backend": {{"Type": "wireguard", "PSK": "{psk}", "ListenPort": 51000, "ListenPortV6": 51001, "PersistentKeepaliveInterval": 25, "Mode": "auto", "MTU": 1400}}}}"#
    ))
    .unwrap();
    assert_eq!(
        c.backend,
        BackendConfig::Wireguard(WireguardConfig {
            listen_port: 51000,
            listen_port_v6: 51001,
            keepalive: 25,
            mode: WireguardMode::Auto,
            psk: Some(PskSource::Inline(psk.parse().unwrap())),
        })
    );
    assert_eq!(c.mtu, Some(1400));
    for (mode, want) in [
        ("separate", WireguardMode::Separate),
        ("ipv4", WireguardMode::Ipv4),
        ("ipv6", WireguardMode::Ipv6),
    ] {
        let c = NetConfig::parse(&format!(
            r#"{{"Network": "10.244.0.0/16", "Backend": {{"Type": "wireguard", "Mode": "{mode}", "PSKFile": "/etc/tweed/psk"}}}}"#
        ))
        .unwrap();
        let BackendConfig::Wireguard(w) = c.backend else {
            panic!("{mode}")
        };
        assert_eq!(w.mode, want);
        assert_eq!(w.psk, Some(PskSource::File("/etc/tweed/psk".into())));
    }
}

#[test]
fn wireguard_errors_name_the_field() {
    for (backend, field, says) in [
        (
            r#"{"Type": "wireguard", "PSK": "not-a-key"}"#,
            "Backend.PSK",
            "not a WireGuard key",
        ),
        (
            r#"{"Type": "wireguard", "PSK": "AAAA"}"#,
            "Backend.PSK",
            "3 bytes",
        ),
        (
            r#"{"Type": "wireguard", "PSK": "YLvHZ1gwN2kaQ7jkmGl6EYf5IvTPrYDtJ1yg0WJDLWs=", "PSKFile": "/k"}"#,
            "Backend.PSKFile",
            "not both",
        ),
        (
            r#"{"Type": "wireguard", "PSKFile": ""}"#,
            "Backend.PSKFile",
            "empty",
        ),
        (
            r#"{"Type": "wireguard", "ListenPort": 0}"#,
            "Backend.ListenPort",
            "must not be 0",
        ),
        (
            r#"{"Type": "wireguard", "ListenPortV6": 8472}"#,
            "Backend.ListenPortV6",
            "VXLAN port",
        ),
        (
            r#"{"Type": "wireguard", "ListenPort": 70000}"#,
            "Backend.ListenPort",
            "",
        ),
        (
            r#"{"Type": "wireguard", "ListenPort": 51821}"#,
            "Backend.ListenPortV6",
            "two devices",
        ),
        (
            r#"{"Type": "wireguard", "Mode": "both"}"#,
            "Backend.Mode",
            "separate, auto, ipv4, ipv6",
        ),
        (
            r#"{"Type": "wireguard", "PersistentKeepaliveInterval": -1}"#,
            "Backend.PersistentKeepaliveInterval",
            "",
        ),
        (
            r#"{"Type": "wireguard", "Port": 51820}"#,
            "Backend.Port",
            "ListenPort",
        ),
        (
            r#"{"Type": "wireguard", "VNI": 2}"#,
            "Backend.VNI",
            "no such setting",
        ),
        (
            r#"{"Type": "wireguard", "Qlen": 100}"#,
            "Backend.Qlen",
            "wireguard backend has no tunnel device",
        ),
        (
            r#"{"Type": "vxlan", "PSK": "x"}"#,
            "Backend.PSK",
            "only the wireguard backend",
        ),
        (
            r#"{"Type": "geneve", "Mode": "auto"}"#,
            "Backend.Mode",
            "only the wireguard backend",
        ),
    ] {
        let e = NetConfig::parse(&format!(
            r#"{{"Network": "10.244.0.0/16", "Backend": {backend}}}"#
        ))
        .unwrap_err();
        assert_eq!(e.field, field, "{backend}: {e}");
        assert!(e.reason.contains(says), "{backend}: {e}");
    }
    // The same port for both is fine when there is one device.
    NetConfig::parse(
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard", "Mode": "auto", "ListenPort": 51821}}"#,
    )
    .unwrap();
}
