//! Every format against hand-checked strings: a /16 and a /28 prefix, an
//! IPv6 address where the format has one, no DNS, two DNS servers.

use super::*;
use crate::dns::GuestDns;
use crate::record::{DnsSource, GuestAddress, GuestMode, GuestRecord, GuestRoute};

fn record(addr: &str, gw: &str, dns: &[&str]) -> GuestRecord {
    GuestRecord {
        version: 1,
        network: "tweed".into(),
        container_id: "c1".into(),
        ifname: "eth0".into(),
        netns: "/run/netns/p1".into(),
        mode: GuestMode::Tap,
        device: "tap0".into(),
        device_number: None,
        chained: false,
        mac: "02:42:0a:f4:01:05".into(),
        mtu: 1450,
        hostname: None,
        addresses: vec![GuestAddress {
            address: addr.parse().unwrap(),
            gateway: Some(gw.parse().unwrap()),
        }],
        routes: vec![GuestRoute {
            dst: "0.0.0.0/0".parse().unwrap(),
            gw: Some(gw.parse().unwrap()),
        }],
        dns: GuestDns {
            nameservers: dns.iter().map(|d| d.parse().unwrap()).collect(),
            ..Default::default()
        },
        dns_source: DnsSource::RuntimeConfig,
        localhost: None,
    }
}

fn slash16_two_dns() -> GuestRecord {
    let mut r = record("10.244.7.9/16", "10.244.0.1", &["10.96.0.10", "10.96.0.11"]);
    r.hostname = Some("web-0".into());
    r.dns.search = vec![
        "default.svc.cluster.local".into(),
        "svc.cluster.local".into(),
    ];
    r
}

fn slash28_no_dns() -> GuestRecord {
    record("10.244.1.21/28", "10.244.1.17", &[])
}

fn dual_stack() -> GuestRecord {
    let mut r = record("10.244.1.5/24", "10.244.1.1", &["10.96.0.10", "fd00:96::a"]);
    r.addresses.push(GuestAddress {
        address: "fd00:10:244:1::5/64".parse().unwrap(),
        gateway: Some("fd00:10:244:1::1".parse().unwrap()),
    });
    r
}

fn ipv6_only() -> GuestRecord {
    let mut r = record("fd00:10:244:1::5/64", "fd00:10:244:1::1", &["fd00:96::a"]);
    r.routes[0].dst = "::/0".parse().unwrap();
    r
}

fn out(r: &GuestRecord, f: Format) -> String {
    render(r, f, &RenderOptions::default()).unwrap()
}

#[test]
fn linux() {
    assert_eq!(
        out(&slash16_two_dns(), Format::Linux),
        "ip=10.244.7.9::10.244.0.1:255.255.0.0:web-0:eth0:off:10.96.0.10:10.96.0.11"
    );
    assert_eq!(
        out(&slash28_no_dns(), Format::Linux),
        "ip=10.244.1.21::10.244.1.17:255.255.255.240::eth0:off"
    );
    // IPv6 servers cannot go into ip=; the IPv4 one stays.
    assert_eq!(
        out(&dual_stack(), Format::Linux),
        "ip=10.244.1.5::10.244.1.1:255.255.255.0::eth0:off:10.96.0.10"
    );
    let opts = RenderOptions {
        no_dns: true,
        guest_ifname: Some("ens3".into()),
    };
    assert_eq!(
        render(&slash16_two_dns(), Format::Linux, &opts).unwrap(),
        "ip=10.244.7.9::10.244.0.1:255.255.0.0:web-0:ens3:off"
    );
    assert_eq!(
        render(&ipv6_only(), Format::Linux, &RenderOptions::default()),
        Err(RenderError::NoIpv4 {
            format: Format::Linux
        })
    );
}

#[test]
fn unikraft() {
    assert_eq!(
        out(&slash16_two_dns(), Format::Unikraft),
        "netdev.ip=10.244.7.9/16:10.244.0.1:10.96.0.10:10.96.0.11:web-0:default.svc.cluster.local"
    );
    assert_eq!(
        out(&slash28_no_dns(), Format::Unikraft),
        "netdev.ip=10.244.1.21/28:10.244.1.17"
    );
    assert_eq!(
        out(&dual_stack(), Format::Unikraft),
        "netdev.ip=10.244.1.5/24:10.244.1.1:10.96.0.10"
    );
    assert!(render(&ipv6_only(), Format::Unikraft, &RenderOptions::default()).is_err());
}

#[test]
fn rumprun() {
    assert_eq!(
        out(&slash16_two_dns(), Format::Rumprun),
        r#"{"net":{"if":"ukvmif0","cloner":"True","type":"inet","method":"static","addr":"10.244.7.9","mask":"16","gw":"10.244.0.1"}}"#
    );
    assert_eq!(
        out(&slash28_no_dns(), Format::Rumprun),
        r#"{"net":{"if":"ukvmif0","cloner":"True","type":"inet","method":"static","addr":"10.244.1.21","mask":"28","gw":"10.244.1.17"}}"#
    );
}

#[test]
fn solo5() {
    assert_eq!(
        out(&slash16_two_dns(), Format::Solo5),
        "--ipv4=10.244.7.9/16 --ipv4-gateway=10.244.0.1 --resolver=udp:10.96.0.10 --resolver=udp:10.96.0.11"
    );
    assert_eq!(
        out(&slash28_no_dns(), Format::Solo5),
        "--ipv4=10.244.1.21/28 --ipv4-gateway=10.244.1.17"
    );
    assert_eq!(
        out(&dual_stack(), Format::Solo5),
        "--ipv4=10.244.1.5/24 --ipv4-gateway=10.244.1.1 --ipv6=fd00:10:244:1::5/64 \
         --ipv6-gateway=fd00:10:244:1::1 --resolver=udp:10.96.0.10 --resolver=udp:[fd00:96::a]"
    );
    assert_eq!(
        out(&ipv6_only(), Format::Solo5),
        "--ipv6=fd00:10:244:1::5/64 --ipv6-gateway=fd00:10:244:1::1 --ipv6-only=true \
         --resolver=udp:[fd00:96::a]"
    );
    let no_dns = RenderOptions {
        no_dns: true,
        ..Default::default()
    };
    assert_eq!(
        render(&slash16_two_dns(), Format::Solo5, &no_dns).unwrap(),
        "--ipv4=10.244.7.9/16 --ipv4-gateway=10.244.0.1"
    );
}

#[test]
fn mewz() {
    assert_eq!(
        out(&slash16_two_dns(), Format::Mewz),
        "ip=10.244.7.9/16 gateway=10.244.0.1"
    );
    assert_eq!(
        out(&slash28_no_dns(), Format::Mewz),
        "ip=10.244.1.21/28 gateway=10.244.1.17"
    );
}

#[test]
fn firecracker() {
    let v: serde_json::Value =
        serde_json::from_str(&out(&slash16_two_dns(), Format::Firecracker)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "boot-source": {"boot_args": "ip=10.244.7.9::10.244.0.1:255.255.0.0:web-0:eth0:off:10.96.0.10:10.96.0.11"},
            "network-interfaces": [{"iface_id": "eth0", "guest_mac": "02:42:0a:f4:01:05", "host_dev_name": "tap0"}]
        })
    );
    let mut mv = slash28_no_dns();
    mv.mode = GuestMode::Macvtap;
    assert_eq!(
        render(&mv, Format::Firecracker, &RenderOptions::default()),
        Err(RenderError::NeedsTap {
            format: Format::Firecracker,
            mode: "macvtap"
        })
    );
}

#[test]
fn json_is_the_record() {
    let r = dual_stack();
    let text = out(&r, Format::Json);
    let back: GuestRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back, r);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["addresses"][1]["address"], "fd00:10:244:1::5/64");
    assert_eq!(v["dnsSource"], "runtimeConfig");
}

#[test]
fn gateway_falls_back_to_the_default_route() {
    let mut r = slash28_no_dns();
    r.addresses[0].gateway = None;
    assert_eq!(
        out(&r, Format::Mewz),
        "ip=10.244.1.21/28 gateway=10.244.1.17"
    );
    r.routes.clear();
    assert_eq!(out(&r, Format::Mewz), "ip=10.244.1.21/28");
    assert_eq!(
        out(&r, Format::Linux),
        "ip=10.244.1.21:::255.255.255.240::eth0:off"
    );
}

#[test]
fn format_names() {
    assert_eq!("Unikraft".parse::<Format>(), Ok(Format::Unikraft));
    assert_eq!("mirage".parse::<Format>(), Ok(Format::Solo5));
    let err = "xen".parse::<Format>().unwrap_err().to_string();
    assert!(err.contains("linux, unikraft"), "{err}");
}
