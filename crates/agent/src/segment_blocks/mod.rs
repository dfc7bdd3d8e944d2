//! Address blocks of the segments that have a `Subnet` or an `IPv6Subnet`.
//!
//! Addresses on a segment must be unique across every node, but the plugin
//! never talks to the store. So each node's agent claims one block of each
//! of the segment's subnets (`BlockLen`, `IPv6BlockLen` long) the way it
//! leases its pod subnet — one lease record for both families, as a
//! dual-stack node's lease, and the same atomic create, in a key space of
//! the segment's own ([`AnyStore::segment_blocks`]) — and writes them to
//! the segment's block file ([`tweed_segment::block`]), from which the
//! plugin allocates on the node alone. A node whose blocks run full claims
//! another when the plugin asks ([`tweed_segment::more`]); blocks are not
//! given back while the node runs. A restarted agent finds its blocks
//! again (the record names the node); when every block's lease is lost,
//! one is claimed again, the same one if still free.
//!
//! A claim that fails (every block taken, the store away) does not stop
//! the agent: the block file says why (`TWEED_SEGMENT_UNCLAIMED`), the
//! plugin refuses the segment's ADD with that reason, and the claim is
//! tried again every [`RETRY_UNCLAIMED`].

mod pool;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tweed_segment::Segment;
use tweed_segment::block::{self, Block, BlockFile, Blocks, Subnets};
use tweed_segment::more::{self, Request};

use crate::lease::{Lease, LeaseAttrs, LeaseKey};
use crate::leasing;
use crate::pools::Pools;
use crate::store::any::AnyStore;
use crate::store::{LeaseStore, StoreError};
use pool::{block_pool, unclaimed_reason};

/// How often a segment without a block tries to claim one again, and a
/// refused request for another block is tried again.
pub const RETRY_UNCLAIMED: Duration = Duration::from_secs(10);

/// The `BackendType` of a block's record (flannel never reads these keys).
const RECORD_TYPE: &str = "segment-block";

/// One segment's claims.
struct Claim {
    segment: String,
    subnets: Subnets,
    store: AnyStore,
    /// The blocks as a pool, for [`leasing::acquire`].
    pool: Pools,
    /// The blocks held, oldest first (the block file's order).
    held: Vec<Lease>,
    last_try: Option<Instant>,
    /// When another block was last asked of the store.
    last_grow: Option<Instant>,
}

/// Every addressed segment's claims on this node.
pub struct SegmentBlocks {
    dir: PathBuf,
    node_name: String,
    public_ip: Option<Ipv4Addr>,
    claims: Vec<Claim>,
}

impl SegmentBlocks {
    /// Prepares a claim per segment with a subnet and removes the block
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
            if !s.has_addresses() {
                continue;
            }
            let subnets = Subnets {
                ipv4: s.subnet,
                ipv6: s.ipv6_subnet,
            };
            claims.push(Claim {
                segment: s.name.clone(),
                subnets,
                store: store.segment_blocks(&s.name)?,
                pool: block_pool(
                    s.subnet.zip(s.block_len()),
                    s.ipv6_subnet.zip(s.ipv6_block_len()),
                ),
                held: Vec::new(),
                last_try: None,
                last_grow: None,
            });
        }
        let keep: Vec<&str> = claims.iter().map(|c| c.segment.as_str()).collect();
        match block::remove_others(&dir, &keep) {
            Ok(gone) if !gone.is_empty() => {
                tracing::info!(segments = %gone.join(", "), "removed the block files of segments without a subnet")
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

    /// Claims a block for every segment that holds none (each at most once
    /// per [`RETRY_UNCLAIMED`] unless `now`), and writes the block files.
    pub async fn claim_missing(&mut self, ttl: Duration, now: bool) {
        for i in 0..self.claims.len() {
            let due = self.claims[i]
                .last_try
                .is_none_or(|t| now || t.elapsed() >= RETRY_UNCLAIMED);
            if self.claims[i].held.is_empty() && due {
                self.claim(i, ttl).await;
            }
        }
    }

    /// Claims one more block for every segment whose plugin asked for it
    /// ([`tweed_segment::more`]); a refused request is tried again every
    /// [`RETRY_UNCLAIMED`].
    pub async fn grow_requested(&mut self, ttl: Duration) {
        let record = self.record();
        for i in 0..self.claims.len() {
            let claim = &mut self.claims[i];
            let request = match more::read(&self.dir, &claim.segment) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(segment = %claim.segment, error = %e, "cannot read the request for another block");
                    continue;
                }
            };
            let due = match request {
                Request::Pending => true,
                Request::Refused(_) => claim
                    .last_grow
                    .is_none_or(|t| t.elapsed() >= RETRY_UNCLAIMED),
            };
            // Without any block, claim_missing claims the first.
            if claim.held.is_empty() || !due {
                continue;
            }
            claim.last_grow = Some(Instant::now());
            match leasing::acquire_another(&claim.store, &claim.pool, &record, ttl).await {
                Ok(lease) => {
                    tracing::info!(segment = %claim.segment, blocks = %lease.key, held = claim.held.len() + 1, "the node's blocks are full: claimed another");
                    claim.held.push(lease);
                    self.write_file(i);
                    if let Err(e) = more::clear(&self.dir, &self.claims[i].segment) {
                        tracing::warn!(error = %e, "cannot remove the answered request for another block");
                    }
                }
                Err(e) => {
                    let reason = unclaimed_reason(&claim.segment, &claim.pool, &e);
                    tracing::error!(segment = %claim.segment, retry_in_s = RETRY_UNCLAIMED.as_secs(), "no further address block for this node: {reason}");
                    if let Err(e) = more::refuse(&self.dir, &claim.segment, &reason) {
                        tracing::warn!(error = %e, "cannot answer the request for another block");
                    }
                }
            }
        }
    }

    /// Renews every held block; when all of a segment's are lost, one is
    /// claimed again at once.
    pub async fn renew(&mut self, ttl: Duration) {
        for i in 0..self.claims.len() {
            let held = std::mem::take(&mut self.claims[i].held);
            let before = held.len();
            for lease in held {
                match self.claims[i].store.renew(&lease, ttl).await {
                    Ok(l) => self.claims[i].held.push(l),
                    Err(StoreError::LeaseLost(key)) => {
                        tracing::error!(segment = %self.claims[i].segment, block = %key, "SEGMENT BLOCK LOST: its lease was deleted, expired or taken; its addresses may be handed out again elsewhere");
                    }
                    Err(e) => {
                        tracing::warn!(segment = %self.claims[i].segment, error = %e, "cannot renew the segment's block; retrying at the next interval");
                        self.claims[i].held.push(lease);
                    }
                }
            }
            if self.claims[i].held.is_empty() && before > 0 {
                self.claim(i, ttl).await;
            } else if self.claims[i].held.len() < before {
                self.write_file(i);
            }
        }
    }

    /// Claims the segment's first block (the one this node wrote last time
    /// when it is still free) and takes back every further block the
    /// store says this node holds (a restart).
    async fn claim(&mut self, i: usize, ttl: Duration) {
        let record = self.record();
        let claim = &mut self.claims[i];
        claim.last_try = Some(Instant::now());
        // The blocks this node wrote last time, oldest first, so pods keep
        // their addresses' blocks across a lost lease when they are free.
        let previous: Vec<LeaseKey> = match BlockFile::read(&self.dir, &claim.segment) {
            Ok(Some(BlockFile::Claimed(b)))
                if b.first().map(Blocks::subnets) == Some(claim.subnets) =>
            {
                b.iter()
                    .map(|b| LeaseKey {
                        ipv4: b.ipv4.map(|b| b.block),
                        ipv6: b.ipv6.map(|b| b.block),
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        match leasing::acquire(
            &claim.store,
            &claim.pool,
            |_| record.clone(),
            previous.first().copied(),
            ttl,
        )
        .await
        {
            Ok(lease) => {
                let first = lease.key;
                let mut held = vec![lease];
                match claim.store.list().await {
                    Ok(snapshot) => held.extend(snapshot.leases.into_iter().filter(|l| {
                        l.key != first
                            && l.same_owner(&record)
                            && leasing::fits(&claim.pool, &l.key)
                    })),
                    Err(e) => {
                        tracing::warn!(segment = %claim.segment, error = %e, "cannot look for further blocks this node holds")
                    }
                }
                held.sort_by_key(|l| {
                    previous
                        .iter()
                        .position(|k| *k == l.key)
                        .unwrap_or(usize::MAX)
                });
                let keys: Vec<String> = held.iter().map(|l| l.key.to_string()).collect();
                tracing::info!(segment = %claim.segment, blocks = %keys.join(", "), "holding blocks of the segment's subnets");
                claim.held = held;
                self.write_file(i);
            }
            Err(e) => {
                let reason = unclaimed_reason(&claim.segment, &claim.pool, &e);
                tracing::error!(segment = %claim.segment, retry_in_s = RETRY_UNCLAIMED.as_secs(), "no address block for this node: {reason}");
                let file = BlockFile::Unclaimed {
                    subnets: claim.subnets,
                    reason,
                };
                if let Err(e) = file.write(&self.dir, &claim.segment) {
                    tracing::error!(segment = %claim.segment, dir = %self.dir.display(), error = %e, "cannot write the segment's block file");
                }
            }
        }
    }

    /// Writes segment `i`'s block file from the blocks it holds.
    fn write_file(&self, i: usize) {
        let claim = &self.claims[i];
        let blocks = claim
            .held
            .iter()
            .map(|lease| Blocks {
                ipv4: claim
                    .subnets
                    .ipv4
                    .zip(lease.key.ipv4)
                    .map(|(subnet, block)| Block { subnet, block }),
                ipv6: claim
                    .subnets
                    .ipv6
                    .zip(lease.key.ipv6)
                    .map(|(subnet, block)| Block { subnet, block }),
            })
            .collect();
        if let Err(e) = BlockFile::Claimed(blocks).write(&self.dir, &claim.segment) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::file::FileStore;

    const TTL: Duration = Duration::from_secs(60);

    /// Segment lab1 with `subnet` in blocks of `len`.
    fn segments(subnet: &str, len: u8) -> Vec<Segment> {
        vec![
            serde_json::from_value(serde_json::json!({
                "Name": "lab1", "VNI": 5, "Subnet": subnet, "BlockLen": len
            }))
            .unwrap(),
        ]
    }

    fn claims(dir: &std::path::Path) -> Vec<Blocks> {
        match BlockFile::read(dir, "lab1").unwrap() {
            Some(BlockFile::Claimed(c)) => c,
            other => panic!("no blocks: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_request_gets_the_node_another_block_kept_across_a_restart() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = AnyStore::File(FileStore::open(store_dir.path()).unwrap());
        // Four blocks of four addresses.
        let segs = segments("192.168.50.0/28", 30);
        let n1_dir = tempfile::tempdir().unwrap();
        let dir = n1_dir.path();
        let mut n1 = SegmentBlocks::new(&store, &segs, dir.into(), "n1", None).unwrap();
        n1.claim_missing(TTL, true).await;
        assert_eq!(claims(dir).len(), 1);
        n1.grow_requested(TTL).await;
        assert_eq!(claims(dir).len(), 1, "nothing asked, nothing claimed");

        more::ask(dir, "lab1").unwrap();
        n1.grow_requested(TTL).await;
        let two = claims(dir);
        assert_eq!(two.len(), 2, "{two:?}");
        assert_ne!(two[0], two[1]);
        assert_eq!(more::read(dir, "lab1").unwrap(), None, "request answered");

        // A restarted agent holds both again, oldest first.
        let mut restarted = SegmentBlocks::new(&store, &segs, dir.into(), "n1", None).unwrap();
        restarted.claim_missing(TTL, true).await;
        assert_eq!(claims(dir), two);

        // Another node takes the other two; n1 asking again is refused
        // with the reason, in the request file.
        let n2_dir = tempfile::tempdir().unwrap();
        let mut n2 = SegmentBlocks::new(&store, &segs, n2_dir.path().into(), "n2", None).unwrap();
        n2.claim_missing(TTL, true).await;
        more::ask(n2_dir.path(), "lab1").unwrap();
        n2.grow_requested(TTL).await;
        let theirs = claims(n2_dir.path());
        assert_eq!(theirs.len(), 2);
        assert!(
            theirs.iter().all(|b| !two.contains(b)),
            "{theirs:?} {two:?}"
        );
        more::ask(dir, "lab1").unwrap();
        restarted.grow_requested(TTL).await;
        match more::read(dir, "lab1").unwrap() {
            Some(Request::Refused(reason)) => assert!(
                reason.contains("all 4 blocks (/30) of Subnet 192.168.50.0/28"),
                "{reason}"
            ),
            other => panic!("not refused: {other:?}"),
        }
        assert_eq!(claims(dir), two, "a refusal keeps the blocks held");
    }
}
