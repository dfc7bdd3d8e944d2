//! Allocation order, requested addresses, exhaustion, rollback and GC.

mod common;

use std::fs;
use std::net::IpAddr;

use common::{ip, spec_in};
use tweed_ipam::{
    Allocation, IpamError, IpamSpec, Store, allocate, gc, parse_requested_ip, release_attachment,
};

/// Allocates for `id`/eth0 and returns the addresses only.
fn take(spec: &IpamSpec, store: &Store, id: &str) -> Result<Vec<IpAddr>, IpamError> {
    let g = store.lock()?;
    Ok(allocate(spec, &g, id, "eth0", &[])?
        .into_iter()
        .map(|a| a.address.addr())
        .collect())
}

fn take1(spec: &IpamSpec, store: &Store, id: &str) -> IpAddr {
    take(spec, store, id).expect("allocation")[0]
}

fn release(store: &Store, ips: &[&str]) {
    let g = store.lock().unwrap();
    for i in ips {
        g.release(ip(i)).unwrap();
    }
}

#[test]
fn first_address_skips_the_gateway() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(tmp.path(), r#"[[{"subnet": "10.244.1.0/24"}]]"#);
    let store = Store::open(&spec.data_dir, "net").unwrap();
    let g = store.lock().unwrap();
    let got = allocate(&spec, &g, "c1", "eth0", &[]).unwrap();
    assert_eq!(
        got,
        vec![Allocation {
            address: "10.244.1.2/24".parse().unwrap(),
            gateway: Some(ip("10.244.1.1")),
            range_set: 0
        }]
    );
    drop(g);
    assert_eq!(take1(&spec, &store, "c2"), ip("10.244.1.3"));
}

#[test]
fn round_robin_wraps_like_host_local() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(
        tmp.path(),
        r#"[[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.2", "rangeEnd": "10.0.0.5"}]]"#,
    );
    let store = Store::open(&spec.data_dir, "net").unwrap();
    let firsts: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| take1(&spec, &store, id))
        .collect();
    assert_eq!(
        firsts,
        ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"].map(ip)
    );

    // Cursor at .5: free .3, the walk wraps past .5 to .2 (taken) then .3.
    release(&store, &["10.0.0.3"]);
    assert_eq!(take1(&spec, &store, "e"), ip("10.0.0.3"));
    // Cursor at .3: free .2 and .5; the next after the cursor wins (.5, not .2).
    release(&store, &["10.0.0.2", "10.0.0.5"]);
    assert_eq!(take1(&spec, &store, "f"), ip("10.0.0.5"));
    assert_eq!(take1(&spec, &store, "g"), ip("10.0.0.2"));
    // A just-released address is handed out last (crash-looping pods).
    release(&store, &["10.0.0.2", "10.0.0.4"]);
    assert_eq!(take1(&spec, &store, "h"), ip("10.0.0.4"));
}

#[test]
fn cursor_outside_the_set_restarts_from_the_beginning() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(tmp.path(), r#"[[{"subnet": "10.0.0.0/29"}]]"#);
    let store = Store::open(&spec.data_dir, "net").unwrap();
    fs::write(store.dir().join("last_reserved_ip.0"), "192.168.0.1").unwrap();
    assert_eq!(take1(&spec, &store, "a"), ip("10.0.0.2"));
}

#[test]
fn gateway_inside_the_range_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(
        tmp.path(),
        r#"[[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.2", "rangeEnd": "10.0.0.5", "gateway": "10.0.0.3"}]]"#,
    );
    let store = Store::open(&spec.data_dir, "net").unwrap();
    let got: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| take1(&spec, &store, id))
        .collect();
    assert_eq!(got, ["10.0.0.2", "10.0.0.4", "10.0.0.5"].map(ip));
    let err = take(&spec, &store, "d").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free address in range set 0 (10.0.0.2-10.0.0.5): all 3 addresses are reserved"
    );
}

#[test]
fn several_ranges_in_one_set_are_walked_in_order_and_wrap() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(
        tmp.path(),
        r#"[[{"subnet": "10.0.0.0/30"}, {"subnet": "10.0.1.0/29", "rangeEnd": "10.0.1.3"}]]"#,
    );
    let store = Store::open(&spec.data_dir, "net").unwrap();
    let g = store.lock().unwrap();
    let a = allocate(&spec, &g, "a", "eth0", &[]).unwrap();
    assert_eq!(a[0].address, "10.0.0.2/30".parse().unwrap());
    let b = allocate(&spec, &g, "b", "eth0", &[]).unwrap();
    assert_eq!(
        b[0].address,
        "10.0.1.2/29".parse().unwrap(),
        "second range's prefix"
    );
    assert_eq!(b[0].gateway, Some(ip("10.0.1.1")));
    let c = allocate(&spec, &g, "c", "eth0", &[]).unwrap();
    assert_eq!(c[0].address.addr(), ip("10.0.1.3"));
    // Free the first range's only address: the walk wraps from the end of
    // range 1 back to range 0.
    g.release(ip("10.0.0.2")).unwrap();
    let d = allocate(&spec, &g, "d", "eth0", &[]).unwrap();
    assert_eq!(d[0].address.addr(), ip("10.0.0.2"));
    let err = allocate(&spec, &g, "e", "eth0", &[]).unwrap_err();
    assert!(err.is_exhausted());
    assert_eq!(
        err.to_string(),
        "no free address in range set 0 (10.0.0.1-10.0.0.2,10.0.1.1-10.0.1.3): all 3 addresses are reserved"
    );
}

#[test]
fn dual_stack_gets_one_address_per_set() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(
        tmp.path(),
        r#"[[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]]"#,
    );
    let store = Store::open(&spec.data_dir, "net").unwrap();
    let g = store.lock().unwrap();
    let got = allocate(&spec, &g, "c1", "eth0", &[]).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].address, "10.244.1.2/24".parse().unwrap());
    assert_eq!(got[0].range_set, 0);
    assert_eq!(got[1].address, "fd00:10:244:1::2/64".parse().unwrap());
    assert_eq!(got[1].gateway, Some(ip("fd00:10:244:1::1")));
    assert_eq!(got[1].range_set, 1);
    assert_eq!(
        fs::read(store.dir().join("last_reserved_ip.1")).unwrap(),
        b"fd00:10:244:1::2"
    );
    assert_eq!(g.release_by_id("c1", "eth0").unwrap().len(), 2);
}

#[test]
fn requested_addresses_go_to_their_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(
        tmp.path(),
        r#"[[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/120"}]]"#,
    );
    let store = Store::open(&spec.data_dir, "net").unwrap();
    let g = store.lock().unwrap();
    // The IPv6 request is listed first; results still come in set order.
    let got = allocate(
        &spec,
        &g,
        "c1",
        "eth0",
        &[ip("fd00::42"), ip("::ffff:10.0.0.42")],
    )
    .unwrap();
    assert_eq!(got[0].address, "10.0.0.42/24".parse().unwrap());
    assert_eq!(got[1].address, "fd00::42/120".parse().unwrap());
    // A request for one set; the other set allocates normally after its cursor.
    let got = allocate(&spec, &g, "c2", "eth0", &[ip("fd00::7")]).unwrap();
    assert_eq!(
        got[0].address.addr(),
        ip("10.0.0.43"),
        "continues after the requested .42"
    );
    assert_eq!(got[1].address.addr(), ip("fd00::7"));
    // The same address twice is one request.
    let got = allocate(&spec, &g, "c3", "eth0", &[ip("10.0.0.9"), ip("10.0.0.9")]).unwrap();
    assert_eq!(got[0].address.addr(), ip("10.0.0.9"));
}

#[test]
fn requested_address_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(
        tmp.path(),
        r#"[[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10", "rangeEnd": "10.0.0.20"}], [{"subnet": "fd00::/120"}]]"#,
    );
    let store = Store::open(&spec.data_dir, "net").unwrap();
    let g = store.lock().unwrap();

    let err = allocate(&spec, &g, "c", "eth0", &[ip("10.0.0.5")]).unwrap_err();
    assert!(matches!(err, IpamError::RequestedNotInRange { ip: i, .. } if i == ip("10.0.0.5")));
    assert_eq!(
        err.to_string(),
        "requested address 10.0.0.5 lies in no configured range (10.0.0.10-10.0.0.20; fd00::1-fd00::ff)"
    );

    let err = allocate(&spec, &g, "c", "eth0", &[ip("10.0.0.11"), ip("10.0.0.12")]).unwrap_err();
    assert!(
        matches!(err, IpamError::MultipleRequestedInSet { range_set: 0, .. }),
        "{err}"
    );

    let err = allocate(&spec, &g, "c", "eth0", &[ip("fd00::1")]).unwrap_err();
    assert!(
        matches!(err, IpamError::RequestedIsGateway { range_set: 1, .. }),
        "{err}"
    );

    allocate(&spec, &g, "owner", "net1", &[ip("10.0.0.15")]).unwrap();
    // owner also got fd00::2 in set 1; set 0's .11 is reserved first and
    // must be rolled back when set 1 fails.
    let err = allocate(&spec, &g, "c", "eth0", &[ip("fd00::2"), ip("10.0.0.11")]).unwrap_err();
    assert!(err.is_requested_ip());
    assert_eq!(
        err.to_string(),
        "requested address fd00::2 is already reserved by container owner interface net1"
    );
    assert!(!store.dir().join("10.0.0.11").exists());
    // Nothing of the failed calls is left behind.
    assert_eq!(g.find_by_id("c", "eth0").unwrap(), Vec::<IpAddr>::new());
    assert_eq!(g.reservations().unwrap().len(), 2);
}

#[test]
fn exhaustion_message() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(
        tmp.path(),
        r#"[[{"subnet": "10.244.1.0/24", "rangeStart": "10.244.1.2", "rangeEnd": "10.244.1.3"}]]"#,
    );
    let store = Store::open(&spec.data_dir, "net").unwrap();
    take1(&spec, &store, "a");
    take1(&spec, &store, "b");
    let err = take(&spec, &store, "c").unwrap_err();
    assert!(matches!(
        err,
        IpamError::Exhausted {
            range_set: 0,
            addresses: 2,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "no free address in range set 0 (10.244.1.2-10.244.1.3): all 2 addresses are reserved"
    );
}

#[test]
fn range_of_only_the_gateway_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(
        tmp.path(),
        r#"[[{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.1"}]]"#,
    );
    let store = Store::open(&spec.data_dir, "net").unwrap();
    let err = take(&spec, &store, "a").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free address in range set 0 (10.0.0.1-10.0.0.1): it holds no allocatable address (only the gateway)"
    );
}

#[test]
fn failure_in_a_later_set_rolls_back_earlier_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(
        tmp.path(),
        r#"[[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/126", "rangeEnd": "fd00::2"}]]"#,
    );
    let store = Store::open(&spec.data_dir, "net").unwrap();
    take(&spec, &store, "a").unwrap(); // takes fd00::2, the set's only address
    let err = take(&spec, &store, "b").unwrap_err();
    assert!(err.is_exhausted(), "{err}");
    let g = store.lock().unwrap();
    assert_eq!(g.find_by_id("b", "eth0").unwrap(), Vec::<IpAddr>::new());
    assert!(
        !store.dir().join("10.0.0.3").exists(),
        "set 0's address was released"
    );
    assert_eq!(g.reservations().unwrap().len(), 2);
}

#[test]
fn repeated_add_is_refused_like_host_local() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(tmp.path(), r#"[[{"subnet": "10.0.0.0/24"}]]"#);
    let store = Store::open(&spec.data_dir, "net").unwrap();
    take1(&spec, &store, "c1");
    let err = take(&spec, &store, "c1").unwrap_err();
    assert!(
        matches!(err, IpamError::DuplicateAllocation { range_set: 0, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("10.0.0.2 (range set 0) is already allocated to container c1 interface eth0")
    );
    // Another interface of the same container is a different attachment.
    let g = store.lock().unwrap();
    let other = allocate(&spec, &g, "c1", "net1", &[]).unwrap();
    assert_eq!(other[0].address.addr(), ip("10.0.0.3"));
    // A legacy ID-only file counts as held, as in host-local.
    fs::write(store.dir().join("10.0.0.99"), "c2").unwrap();
    let err = allocate(&spec, &g, "c2", "eth0", &[]).unwrap_err();
    assert!(matches!(err, IpamError::DuplicateAllocation { ip: i, .. } if i == ip("10.0.0.99")));
    // Requested addresses are checked too (host-local would hand out a second one).
    let err = allocate(&spec, &g, "c1", "eth0", &[ip("10.0.0.50")]).unwrap_err();
    assert!(
        matches!(err, IpamError::DuplicateAllocation { .. }),
        "{err}"
    );
}

#[test]
fn invalid_attachment_is_refused_before_anything_is_reserved() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(tmp.path(), r#"[[{"subnet": "10.0.0.0/24"}]]"#);
    let store = Store::open(&spec.data_dir, "net").unwrap();
    let g = store.lock().unwrap();
    assert!(
        allocate(&spec, &g, "", "eth0", &[])
            .unwrap_err()
            .is_invalid_argument()
    );
    assert!(
        allocate(&spec, &g, "c", "", &[])
            .unwrap_err()
            .is_invalid_argument()
    );
    assert!(g.reservations().unwrap().is_empty());
}

#[test]
fn gc_keeps_valid_attachments_only() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(tmp.path(), r#"[[{"subnet": "10.0.0.0/24"}]]"#);
    let store = Store::open(&spec.data_dir, "net").unwrap();
    let g = store.lock().unwrap();
    for (id, ifname) in [("keep", "eth0"), ("keep", "net1"), ("gone", "eth0")] {
        allocate(&spec, &g, id, ifname, &[]).unwrap();
    }
    fs::write(store.dir().join("10.0.0.100"), "keep").unwrap(); // legacy, ID still valid
    fs::write(store.dir().join("10.0.0.101"), "stale").unwrap(); // legacy, ID gone
    let valid = vec![("keep".to_string(), "eth0".to_string())];
    let mut released = gc(&g, &valid).unwrap();
    released.sort();
    assert_eq!(released, ["10.0.0.3", "10.0.0.4", "10.0.0.101"].map(ip));
    let left: Vec<_> = g
        .reservations()
        .unwrap()
        .into_iter()
        .map(|r| r.ip)
        .collect();
    assert_eq!(left, ["10.0.0.2", "10.0.0.100"].map(ip));
    assert_eq!(gc(&g, &valid).unwrap(), Vec::<IpAddr>::new());
    assert_eq!(gc(&g, &[]).unwrap().len(), 2);
}

#[test]
fn release_attachment_matches_host_local_del() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_in(
        tmp.path(),
        r#"[[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/120"}]]"#,
    );
    let store = Store::open(&spec.data_dir, "net").unwrap();
    let g = store.lock().unwrap();
    allocate(&spec, &g, "c1", "eth0", &[]).unwrap();
    allocate(&spec, &g, "c1", "net1", &[]).unwrap();
    fs::write(store.dir().join("10.0.0.77"), "c1").unwrap();
    // Dual stack: exact files first, then (second per-set pass) the legacy one.
    let released = release_attachment(&g, "c1", "eth0", spec.range_sets.len()).unwrap();
    assert_eq!(released, ["10.0.0.2", "10.0.0.77", "fd00::2"].map(ip));
    assert_eq!(g.find_by_id("c1", "net1").unwrap().len(), 2);
    assert_eq!(
        release_attachment(&g, "c1", "eth0", spec.range_sets.len()).unwrap(),
        Vec::<IpAddr>::new()
    );
}

#[test]
fn requested_ips_parse_like_host_local() {
    assert_eq!(parse_requested_ip("10.0.0.7").unwrap(), ip("10.0.0.7"));
    assert_eq!(parse_requested_ip("10.0.0.7/24").unwrap(), ip("10.0.0.7"));
    assert_eq!(parse_requested_ip("fd00::7/64").unwrap(), ip("fd00::7"));
    assert_eq!(
        parse_requested_ip("::ffff:10.0.0.7").unwrap(),
        ip("10.0.0.7")
    );
    for bad in ["", "10.0.0", "10.0.0.7/33", "10.0.0.7/", "x/24"] {
        assert!(
            parse_requested_ip(bad).unwrap_err().is_invalid_argument(),
            "{bad:?}"
        );
    }
}
