//! Bringing the kernel to the desired state by difference: read what is
//! there, remove what is not wanted, add or replace what is missing or
//! different. Untouched entries are never rewritten, so a reconcile pass on
//! a converged node changes nothing and disturbs no traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use tweed_netlink::{MacAddr, Netlink, NetlinkError, Route, TABLE_MAIN};

use super::desired::{Desired, FdbWant, NeighbourWant, ROUTE_PROTOCOL};

/// What one pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub added: usize,
    pub removed: usize,
    pub errors: usize,
}

/// The fields that make two routes the same for our purposes.
fn route_key(r: &Route) -> (IpNet, u32) {
    (r.dst, r.table)
}

fn same_route(want: &Route, have: &Route) -> bool {
    want.gateway == have.gateway
        && want.oif == have.oif
        && want.onlink == have.onlink
        && want.encap == have.encap
        && (want.mtu.is_none() || want.mtu == have.mtu)
}

pub fn apply(nl: &mut Netlink, desired: &Desired) -> Result<Changes, NetlinkError> {
    let mut changes = Changes::default();
    apply_routes(nl, &desired.routes, &mut changes)?;
    for dev in &desired.devices {
        let Some(link) = nl.link_by_name(&dev.name)? else {
            // The backend recreates its devices before each pass; if one is
            // still missing there is nothing to hang entries on yet.
            changes.errors += 1;
            continue;
        };
        apply_neighbours(nl, link.index, &dev.neighbours, &mut changes)?;
        apply_fdb(nl, link.index, &dev.fdb, &mut changes)?;
    }
    Ok(changes)
}

fn note(result: Result<(), NetlinkError>, what: &str, counter: &mut usize, changes: &mut Changes) {
    match result {
        Ok(()) => *counter += 1,
        Err(e) if e.is_not_found() && what == "remove" => {}
        Err(e) => {
            tracing::warn!(error = %e, "reconcile: {what} failed");
            changes.errors += 1;
        }
    }
}

fn apply_routes(
    nl: &mut Netlink,
    wanted: &[Route],
    changes: &mut Changes,
) -> Result<(), NetlinkError> {
    let mut have: BTreeMap<(IpNet, u32), Route> = BTreeMap::new();
    for v6 in [false, true] {
        for r in nl.routes(v6, TABLE_MAIN)? {
            if r.protocol == ROUTE_PROTOCOL {
                have.insert(route_key(&r), r);
            }
        }
    }
    let want: BTreeMap<(IpNet, u32), &Route> = wanted.iter().map(|r| (route_key(r), r)).collect();
    for (key, r) in &have {
        if !want.contains_key(key) {
            let mut removed = 0;
            note(nl.delete_route(r), "remove", &mut removed, changes);
            changes.removed += removed;
        }
    }
    for (key, r) in &want {
        if have.get(key).is_some_and(|h| same_route(r, h)) {
            continue;
        }
        let mut route = (*r).clone();
        route.protocol = ROUTE_PROTOCOL;
        let mut added = 0;
        note(nl.replace_route(&route), "add route", &mut added, changes);
        changes.added += added;
    }
    Ok(())
}

fn apply_neighbours(
    nl: &mut Netlink,
    index: u32,
    wanted: &[NeighbourWant],
    changes: &mut Changes,
) -> Result<(), NetlinkError> {
    let mut have: BTreeMap<IpAddr, Option<MacAddr>> = BTreeMap::new();
    for v6 in [false, true] {
        for n in nl.neighbours(v6, Some(index))? {
            if n.permanent {
                have.insert(n.ip, n.mac);
            }
        }
    }
    let want: BTreeMap<IpAddr, MacAddr> = wanted.iter().map(|n| (n.ip, n.mac)).collect();
    for ip in have.keys() {
        if !want.contains_key(ip) {
            let mut removed = 0;
            note(
                nl.delete_neighbour(index, *ip),
                "remove",
                &mut removed,
                changes,
            );
            changes.removed += removed;
        }
    }
    for (ip, mac) in &want {
        if have.get(ip) == Some(&Some(*mac)) {
            continue;
        }
        let mut added = 0;
        note(
            nl.set_neighbour(index, *ip, *mac),
            "add neighbour",
            &mut added,
            changes,
        );
        changes.added += added;
    }
    Ok(())
}

fn apply_fdb(
    nl: &mut Netlink,
    index: u32,
    wanted: &[FdbWant],
    changes: &mut Changes,
) -> Result<(), NetlinkError> {
    let have: BTreeSet<(MacAddr, IpAddr)> = nl
        .fdb(index)?
        .into_iter()
        .filter(|e| e.own && e.permanent)
        .filter_map(|e| e.dst.map(|d| (e.mac, d)))
        .collect();
    let want: BTreeSet<(MacAddr, IpAddr)> = wanted.iter().map(|f| (f.mac, f.dst)).collect();
    for (mac, dst) in have.difference(&want) {
        let mut removed = 0;
        note(
            nl.delete_fdb(index, *mac, Some(*dst)),
            "remove",
            &mut removed,
            changes,
        );
        changes.removed += removed;
    }
    // A unicast MAC has one destination: replace. The all-zero MAC lists
    // every destination for flooding: append.
    for (mac, dst) in want.difference(&have) {
        let result = if mac.is_zero() {
            nl.append_fdb(index, *mac, *dst)
        } else {
            nl.set_fdb(index, *mac, *dst)
        };
        let mut added = 0;
        note(result, "add fdb entry", &mut added, changes);
        changes.added += added;
    }
    Ok(())
}
