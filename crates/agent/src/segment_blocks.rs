//! Address blocks of the segments that have a `Subnet` or an `IPv6Subnet`.
//!
//! Addresses on a segment must be unique across every node, but the plugin
//! never talks to the store. So each node's agent claims one block of each
//! of the segment's subnets (`BlockLen`, `IPv6BlockLen` long) the way it
//! leases its pod subnet — one lease record for both families, as a
//! dual-stack node's lease, and the same atomic create, in a key space of
//! the segment's own ([`AnyStore::segment_blocks`]) — and writes them to
//! the segment's block file ([`tweed_segment::block`]), from which the
//! plugin allocates on the node alone. A restarted agent finds its block again
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

use ipnet::{Ipv4Net, Ipv6Net};
use tweed_segment::Segment;
use tweed_segment::block::{self, Block, BlockFile, Blocks, Subnets};

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
    subnets: Subnets,
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
                held: None,
                last_try: None,
            });
        }
        let keep: Vec<&str> = claims.iter().map(|c| c.segment.as_str()).collect();
        match block::remove_others(&dir, &keep) {
            Ok(gone) if !gone.is_empty() => {
                tracing::info!(segments = ?gone, "removed the block files of segments without a subnet")
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
            Ok(Some(BlockFile::Claimed(b))) if b.subnets() == claim.subnets => Some(LeaseKey {
                ipv4: b.ipv4.map(|b| b.block),
                ipv6: b.ipv6.map(|b| b.block),
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
                tracing::info!(segment = %claim.segment, blocks = %lease.key, "holding a block of each of the segment's subnets");
                let blocks = Blocks {
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
                };
                claim.held = Some(lease);
                BlockFile::Claimed(blocks)
            }
            Err(e) => {
                let reason = unclaimed_reason(&claim.segment, &claim.pool, &e);
                tracing::error!(segment = %claim.segment, retry_in_s = RETRY_UNCLAIMED.as_secs(), "no address block for this node: {reason}");
                BlockFile::Unclaimed {
                    subnets: claim.subnets,
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

/// The subnets' blocks (subnet, block length) as a lease pool: every
/// block may be handed out (a block is not a network of its own, so none
/// is reserved).
fn block_pool(ipv4: Option<(Ipv4Net, u8)>, ipv6: Option<(Ipv6Net, u8)>) -> NetConfig {
    const CHECKED: &str = "block length checked by validate";
    NetConfig {
        ipv4: ipv4.map(|(subnet, len)| Pool {
            network: subnet,
            subnet_len: len,
            min: Ipv4Net::new(subnet.network(), len).expect(CHECKED),
            max: Ipv4Net::new(subnet.broadcast(), len)
                .expect(CHECKED)
                .trunc(),
        }),
        ipv6: ipv6.map(|(subnet, len)| Pool {
            network: subnet,
            subnet_len: len,
            min: Ipv6Net::new(subnet.network(), len).expect(CHECKED),
            max: Ipv6Net::new(subnet.broadcast(), len)
                .expect(CHECKED)
                .trunc(),
        }),
        backend: BackendConfig::HostGw,
        mtu: None,
        segments: Vec::new(),
        wire_mtu: None,
    }
}

/// Why a claim failed, in the segment's terms (the pod-subnet wording of
/// [`AcquireError`] names the wrong knobs).
fn unclaimed_reason(segment: &str, pool: &NetConfig, e: &AcquireError) -> String {
    // (subnet, block length, the keys that set them) per family.
    let v4 = pool
        .ipv4
        .as_ref()
        .map(|p| (p.network.to_string(), p.subnet_len, "Subnet", "BlockLen"));
    let v6 = pool.ipv6.as_ref().map(|p| {
        (
            p.network.to_string(),
            p.subnet_len,
            "IPv6Subnet",
            "IPv6BlockLen",
        )
    });
    match e {
        AcquireError::NoFreeSubnet { pool, size } => {
            // The family that ran out is the one the error names.
            let full = [&v4, &v6]
                .into_iter()
                .flatten()
                .find(|f| pool.starts_with(&format!("{} ", f.0)))
                .or(v4.as_ref().or(v6.as_ref()))
                .expect("a segment's pool has a family");
            let (subnet, len, subnet_key, len_key) = full;
            format!(
                "segment {segment}: all {size} blocks (/{len}) of {subnet_key} {subnet} are claimed by other nodes; give the segment a larger {subnet_key} or a longer {len_key}"
            )
        }
        other => {
            let subnets: Vec<String> = [&v4, &v6]
                .into_iter()
                .flatten()
                .map(|f| format!("{} {}", f.2, f.0))
                .collect();
            format!(
                "segment {segment}: claiming blocks of {}: {other}",
                subnets.join(" and ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_of_the_subnet_is_in_the_pool() {
        let pool = block_pool(Some(("192.168.50.0/24".parse().unwrap(), 28)), None);
        let p = pool.ipv4.unwrap();
        assert_eq!(p.size(), 16);
        assert_eq!(p.subnet(0), Some("192.168.50.0/28".parse().unwrap()));
        assert_eq!(p.subnet(15), Some("192.168.50.240/28".parse().unwrap()));
        let whole = block_pool(Some(("10.1.0.0/30".parse().unwrap(), 30)), None)
            .ipv4
            .unwrap();
        assert_eq!(whole.size(), 1);
        let v6 = block_pool(None, Some(("fd00:50::/48".parse().unwrap(), 64)))
            .ipv6
            .unwrap();
        assert_eq!(v6.size(), 1 << 16);
        assert_eq!(v6.subnet(0), Some("fd00:50::/64".parse().unwrap()));
        assert_eq!(
            v6.subnet(0xffff),
            Some("fd00:50:0:ffff::/64".parse().unwrap())
        );
    }

    #[test]
    fn a_full_subnet_names_the_segment_knobs() {
        let pool = block_pool(
            Some(("192.168.50.0/24".parse().unwrap(), 28)),
            Some(("fd00:50::/120".parse().unwrap(), 124)),
        );
        let full = |pool: &str| AcquireError::NoFreeSubnet {
            pool: pool.into(),
            size: 16,
        };
        let text = unclaimed_reason("lab1", &pool, &full("192.168.50.0/24 /28"));
        assert!(
            text.contains("all 16 blocks (/28) of Subnet 192.168.50.0/24"),
            "{text}"
        );
        assert!(text.contains("BlockLen"), "{text}");
        let text = unclaimed_reason("lab1", &pool, &full("fd00:50::/120 /124"));
        assert!(
            text.contains("all 16 blocks (/124) of IPv6Subnet fd00:50::/120"),
            "{text}"
        );
        assert!(text.contains("longer IPv6BlockLen"), "{text}");
    }
}
