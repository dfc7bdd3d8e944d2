//! Picking addresses: one per range set, host-local's way.
//!
//! Order and rules follow host-local's `IPAllocator.Get` and its iterator
//! (containernetworking/plugins, `backend/allocator/allocator.go`) so that a
//! store shared with host-local advances the same round-robin cursor.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::IpamSpec;
use crate::error::IpamError;
use crate::range::RangeSet;
use crate::store::{StoreGuard, check_container_id, check_ifname};

/// One address handed to an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The address with its range's subnet prefix length.
    pub address: IpNet,
    /// The range's gateway, to report in the CNI result.
    pub gateway: Option<IpAddr>,
    /// Index of the range set it came from.
    pub range_set: usize,
}

/// Reserves one address per range set, in range-set order, for the
/// attachment `(container_id, ifname)`.
///
/// * `requested` addresses (CNI `ips` capability, `IP=` argument) are matched
///   to the set whose ranges hold them; an address in no range, two in one
///   set, a gateway, or one already reserved is an error.
/// * Other sets get the next free address after that set's
///   `last_reserved_ip`, wrapping around, skipping gateways and reserved
///   addresses (see [`RangeSet::candidates`]).
/// * If the attachment already holds an address in a set (a repeated ADD),
///   this fails with [`IpamError::DuplicateAllocation`], as host-local does:
///   CNI forbids ADDing the same attachment twice, and handing back the old
///   address would hide a runtime bug. Legacy ID-only files of the container
///   count as held, again like host-local. (host-local skips this check for
///   a set with a requested address and would hand out a second one; tweed
///   checks every set.)
///
/// Nothing leaks on failure: addresses reserved earlier in this call are
/// released before the error is returned.
pub fn allocate(
    spec: &IpamSpec,
    guard: &StoreGuard<'_>,
    container_id: &str,
    ifname: &str,
    requested: &[IpAddr],
) -> Result<Vec<Allocation>, IpamError> {
    allocate_inner(spec, guard, container_id, ifname, requested, true)
}

/// [`allocate`] without the duplicate-ADD check, which reads every
/// reservation file and so grows with the number of pods. For callers that
/// have already established that the attachment holds nothing — the tweed
/// plugin refuses an ADD whose interface exists before it gets here.
pub fn allocate_fresh(
    spec: &IpamSpec,
    guard: &StoreGuard<'_>,
    container_id: &str,
    ifname: &str,
    requested: &[IpAddr],
) -> Result<Vec<Allocation>, IpamError> {
    allocate_inner(spec, guard, container_id, ifname, requested, false)
}

fn allocate_inner(
    spec: &IpamSpec,
    guard: &StoreGuard<'_>,
    container_id: &str,
    ifname: &str,
    requested: &[IpAddr],
    check_duplicates: bool,
) -> Result<Vec<Allocation>, IpamError> {
    check_container_id(container_id)?;
    check_ifname(ifname)?;
    let wanted = match_requested(spec, requested)?;

    if check_duplicates {
        let held = guard.find_by_id(container_id, ifname)?;
        for (k, set) in spec.range_sets.iter().enumerate() {
            if let Some(ip) = held.iter().find(|ip| set.contains(**ip)) {
                return Err(IpamError::DuplicateAllocation {
                    ip: *ip,
                    container_id: container_id.trim().to_string(),
                    ifname: ifname.to_string(),
                    range_set: k,
                });
            }
        }
    }

    let mut done: Vec<Allocation> = Vec::with_capacity(spec.range_sets.len());
    for (k, set) in spec.range_sets.iter().enumerate() {
        let one = match wanted[k] {
            Some(ip) => reserve_requested(guard, set, k, ip, container_id, ifname),
            None => reserve_next(guard, set, k, container_id, ifname),
        };
        match one {
            Ok(a) => done.push(a),
            Err(e) => {
                for a in &done {
                    let _ = guard.release(a.address.addr());
                }
                return Err(e);
            }
        }
    }
    Ok(done)
}

/// The round-robin cursors (`last_reserved_ip.<k>` as raw bytes, `None`
/// for a missing file) of every range set, taken before an allocation so
/// that a call failing after it can leave the store as it found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursors(Vec<Option<Vec<u8>>>);

/// Reads the cursor of each of the spec's range sets.
pub fn cursors(spec: &IpamSpec, guard: &StoreGuard<'_>) -> Result<Cursors, IpamError> {
    (0..spec.range_sets.len())
        .map(|k| guard.last_reserved_raw(k))
        .collect::<Result<Vec<_>, _>>()
        .map(Cursors)
}

/// Undoes an allocation that a failed call made: releases each address
/// that the attachment still holds, and puts each set's cursor back to
/// what `before` recorded while it still points at the address this call
/// took. Nothing else of the store is touched — in particular no other
/// address the attachment held before the call. Every step is tried; the
/// first error is returned.
pub fn undo(
    guard: &StoreGuard<'_>,
    allocations: &[Allocation],
    before: &Cursors,
    container_id: &str,
    ifname: &str,
) -> Result<(), IpamError> {
    let ips: Vec<IpAddr> = allocations.iter().map(|a| a.address.addr()).collect();
    let mut result = guard.release_owned(&ips, container_id, ifname).map(|_| ());
    for a in allocations {
        let previous = before.0.get(a.range_set).cloned().flatten();
        let restored =
            guard.restore_last_reserved(a.range_set, a.address.addr(), previous.as_deref());
        result = result.and(restored);
    }
    result
}

/// Releases the attachment's addresses exactly as host-local's DEL does.
///
/// host-local's DEL calls the store's release-by-ID once per range set, and
/// that function falls back to legacy ID-only files only when it finds no
/// `<id>\r\n<ifname>` file. So with one range set a legacy file of the
/// container survives a DEL that released new-format files, while with two
/// or more sets (dual stack) the second call, finding no exact match left,
/// also removes the container's legacy files. Reproducing that keeps the
/// store identical whichever plugin handled the DEL. `range_sets` is the
/// network's number of range sets (`spec.range_sets.len()`); it is a plain
/// count so a DEL can run without a valid spec (at least one pass is made).
/// Releasing nothing is not an error (DEL is idempotent).
pub fn release_attachment(
    guard: &StoreGuard<'_>,
    container_id: &str,
    ifname: &str,
    range_sets: usize,
) -> Result<Vec<IpAddr>, IpamError> {
    let mut released = Vec::new();
    for _ in 0..range_sets.max(1) {
        released.extend(guard.release_by_id(container_id, ifname)?);
    }
    released.sort();
    Ok(released)
}

/// Releases every reservation whose attachment is not in `valid` (pairs of
/// container ID and interface name, as CNI GC's `cni.dev/valid-attachments`
/// lists them). A legacy ID-only file is kept when its ID appears with any
/// interface, since it cannot say which one it belongs to. Returns the
/// released addresses.
pub fn gc(guard: &StoreGuard<'_>, valid: &[(String, String)]) -> Result<Vec<IpAddr>, IpamError> {
    let pairs: HashSet<(&str, &str)> = valid
        .iter()
        .map(|(id, ifname)| (id.trim(), ifname.as_str()))
        .collect();
    let ids: HashSet<&str> = valid.iter().map(|(id, _)| id.trim()).collect();
    let mut released = Vec::new();
    for r in guard.reservations_lenient()? {
        let keep = match &r.ifname {
            Some(ifname) => pairs.contains(&(r.container_id.as_str(), ifname.as_str())),
            None => ids.contains(r.container_id.as_str()),
        };
        if !keep {
            guard.release(r.ip)?;
            released.push(r.ip);
        }
    }
    Ok(released)
}

/// Parses a requested address as host-local accepts it in the `ips`
/// capability, `args.cni.ips` and `IP=`: a bare address or an address with a
/// prefix length (`10.244.1.7/24`, the prefix is ignored). IPv4-mapped IPv6
/// becomes IPv4.
pub fn parse_requested_ip(s: &str) -> Result<IpAddr, IpamError> {
    let addr = s.split_once('/').map_or(s, |(addr, _)| addr);
    let prefix_ok = s.split_once('/').is_none_or(|_| s.parse::<IpNet>().is_ok());
    match addr.parse::<IpAddr>() {
        Ok(ip) if prefix_ok => Ok(ip.to_canonical()),
        _ => Err(IpamError::InvalidArgument {
            name: "requested IP".to_string(),
            reason: format!("{s:?} is not an IP address (or address/prefix)"),
        }),
    }
}

/// Assigns each requested address to its range set, checking everything
/// that can be checked before the first reservation.
fn match_requested(
    spec: &IpamSpec,
    requested: &[IpAddr],
) -> Result<Vec<Option<IpAddr>>, IpamError> {
    let mut wanted: Vec<Option<IpAddr>> = vec![None; spec.range_sets.len()];
    for ip in requested.iter().map(|ip| ip.to_canonical()) {
        let Some(k) = spec.range_set_for(ip) else {
            let ranges: Vec<String> = spec.range_sets.iter().map(|s| s.to_string()).collect();
            return Err(IpamError::RequestedNotInRange {
                ip,
                ranges: ranges.join("; "),
            });
        };
        match wanted[k] {
            Some(first) if first == ip => continue,
            Some(first) => {
                return Err(IpamError::MultipleRequestedInSet {
                    range_set: k,
                    first,
                    second: ip,
                });
            }
            None => wanted[k] = Some(ip),
        }
        let gateway = spec.range_sets[k].range_for(ip).and_then(|r| r.gateway);
        if gateway == Some(ip) {
            return Err(IpamError::RequestedIsGateway { ip, range_set: k });
        }
    }
    Ok(wanted)
}

fn reserve_requested(
    guard: &StoreGuard<'_>,
    set: &RangeSet,
    k: usize,
    ip: IpAddr,
    container_id: &str,
    ifname: &str,
) -> Result<Allocation, IpamError> {
    if !guard.reserve(ip, container_id, ifname, k)? {
        let owner = guard.reservation(ip)?;
        return Err(IpamError::AlreadyReserved {
            ip,
            owner: owner
                .as_ref()
                .map_or_else(|| "(unknown)".to_string(), |r| r.container_id.clone()),
            owner_ifname: owner.and_then(|r| r.ifname),
        });
    }
    Ok(allocation(set, k, ip))
}

/// The next free address after the set's cursor. Each candidate is taken
/// with an exclusive create, which fails for a reserved address, so the
/// store's directory is never listed: the usual case (the address after the
/// cursor is free) costs one file creation however many pods there are.
fn reserve_next(
    guard: &StoreGuard<'_>,
    set: &RangeSet,
    k: usize,
    container_id: &str,
    ifname: &str,
) -> Result<Allocation, IpamError> {
    // host-local only logs an unreadable cursor and starts from the
    // beginning; losing round-robin once beats failing the pod.
    let last = guard.last_reserved(k).unwrap_or(None);
    for (_, ip) in set.candidates(last) {
        if guard.reserve(ip, container_id, ifname, k)? {
            return Ok(allocation(set, k, ip));
        }
    }
    Err(IpamError::Exhausted {
        range_set: k,
        ranges: set.to_string(),
        addresses: set.allocatable(),
    })
}

fn allocation(set: &RangeSet, k: usize, ip: IpAddr) -> Allocation {
    let range = set.range_for(ip);
    Allocation {
        // The address came from (or was matched to) this set, so the range
        // exists and has its family; the host-prefix fallback is unreachable.
        address: range
            .and_then(|r| r.with_prefix(ip))
            .unwrap_or_else(|| IpNet::from(ip)),
        gateway: range.and_then(|r| r.gateway),
        range_set: k,
    }
}
