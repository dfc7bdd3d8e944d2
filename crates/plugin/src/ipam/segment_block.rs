//! Addresses on a layer-2 segment with a `Subnet`: from this node's block
//! of it, which tweedd claimed cluster-wide and wrote to the segment's
//! block file (`tweed_segment::block`). Reservations live in host-local's
//! store like any other, under the network's name.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use tweed_cni::error::CniError;
use tweed_ipam::{IpamSpec, Range, RangeSet};
use tweed_segment::block::{BlockFile, BlockFileError};

use crate::errors;

/// The spec to allocate from, or `None` for a segment without addresses
/// (tweedd wrote no block file: the segment has no `Subnet`). A segment
/// whose block tweedd could not claim yet is "try again later", with
/// tweedd's reason.
pub fn spec(dir: &Path, segment: &str, data_dir: &Path) -> Result<Option<IpamSpec>, CniError> {
    match BlockFile::read(dir, segment).map_err(block_file)? {
        None => Ok(None),
        Some(BlockFile::Unclaimed { reason, .. }) => Err(CniError::try_again_later(format!(
            "{reason} (tweedd tries again every few seconds)"
        ))),
        Some(BlockFile::Claimed(blocks)) => {
            // One range set per family: a dual-stack segment gives every
            // pod one address of each. No gateway: the segment is on-link,
            // pure layer 2 with addresses.
            let v4 = blocks.ipv4.map(|b| range(IpNet::V4(b.subnet), b.usable()));
            let v6 = blocks.ipv6.map(|b| range(IpNet::V6(b.subnet), b.usable()));
            Ok(Some(IpamSpec {
                range_sets: v4.into_iter().chain(v6).collect(),
                routes: Vec::new(),
                data_dir: data_dir.to_path_buf(),
            }))
        }
    }
}

/// A range set of one range: `first..=last` of `subnet`, without gateway.
fn range(subnet: IpNet, (first, last): (IpAddr, IpAddr)) -> RangeSet {
    RangeSet(vec![Range {
        subnet,
        start: first,
        end: last,
        gateway: None,
    }])
}

/// An allocation error, with what to do when it is a full block: a node
/// hands out only its own block, so the knob is the block's size.
pub fn full_block(e: CniError, segment: &str) -> CniError {
    if e.code != errors::IPAM_EXHAUSTED {
        return e;
    }
    CniError::custom(
        errors::IPAM_EXHAUSTED,
        format!(
            "segment {segment}: this node's block is full: {}; every node hands out only its own block of the segment's subnet, so give the segment bigger blocks (a shorter BlockLen / IPv6BlockLen)",
            e.msg
        ),
    )
}

fn block_file(e: BlockFileError) -> CniError {
    match e {
        BlockFileError::Unreadable { .. } => CniError::io(e.to_string()),
        BlockFileError::Invalid { .. } => CniError::custom(errors::LEASE_INVALID, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tweed_segment::block::{Block, Blocks, Subnets};

    #[test]
    fn the_block_becomes_one_range_without_gateway() {
        let dir = std::env::temp_dir().join(format!("tweed-segblock-{}", std::process::id()));
        assert!(
            spec(&dir, "lab1", &dir).unwrap().is_none(),
            "no file: no addresses"
        );
        let v4 = Block {
            subnet: "192.168.50.0/24".parse().unwrap(),
            block: "192.168.50.0/28".parse().unwrap(),
        };
        BlockFile::Claimed(Blocks {
            ipv4: Some(v4),
            ipv6: None,
        })
        .write(&dir, "lab1")
        .unwrap();
        let s = spec(&dir, "lab1", &dir).unwrap().unwrap();
        assert_eq!(s.range_sets.len(), 1);
        let r = &s.range_sets[0].0[0];
        assert_eq!(r.subnet.to_string(), "192.168.50.0/24");
        assert_eq!(r.start.to_string(), "192.168.50.1");
        assert_eq!(r.end.to_string(), "192.168.50.15");
        assert_eq!(r.gateway, None);

        // Dual stack: a range set per family, IPv6 from its own block.
        BlockFile::Claimed(Blocks {
            ipv4: Some(v4),
            ipv6: Some(Block {
                subnet: "fd00:50::/48".parse().unwrap(),
                block: "fd00:50::/64".parse().unwrap(),
            }),
        })
        .write(&dir, "lab1")
        .unwrap();
        let s = spec(&dir, "lab1", &dir).unwrap().unwrap();
        assert_eq!(s.range_sets.len(), 2);
        let r6 = &s.range_sets[1].0[0];
        assert_eq!(r6.subnet.to_string(), "fd00:50::/48");
        assert_eq!(r6.start.to_string(), "fd00:50::1");
        assert_eq!(r6.end.to_string(), "fd00:50::ffff:ffff:ffff:ffff");
        assert_eq!(r6.gateway, None);

        BlockFile::Unclaimed {
            subnets: Subnets {
                ipv4: Some("192.168.50.0/24".parse().unwrap()),
                ipv6: None,
            },
            reason: "segment lab1: all 16 blocks are claimed".into(),
        }
        .write(&dir, "lab1")
        .unwrap();
        let e = spec(&dir, "lab1", &dir).unwrap_err();
        assert_eq!(e.code, 11);
        assert!(e.msg.contains("all 16 blocks"), "{}", e.msg);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
