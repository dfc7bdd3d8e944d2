//! Bringing the kernel to the desired state by difference.
//!
//! A pass is three steps: know what is there (`observe`, reading the
//! kernel — or, between full passes, trusting what the last pass applied),
//! work out the difference (`plan`, pure and unit-tested), and carry it out
//! (`execute`). Untouched entries are never rewritten, so a pass on a
//! converged node changes nothing and disturbs no traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use tweed_netlink::{Netlink, NetlinkError, Route, TABLE_MAIN};

use crate::backend::desired::{Desired, DeviceWant, FdbWant, NeighbourWant, ROUTE_PROTOCOL};

/// What one pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    pub added: usize,
    pub removed: usize,
    pub errors: usize,
}

/// The changes that turn one state into another.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub routes_del: Vec<Route>,
    pub routes_set: Vec<Route>,
    pub devices: Vec<DevicePlan>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct DevicePlan {
    pub name: String,
    pub neighbours_del: Vec<IpAddr>,
    pub neighbours_set: Vec<NeighbourWant>,
    pub fdb_del: Vec<FdbWant>,
    pub fdb_add: Vec<FdbWant>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.routes_del.is_empty()
            && self.routes_set.is_empty()
            && self.devices.iter().all(|d| {
                d.neighbours_del.is_empty()
                    && d.neighbours_set.is_empty()
                    && d.fdb_del.is_empty()
                    && d.fdb_add.is_empty()
            })
    }
}

/// The fields that make two routes the same entry.
fn route_key(r: &Route) -> (IpNet, u32) {
    (r.dst, r.table)
}

/// Whether a route in the kernel (`have`) already is what we want.
fn same_route(want: &Route, have: &Route) -> bool {
    want.gateway == have.gateway
        && want.oif == have.oif
        && want.onlink == have.onlink
        && want.encap == have.encap
        && (want.mtu.is_none() || want.mtu == have.mtu)
}

/// The difference from `have` to `want`.
pub fn plan(have: &Desired, want: &Desired) -> Plan {
    let have_routes: BTreeMap<(IpNet, u32), &Route> =
        have.routes.iter().map(|r| (route_key(r), r)).collect();
    let want_routes: BTreeMap<(IpNet, u32), &Route> =
        want.routes.iter().map(|r| (route_key(r), r)).collect();
    let mut p = Plan::default();
    for (key, r) in &have_routes {
        if !want_routes.contains_key(key) {
            p.routes_del.push((*r).clone());
        }
    }
    for (key, r) in &want_routes {
        if !have_routes.get(key).is_some_and(|h| same_route(r, h)) {
            p.routes_set.push((*r).clone());
        }
    }
    let empty = DeviceWant::default();
    for dev in &want.devices {
        let old = have
            .devices
            .iter()
            .find(|d| d.name == dev.name)
            .unwrap_or(&empty);
        let old_n: BTreeMap<IpAddr, _> = old.neighbours.iter().map(|n| (n.ip, n.mac)).collect();
        let new_n: BTreeMap<IpAddr, _> = dev.neighbours.iter().map(|n| (n.ip, n.mac)).collect();
        let old_f: BTreeSet<&FdbWant> = old.fdb.iter().collect();
        let new_f: BTreeSet<&FdbWant> = dev.fdb.iter().collect();
        p.devices.push(DevicePlan {
            name: dev.name.clone(),
            neighbours_del: old_n
                .keys()
                .filter(|ip| !new_n.contains_key(ip))
                .copied()
                .collect(),
            neighbours_set: dev
                .neighbours
                .iter()
                .filter(|n| old_n.get(&n.ip) != Some(&n.mac))
                .cloned()
                .collect(),
            fdb_del: old_f.difference(&new_f).map(|f| (*f).clone()).collect(),
            fdb_add: new_f.difference(&old_f).map(|f| (*f).clone()).collect(),
        });
    }
    p
}

/// What the kernel holds of what `want` covers: tweed's routes (by their
/// protocol) and the permanent neighbour and FDB entries of its devices.
pub fn observe(nl: &mut Netlink, want: &Desired) -> Result<Desired, NetlinkError> {
    let mut have = Desired::default();
    for v6 in [false, true] {
        have.routes.extend(
            nl.routes(v6, TABLE_MAIN)?
                .into_iter()
                .filter(|r| r.protocol == ROUTE_PROTOCOL),
        );
    }
    for dev in &want.devices {
        let mut d = DeviceWant {
            name: dev.name.clone(),
            ..Default::default()
        };
        if let Some(link) = nl.link_by_name(&dev.name)? {
            for v6 in [false, true] {
                for n in nl.neighbours(v6, Some(link.index))? {
                    if let (true, Some(mac)) = (n.permanent, n.mac) {
                        d.neighbours.push(NeighbourWant { ip: n.ip, mac });
                    }
                }
            }
            for e in nl.fdb(link.index)? {
                if let (true, true, Some(dst)) = (e.own, e.permanent, e.dst) {
                    d.fdb.push(FdbWant { mac: e.mac, dst });
                }
            }
        }
        have.devices.push(d);
    }
    Ok(have)
}

fn note(
    result: Result<(), NetlinkError>,
    removing: bool,
    what: &str,
    count: &mut usize,
    errors: &mut usize,
) {
    match result {
        Ok(()) => *count += 1,
        // Already gone: that is what we wanted.
        Err(e) if removing && e.is_not_found() => {}
        Err(e) => {
            tracing::warn!(error = %e, "reconcile: {what} failed");
            *errors += 1;
        }
    }
}

/// Carries a plan out. Every change is attempted; failures are counted
/// (and logged), so one bad entry does not hold back the others.
pub fn execute(nl: &mut Netlink, plan: &Plan) -> Result<Changes, NetlinkError> {
    let mut c = Changes::default();
    for r in &plan.routes_del {
        // A route the last pass applied is the backend's description,
        // whose protocol is not the one it was installed with; the kernel
        // deletes only a route of the protocol named (ESRCH otherwise, which
        // looks like "already gone"). Until the wireguard backend, a peer's
        // route was removed only because its neighbour's removal kicked a
        // full pass.
        let mut route = r.clone();
        route.protocol = ROUTE_PROTOCOL;
        note(
            nl.delete_route(&route),
            true,
            "removing a route",
            &mut c.removed,
            &mut c.errors,
        );
    }
    for r in &plan.routes_set {
        let mut route = r.clone();
        route.protocol = ROUTE_PROTOCOL;
        note(
            nl.replace_route(&route),
            false,
            "adding a route",
            &mut c.added,
            &mut c.errors,
        );
    }
    for dev in &plan.devices {
        let Some(link) = nl.link_by_name(&dev.name)? else {
            // The backend recreates its devices before each pass; if one is
            // still missing there is nothing to hang entries on yet.
            c.errors += 1;
            continue;
        };
        let index = link.index;
        for ip in &dev.neighbours_del {
            note(
                nl.delete_neighbour(index, *ip),
                true,
                "removing a neighbour",
                &mut c.removed,
                &mut c.errors,
            );
        }
        for n in &dev.neighbours_set {
            note(
                nl.set_neighbour(index, n.ip, n.mac),
                false,
                "adding a neighbour",
                &mut c.added,
                &mut c.errors,
            );
        }
        for f in &dev.fdb_del {
            note(
                nl.delete_fdb(index, f.mac, Some(f.dst)),
                true,
                "removing an FDB entry",
                &mut c.removed,
                &mut c.errors,
            );
        }
        // A unicast MAC has one destination: replace. The all-zero MAC lists
        // every destination for flooding: append.
        for f in &dev.fdb_add {
            let r = if f.mac.is_zero() {
                nl.append_fdb(index, f.mac, f.dst)
            } else {
                nl.set_fdb(index, f.mac, f.dst)
            };
            note(r, false, "adding an FDB entry", &mut c.added, &mut c.errors);
        }
    }
    Ok(c)
}

/// A full pass: read the kernel, then change what differs.
pub fn apply(nl: &mut Netlink, want: &Desired) -> Result<Changes, NetlinkError> {
    let have = observe(nl, want)?;
    execute(nl, &plan(&have, want))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tweed_netlink::MacAddr;

    fn route(dst: &str, gw: &str) -> Route {
        Route::new(dst.parse().unwrap())
            .via(gw.parse().unwrap())
            .dev(5)
    }

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    fn dev(neigh: &[(&str, &str)], fdb: &[(&str, &str)]) -> DeviceWant {
        DeviceWant {
            name: "tweed.1".into(),
            neighbours: neigh
                .iter()
                .map(|(ip, m)| NeighbourWant {
                    ip: ip.parse().unwrap(),
                    mac: mac(m),
                })
                .collect(),
            fdb: fdb
                .iter()
                .map(|(m, d)| FdbWant {
                    mac: mac(m),
                    dst: d.parse().unwrap(),
                })
                .collect(),
        }
    }

    #[test]
    fn converged_state_plans_nothing() {
        let s = Desired {
            routes: vec![route("10.244.2.0/24", "10.244.2.0")],
            devices: vec![dev(
                &[("10.244.2.0", "02:00:00:00:00:02")],
                &[("02:00:00:00:00:02", "198.18.0.2")],
            )],
        };
        assert!(plan(&s, &s).is_empty());
    }

    #[test]
    fn a_peer_leaving_and_one_joining() {
        let have = Desired {
            routes: vec![
                route("10.244.2.0/24", "10.244.2.0"),
                route("10.244.3.0/24", "10.244.3.0"),
            ],
            devices: vec![dev(
                &[
                    ("10.244.2.0", "02:00:00:00:00:02"),
                    ("10.244.3.0", "02:00:00:00:00:03"),
                ],
                &[
                    ("02:00:00:00:00:02", "198.18.0.2"),
                    ("02:00:00:00:00:03", "198.18.0.3"),
                ],
            )],
        };
        let want = Desired {
            routes: vec![
                route("10.244.2.0/24", "10.244.2.0"),
                route("10.244.4.0/24", "10.244.4.0"),
            ],
            devices: vec![dev(
                &[
                    ("10.244.2.0", "02:00:00:00:00:02"),
                    ("10.244.4.0", "02:00:00:00:00:04"),
                ],
                &[
                    ("02:00:00:00:00:02", "198.18.0.2"),
                    ("02:00:00:00:00:04", "198.18.0.4"),
                ],
            )],
        };
        let p = plan(&have, &want);
        assert_eq!(p.routes_del.len(), 1);
        assert_eq!(
            p.routes_del[0].dst,
            "10.244.3.0/24".parse::<IpNet>().unwrap()
        );
        assert_eq!(p.routes_set.len(), 1);
        assert_eq!(
            p.routes_set[0].dst,
            "10.244.4.0/24".parse::<IpNet>().unwrap()
        );
        let d = &p.devices[0];
        assert_eq!(
            d.neighbours_del,
            vec!["10.244.3.0".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(d.neighbours_set.len(), 1);
        assert_eq!(d.fdb_del.len(), 1);
        assert_eq!(d.fdb_add.len(), 1);
    }

    #[test]
    fn a_changed_mac_or_address_is_rewritten() {
        let have = Desired {
            routes: vec![route("10.244.2.0/24", "10.244.2.0")],
            devices: vec![dev(
                &[("10.244.2.0", "02:00:00:00:00:02")],
                &[("02:00:00:00:00:02", "198.18.0.2")],
            )],
        };
        let want = Desired {
            routes: vec![route("10.244.2.0/24", "10.244.2.0")],
            devices: vec![dev(
                &[("10.244.2.0", "02:00:00:00:00:09")],
                &[("02:00:00:00:00:09", "198.18.0.9")],
            )],
        };
        let p = plan(&have, &want);
        assert!(p.routes_set.is_empty() && p.routes_del.is_empty());
        assert_eq!(p.devices[0].neighbours_set.len(), 1);
        assert!(p.devices[0].neighbours_del.is_empty());
        assert_eq!(p.devices[0].fdb_del.len(), 1);
        assert_eq!(p.devices[0].fdb_add.len(), 1);
    }
}
