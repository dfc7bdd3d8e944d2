//! What tweedd reads from the operator and the store, and the lease file
//! it writes for the plugin.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use k8s_openapi::api::core::v1::Node;
use serde_json::Value;
use tweed_node::{Family, Prefix, SubnetEnv};
use tweedd::config::NetConfig;
use tweedd::lease::{LeaseAttrs, LeaseKey};
use tweedd::store::file::{parse_record, render_record};
use tweedd::store::kube::node::{Networks, annotations_patch, node_lease_or_flannel};

/// `/etc/tweed/net-conf.json` (and flannel's `<prefix>/config`): an
/// accepted configuration's pools hand out subnets inside their network.
pub fn net_conf(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let Ok(conf) = NetConfig::parse(text) else {
        return;
    };
    let _ = conf.reserved_vnis();
    assert!(
        !conf.networks().is_empty(),
        "an accepted config has a network"
    );
    if let Some(pool) = &conf.pools.ipv4 {
        for i in [0, pool.size().saturating_sub(1)] {
            if let Some(s) = pool.subnet(i) {
                assert!(pool.network.contains(&s), "{s} outside {}", pool.network);
            }
        }
    }
    if let Some(pool) = &conf.pools.ipv6 {
        for i in [0, pool.size().saturating_sub(1)] {
            if let Some(s) = pool.subnet(i) {
                assert!(pool.network.contains(&s), "{s} outside {}", pool.network);
            }
        }
    }
}

/// `subnet.env` as the plugin reads it: each family holds its own family's
/// addresses, and what tweedd would write for the lease reads back equal.
pub fn subnet_env(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let Ok(lease) = SubnetEnv::parse(text) else {
        return;
    };
    let family_ok = |f: &Option<Family>, v4: bool| {
        f.as_ref().is_none_or(|f| {
            f.subnet.addr().is_ipv4() == v4
                && f.gateway.is_ipv4() == v4
                && f.network.is_none_or(|n| n.addr().is_ipv4() == v4)
        })
    };
    assert!(
        family_ok(&lease.ipv4, true),
        "IPv4 keys hold {:?}",
        lease.ipv4
    );
    assert!(
        family_ok(&lease.ipv6, false),
        "IPv6 keys hold {:?}",
        lease.ipv6
    );

    // What tweedd writes for the same lease: the gateway is always the
    // subnet's first usable address, the MTU always given.
    let info = SubnetEnv {
        ipv4: lease
            .ipv4
            .as_ref()
            .map(|f| Family::new(f.network, f.subnet)),
        ipv6: lease
            .ipv6
            .as_ref()
            .map(|f| Family::new(f.network, f.subnet)),
        mtu: Some(lease.mtu.unwrap_or(1500)),
        ip_masq: lease.ip_masq,
    };
    let written = info.render(Prefix::Tweed);
    let again = SubnetEnv::parse(&written)
        .unwrap_or_else(|e| panic!("tweedd's {written:?} does not parse: {e:?}"));
    let first_usable = |f: &Family| match f.subnet.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    };
    let expected = |f: &Option<Family>| {
        f.as_ref().map(|f| Family {
            gateway: first_usable(f),
            ..f.clone()
        })
    };
    assert_eq!(again.ipv4, expected(&lease.ipv4), "IPv4 via {written:?}");
    assert_eq!(again.ipv6, expected(&lease.ipv6), "IPv6 via {written:?}");
    assert_eq!(again.mtu, info.mtu);
    assert_eq!(again.ip_masq, lease.ip_masq);
    assert_eq!(again, info, "via {written:?}");
}

/// flannel's etcd layout: a key line (`10.244.1.0-24`, dual stack with
/// `&`), then the value (`{"PublicIP":..,"BackendType":..}`). Both are
/// written back the way they were read.
pub fn flannel_etcd(data: &[u8]) {
    let (key, value) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Some(Ok(key)) = crate::text(key).map(str::parse::<LeaseKey>) {
        let again: LeaseKey = key.to_string().parse().expect("a written key parses");
        assert_eq!(again, key);
    }
    if let Ok(attrs) = serde_json::from_slice::<LeaseAttrs>(value) {
        let written = serde_json::to_vec(&attrs).expect("attrs serialise");
        let again: LeaseAttrs = serde_json::from_slice(&written).expect("written attrs parse");
        assert_eq!(again, attrs);
    }
}

fn cluster_networks() -> Networks {
    Networks {
        ipv4: Some("10.244.0.0/16".parse::<Ipv4Net>().expect("literal")),
        ipv6: Some("fd00:10:244::/56".parse::<Ipv6Net>().expect("literal")),
    }
}

/// A Node from the API (`spec.podCIDR(s)`, tweed's or flannel's
/// annotations): a lease read from it lies in the cluster network, and the
/// annotations tweedd writes for it give the same lease back.
pub fn node_annotations(data: &[u8]) {
    let Ok(node) = serde_json::from_slice::<Node>(data) else {
        return;
    };
    let nets = cluster_networks();
    let _ = node_lease_or_flannel(&node, &nets, true);
    let Ok(Some(lease)) = node_lease_or_flannel(&node, &nets, false) else {
        return;
    };
    let inside = |n: Option<IpNet>, within: Option<IpNet>| match (n, within) {
        (Some(n), Some(w)) => w.contains(&n),
        (None, _) => true,
        (Some(_), None) => false,
    };
    assert!(inside(
        lease.key.ipv4.map(Into::into),
        nets.ipv4.map(Into::into)
    ));
    assert!(inside(
        lease.key.ipv6.map(Into::into),
        nets.ipv6.map(Into::into)
    ));

    let patch = annotations_patch(&lease.attrs, false);
    let mut rewritten = node.clone();
    let annotations: BTreeMap<String, String> = match patch.pointer("/metadata/annotations") {
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
            .collect(),
        _ => panic!("patch {patch} has no annotations"),
    };
    rewritten.metadata.annotations = Some(annotations);
    let again = node_lease_or_flannel(&rewritten, &nets, false)
        .unwrap_or_else(|e| panic!("tweedd's own annotations {patch} are refused: {e}"))
        .expect("tweedd's own annotations give a lease");
    assert_eq!(again, lease, "lease through annotations {patch}");
}

/// A lease file of the file store (`file://`): what tweedd writes for a
/// lease it read reads back the same.
pub fn file_store_record(data: &[u8]) {
    let key: LeaseKey = "10.244.1.0-24".parse().expect("literal");
    let Ok(lease) = parse_record(&key, data) else {
        return;
    };
    let written = render_record(&lease);
    let again = parse_record(&key, &written).expect("a written record parses");
    assert_eq!(again, lease);
}
