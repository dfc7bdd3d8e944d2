//! Getting this node a subnet: reuse what it held before, else take a free
//! one, atomically, retrying with another subnet when a concurrent agent
//! wins the race (flannel gives up there). With a store that assigns
//! subnets itself (kube), publish the record for the assigned one.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use thiserror::Error;

use crate::lease::{Lease, LeaseAttrs, LeaseKey};
use crate::pools::{Family, Pool, Pools};
use crate::store::{Assignment, Created, LeaseStore, StoreError};

#[derive(Debug, Error)]
pub enum AcquireError {
    #[error(
        "no free subnet: all {size} subnets of the pool ({network} /{subnet_len}) are leased; raise SubnetMax/shorten SubnetLen or remove stale leases"
    )]
    NoFreeSubnet {
        /// The pool's network: says which family ran out.
        network: IpNet,
        subnet_len: u8,
        size: u128,
    },
    #[error(
        "lost the race for a subnet {0} times in a row; is something creating leases in a loop?"
    )]
    TooManyRaces(usize),
    /// The store assigns subnets and has none for this node yet; worth
    /// waiting for (the text says who must act).
    #[error("{0}")]
    NotAssigned(String),
    #[error(
        "the subnet assigned to this node ({subnet}) is not inside the configured network(s) {networks}"
    )]
    OutsideNetwork { subnet: LeaseKey, networks: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AcquireError {
    /// Errors that end when someone else acts (an operator, the
    /// controller-manager), so the agent waits and asks again.
    pub fn is_waiting(&self) -> bool {
        matches!(
            self,
            AcquireError::NotAssigned(_) | AcquireError::OutsideNetwork { .. }
        )
    }
}

const MAX_ATTEMPTS: usize = 20;

/// Does `key` belong to `pools`?
pub fn fits(pools: &Pools, key: &LeaseKey) -> bool {
    let v4_ok = match (&pools.ipv4, key.ipv4) {
        (Some(p), Some(n)) => p.contains(&n),
        (None, None) => true,
        _ => false,
    };
    let v6_ok = match (&pools.ipv6, key.ipv6) {
        (Some(p), Some(n)) => p.contains(&n),
        (None, None) => true,
        _ => false,
    };
    v4_ok && v6_ok
}

/// Is `key` inside the configured networks? What a subnet assigned from
/// outside (Kubernetes' `spec.podCIDR`) must satisfy: the controller-manager
/// hands out the network's first subnet too (10.244.0.0/24 to the first
/// node), and its mask (`--node-cidr-mask-size`) is its own, so neither
/// `SubnetMin`/`SubnetMax` nor `SubnetLen` apply, as in flannel's kube mode.
pub fn fits_network(pools: &Pools, key: &LeaseKey) -> bool {
    let v4_ok = match (&pools.ipv4, key.ipv4) {
        (Some(p), Some(n)) => p.network.contains(&n),
        (None, None) => true,
        _ => false,
    };
    let v6_ok = match (&pools.ipv6, key.ipv6) {
        (Some(p), Some(n)) => p.network.contains(&n),
        (None, None) => true,
        _ => false,
    };
    v4_ok && v6_ok
}

/// Acquires a lease for a node described by `attrs_for(key)` (the record
/// may depend on the subnet, as SRv6 SIDs do).
pub async fn acquire<S: LeaseStore>(
    store: &S,
    pools: &Pools,
    attrs_for: impl Fn(&LeaseKey) -> LeaseAttrs,
    previous: Option<LeaseKey>,
    ttl: Duration,
) -> Result<Lease, AcquireError> {
    match store.assignment().await? {
        Assignment::AgentPicks => {}
        Assignment::Assigned(key) => {
            return take_assigned(store, pools, &attrs_for, key, ttl).await;
        }
        Assignment::Pending(why) => return Err(AcquireError::NotAssigned(why)),
    }
    let mut races = 0;
    for attempt in 0..MAX_ATTEMPTS {
        let snapshot = store.list().await?;
        let probe = attrs_for(&previous.unwrap_or(LeaseKey {
            ipv4: None,
            ipv6: None,
        }));
        // A lease this node already holds (a restart): keep it.
        if let Some(mine) = snapshot
            .leases
            .iter()
            .find(|l| l.same_owner(&probe) && fits(pools, &l.key))
        {
            let lease = Lease {
                key: mine.key,
                attrs: attrs_for(&mine.key),
                expires: None,
            };
            match store.renew(&lease, ttl).await {
                Ok(l) => {
                    tracing::info!(subnet = %l.key, "kept the lease this node already held");
                    return Ok(l);
                }
                Err(StoreError::LeaseLost(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let taken: HashSet<LeaseKey> = snapshot.leases.iter().map(|l| l.key).collect();
        let taken_v4: HashSet<Ipv4Net> =
            snapshot.leases.iter().filter_map(|l| l.key.ipv4).collect();
        let taken_v6: HashSet<Ipv6Net> =
            snapshot.leases.iter().filter_map(|l| l.key.ipv6).collect();
        let candidate = match previous.filter(|k| {
            fits(pools, k)
                && !taken.contains(k)
                && k.ipv4.is_none_or(|n| !taken_v4.contains(&n))
                && k.ipv6.is_none_or(|n| !taken_v6.contains(&n))
        }) {
            Some(k) => k,
            None => pick_free(pools, &taken_v4, &taken_v6, attempt as u64)?,
        };
        let lease = Lease {
            key: candidate,
            attrs: attrs_for(&candidate),
            expires: None,
        };
        match store.create(&lease, ttl).await? {
            Created::Yes(l) => {
                tracing::info!(subnet = %l.key, "acquired a new lease");
                return Ok(l);
            }
            Created::Taken => {
                races += 1;
                tracing::info!(subnet = %candidate, "another node took this subnet first; trying another");
            }
        }
    }
    Err(AcquireError::TooManyRaces(races))
}

/// Acquires one more lease for a node that may already hold some (a
/// further address block of a segment): a free subnet, never one held —
/// unlike [`acquire`], which keeps the one the node has.
pub async fn acquire_another<S: LeaseStore>(
    store: &S,
    pools: &Pools,
    attrs: &LeaseAttrs,
    ttl: Duration,
) -> Result<Lease, AcquireError> {
    let mut races = 0;
    for attempt in 0..MAX_ATTEMPTS {
        let snapshot = store.list().await?;
        let taken_v4: HashSet<Ipv4Net> =
            snapshot.leases.iter().filter_map(|l| l.key.ipv4).collect();
        let taken_v6: HashSet<Ipv6Net> =
            snapshot.leases.iter().filter_map(|l| l.key.ipv6).collect();
        let key = pick_free(pools, &taken_v4, &taken_v6, attempt as u64)?;
        let lease = Lease {
            key,
            attrs: attrs.clone(),
            expires: None,
        };
        match store.create(&lease, ttl).await? {
            Created::Yes(l) => {
                tracing::info!(subnet = %l.key, "acquired a further lease");
                return Ok(l);
            }
            Created::Taken => races += 1,
        }
    }
    Err(AcquireError::TooManyRaces(races))
}

/// Publishes this node's record for the subnet the store assigned.
async fn take_assigned<S: LeaseStore>(
    store: &S,
    pools: &Pools,
    attrs_for: &impl Fn(&LeaseKey) -> LeaseAttrs,
    key: LeaseKey,
    ttl: Duration,
) -> Result<Lease, AcquireError> {
    if !fits_network(pools, &key) {
        let networks: Vec<String> = pools.networks().iter().map(|n| n.to_string()).collect();
        return Err(AcquireError::OutsideNetwork {
            subnet: key,
            networks: networks.join(","),
        });
    }
    let lease = Lease {
        key,
        attrs: attrs_for(&key),
        expires: None,
    };
    match store.create(&lease, ttl).await? {
        Created::Yes(l) => {
            tracing::info!(subnet = %l.key, "using the subnet assigned to this node");
            Ok(l)
        }
        Created::Taken => Err(AcquireError::NotAssigned(format!(
            "this node's assigned subnet changed from {key} while publishing its record; asking again"
        ))),
    }
}

/// A random free subnet (per family); for dual stack, the v6 subnet with
/// the same position as the v4 one when it is free, so numbers line up.
fn pick_free(
    pools: &Pools,
    taken_v4: &HashSet<Ipv4Net>,
    taken_v6: &HashSet<Ipv6Net>,
    salt: u64,
) -> Result<LeaseKey, AcquireError> {
    let seed =
        RandomState::new().hash_one((std::process::id(), salt, std::time::SystemTime::now()));
    let mut key = LeaseKey {
        ipv4: None,
        ipv6: None,
    };
    let mut position = None;
    if let Some(pool) = &pools.ipv4 {
        let (i, net) = random_free(pool, taken_v4, seed, None)?;
        key.ipv4 = Some(net);
        position = Some(i);
    }
    if let Some(pool) = &pools.ipv6 {
        let (_, net) = random_free(pool, taken_v6, seed, position)?;
        key.ipv6 = Some(net);
    }
    Ok(key)
}

fn random_free<N: Family + std::hash::Hash + Into<IpNet>>(
    pool: &Pool<N>,
    taken: &HashSet<N>,
    seed: u64,
    prefer: Option<u128>,
) -> Result<(u128, N), AcquireError> {
    let size = pool.size();
    if let Some(i) = prefer
        && let Some(n) = pool.subnet(i)
        && !taken.contains(&n)
    {
        return Ok((i, n));
    }
    // Walk the pool from a random start; large IPv6 pools are never
    // exhausted in practice, so the walk ends quickly.
    let start = u128::from(seed) % size.max(1);
    let limit = size.min(1 << 20);
    for step in 0..limit {
        let i = (start + step) % size;
        if let Some(n) = pool.subnet(i)
            && !taken.contains(&n)
        {
            return Ok((i, n));
        }
    }
    Err(AcquireError::NoFreeSubnet {
        network: pool.network.into(),
        subnet_len: pool.subnet_len,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetConfig;

    fn v4(s: &str) -> LeaseKey {
        LeaseKey {
            ipv4: Some(s.parse().unwrap()),
            ipv6: None,
        }
    }

    /// kube-controller-manager gives the first node 10.244.0.0/24, below
    /// flannel's default SubnetMin, and may use another mask than SubnetLen.
    #[test]
    fn an_assigned_subnet_needs_only_to_be_inside_the_network() {
        let c = NetConfig::parse(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#)
            .unwrap();
        assert!(!fits(&c.pools, &v4("10.244.0.0/24")), "below SubnetMin");
        assert!(fits_network(&c.pools, &v4("10.244.0.0/24")));
        assert!(fits_network(&c.pools, &v4("10.244.3.0/25")));
        assert!(!fits_network(&c.pools, &v4("10.245.0.0/24")));
        assert!(!fits_network(&c.pools, &v4("10.0.0.0/8")));
    }
}
