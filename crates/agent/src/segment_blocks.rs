//! Address blocks of the segments that have a `Subnet`.
//!
//! Addresses on a segment must be unique across every node, but the plugin
//! never talks to the store. So each node's agent claims one block of the
//! segment's subnet (`BlockLen` long) the way it leases its pod subnet —
//! the same lease records and the same atomic create, in a key space of
//! the segment's own ([`AnyStore::segment_blocks`]) — and writes it to the
//! segment's block file ([`tweed_segment::block`]), from which the plugin
//! allocates on the node alone. A restarted agent finds its block again
//! (the record names the node); a block whose lease is lost is claimed
//! again, the same one if still free.
//!
//! A claim that fails (every block taken, the store away) does not stop
//! the agent: the block file says why (`TWEED_SEGMENT_UNCLAIMED`), the
//! plugin refuses the segment's ADD with that reason, and the claim is
//! tried again every [`RETRY_UNCLAIMED`].

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use tweed_segment::Segment;
use tweed_segment::block::{self, Block, BlockFile};

use crate::config::{BackendConfig, NetConfig, Pool};
use crate::lease::{Lease, LeaseAttrs, LeaseKey};
use crate::leasing::{self, AcquireError};
use crate::store::any::AnyStore;
use crate::store::{LeaseStore, StoreError};

/// How often a segment without a block tries to claim one again.
pub const RETRY_UNCLAIMED: Duration = Duration::from_secs(10);

/// The `BackendType` of a block's record (flannel never reads these keys).
const RECORD_TYPE: &str = "segment-block";

/// One segment's claim.
struct Claim {
    segment: String,
    subnet: Ipv4Net,
    store: AnyStore,
    /// The blocks as a pool, for [`leasing::acquire`].
    pool: NetConfig,
    held: Option<Lease>,
    last_try: Option<Instant>,
}

/// Every addressed segment's claim on this node.
pub struct SegmentBlocks {
    dir: PathBuf,
    node_name: String,
    public_ip: Option<Ipv4Addr>,
    claims: Vec<Claim>,
}

impl SegmentBlocks {
    /// Prepares a claim per segment with a `Subnet` and removes the block
    /// files of segments that no longer have one.
    pub fn new(
        store: &AnyStore,
        segments: &[Segment],
        dir: PathBuf,
        node_name: &str,
        public_ip: Option<Ipv4Addr>,
    ) -> Result<SegmentBlocks, StoreError> {
        let mut claims = Vec::new();
        for s in segments {
            let (Some(subnet), Some(len)) = (s.subnet, s.block_len()) else {
                continue;
            };
            claims.push(Claim {
                segment: s.name.clone(),
                subnet,
                store: store.segment_blocks(&s.name)?,
                pool: block_pool(subnet, len),
                held: None,
                last_try: None,
            });
        }
        let keep: Vec<&str> = claims.iter().map(|c| c.segment.as_str()).collect();
        match block::remove_others(&dir, &keep) {
            Ok(gone) if !gone.is_empty() => {
                tracing::info!(segments = ?gone, "removed the block files of segments without a Subnet")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot clean the segments' block files")
            }
        }
        Ok(SegmentBlocks {
            dir,
            node_name: node_name.to_string(),
            public_ip,
            claims,
        })
    }

    /// The block held for each segment, by name.
    pub fn held(&self) -> Vec<(String, Option<Ipv4Net>)> {
        self.claims
            .iter()
            .map(|c| (c.segment.clone(), c.held.as_ref().and_then(|l| l.key.ipv4)))
            .collect()
    }

    /// Claims a block for every segment that holds none (each at most once
    /// per [`RETRY_UNCLAIMED`] unless `now`), and writes the block files.
    pub async fn claim_missing(&mut self, ttl: Duration, now: bool) {
        for i in 0..self.claims.len() {
            let due = self.claims[i]
                .last_try
                .is_none_or(|t| now || t.elapsed() >= RETRY_UNCLAIMED);
            if self.claims[i].held.is_none() && due {
                self.claim(i, ttl).await;
            }
        }
    }

    /// Renews every held block; a lost one is claimed again at once.
    pub async fn renew(&mut self, ttl: Duration) {
        for i in 0..self.claims.len() {
            let Some(lease) = self.claims[i].held.clone() else {
                continue;
            };
            match self.claims[i].store.renew(&lease, ttl).await {
                Ok(l) => self.claims[i].held = Some(l),
                Err(StoreError::LeaseLost(key)) => {
                    tracing::error!(segment = %self.claims[i].segment, block = %key, "SEGMENT BLOCK LOST: its lease was deleted, expired or taken; claiming one again");
                    self.claims[i].held = None;
                    self.claim(i, ttl).await;
                }
                Err(e) => {
                    tracing::warn!(segment = %self.claims[i].segment, error = %e, "cannot renew the segment's block; retrying at the next interval")
                }
            }
        }
    }

    async fn claim(&mut self, i: usize, ttl: Duration) {
        let record = self.record();
        let claim = &mut self.claims[i];
        claim.last_try = Some(Instant::now());
        // The block this node wrote last time comes first, so pods keep
        // their addresses' block across a lost lease when it is free.
        let previous = match BlockFile::read(&self.dir, &claim.segment) {
            Ok(Some(BlockFile::Claimed(b))) if b.subnet == claim.subnet => Some(LeaseKey {
                ipv4: Some(b.block),
                ipv6: None,
            }),
            _ => None,
        };
        let file = match leasing::acquire(
            &claim.store,
            &claim.pool,
            |_| record.clone(),
            previous,
            ttl,
        )
        .await
        {
            Ok(lease) => {
                let block = lease.key.ipv4.expect("the block pool is IPv4");
                tracing::info!(segment = %claim.segment, %block, subnet = %claim.subnet, "holding a block of the segment's subnet");
                claim.held = Some(lease);
                BlockFile::Claimed(Block {
                    subnet: claim.subnet,
                    block,
                })
            }
            Err(e) => {
                let reason = unclaimed_reason(&claim.segment, claim.subnet, &claim.pool, &e);
                tracing::error!(segment = %claim.segment, retry_in_s = RETRY_UNCLAIMED.as_secs(), "no address block for this node: {reason}");
                BlockFile::Unclaimed {
                    subnet: claim.subnet,
                    reason,
                }
            }
        };
        if let Err(e) = file.write(&self.dir, &claim.segment) {
            tracing::error!(segment = %claim.segment, dir = %self.dir.display(), error = %e, "cannot write the segment's block file; its pods get no addresses");
        }
    }

    /// The record of a block: whose it is.
    fn record(&self) -> LeaseAttrs {
        LeaseAttrs {
            public_ip: self.public_ip,
            public_ipv6: None,
            backend_type: RECORD_TYPE.into(),
            backend_data: Default::default(),
            backend_v6_data: Default::default(),
            node_name: self.node_name.clone(),
            segment_macs: Default::default(),
            wire_ends: Default::default(),
        }
    }
}

/// The subnet's blocks as a lease pool: every block may be handed out
/// (a block is not a network of its own, so none is reserved).
fn block_pool(subnet: Ipv4Net, len: u8) -> NetConfig {
    let first = Ipv4Net::new(subnet.network(), len).expect("block length checked by validate");
    let last = Ipv4Net::new(subnet.broadcast(), len)
        .expect("block length checked by validate")
        .trunc();
    NetConfig {
        ipv4: Some(Pool {
            network: subnet,
            subnet_len: len,
            min: first,
            max: last,
        }),
        ipv6: None,
        backend: BackendConfig::HostGw,
        mtu: None,
        segments: Vec::new(),
        wire_mtu: None,
    }
}

/// Why a claim failed, in the segment's terms (the pod-subnet wording of
/// [`AcquireError`] names the wrong knobs).
fn unclaimed_reason(segment: &str, subnet: Ipv4Net, pool: &NetConfig, e: &AcquireError) -> String {
    match e {
        AcquireError::NoFreeSubnet { size, .. } => {
            let len = pool.ipv4.as_ref().map_or(0, |p| p.subnet_len);
            format!(
                "segment {segment}: all {size} blocks (/{len}) of Subnet {subnet} are claimed by other nodes; give the segment a larger Subnet or a longer BlockLen"
            )
        }
        other => format!("segment {segment}: claiming a block of Subnet {subnet}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_of_the_subnet_is_in_the_pool() {
        let pool = block_pool("192.168.50.0/24".parse().unwrap(), 28);
        let p = pool.ipv4.unwrap();
        assert_eq!(p.size(), 16);
        assert_eq!(p.subnet(0), Some("192.168.50.0/28".parse().unwrap()));
        assert_eq!(p.subnet(15), Some("192.168.50.240/28".parse().unwrap()));
        let whole = block_pool("10.1.0.0/30".parse().unwrap(), 30).ipv4.unwrap();
        assert_eq!(whole.size(), 1);
    }

    #[test]
    fn a_full_subnet_names_the_segment_knobs() {
        let pool = block_pool("192.168.50.0/24".parse().unwrap(), 28);
        let e = AcquireError::NoFreeSubnet {
            pool: "x".into(),
            size: 16,
        };
        let text = unclaimed_reason("lab1", "192.168.50.0/24".parse().unwrap(), &pool, &e);
        assert!(
            text.contains("all 16 blocks (/28) of Subnet 192.168.50.0/24"),
            "{text}"
        );
        assert!(text.contains("BlockLen"), "{text}");
    }
}
