//! A node's lease on its pod subnet(s), in flannel's record format.
//!
//! The key names the subnet(s) the way flannel's etcd keys do
//! (`10.244.1.0-24`, dual stack `10.244.1.0-24&fd00:10:244:1::-64`), and the
//! value is flannel's JSON (`PublicIP`, `BackendType`, `BackendData`, ...)
//! plus tweed's `NodeName`, which flannel ignores. So the records tweed
//! writes are readable by flannel and the reverse.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

mod backend_data;
pub use backend_data::BackendData;

/// The subnet(s) a lease covers; its identity in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Net>,
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v4 = self
            .ipv4
            .map(|n| format!("{}-{}", n.network(), n.prefix_len()));
        let v6 = self
            .ipv6
            .map(|n| format!("{}-{}", n.network(), n.prefix_len()));
        match (v4, v6) {
            (Some(a), Some(b)) => write!(f, "{a}&{b}"),
            (Some(a), None) => write!(f, "{a}"),
            (None, Some(b)) => write!(f, "{b}"),
            (None, None) => write!(f, "-"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a lease key like 10.244.1.0-24 or 10.244.1.0-24&fd00::-64")]
pub struct BadKey(pub String);

impl FromStr for LeaseKey {
    type Err = BadKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadKey(s.to_string());
        let mut key = LeaseKey {
            ipv4: None,
            ipv6: None,
        };
        for part in s.split('&') {
            let (addr, len) = part.rsplit_once('-').ok_or_else(bad)?;
            let len: u8 = len.parse().map_err(|_| bad())?;
            if let Ok(a) = addr.parse::<Ipv4Addr>() {
                if key.ipv4.is_some() {
                    return Err(bad());
                }
                let net = Ipv4Net::new(a, len).map_err(|_| bad())?;
                if net.trunc() != net {
                    return Err(bad());
                }
                key.ipv4 = Some(net);
            } else if let Ok(a) = addr.parse::<Ipv6Addr>() {
                if key.ipv6.is_some() {
                    return Err(bad());
                }
                let net = Ipv6Net::new(a, len).map_err(|_| bad())?;
                if net.trunc() != net {
                    return Err(bad());
                }
                key.ipv6 = Some(net);
            } else {
                return Err(bad());
            }
        }
        if key.ipv4.is_none() && key.ipv6.is_none() {
            return Err(bad());
        }
        Ok(key)
    }
}

/// The record stored under a key (flannel's `LeaseAttrs`, plus `NodeName`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseAttrs {
    #[serde(rename = "PublicIP", default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<Ipv4Addr>,
    #[serde(
        rename = "PublicIPv6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub public_ipv6: Option<Ipv6Addr>,
    #[serde(rename = "BackendType")]
    pub backend_type: String,
    /// Backend-specific data: `{"VNI": 1, "VtepMAC": ".."}` for VXLAN,
    /// `{"SID": ".."}` for SRv6.
    #[serde(
        rename = "BackendData",
        default,
        skip_serializing_if = "BackendData::is_null"
    )]
    pub backend_data: BackendData,
    /// flannel's separate data for the IPv6 VXLAN device.
    #[serde(
        rename = "BackendV6Data",
        default,
        skip_serializing_if = "BackendData::is_null"
    )]
    pub backend_v6_data: BackendData,
    /// The node's name; tweed's addition (flannel ignores unknown keys).
    #[serde(rename = "NodeName", default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// Per layer-2 segment, the MACs behind this node's end of it (pods,
    /// guests, anything its bridge learnt on a local port): other nodes
    /// send frames for them straight here instead of flooding. tweed's
    /// addition.
    #[serde(
        rename = "SegmentMACs",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub segment_macs: SegmentMacs,
    /// The wire ends on this node, each with the far end it is declared to
    /// meet (`"lab/r1:eth1": "lab/r2:eth1"`): the node holding the far end
    /// cables its side towards this node. tweed's addition.
    #[serde(
        rename = "WireEnds",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub wire_ends: WireEnds,
}

/// Wire end (`namespace/pod:ifname`) → the far end it is declared to meet.
pub type WireEnds = BTreeMap<String, String>;

/// Segment name → sorted MACs (`02:42:...`).
pub type SegmentMacs = BTreeMap<String, Vec<String>>;

/// One lease: key, record and, when known, when it expires.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub key: LeaseKey,
    pub attrs: LeaseAttrs,
    pub expires: Option<SystemTime>,
}

/// flannel's lease lifetime; renewed well before it runs out.
pub const LEASE_TTL: Duration = Duration::from_secs(24 * 3600);

impl Lease {
    /// True when this lease describes the same node as `other` (a restart
    /// of ourselves rather than someone else holding the subnet).
    pub fn same_owner(&self, other: &LeaseAttrs) -> bool {
        if !self.attrs.node_name.is_empty() && !other.node_name.is_empty() {
            return self.attrs.node_name == other.node_name;
        }
        self.attrs.public_ip.is_some() && self.attrs.public_ip == other.public_ip
            || self.attrs.public_ipv6.is_some() && self.attrs.public_ipv6 == other.public_ipv6
    }

    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_in_flannel_form() {
        for s in [
            "10.244.1.0-24",
            "10.244.1.0-24&fd00:10:244:1::-64",
            "fd00:10:244:1::-64",
        ] {
            let k: LeaseKey = s.parse().unwrap();
            assert_eq!(k.to_string(), s);
        }
        for bad in [
            "",
            "10.244.1.1-24",
            "10.244.1.0",
            "10.244.1.0-33",
            "x-24",
            "10.0.0.0-8&10.1.0.0-16",
        ] {
            assert!(bad.parse::<LeaseKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn record_is_flannels_json() {
        let json = r#"{"PublicIP":"198.18.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:02"}}"#;
        let a: LeaseAttrs = serde_json::from_str(json).unwrap();
        assert_eq!(a.public_ip, Some("198.18.0.2".parse().unwrap()));
        assert_eq!(
            a.backend_data.get_str("VtepMAC").as_deref(),
            Some("02:00:00:00:00:02")
        );
        assert_eq!(serde_json::to_string(&a).unwrap(), json);
    }
}
