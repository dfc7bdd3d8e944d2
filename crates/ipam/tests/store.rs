//! The on-disk store: host-local's exact file format, legacy files, locking.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::ip;
use tweed_ipam::{IpamError, Reservation, Store};

#[test]
fn open_creates_network_dir_and_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("a/b"), "net1").unwrap();
    assert_eq!(store.dir(), tmp.path().join("a/b/net1"));
    let mode = fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o700, 0o700);
    assert!(store.dir().join("lock").is_file());
    // Opening again reuses everything.
    Store::open(&tmp.path().join("a/b"), "net1").unwrap();
}

#[test]
fn network_name_must_be_one_path_component() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["", ".", "..", "a/b", "../escape", "nul\0"] {
        match Store::open(tmp.path(), bad) {
            Err(IpamError::InvalidConfig { field, .. }) => assert_eq!(field, "name", "{bad:?}"),
            other => panic!("{bad:?}: expected InvalidConfig, got {other:?}"),
        }
    }
}

#[test]
fn io_errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, "").unwrap();
    let err = Store::open(&file, "net").unwrap_err();
    assert!(err.is_io());
    assert!(
        err.to_string()
            .contains(&file.join("net").display().to_string()),
        "{err}"
    );
}

#[test]
fn reserve_writes_host_local_format() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    let g = store.lock().unwrap();
    assert!(g.reserve(ip("10.0.0.2"), "  abc123 ", "eth0", 0).unwrap());
    assert!(g.reserve(ip("fd00:0:0:1::2"), "abc123", "eth0", 1).unwrap());
    let dir = store.dir();
    assert_eq!(fs::read(dir.join("10.0.0.2")).unwrap(), b"abc123\r\neth0");
    assert_eq!(
        fs::read(dir.join("fd00:0:0:1::2")).unwrap(),
        b"abc123\r\neth0"
    );
    assert_eq!(
        fs::read(dir.join("last_reserved_ip.0")).unwrap(),
        b"10.0.0.2"
    );
    assert_eq!(
        fs::read(dir.join("last_reserved_ip.1")).unwrap(),
        b"fd00:0:0:1::2"
    );
    assert_eq!(g.last_reserved(0).unwrap(), Some(ip("10.0.0.2")));
    assert_eq!(g.last_reserved(1).unwrap(), Some(ip("fd00:0:0:1::2")));
    assert_eq!(g.last_reserved(2).unwrap(), None);
    // Taken: false, and the file is untouched.
    assert!(!g.reserve(ip("10.0.0.2"), "other", "eth0", 0).unwrap());
    assert_eq!(fs::read(dir.join("10.0.0.2")).unwrap(), b"abc123\r\neth0");
    // IPv4-mapped IPv6 is stored under the IPv4 name, as Go does.
    assert!(
        g.reserve(ip("::ffff:10.0.0.3"), "abc123", "eth1", 0)
            .unwrap()
    );
    assert!(dir.join("10.0.0.3").is_file());
}

#[test]
fn ipv6_file_names_follow_rfc5952_like_go() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    let g = store.lock().unwrap();
    for (given, name) in [
        ("FD00:0000:0000:0000:0001:0000:0000:0002", "fd00::1:0:0:2"),
        ("fd00:0:0:1:0:0:0:2", "fd00:0:0:1::2"),
        ("fd00:1:0:1:0:1:0:1", "fd00:1:0:1:0:1:0:1"),
        ("fd00:0:1:0:0:1:0:0", "fd00:0:1::1:0:0"),
    ] {
        assert!(g.reserve(ip(given), "c", "eth0", 0).unwrap());
        assert!(
            store.dir().join(name).is_file(),
            "{given} should be stored as {name}"
        );
    }
}

#[test]
fn reservations_skip_lock_cursor_and_strangers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    let dir = store.dir();
    fs::write(dir.join("10.0.0.9"), "legacyid\n").unwrap();
    fs::write(dir.join("10.0.0.3"), "newid\r\neth1").unwrap();
    fs::write(dir.join("last_reserved_ip.0"), "10.0.0.9").unwrap();
    fs::write(dir.join("README"), "hello").unwrap();
    fs::create_dir(dir.join("10.0.0.50")).unwrap();
    let g = store.lock().unwrap();
    assert_eq!(
        g.reservations().unwrap(),
        vec![
            Reservation {
                ip: ip("10.0.0.3"),
                container_id: "newid".into(),
                ifname: Some("eth1".into())
            },
            Reservation {
                ip: ip("10.0.0.9"),
                container_id: "legacyid".into(),
                ifname: None
            },
        ]
    );
    assert_eq!(
        g.reservation(ip("10.0.0.9")).unwrap().unwrap().container_id,
        "legacyid"
    );
    assert_eq!(g.reservation(ip("10.0.0.10")).unwrap(), None);
}

#[test]
fn release_by_id_matches_ifname_then_falls_back_to_legacy() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    let dir = store.dir().to_path_buf();
    let g = store.lock().unwrap();
    g.reserve(ip("10.0.0.2"), "c1", "eth0", 0).unwrap();
    g.reserve(ip("fd00::2"), "c1", "eth0", 1).unwrap();
    g.reserve(ip("10.0.0.3"), "c1", "eth1", 0).unwrap();
    fs::write(dir.join("10.0.0.4"), "c1").unwrap(); // legacy, same container
    fs::write(dir.join("10.0.0.5"), "c2").unwrap(); // legacy, other container

    // Exact matches exist, so (like host-local) the legacy file stays.
    let mut released = g.release_by_id("c1", "eth0").unwrap();
    released.sort();
    assert_eq!(released, vec![ip("10.0.0.2"), ip("fd00::2")]);
    assert!(dir.join("10.0.0.3").exists() && dir.join("10.0.0.4").exists());

    // No exact match for c2/eth0: the legacy ID-only file goes.
    assert_eq!(g.release_by_id("c2", "eth0").unwrap(), vec![ip("10.0.0.5")]);
    // Nothing left for c2: fine, DEL is idempotent.
    assert_eq!(
        g.release_by_id("c2", "eth0").unwrap(),
        Vec::<std::net::IpAddr>::new()
    );
    assert_eq!(g.release_by_id("c1", "eth1").unwrap(), vec![ip("10.0.0.3")]);
    assert_eq!(
        g.release_by_id(" c1 ", "eth9").unwrap(),
        vec![ip("10.0.0.4")]
    );
    assert!(g.reservations().unwrap().is_empty());
    // The cursor survives releases, as in host-local.
    assert_eq!(g.last_reserved(0).unwrap(), Some(ip("10.0.0.3")));
}

#[test]
fn find_by_id_includes_legacy_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    fs::write(store.dir().join("10.0.0.7"), "c1").unwrap();
    let g = store.lock().unwrap();
    g.reserve(ip("10.0.0.2"), "c1", "eth0", 0).unwrap();
    g.reserve(ip("10.0.0.3"), "c1", "eth1", 0).unwrap();
    assert_eq!(
        g.find_by_id("c1", "eth0").unwrap(),
        vec![ip("10.0.0.2"), ip("10.0.0.7")]
    );
    assert_eq!(
        g.find_by_id("c9", "eth0").unwrap(),
        Vec::<std::net::IpAddr>::new()
    );
}

#[test]
fn release_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    let g = store.lock().unwrap();
    g.reserve(ip("10.0.0.2"), "c1", "eth0", 0).unwrap();
    g.release(ip("10.0.0.2")).unwrap();
    g.release(ip("10.0.0.2")).unwrap();
    assert!(!store.dir().join("10.0.0.2").exists());
}

#[test]
fn bad_ids_and_ifnames_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    let g = store.lock().unwrap();
    for (id, ifname) in [
        ("", "eth0"),
        ("  ", "eth0"),
        ("a\r\nb", "eth0"),
        ("a", ""),
        ("a", "eth 0"),
    ] {
        let err = g.reserve(ip("10.0.0.2"), id, ifname, 0).unwrap_err();
        assert!(err.is_invalid_argument(), "{id:?}/{ifname:?}: {err}");
    }
    assert!(
        g.release_by_id("", "eth0")
            .unwrap_err()
            .is_invalid_argument()
    );
    assert!(g.reservations().unwrap().is_empty());
}

#[test]
fn garbage_cursor_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net").unwrap();
    fs::write(store.dir().join("last_reserved_ip.0"), "not an ip").unwrap();
    fs::write(store.dir().join("last_reserved_ip.1"), "10.0.0.4\n").unwrap();
    let g = store.lock().unwrap();
    assert_eq!(g.last_reserved(0).unwrap(), None);
    assert_eq!(g.last_reserved(1).unwrap(), Some(ip("10.0.0.4")));
}

#[test]
fn lock_excludes_a_second_store() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Store::open(tmp.path(), "net").unwrap();
    let guard = a.lock().unwrap();
    let (tx, rx) = mpsc::channel();
    let path = tmp.path().to_path_buf();
    let t = thread::spawn(move || {
        let b = Store::open(&path, "net").unwrap();
        let _g = b.lock().unwrap();
        tx.send(()).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "second store got the lock while the first held it"
    );
    drop(guard);
    rx.recv_timeout(Duration::from_secs(10))
        .expect("second store gets the lock once it is released");
    t.join().unwrap();
}

/// Found by the ipam_store fuzz target: a file named by another spelling of
/// an address (`fd00:0::7`, `::ffff:10.244.1.7`) counted as that address's
/// reservation, so the address had two owners, and releasing the foreign
/// file's "owner" deleted the real reservation. Only the store's own name
/// for an address counts.
#[test]
fn only_the_canonical_file_name_holds_an_address() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), "net1").unwrap();
    let g = store.lock().unwrap();
    assert!(g.reserve(ip("fd00::7"), "live", "eth0", 0).unwrap());
    assert!(g.reserve(ip("10.244.1.7"), "live", "eth0", 0).unwrap());
    fs::write(store.dir().join("fd00:0::7"), "other\r\neth0").unwrap();
    fs::write(store.dir().join("::ffff:10.244.1.7"), "other\r\neth0").unwrap();

    let owners: Vec<(String, String)> = g
        .reservations()
        .unwrap()
        .into_iter()
        .map(|r| (r.ip.to_string(), r.container_id))
        .collect();
    assert_eq!(
        owners,
        [
            ("10.244.1.7".to_string(), "live".to_string()),
            ("fd00::7".to_string(), "live".to_string())
        ]
    );
    assert!(g.release_by_id("other", "eth0").unwrap().is_empty());
    assert!(store.dir().join("fd00::7").exists());
    assert!(store.dir().join("10.244.1.7").exists());
}
