//! Addresses on a layer-2 segment with a `Subnet`: from this node's block
//! of it, which tweedd claimed cluster-wide and wrote to the segment's
//! block file (`tweed_segment::block`). Reservations live in host-local's
//! store like any other, under the network's name.

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
        Some(BlockFile::Claimed(block)) => {
            let (start, end) = block.usable();
            // No gateway: the segment is on-link, pure layer 2 with
            // addresses.
            let range = Range {
                subnet: IpNet::V4(block.subnet),
                start: start.into(),
                end: end.into(),
                gateway: None,
            };
            Ok(Some(IpamSpec {
                range_sets: vec![RangeSet(vec![range])],
                routes: Vec::new(),
                data_dir: data_dir.to_path_buf(),
            }))
        }
    }
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
    use tweed_segment::block::Block;

    #[test]
    fn the_block_becomes_one_range_without_gateway() {
        let dir = std::env::temp_dir().join(format!("tweed-segblock-{}", std::process::id()));
        assert!(
            spec(&dir, "lab1", &dir).unwrap().is_none(),
            "no file: no addresses"
        );
        BlockFile::Claimed(Block {
            subnet: "192.168.50.0/24".parse().unwrap(),
            block: "192.168.50.0/28".parse().unwrap(),
        })
        .write(&dir, "lab1")
        .unwrap();
        let s = spec(&dir, "lab1", &dir).unwrap().unwrap();
        let r = &s.range_sets[0].0[0];
        assert_eq!(r.subnet.to_string(), "192.168.50.0/24");
        assert_eq!(r.start.to_string(), "192.168.50.1");
        assert_eq!(r.end.to_string(), "192.168.50.15");
        assert_eq!(r.gateway, None);

        BlockFile::Unclaimed {
            subnet: "192.168.50.0/24".parse().unwrap(),
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
