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
//! "Subnet": "192.168.50.0/24", "BlockLen": 28}]`.
//!
//! A segment with a `Subnet` hands out addresses: each node's tweedd
//! claims one block of it in the store and writes it to a file (see
//! [`block`]) from which the plugin allocates, so addresses are unique
//! across nodes without the plugin ever talking to the store.

pub mod block;

use std::collections::HashSet;

use ipnet::Ipv4Net;
use serde::Deserialize;
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
    #[serde(rename = "Subnet", default)]
    pub subnet: Option<Ipv4Net>,
    /// The prefix length of each node's block of `Subnet`; default
    /// [`Segment::block_len`].
    #[serde(rename = "BlockLen", default)]
    pub block_len: Option<u8>,
}

/// The longest block: 4 addresses.
pub const MAX_BLOCK_LEN: u8 = 30;

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
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SegmentError {
    #[error("Segments[{index}].Name: {name:?} {reason}")]
    BadName {
        index: usize,
        name: String,
        reason: &'static str,
    },
    #[error("Segments[{index}].VNI: {vni} is outside 1..{MAX_VNI}")]
    BadVni { index: usize, vni: u32 },
    #[error("Segments[{index}].MTU: {mtu} is outside 576..65535")]
    BadMtu { index: usize, mtu: u32 },
    #[error("Segments[{index}].VLAN: {vlan} is outside 1..4094")]
    BadVlan { index: usize, vlan: u16 },
    #[error("Segments[{index}].Subnet: {reason}")]
    BadSubnet { index: usize, reason: String },
    #[error("Segments[{index}].BlockLen: {reason}")]
    BadBlockLen { index: usize, reason: String },
    #[error("Segments[{index}]: {what} {value} is used by an earlier segment")]
    Duplicate {
        index: usize,
        what: &'static str,
        value: String,
    },
}

/// The node bridge of segment `name`.
pub fn bridge_name(name: &str) -> String {
    format!("tws-{name}")
}

/// The VXLAN device of the segment with `vni`.
pub fn vxlan_name(vni: u32) -> String {
    format!("twx.{vni}")
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
        check_name(&s.name).map_err(|reason| SegmentError::BadName {
            index,
            name: s.name.clone(),
            reason,
        })?;
        if s.vni == 0 || s.vni > MAX_VNI {
            return Err(SegmentError::BadVni { index, vni: s.vni });
        }
        if let Some(mtu) = s.mtu
            && !(576..=65535).contains(&mtu)
        {
            return Err(SegmentError::BadMtu { index, mtu });
        }
        if let Some(vlan) = s.vlan
            && !(1..=4094).contains(&vlan)
        {
            return Err(SegmentError::BadVlan { index, vlan });
        }
        check_addressing(index, s)?;
        if !names.insert(s.name.as_str()) {
            return Err(SegmentError::Duplicate {
                index,
                what: "name",
                value: s.name.clone(),
            });
        }
        if !vnis.insert(s.vni) {
            return Err(SegmentError::Duplicate {
                index,
                what: "VNI",
                value: s.vni.to_string(),
            });
        }
    }
    Ok(())
}

/// `Subnet` and `BlockLen` of entry `index`.
fn check_addressing(index: usize, s: &Segment) -> Result<(), SegmentError> {
    let Some(subnet) = s.subnet else {
        return match s.block_len {
            Some(_) => Err(SegmentError::BadBlockLen {
                index,
                reason: "needs a Subnet to divide into blocks".into(),
            }),
            None => Ok(()),
        };
    };
    if subnet.trunc() != subnet {
        return Err(SegmentError::BadSubnet {
            index,
            reason: format!(
                "{subnet} has host bits set; for a /{} the network address is {}",
                subnet.prefix_len(),
                subnet.network()
            ),
        });
    }
    if subnet.prefix_len() > MAX_BLOCK_LEN {
        return Err(SegmentError::BadSubnet {
            index,
            reason: format!(
                "{subnet} is too small; the prefix length must be at most /{MAX_BLOCK_LEN}"
            ),
        });
    }
    let len = s.block_len().expect("a subnet is set");
    if len < subnet.prefix_len() || len > MAX_BLOCK_LEN {
        return Err(SegmentError::BadBlockLen {
            index,
            reason: format!(
                "{len} is outside {}..{MAX_BLOCK_LEN} (a block is part of Subnet {subnet} and holds at least 4 addresses)",
                subnet.prefix_len()
            ),
        });
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
                "Segments[0].BlockLen: needs a Subnet",
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
        ];
        for (segments, want) in cases {
            let e = validate(&segments).unwrap_err().to_string();
            assert!(e.contains(want), "{segments:?}: {e}");
        }
    }
}
