//! Addresses on a layer-2 segment with a `Subnet` / `IPv6Subnet`: from
//! this node's blocks of them, which tweedd claimed cluster-wide and wrote
//! to the segment's block file (`tweed_segment::block`). Reservations live
//! in host-local's store like any other, under the network's name.
//!
//! When the blocks run low (a quarter or less free) the plugin asks tweedd
//! for another (`tweed_segment::more`) so the next pods find room; when
//! they are full it asks and answers "try again later" — or, once tweedd
//! said no block is free, reports tweedd's reason.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use tweed_cni::error::CniError;
use tweed_ipam::{IpamSpec, Range, RangeSet, Store};
use tweed_segment::block::{BlockFile, BlockFileError};
use tweed_segment::more::{self, Request};

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
        Some(BlockFile::Claimed(claims)) => {
            // One range set per family: a dual-stack segment gives every
            // pod one address of each; a range per block, oldest first. No
            // gateway: the segment is on-link, pure layer 2 with addresses.
            let v4: Vec<Range> = claims
                .iter()
                .filter_map(|c| c.ipv4)
                .map(|b| range(IpNet::V4(b.subnet), b.usable()))
                .collect();
            let v6: Vec<Range> = claims
                .iter()
                .filter_map(|c| c.ipv6)
                .map(|b| range(IpNet::V6(b.subnet), b.usable()))
                .collect();
            Ok(Some(IpamSpec {
                range_sets: [v4, v6]
                    .into_iter()
                    .filter(|r| !r.is_empty())
                    .map(RangeSet)
                    .collect(),
                routes: Vec::new(),
                data_dir: data_dir.to_path_buf(),
            }))
        }
    }
}

/// Asks tweedd for another block when a quarter or less of a family's
/// addresses are free after an allocation, so the next pods find room.
/// Best effort: the request is only a hint, a full block asks again.
pub fn ask_ahead(dir: &Path, segment: &str, spec: &IpamSpec, network: &str) {
    let Ok(store) = Store::open(&spec.data_dir, network) else {
        return;
    };
    let Ok(reserved) = store.lock().and_then(|g| g.reserved_addresses()) else {
        return;
    };
    let low = spec.range_sets.iter().any(|set| {
        let total = set.allocatable();
        let used = reserved.iter().filter(|ip| set.contains(**ip)).count() as u128;
        total.saturating_sub(used) * 4 <= total
    });
    if low {
        let _ = more::ask(dir, segment);
    }
}

/// An allocation error, with what happens next when the blocks are full:
/// tweedd is asked for another (try again later), or has said why there
/// is none.
pub fn full_block(e: CniError, dir: &Path, segment: &str) -> CniError {
    if e.code != errors::IPAM_EXHAUSTED {
        return e;
    }
    match more::read(dir, segment) {
        Ok(Some(Request::Refused(reason))) => CniError::custom(
            errors::IPAM_EXHAUSTED,
            format!(
                "segment {segment}: this node's blocks are full ({}) and tweedd cannot claim another: {reason}",
                e.msg
            ),
        ),
        _ => match more::ask(dir, segment) {
            Ok(()) => CniError::try_again_later(format!(
                "segment {segment}: this node's blocks are full ({}); tweedd is claiming another block, try again in a few seconds",
                e.msg
            )),
            Err(io) => CniError::custom(
                errors::IPAM_EXHAUSTED,
                format!(
                    "segment {segment}: this node's blocks are full ({}) and asking tweedd for another failed: {}: {io}",
                    e.msg,
                    more::path(dir, segment).display()
                ),
            ),
        },
    }
}

/// The range `first..=last` of `subnet`, without gateway.
fn range(subnet: IpNet, (first, last): (IpAddr, IpAddr)) -> Range {
    Range {
        subnet,
        start: first,
        end: last,
        gateway: None,
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
        BlockFile::Claimed(vec![Blocks {
            ipv4: Some(v4),
            ipv6: None,
        }])
        .write(&dir, "lab1")
        .unwrap();
        let s = spec(&dir, "lab1", &dir).unwrap().unwrap();
        assert_eq!(s.range_sets.len(), 1);
        let r = &s.range_sets[0].0[0];
        assert_eq!(r.subnet.to_string(), "192.168.50.0/24");
        assert_eq!(r.start.to_string(), "192.168.50.1");
        assert_eq!(r.end.to_string(), "192.168.50.15");
        assert_eq!(r.gateway, None);

        // Dual stack: a range set per family, IPv6 from its own block; a
        // further claim adds a range to each set.
        let v6 = |block: &str| Block {
            subnet: "fd00:50::/48".parse().unwrap(),
            block: block.parse().unwrap(),
        };
        BlockFile::Claimed(vec![
            Blocks {
                ipv4: Some(v4),
                ipv6: Some(v6("fd00:50::/64")),
            },
            Blocks {
                ipv4: Some(Block {
                    block: "192.168.50.64/28".parse().unwrap(),
                    ..v4
                }),
                ipv6: Some(v6("fd00:50:0:4::/64")),
            },
        ])
        .write(&dir, "lab1")
        .unwrap();
        let s = spec(&dir, "lab1", &dir).unwrap().unwrap();
        assert_eq!(s.range_sets.len(), 2);
        let r6 = &s.range_sets[1].0[0];
        assert_eq!(r6.subnet.to_string(), "fd00:50::/48");
        assert_eq!(r6.start.to_string(), "fd00:50::1");
        assert_eq!(r6.end.to_string(), "fd00:50::ffff:ffff:ffff:ffff");
        assert_eq!(r6.gateway, None);
        let second: Vec<String> = s
            .range_sets
            .iter()
            .map(|set| format!("{}-{}", set.0[1].start, set.0[1].end))
            .collect();
        assert_eq!(
            second,
            [
                "192.168.50.64-192.168.50.79",
                "fd00:50:0:4::-fd00:50:0:4:ffff:ffff:ffff:ffff"
            ]
        );

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

    #[test]
    fn full_blocks_ask_tweedd_then_report_its_answer() {
        let dir = std::env::temp_dir().join(format!("tweed-segfull-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exhausted =
            || CniError::custom(errors::IPAM_EXHAUSTED, "all 16 addresses are reserved");
        // Not an exhaustion: passed through, nothing asked.
        let other = full_block(CniError::io("disk"), &dir, "lab1");
        assert_eq!(other.code, CniError::io("disk").code);
        assert_eq!(more::read(&dir, "lab1").unwrap(), None);
        // Full: ask, and try again later.
        let e = full_block(exhausted(), &dir, "lab1");
        assert_eq!(e.code, 11, "{}", e.msg);
        assert!(
            e.msg.contains("tweedd is claiming another block"),
            "{}",
            e.msg
        );
        assert_eq!(more::read(&dir, "lab1").unwrap(), Some(Request::Pending));
        // tweedd said no: its reason, as exhaustion.
        more::refuse(&dir, "lab1", "all 16 blocks (/28) of Subnet x are claimed").unwrap();
        let e = full_block(exhausted(), &dir, "lab1");
        assert_eq!(e.code, errors::IPAM_EXHAUSTED);
        assert!(
            e.msg.contains("cannot claim another: all 16 blocks"),
            "{}",
            e.msg
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
