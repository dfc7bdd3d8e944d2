//! tweed's built-in IPAM, on host-local's on-disk store.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tweed_cni::error::CniError;
use tweed_ipam::{Allocation, Cursors, DEFAULT_DATA_DIR, IpamConf, IpamSpec, RangeConf, Store};

use crate::errors;
use tweed_node::SubnetEnv;

/// The validated IPAM spec, with ranges from the config or, when the
/// config has none, from the node lease.
pub fn spec(conf: &IpamConf, lease: Option<&SubnetEnv>) -> Result<IpamSpec, CniError> {
    let mut conf = conf.clone();
    if conf.ranges.is_none() && conf.subnet.is_none() {
        let lease = lease.expect("caller reads the lease when the config has no ranges");
        let sets: Vec<Vec<RangeConf>> = [&lease.ipv4, &lease.ipv6]
            .into_iter()
            .flatten()
            .map(|f| {
                vec![RangeConf {
                    subnet: f.subnet.to_string(),
                    gateway: Some(f.gateway.to_string()),
                    ..Default::default()
                }]
            })
            .collect();
        conf.ranges = Some(sets);
    }
    conf.validate().map_err(errors::ipam)
}

/// The store root for a config (host-local's default when unset).
pub fn data_dir(conf: &IpamConf) -> PathBuf {
    match &conf.data_dir {
        Some(d) if !d.as_os_str().is_empty() => d.clone(),
        _ => PathBuf::from(DEFAULT_DATA_DIR),
    }
}

/// What one ADD reserved, and the store's cursors before it: all that
/// [`undo`] needs to put the store back as the call found it.
#[derive(Debug, Clone)]
pub struct Reserved {
    pub data_dir: PathBuf,
    pub allocations: Vec<Allocation>,
    pub cursors_before: Cursors,
}

/// Reserves one address per range set.
pub fn allocate(
    spec: &IpamSpec,
    network: &str,
    container_id: &str,
    ifname: &str,
    requested: &[IpAddr],
) -> Result<Reserved, CniError> {
    let store = Store::open(&spec.data_dir, network).map_err(errors::ipam)?;
    let guard = store.lock().map_err(errors::ipam)?;
    let cursors_before = tweed_ipam::cursors(spec, &guard).map_err(errors::ipam)?;
    // ADD has already refused an attachment whose interface exists in the
    // pod, so anything the attachment still holds was left by an ADD that
    // died before it made the interface (kill -9, a node losing power):
    // released first, or a retried ADD would hold two addresses and a DEL
    // with its result release only one. Only files naming exactly this
    // attachment count (a legacy ID-only file may be another interface's).
    let held = guard
        .find_by_id(container_id, ifname)
        .map_err(errors::ipam)?;
    for ip in held {
        let stale = guard.reservation(ip).map_err(errors::ipam)?;
        if stale.is_some_and(|r| r.is_for(container_id, ifname)) {
            guard.release(ip).map_err(errors::ipam)?;
        }
    }
    // A failed ADD undoes only what this returns.
    let allocations = tweed_ipam::allocate_fresh(spec, &guard, container_id, ifname, requested)
        .map_err(errors::ipam)?;
    Ok(Reserved {
        data_dir: spec.data_dir.clone(),
        allocations,
        cursors_before,
    })
}

/// Undoes [`allocate`] for a failed ADD: releases exactly what it reserved
/// and puts the round-robin cursors back, never touching an address the
/// attachment held before the call.
pub fn undo(
    reserved: &Reserved,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<(), CniError> {
    if reserved.allocations.is_empty() {
        return Ok(());
    }
    let store = Store::open(&reserved.data_dir, network).map_err(errors::ipam)?;
    let guard = store.lock().map_err(errors::ipam)?;
    tweed_ipam::undo(
        &guard,
        &reserved.allocations,
        &reserved.cursors_before,
        container_id,
        ifname,
    )
    .map_err(errors::ipam)
}

/// Releases whatever the attachment holds. `known` are the addresses
/// `prevResult` says it has: when all of them are released directly, the
/// store-wide scan is skipped. A store that was never created holds
/// nothing, and is not created here.
pub fn release(
    data_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
    known: &[IpAddr],
) -> Result<Vec<IpAddr>, CniError> {
    if !data_dir.join(network).is_dir() {
        return Ok(Vec::new());
    }
    let store = Store::open(data_dir, network).map_err(errors::ipam)?;
    let guard = store.lock().map_err(errors::ipam)?;
    if !known.is_empty() {
        let released = guard
            .release_owned(known, container_id, ifname)
            .map_err(errors::ipam)?;
        if released.len() == known.len() {
            return Ok(released);
        }
    }
    guard
        .release_by_id(container_id, ifname)
        .map_err(errors::ipam)
}

/// The addresses the attachment holds.
pub fn held(
    data_dir: &Path,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<Vec<IpAddr>, CniError> {
    if !data_dir.join(network).is_dir() {
        return Ok(Vec::new());
    }
    let store = Store::open(data_dir, network).map_err(errors::ipam)?;
    let guard = store.lock().map_err(errors::ipam)?;
    guard.find_by_id(container_id, ifname).map_err(errors::ipam)
}

/// An address GC released, with the attachment (container ID, ifname)
/// that held it, where its file names one.
pub type Released = (IpAddr, Option<(String, String)>);

/// Releases every reservation not in `valid`.
pub fn gc(
    data_dir: &Path,
    network: &str,
    valid: &[(String, String)],
) -> Result<Vec<Released>, CniError> {
    if !data_dir.join(network).is_dir() {
        return Ok(Vec::new());
    }
    let store = Store::open(data_dir, network).map_err(errors::ipam)?;
    let guard = store.lock().map_err(errors::ipam)?;
    // Read under the same lock, so the owners are those of the released.
    let owners = guard.reservations().unwrap_or_default();
    let released = tweed_ipam::gc(&guard, valid).map_err(errors::ipam)?;
    Ok(released
        .into_iter()
        .map(|ip| {
            let owner = owners
                .iter()
                .find(|r| r.ip == ip)
                .and_then(|r| Some((r.container_id.clone(), r.ifname.clone()?)));
            (ip, owner)
        })
        .collect())
}

/// Can the store be used for ADD? (Opens, creates and locks it.)
pub fn status(data_dir: &Path, network: &str) -> Result<(), tweed_ipam::IpamError> {
    let store = Store::open(data_dir, network)?;
    store.lock().map(|_| ())
}
