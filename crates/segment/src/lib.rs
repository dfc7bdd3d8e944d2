//! Layer-2 segments: a named broadcast domain that spans nodes.
//!
//! On every node a segment is a bridge (`tws-<name>`) joined to a VXLAN
//! device (`twx.<VNI>`) for the segment's own VNI; tweedd creates both and
//! programs the VXLAN device's FDB from the store, and the plugin attaches
//! pod interfaces to the bridge. The names are fixed here so that both
//! sides agree without talking to each other.
//!
//! Declared in net-conf.json (flannel's file, extended):
//! `"Segments": [{"Name": "lab1", "VNI": 4001, "MTU": 1450, "VLAN": 100,
//! "Subnet": "192.168.50.0/24", "BlockLen": 28, "IPv6Subnet": "fd00:50::/48"}]`.
//!
//! A segment with a `Subnet` and/or an `IPv6Subnet` hands out addresses:
//! each node's tweedd claims one block of each in the store and writes
//! them to a file (see [`block`]) from which the plugin allocates, so
//! addresses are unique across nodes without the plugin ever talking to
//! the store.

pub mod block;
pub mod more;

use std::collections::HashSet;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// The longest segment name: `tws-` plus it must fit the kernel's 15-byte
/// interface names.
pub const MAX_NAME_LEN: usize = 11;
/// VXLAN network identifiers are 24 bits.
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// One segment as declared.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Segment {
    /// Lower-case letters, digits and `-`, at most [`MAX_NAME_LEN`].
    pub name: String,
    #[serde(rename = "VNI")]
    pub vni: u32,
    /// The segment's MTU on every node; default: the underlay's minus the
    /// VXLAN overhead.
    #[serde(rename = "MTU", default)]
    pub mtu: Option<u32>,
    /// An 802.1Q tag for the segment between nodes: frames cross to other
    /// nodes tagged with it (so a trunk elsewhere can carry the segment as
    /// that VLAN) while pods send and receive them untagged; frames that
    /// arrive without it are dropped. Default: untagged everywhere.
    #[serde(rename = "VLAN", default)]
    pub vlan: Option<u16>,
    /// Addresses for the segment's pods: every node claims a block of it
    /// (one per node, unique cluster-wide) and its pods get addresses from
    /// that block, with the subnet's prefix and no gateway. Default: no
    /// addresses (pure layer 2).
    #[serde(rename = "Subnet", default, deserialize_with = "ipv4_prefix")]
    pub subnet: Option<Ipv4Net>,
    /// The prefix length of each node's block of `Subnet`; default
    /// [`Segment::block_len`].
    #[serde(rename = "BlockLen", default)]
    pub block_len: Option<u8>,
    /// IPv6 addresses for the segment's pods, handed out as `Subnet`'s
    /// are (blocks per node, the subnet's prefix, no gateway); with both,
    /// every pod gets one address of each family.
    #[serde(rename = "IPv6Subnet", default, deserialize_with = "ipv6_prefix")]
    pub ipv6_subnet: Option<Ipv6Net>,
    /// The prefix length of each node's block of `IPv6Subnet`; default
    /// [`Segment::ipv6_block_len`].
    #[serde(rename = "IPv6BlockLen", default)]
    pub ipv6_block_len: Option<u8>,
}

/// `Subnet`: an IPv4 prefix, with a pointer to `IPv6Subnet` for an IPv6 one.
fn ipv4_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Net>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|_| {
        let hint = match text.parse::<Ipv6Net>() {
            Ok(_) => "; an IPv6 prefix goes in IPv6Subnet",
            Err(_) => "",
        };
        D::Error::custom(format!(
            "{text:?} is not an IPv4 prefix (a.b.c.d/len){hint}"
        ))
    })
}

/// `IPv6Subnet`: an IPv6 prefix, with a pointer to `Subnet` for an IPv4 one.
fn ipv6_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv6Net>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|_| {
        let hint = match text.parse::<Ipv4Net>() {
            Ok(_) => "; an IPv4 prefix goes in Subnet",
            Err(_) => "",
        };
        D::Error::custom(format!("{text:?} is not an IPv6 prefix (x:x::/len){hint}"))
    })
}

/// The longest IPv4 block: 4 addresses.
pub const MAX_BLOCK_LEN: u8 = 30;
/// The longest IPv6 block: 4 addresses.
pub const MAX_IPV6_BLOCK_LEN: u8 = 126;

impl Segment {
    /// The prefix length of one node's block: as configured, else /26 (64
    /// addresses, Calico's default block) when the subnet holds at least 16
    /// of those, else 16 blocks (prefix + 4), at most /30.
    pub fn block_len(&self) -> Option<u8> {
        let subnet = self.subnet?;
        Some(self.block_len.unwrap_or_else(|| {
            let prefix = subnet.prefix_len();
            if prefix <= 22 {
                26
            } else {
                (prefix + 4).min(MAX_BLOCK_LEN)
            }
        }))
    }

    /// The prefix length of one node's IPv6 block: as configured, else /64
    /// when the subnet holds at least 16 of those, else 16 blocks (prefix
    /// + 4), at most /126.
    pub fn ipv6_block_len(&self) -> Option<u8> {
        let subnet = self.ipv6_subnet?;
        Some(self.ipv6_block_len.unwrap_or_else(|| {
            let prefix = subnet.prefix_len();
            if prefix <= 60 {
                64
            } else {
                (prefix + 4).min(MAX_IPV6_BLOCK_LEN)
            }
        }))
    }

    /// Whether the segment hands out addresses at all.
    pub fn has_addresses(&self) -> bool {
        self.subnet.is_some() || self.ipv6_subnet.is_some()
    }
}

/// What is wrong with one entry of `Segments`, in its own terms (the
/// field first, where one field is wrong).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SegmentProblem {
    #[error("Name: {name:?} {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("VNI: {vni} is outside 1..{MAX_VNI}")]
    BadVni { vni: u32 },
    #[error("MTU: {mtu} is outside 576..65535")]
    BadMtu { mtu: u32 },
    #[error("VLAN: {vlan} is outside 1..4094")]
    BadVlan { vlan: u16 },
    #[error("Subnet: {reason}")]
    BadSubnet { reason: String },
    #[error("BlockLen: {reason}")]
    BadBlockLen { reason: String },
    #[error("IPv6Subnet: {reason}")]
    BadIpv6Subnet { reason: String },
    #[error("IPv6BlockLen: {reason}")]
    BadIpv6BlockLen { reason: String },
    #[error("{what} {value} is used by an earlier segment")]
    Duplicate { what: &'static str, value: String },
}

/// A problem of entry `index` of `Segments`: `Segments[2].VNI: ...`, or
/// `Segments[2]: ...` when no one field is wrong. Other front ends (the
/// lab's topology files) name the entry their own way from `index`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Segments[{index}]{}{problem}", if matches!(problem, SegmentProblem::Duplicate { .. }) { ": " } else { "." })]
pub struct SegmentError {
    pub index: usize,
    pub problem: SegmentProblem,
}

/// The node bridge of segment `name`.
pub fn bridge_name(name: &str) -> String {
    format!("{}{name}", tweed_node::names::SEGMENT_BRIDGE_PREFIX)
}

/// The VXLAN device of the segment with `vni`.
pub fn vxlan_name(vni: u32) -> String {
    format!("{}{vni}", tweed_node::names::SEGMENT_VXLAN_PREFIX)
}

/// Checks one name: it becomes part of an interface name.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("is longer than 11 characters (it becomes the bridge name tws-<name>)");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may hold only lower-case letters, digits and '-'");
    }
    if name.starts_with('-') {
        return Err("must not start with '-'");
    }
    Ok(())
}

/// Checks every segment and that names and VNIs are unique.
pub fn validate(segments: &[Segment]) -> Result<(), SegmentError> {
    let mut names = HashSet::new();
    let mut vnis = HashSet::new();
    for (index, s) in segments.iter().enumerate() {
        let bad = |problem| SegmentError { index, problem };
        check_name(&s.name).map_err(|reason| {
            bad(SegmentProblem::BadName {
                name: s.name.clone(),
                reason,
            })
        })?;
        if s.vni == 0 || s.vni > MAX_VNI {
            return Err(bad(SegmentProblem::BadVni { vni: s.vni }));
        }
        if let Some(mtu) = s.mtu
            && !(576..=65535).contains(&mtu)
        {
            return Err(bad(SegmentProblem::BadMtu { mtu }));
        }
        if let Some(vlan) = s.vlan
            && !(1..=4094).contains(&vlan)
        {
            return Err(bad(SegmentProblem::BadVlan { vlan }));
        }
        check_addressing(s).map_err(bad)?;
        if !names.insert(s.name.as_str()) {
            return Err(bad(SegmentProblem::Duplicate {
                what: "name",
                value: s.name.clone(),
            }));
        }
        if !vnis.insert(s.vni) {
            return Err(bad(SegmentProblem::Duplicate {
                what: "VNI",
                value: s.vni.to_string(),
            }));
        }
    }
    Ok(())
}

/// `Subnet`, `BlockLen`, `IPv6Subnet` and `IPv6BlockLen` of one entry.
fn check_addressing(s: &Segment) -> Result<(), SegmentProblem> {
    check_family(
        s.subnet.map(|n| (n.into(), n.trunc().into())),
        s.block_len,
        s.block_len(),
        ("Subnet", MAX_BLOCK_LEN),
    )
    .map_err(|e| match e {
        FamilyError::Subnet(reason) => SegmentProblem::BadSubnet { reason },
        FamilyError::BlockLen(reason) => SegmentProblem::BadBlockLen { reason },
    })?;
    check_family(
        s.ipv6_subnet.map(|n| (n.into(), n.trunc().into())),
        s.ipv6_block_len,
        s.ipv6_block_len(),
        ("IPv6Subnet", MAX_IPV6_BLOCK_LEN),
    )
    .map_err(|e| match e {
        FamilyError::Subnet(reason) => SegmentProblem::BadIpv6Subnet { reason },
        FamilyError::BlockLen(reason) => SegmentProblem::BadIpv6BlockLen { reason },
    })
}

/// Which of a family's two fields is wrong, and why.
enum FamilyError {
    Subnet(String),
    BlockLen(String),
}

/// One family's subnet (as given, and truncated to its network) and block
/// length (as given, and in effect); `field` names the subnet's key.
fn check_family(
    subnet: Option<(IpNet, IpNet)>,
    configured_len: Option<u8>,
    len: Option<u8>,
    (field, max_len): (&str, u8),
) -> Result<(), FamilyError> {
    let Some((subnet, network)) = subnet else {
        return match configured_len {
            Some(_) => Err(FamilyError::BlockLen(format!(
                "has no {field} to divide into blocks"
            ))),
            None => Ok(()),
        };
    };
    if network != subnet {
        return Err(FamilyError::Subnet(format!(
            "{subnet} has host bits set; for a /{} the network address is {}",
            subnet.prefix_len(),
            network.network()
        )));
    }
    if subnet.prefix_len() > max_len {
        return Err(FamilyError::Subnet(format!(
            "{subnet} is too small; the prefix length must be at most /{max_len}"
        )));
    }
    let len = len.expect("a subnet is set");
    if len < subnet.prefix_len() || len > max_len {
        return Err(FamilyError::BlockLen(format!(
            "{len} is outside {}..{max_len} (a block is part of {field} {subnet} and holds at least 4 addresses)",
            subnet.prefix_len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(name: &str, vni: u32) -> Segment {
        Segment {
            name: name.into(),
            vni,
            mtu: None,
            vlan: None,
            subnet: None,
            block_len: None,
            ipv6_subnet: None,
            ipv6_block_len: None,
        }
    }

    #[test]
    fn names_fit_the_kernel_limit() {
        let longest = "a".repeat(MAX_NAME_LEN);
        assert!(bridge_name(&longest).len() <= 15);
        assert!(vxlan_name(MAX_VNI).len() <= 15);
        assert_eq!(bridge_name("lab1"), "tws-lab1");
        assert_eq!(vxlan_name(4001), "twx.4001");
    }

    #[test]
    fn parses_net_conf_entries() {
        let s: Vec<Segment> = serde_json::from_str(
            r#"[{"Name": "lab1", "VNI": 4001}, {"Name": "wan", "VNI": 7, "MTU": 1400}]"#,
        )
        .unwrap();
        assert_eq!(s[0], seg("lab1", 4001));
        assert_eq!(s[1].mtu, Some(1400));
        let tagged: Vec<Segment> =
            serde_json::from_str(r#"[{"Name": "t", "VNI": 9, "VLAN": 100}]"#).unwrap();
        assert_eq!(tagged[0].vlan, Some(100));
        assert!(validate(&s).is_ok());
        let addressed: Vec<Segment> = serde_json::from_str(
            r#"[{"Name": "a", "VNI": 9, "Subnet": "192.168.50.0/24", "BlockLen": 27}]"#,
        )
        .unwrap();
        assert_eq!(
            addressed[0].subnet,
            Some("192.168.50.0/24".parse().unwrap())
        );
        assert_eq!(addressed[0].block_len(), Some(27));
        let misplaced = serde_json::from_str::<Vec<Segment>>(
            r#"[{"Name": "a", "VNI": 1, "Subnet": "fd00:50::/64"}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            misplaced.contains("an IPv6 prefix goes in IPv6Subnet"),
            "{misplaced}"
        );
        let misplaced = serde_json::from_str::<Vec<Segment>>(
            r#"[{"Name": "a", "VNI": 1, "IPv6Subnet": "10.0.0.0/8"}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            misplaced.contains("an IPv4 prefix goes in Subnet"),
            "{misplaced}"
        );
        let unknown =
            serde_json::from_str::<Vec<Segment>>(r#"[{"Name": "a", "VNI": 1, "Vni": 2}]"#);
        assert!(unknown.is_err(), "a misspelt key is an error, not ignored");
    }

    #[test]
    fn default_blocks_suit_the_subnet() {
        let with = |subnet: &str| Segment {
            subnet: Some(subnet.parse().unwrap()),
            ..seg("a", 5)
        };
        // 16 blocks of 16 in a lab's /24; Calico-sized /26 blocks where
        // there is room for at least 16 of them.
        assert_eq!(with("192.168.50.0/24").block_len(), Some(28));
        assert_eq!(with("192.168.48.0/22").block_len(), Some(26));
        assert_eq!(with("10.50.0.0/16").block_len(), Some(26));
        assert_eq!(with("192.168.50.0/28").block_len(), Some(30));
        assert_eq!(seg("a", 5).block_len(), None);
        for s in ["192.168.50.0/24", "10.0.0.0/8", "192.168.50.0/30"] {
            assert!(validate(&[with(s)]).is_ok(), "{s}");
        }
    }

    #[test]
    fn default_ipv6_blocks_are_64s_where_they_fit() {
        let with = |subnet: &str| Segment {
            ipv6_subnet: Some(subnet.parse().unwrap()),
            ..seg("a", 5)
        };
        assert_eq!(with("fd00:50::/48").ipv6_block_len(), Some(64));
        assert_eq!(with("fd00:50::/60").ipv6_block_len(), Some(64));
        assert_eq!(with("fd00:50::/112").ipv6_block_len(), Some(116));
        assert_eq!(with("fd00:50::/124").ipv6_block_len(), Some(126));
        assert_eq!(seg("a", 5).ipv6_block_len(), None);
        let dual: Vec<Segment> = serde_json::from_str(
            r#"[{"Name": "a", "VNI": 9, "Subnet": "192.168.50.0/24", "IPv6Subnet": "fd00:50::/64", "IPv6BlockLen": 120}]"#,
        )
        .unwrap();
        assert_eq!(dual[0].ipv6_block_len(), Some(120));
        assert!(dual[0].has_addresses());
        assert!(!seg("a", 5).has_addresses());
        assert!(validate(&dual).is_ok());
        for s in ["fd00:50::/48", "fd00::/8", "fd00:50::/126"] {
            assert!(validate(&[with(s)]).is_ok(), "{s}");
        }
    }

    #[test]
    fn bad_segments_name_the_field() {
        let cases = [
            (vec![seg("", 5)], "Segments[0].Name"),
            (vec![seg("Lab", 5)], "lower-case"),
            (vec![seg("averylongname", 5)], "longer than 11"),
            (vec![seg("-x", 5)], "start with"),
            (vec![seg("a", 0)], "Segments[0].VNI"),
            (vec![seg("a", 1 << 24)], "Segments[0].VNI"),
            (vec![seg("a", 5), seg("a", 6)], "Segments[1]: name"),
            (vec![seg("a", 5), seg("b", 5)], "Segments[1]: VNI 5"),
            (
                vec![Segment {
                    mtu: Some(100),
                    ..seg("a", 5)
                }],
                "Segments[0].MTU",
            ),
            (
                vec![Segment {
                    vlan: Some(4095),
                    ..seg("a", 5)
                }],
                "Segments[0].VLAN: 4095",
            ),
            (
                vec![Segment {
                    subnet: Some("192.168.50.1/24".parse().unwrap()),
                    ..seg("a", 5)
                }],
                "Segments[0].Subnet: 192.168.50.1/24 has host bits set",
            ),
            (
                vec![Segment {
                    subnet: Some("192.168.50.0/31".parse().unwrap()),
                    ..seg("a", 5)
                }],
                "Segments[0].Subnet: 192.168.50.0/31 is too small",
            ),
            (
                vec![Segment {
                    block_len: Some(28),
                    ..seg("a", 5)
                }],
                "Segments[0].BlockLen: has no Subnet",
            ),
            (
                vec![Segment {
                    subnet: Some("192.168.50.0/24".parse().unwrap()),
                    block_len: Some(20),
                    ..seg("a", 5)
                }],
                "Segments[0].BlockLen: 20 is outside 24..30",
            ),
            (
                vec![Segment {
                    subnet: Some("192.168.50.0/24".parse().unwrap()),
                    block_len: Some(31),
                    ..seg("a", 5)
                }],
                "Segments[0].BlockLen: 31",
            ),
            (
                vec![Segment {
                    ipv6_subnet: Some("fd00:50::1/64".parse().unwrap()),
                    ..seg("a", 5)
                }],
                "Segments[0].IPv6Subnet: fd00:50::1/64 has host bits set; for a /64 the network address is fd00:50::",
            ),
            (
                vec![Segment {
                    ipv6_subnet: Some("fd00:50::/127".parse().unwrap()),
                    ..seg("a", 5)
                }],
                "Segments[0].IPv6Subnet: fd00:50::/127 is too small",
            ),
            (
                vec![Segment {
                    ipv6_block_len: Some(64),
                    subnet: Some("192.168.50.0/24".parse().unwrap()),
                    ..seg("a", 5)
                }],
                "Segments[0].IPv6BlockLen: has no IPv6Subnet",
            ),
            (
                vec![Segment {
                    ipv6_subnet: Some("fd00:50::/64".parse().unwrap()),
                    ipv6_block_len: Some(48),
                    ..seg("a", 5)
                }],
                "Segments[0].IPv6BlockLen: 48 is outside 64..126",
            ),
        ];
        for (segments, want) in cases {
            let e = validate(&segments).unwrap_err().to_string();
            assert!(e.contains(want), "{segments:?}: {e}");
        }
    }
}
