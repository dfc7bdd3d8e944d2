//! The etcd lease store against a real etcd (Debian's etcd-server 3.4).
//!
//! Every test creates its own namespace, runs etcd inside it on 127.0.0.1,
//! and runs its own tokio runtime on a thread that entered the namespace
//! (threads inherit the namespace of the thread that creates them, so the
//! runtime's workers and every client socket live there too): nothing
//! touches the host's network, and tests run in parallel without sharing
//! ports.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tweed_netlink::NetNs;
use tweed_testkit::TestNs;
use tweed_testkit::etcd::{EtcdOpts, EtcdServer};
use tweedd::lease::{Lease, LeaseAttrs, LeaseKey};
use tweedd::store::etcd::{EtcdOptions, EtcdStore};
use tweedd::store::{Created, LeaseStore, StoreError, WatchEvent};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PREFIX: &str = "/coreos.com/network";

/// Which kind of error a case expects.
type Check = fn(&StoreError) -> bool;

/// A namespace with etcd running in it. Field order matters: etcd is
/// killed before its namespace goes.
struct Lab {
    etcd: EtcdServer,
    ns: TestNs,
}

fn lab(tag: &str, opts: EtcdOpts) -> Lab {
    init_tracing();
    let ns = TestNs::new(tag);
    let etcd = EtcdServer::start(&ns.name, LOCALHOST, opts);
    Lab { etcd, ns }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tweedd=info".into()),
        )
        .try_init();
}

impl Lab {
    /// Runs `body` inside the lab's namespace (see [`run_in`]).
    fn run<'a, F>(&'a mut self, body: impl FnOnce(&'a mut EtcdServer) -> F + Send)
    where
        F: Future<Output = ()> + 'a,
    {
        run_in(&self.ns, &mut self.etcd, body);
    }
}

/// Runs `body(state)` on a multi-threaded runtime built on a thread that
/// entered `ns`. Two workers, so watcher tasks keep running while the body
/// blocks on etcdctl.
fn run_in<'a, S: Send, F>(ns: &TestNs, state: &'a mut S, body: impl FnOnce(&'a mut S) -> F + Send)
where
    F: Future<Output = ()> + 'a,
{
    let ns = NetNs::named(&ns.name).expect("open namespace");
    std::thread::scope(|s| {
        s.spawn(move || {
            ns.run(|| {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(body(state));
            })
            .expect("enter namespace");
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    });
}

fn url(etcd: &EtcdServer) -> String {
    format!("etcd://{}", etcd.client_addr())
}

async fn connect(etcd: &EtcdServer) -> EtcdStore {
    EtcdStore::connect(&url(etcd), EtcdOptions::default())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn attrs(node: &str, ip: &str, mac: &str) -> LeaseAttrs {
    LeaseAttrs {
        public_ip: Some(ip.parse().expect("ip")),
        public_ipv6: None,
        backend_type: "vxlan".into(),
        backend_data: json!({"VNI": 1, "VtepMAC": mac}).into(),
        backend_v6_data: tweedd::lease::BackendData::null(),
        node_name: node.into(),
        segment_macs: Default::default(),
        wire_ends: Default::default(),
    }
}

fn lease(key: &str, node: &str) -> Lease {
    let n: u8 = node.bytes().map(|b| b % 200).fold(0, u8::wrapping_add);
    Lease {
        key: key.parse().expect("key"),
        attrs: attrs(
            node,
            &format!("198.18.0.{}", n.max(1)),
            &format!("02:00:00:00:00:{n:02x}"),
        ),
        expires: None,
    }
}

fn key(s: &str) -> LeaseKey {
    s.parse().expect("key")
}

async fn create_ok(store: &EtcdStore, l: &Lease, ttl: Duration) -> Lease {
    match store.create(l, ttl).await.expect("create") {
        Created::Yes(l) => l,
        Created::Taken => panic!("{} reported taken", l.key),
    }
}

/// The next event, or a panic naming what was awaited.
async fn next_event(
    rx: &mut mpsc::Receiver<WatchEvent>,
    within: Duration,
    what: &str,
) -> WatchEvent {
    match tokio::time::timeout(within, rx.recv()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("watch channel closed while waiting for {what}"),
        Err(_) => panic!("no event within {within:?} while waiting for {what}"),
    }
}

/// Asserts nothing arrives for `quiet`.
async fn assert_quiet(rx: &mut mpsc::Receiver<WatchEvent>, quiet: Duration) {
    if let Ok(ev) = tokio::time::timeout(quiet, rx.recv()).await {
        panic!("unexpected event {ev:?}");
    }
}

fn put_key(ev: &WatchEvent) -> Option<LeaseKey> {
    match ev {
        WatchEvent::Put(l) => Some(l.key),
        _ => None,
    }
}

/// etcdctl's view of one key: (value, etcd lease id).
fn etcdctl_get(etcd: &EtcdServer, k: &str) -> Option<(String, i64)> {
    let out = etcd.etcdctl_ok(&["get", k, "-w", "json"]);
    let v: Value = serde_json::from_str(&out).expect("etcdctl json");
    let kv = v["kvs"].get(0)?;
    let b64 = kv["value"].as_str().expect("value");
    let value = String::from_utf8(base64_decode(b64)).expect("utf-8 value");
    Some((value, kv["lease"].as_i64().unwrap_or(0)))
}

/// etcdctl -w json prints values in base64; a few lines beat a dependency.
fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `etcdctl lease timetolive` → (remaining, granted) seconds.
fn lease_ttl(etcd: &EtcdServer, id: i64) -> (i64, i64) {
    let out = etcd.etcdctl_ok(&["lease", "timetolive", &format!("{id:x}"), "-w", "json"]);
    let v: Value = serde_json::from_str(&out).expect("etcdctl json");
    (
        v["ttl"].as_i64().expect("ttl"),
        v["granted-ttl"].as_i64().expect("granted-ttl"),
    )
}

#[test]
fn create_is_exclusive_among_ten_racing_clients() {
    let mut lab = lab("etcd-race", EtcdOpts::default());
    lab.run(|etcd| async move {
        let ttl = Duration::from_secs(60);
        let mut stores = Vec::new();
        for _ in 0..10 {
            stores.push(connect(etcd).await);
        }
        // Ten nodes, one key: exactly one wins.
        let contenders = stores.iter().enumerate().map(|(i, s)| {
            let l = lease("10.244.1.0-24", &format!("node{i}"));
            async move { s.create(&l, ttl).await.expect("create") }
        });
        let results = futures::future::join_all(contenders).await;
        let winners = results
            .iter()
            .filter(|r| matches!(r, Created::Yes(_)))
            .count();
        assert_eq!(winners, 1, "{results:?}");

        // Ten nodes, ten keys: all win.
        let pickers = stores.iter().enumerate().map(|(i, s)| {
            let l = lease(&format!("10.244.{}.0-24", 10 + i), &format!("node{i}"));
            async move { s.create(&l, ttl).await.expect("create") }
        });
        let results = futures::future::join_all(pickers).await;
        assert!(
            results.iter().all(|r| matches!(r, Created::Yes(_))),
            "{results:?}"
        );

        let snap = stores[0].list().await.expect("list");
        assert_eq!(snap.leases.len(), 11);
        assert!(snap.revision > 0);
        // The loser's etcd leases were revoked: only the 11 in use remain.
        let leases = etcd.etcdctl_ok(&["lease", "list"]);
        assert!(
            leases.starts_with("found 11 leases"),
            "leftover etcd leases: {leases}"
        );
    });
}

#[test]
fn renewed_leases_outlive_their_ttl_and_abandoned_ones_expire() {
    let mut lab = lab("etcd-ttl", EtcdOpts::default());
    lab.run(|etcd| async move {
        let store = connect(etcd).await;
        let ttl = Duration::from_secs(3);
        let snap = store.list().await.expect("list");
        let mut rx = store.watch(snap.revision).await.expect("watch");
        let kept = lease("10.244.1.0-24", "kept");
        let dropped = lease("10.244.2.0-24", "dropped");
        create_ok(&store, &kept, ttl).await;
        create_ok(&store, &dropped, ttl).await;
        for _ in 0..2 {
            let ev = next_event(&mut rx, Duration::from_secs(3), "the creates").await;
            assert!(put_key(&ev).is_some(), "{ev:?}");
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let renewed = store.renew(&kept, ttl).await.expect("renew");
            assert!(renewed.expires.is_some());
        }
        // 5 s after creation with a 3 s TTL: one lives, one is gone, and
        // the watcher saw etcd expire it.
        let ev = next_event(&mut rx, Duration::from_secs(3), "the expiry").await;
        assert_eq!(ev, WatchEvent::Delete(dropped.key));
        let keys: Vec<_> = store
            .list()
            .await
            .expect("list")
            .leases
            .iter()
            .map(|l| l.key)
            .collect();
        assert_eq!(keys, [kept.key]);
        assert!(matches!(
            store.renew(&dropped, ttl).await,
            Err(StoreError::LeaseLost(k)) if k == dropped.key
        ));
        // The expired key is free again.
        create_ok(&store, &lease("10.244.2.0-24", "other"), ttl).await;
    });
}

#[test]
fn renew_checks_the_owner_and_updates_record_and_ttl() {
    let mut lab = lab("etcd-renew", EtcdOpts::default());
    lab.run(|etcd| async move {
        let store = connect(etcd).await;
        let ttl = Duration::from_secs(30);
        let k = format!("{PREFIX}/subnets/10.244.3.0-24");
        let mine = lease("10.244.3.0-24", "a");
        create_ok(&store, &mine, ttl).await;

        // A new VTEP MAC (reboot): renew rewrites the record, same etcd lease.
        let (_, id) = etcdctl_get(etcd, &k).expect("key");
        let mut rebooted = mine.clone();
        rebooted.attrs.backend_data = json!({"VNI": 1, "VtepMAC": "02:aa:bb:cc:dd:ee"}).into();
        store.renew(&rebooted, ttl).await.expect("renew");
        let (value, id2) = etcdctl_get(etcd, &k).expect("key");
        assert!(value.contains("02:aa:bb:cc:dd:ee"), "{value}");
        assert_eq!(id, id2);

        // Another TTL: a fresh etcd lease of that length.
        store
            .renew(&rebooted, Duration::from_secs(120))
            .await
            .expect("renew");
        let (_, id3) = etcdctl_get(etcd, &k).expect("key");
        assert_ne!(id3, id);
        assert_eq!(lease_ttl(etcd, id3).1, 120);

        // Taken over by another node (ours expired, theirs created): ours
        // is lost, and renewing does not overwrite theirs.
        store.delete(&mine.key).await.expect("delete");
        let theirs = lease("10.244.3.0-24", "b");
        create_ok(&store, &theirs, ttl).await;
        assert!(matches!(
            store.renew(&rebooted, ttl).await,
            Err(StoreError::LeaseLost(key)) if key == mine.key
        ));
        let (value, _) = etcdctl_get(etcd, &k).expect("key");
        assert_eq!(
            serde_json::from_str::<LeaseAttrs>(&value).expect("record"),
            theirs.attrs
        );

        // Gone entirely: lost too.
        store.delete(&theirs.key).await.expect("delete");
        assert!(matches!(
            store.renew(&theirs, ttl).await,
            Err(StoreError::LeaseLost(_))
        ));

        // Ours, but written without an etcd lease (by hand, or by a tool):
        // renew attaches one, so the key can expire again.
        let plain = serde_json::to_string(&mine.attrs).expect("json");
        etcd.etcdctl_ok(&["put", &k, &plain]);
        store.renew(&mine, ttl).await.expect("renew");
        let (_, id4) = etcdctl_get(etcd, &k).expect("key");
        assert_ne!(id4, 0);
        assert_eq!(lease_ttl(etcd, id4).1, 30);
    });
}

#[test]
fn list_and_watch_see_each_others_changes_and_survive_foreign_junk() {
    let mut lab = lab("etcd-watch", EtcdOpts::default());
    lab.run(|etcd| async move {
        let writer = connect(etcd).await;
        let reader = connect(etcd).await;
        let ttl = Duration::from_secs(60);
        let snap = reader.list().await.expect("list");
        assert!(snap.leases.is_empty());
        let mut rx = reader.watch(snap.revision).await.expect("watch");

        let a = lease("10.244.1.0-24", "a");
        create_ok(&writer, &a, ttl).await;
        let ev = next_event(&mut rx, Duration::from_secs(3), "create").await;
        assert_eq!(ev, WatchEvent::Put(a.clone()));

        let mut a2 = a.clone();
        a2.attrs.backend_data = json!({"VNI": 1, "VtepMAC": "02:00:00:00:00:99"}).into();
        writer.renew(&a2, ttl).await.expect("renew");
        let ev = next_event(&mut rx, Duration::from_secs(3), "update").await;
        assert_eq!(ev, WatchEvent::Put(a2.clone()));

        // A foreign writer's junk: a key that is not a subnet (skipped), and
        // a subnet key whose value is not a record (reported as gone,
        // as list does not show it either).
        etcd.etcdctl_ok(&["put", &format!("{PREFIX}/subnets/not-a-subnet"), "{}"]);
        etcd.etcdctl_ok(&["put", &format!("{PREFIX}/subnets/10.244.9.0-24"), "garbage"]);
        let ev = next_event(&mut rx, Duration::from_secs(3), "junk").await;
        assert_eq!(ev, WatchEvent::Delete(key("10.244.9.0-24")));

        let listed = reader.list().await.expect("list");
        assert_eq!(listed.leases.len(), 1);
        assert_eq!(listed.leases[0].attrs, a2.attrs);

        // The watcher is still alive after the junk.
        writer.delete(&a.key).await.expect("delete");
        let ev = next_event(&mut rx, Duration::from_secs(3), "delete").await;
        assert_eq!(ev, WatchEvent::Delete(a.key));

        // A watch from the list's revision starts exactly there.
        let b = lease("10.244.2.0-24", "b");
        create_ok(&writer, &b, ttl).await;
        let snap = reader.list().await.expect("list");
        let mut rx2 = reader.watch(snap.revision).await.expect("watch");
        let c = lease("10.244.3.0-24", "c");
        create_ok(&writer, &c, ttl).await;
        let ev = next_event(&mut rx2, Duration::from_secs(3), "c").await;
        assert_eq!(put_key(&ev), Some(c.key));
        assert_quiet(&mut rx2, Duration::from_millis(300)).await;

        // Dropping the receiver ends the watcher's task (nothing to
        // observe directly but that dropping does not hang or panic).
        drop(rx2);
    });
}

#[test]
fn a_watcher_behind_a_compaction_resyncs_then_continues() {
    let mut lab = lab("etcd-compact", EtcdOpts::default());
    lab.run(|etcd| async move {
        let store = connect(etcd).await;
        let ttl = Duration::from_secs(60);
        let stale = store.list().await.expect("list");
        for i in 1..=3 {
            create_ok(
                &store,
                &lease(&format!("10.244.{i}.0-24"), &format!("n{i}")),
                ttl,
            )
            .await;
        }
        store.delete(&key("10.244.1.0-24")).await.expect("delete");
        let rev = etcd.revision();
        etcd.etcdctl_ok(&["compact", &rev.to_string()]);

        // The watcher lagged behind the compaction: it cannot replay, so
        // it asks for a resync, then carries on from the present.
        let mut rx = store.watch(stale.revision).await.expect("watch");
        let ev = next_event(&mut rx, Duration::from_secs(3), "resync").await;
        assert_eq!(ev, WatchEvent::Resync);
        let relisted = store.list().await.expect("list");
        assert_eq!(relisted.leases.len(), 2);
        let d = lease("10.244.4.0-24", "n4");
        create_ok(&store, &d, ttl).await;
        let ev = next_event(&mut rx, Duration::from_secs(3), "event after resync").await;
        assert_eq!(ev, WatchEvent::Put(d.clone()));
        assert_quiet(&mut rx, Duration::from_millis(300)).await;
    });
}

#[test]
fn a_watcher_resumes_after_an_etcd_restart_without_gaps_or_repeats() {
    let mut lab = lab("etcd-restart", EtcdOpts::default());
    lab.run(|etcd| async move {
        let watcher_store = connect(etcd).await;
        let writer = connect(etcd).await;
        let ttl = Duration::from_secs(60);
        let snap = watcher_store.list().await.expect("list");
        let mut rx = watcher_store.watch(snap.revision).await.expect("watch");
        let a = lease("10.244.1.0-24", "a");
        create_ok(&writer, &a, ttl).await;
        let ev = next_event(&mut rx, Duration::from_secs(3), "a").await;
        assert_eq!(put_key(&ev), Some(a.key));

        etcd.stop();
        // While etcd is down: the store says so, and does not hang.
        let t = Instant::now();
        match writer.list().await {
            Err(StoreError::Unavailable(msg)) => eprintln!("while down: {msg}"),
            other => panic!("list with etcd down: {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(12));
        tokio::time::sleep(Duration::from_secs(2)).await;
        etcd.start_again();

        // Changes right after the restart (retrying until the writer's
        // connection is back, as the agent would).
        let b = lease("10.244.2.0-24", "b");
        let created = eventually(Duration::from_secs(10), "create b", || {
            writer.create(&b, ttl)
        })
        .await;
        assert!(matches!(created, Created::Yes(_)), "{created:?}");
        writer.delete(&a.key).await.expect("delete");

        let ev = next_event(&mut rx, Duration::from_secs(10), "b after restart").await;
        assert_eq!(put_key(&ev), Some(b.key), "{ev:?}");
        let ev = next_event(&mut rx, Duration::from_secs(3), "delete of a").await;
        assert_eq!(ev, WatchEvent::Delete(a.key));
        // No replay of a's creation, no resync: exactly where it left off.
        assert_quiet(&mut rx, Duration::from_millis(500)).await;
    });
}

/// Retries `op` until it succeeds, for up to `within` (a cluster electing a
/// new leader, a member coming back).
async fn eventually<T, Fut>(within: Duration, what: &str, op: impl Fn() -> Fut) -> T
where
    Fut: Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + within;
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what}: retrying after: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what}: still failing after {within:?}: {e}"),
        }
    }
}

#[test]
fn a_cluster_keeps_serving_when_the_member_in_use_dies() {
    init_tracing();
    let ns = TestNs::new("etcd-cluster");
    let mut members = EtcdServer::start_cluster(&ns.name, LOCALHOST, 3, EtcdOpts::default());
    run_in(&ns, &mut members, |members| async move {
        let addrs: Vec<String> = members.iter().map(|m| m.client_addr()).collect();
        let url = format!("etcd://{}", addrs.join(","));
        let watcher_store = EtcdStore::connect(&url, EtcdOptions::default())
            .await
            .expect("connect");
        let writer = EtcdStore::connect(&url, EtcdOptions::default())
            .await
            .expect("connect");
        let ttl = Duration::from_secs(60);
        let snap = watcher_store.list().await.expect("list");
        let mut rx = watcher_store.watch(snap.revision).await.expect("watch");
        let a = lease("10.244.1.0-24", "a");
        create_ok(&writer, &a, ttl).await;
        let ev = next_event(&mut rx, Duration::from_secs(3), "a").await;
        assert_eq!(put_key(&ev), Some(a.key));

        // Both stores use the first member; it dies. Requests and the watch
        // move to the others (after a new election if it led the cluster).
        members[0].stop();
        let b = lease("10.244.2.0-24", "b");
        let created = eventually(Duration::from_secs(15), "create b", || {
            writer.create(&b, ttl)
        })
        .await;
        assert!(matches!(created, Created::Yes(_)), "{created:?}");
        eventually(Duration::from_secs(5), "delete a", || writer.delete(&a.key)).await;
        let ev = next_event(&mut rx, Duration::from_secs(10), "b from another member").await;
        assert_eq!(put_key(&ev), Some(b.key), "{ev:?}");
        let ev = next_event(&mut rx, Duration::from_secs(3), "delete of a").await;
        assert_eq!(ev, WatchEvent::Delete(a.key));
        assert_quiet(&mut rx, Duration::from_millis(500)).await;
        let keys: Vec<_> = watcher_store
            .list()
            .await
            .expect("list")
            .leases
            .iter()
            .map(|l| l.key)
            .collect();
        assert_eq!(keys, [b.key]);
    });
}

#[test]
fn tls_with_client_certificates() {
    let mut lab = lab(
        "etcd-tls",
        EtcdOpts {
            tls: true,
            ..EtcdOpts::default()
        },
    );
    lab.run(|etcd| async move {
        let tls = etcd.tls().expect("tls files").clone();
        let url = format!("etcds://{}", etcd.client_addr());
        let good = EtcdOptions {
            ca_file: Some(tls.ca_cert.clone()),
            cert_file: Some(tls.client_cert.clone()),
            key_file: Some(tls.client_key.clone()),
            connect_timeout: Duration::from_secs(3),
            ..EtcdOptions::default()
        };
        let store = EtcdStore::connect(&url, good.clone())
            .await
            .expect("connect with TLS");
        create_ok(
            &store,
            &lease("10.244.1.0-24", "a"),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(store.list().await.expect("list").leases.len(), 1);
        // flannel's https:// endpoint form works too.
        let https = format!("https://{}", etcd.client_addr());
        EtcdStore::connect(&https, good.clone())
            .await
            .expect("connect https://");

        // Plain gRPC against a TLS server, an unknown server CA, no client
        // certificate, and a certificate from a CA the server does not
        // trust: all refused quickly, each with a pointer to the cause.
        let plain = EtcdOptions {
            connect_timeout: Duration::from_secs(3),
            ..EtcdOptions::default()
        };
        let rogue_ca = EtcdOptions {
            ca_file: Some(tls.rogue_ca_cert.clone()),
            ..good.clone()
        };
        let no_cert = EtcdOptions {
            cert_file: None,
            key_file: None,
            ..good.clone()
        };
        let rogue_cert = EtcdOptions {
            cert_file: Some(tls.rogue_client_cert.clone()),
            key_file: Some(tls.rogue_client_key.clone()),
            ..good.clone()
        };
        // A server certificate we cannot verify is a configuration error;
        // the server refusing ours is reported as unavailable (it may be
        // seen only as a closed connection) with the likely cause named.
        let config: Check = |e| matches!(e, StoreError::Config(_));
        let unavailable: Check = |e| matches!(e, StoreError::Unavailable(_));
        let cases = [
            (
                url.replace("etcds", "etcd"),
                plain,
                "use etcds://",
                unavailable,
            ),
            (url.clone(), rogue_ca, "certificate was rejected", config),
            (url.clone(), no_cert, "client certificate", unavailable),
            (url.clone(), rogue_cert, "client certificate", unavailable),
        ];
        for (u, opts, why, kind) in cases {
            let t = Instant::now();
            let err = EtcdStore::connect(&u, opts)
                .await
                .expect_err("connection must be refused");
            eprintln!("{err}");
            assert!(err.to_string().contains(why), "{err}");
            assert!(kind(&err), "{err:?}");
            assert!(
                t.elapsed() < Duration::from_secs(4),
                "took {:?}",
                t.elapsed()
            );
        }
    });
}

#[test]
fn username_and_password() {
    let mut lab = lab(
        "etcd-auth",
        EtcdOpts {
            root_password: Some("s3cret".into()),
            ..EtcdOpts::default()
        },
    );
    lab.run(|etcd| async move {
        let url = url(etcd);
        let creds = |user: &str, pw: &str| EtcdOptions {
            username: Some(user.into()),
            password: Some(pw.into()),
            connect_timeout: Duration::from_secs(3),
            ..EtcdOptions::default()
        };
        let store = EtcdStore::connect(&url, creds("root", "s3cret"))
            .await
            .expect("connect");
        let snap = store.list().await.expect("list");
        let mut rx = store.watch(snap.revision).await.expect("watch");
        let a = lease("10.244.1.0-24", "a");
        create_ok(&store, &a, Duration::from_secs(60)).await;
        let ev = next_event(&mut rx, Duration::from_secs(3), "a").await;
        assert_eq!(put_key(&ev), Some(a.key));

        // A restart invalidates etcd's auth tokens: requests and the watch
        // must authenticate again by themselves.
        etcd.stop();
        etcd.start_again();
        let b = lease("10.244.2.0-24", "b");
        let ttl = Duration::from_secs(60);
        eventually(Duration::from_secs(10), "create b", || {
            store.create(&b, ttl)
        })
        .await;
        let ev = next_event(&mut rx, Duration::from_secs(10), "b after restart").await;
        assert_eq!(put_key(&ev), Some(b.key));

        for (opts, why) in [
            (creds("root", "wrong"), "authentication failed"),
            (creds("nobody", "s3cret"), "authentication failed"),
            (EtcdOptions::default(), "user name is empty"),
        ] {
            match EtcdStore::connect(&url, opts).await {
                Err(StoreError::Config(msg)) => {
                    assert!(msg.contains(why), "{msg}");
                    assert!(msg.contains("credentials"), "{msg}");
                }
                other => panic!("expected a credentials error, got {other:?}"),
            }
        }
    });
}

#[test]
fn flannel_records_interoperate_both_ways() {
    let mut lab = lab("etcd-flannel", EtcdOpts::default());
    lab.run(|etcd| async move {
        let store = connect(etcd).await;
        let flannel = r#"{"PublicIP":"198.18.0.9","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"9e:4b:5a:11:22:33"}}"#;
        etcd.etcdctl_ok(&["put", &format!("{PREFIX}/subnets/10.244.7.0-24"), flannel]);
        let dual = r#"{"PublicIP":"198.18.0.10","PublicIPv6":"fd00::10","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"9e:4b:5a:11:22:34"},"BackendV6Data":{"VNI":1,"VtepMAC":"9e:4b:5a:11:22:35"}}"#;
        etcd.etcdctl_ok(&[
            "put",
            &format!("{PREFIX}/subnets/10.244.8.0-24&fd00:10:244:8::-64"),
            dual,
        ]);
        let snap = store.list().await.expect("list");
        assert_eq!(snap.leases.len(), 2);
        let f = &snap.leases[0];
        assert_eq!(f.key, key("10.244.7.0-24"));
        assert_eq!(f.attrs.public_ip, Some("198.18.0.9".parse().expect("ip")));
        assert_eq!(
            f.attrs.backend_data.get_str("VtepMAC").as_deref(),
            Some("9e:4b:5a:11:22:33")
        );
        assert!(f.attrs.node_name.is_empty());
        let d = &snap.leases[1];
        assert_eq!(d.key, key("10.244.8.0-24&fd00:10:244:8::-64"));
        assert_eq!(d.attrs.public_ipv6, Some("fd00::10".parse().expect("ip")));
        assert_eq!(
            d.attrs.backend_v6_data.get_str("VtepMAC").as_deref(),
            Some("9e:4b:5a:11:22:35")
        );

        // Ours, as flannel (via etcdctl) sees it: flannel's record with a
        // NodeName flannel ignores, under an etcd lease with our TTL.
        let ours = lease("10.244.1.0-24&fd00:10:244:1::-64", "tweed-node");
        create_ok(&store, &ours, Duration::from_secs(3600)).await;
        let k = format!("{PREFIX}/subnets/10.244.1.0-24&fd00:10:244:1::-64");
        let (value, id) = etcdctl_get(etcd, &k).expect("our key");
        let v: Value = serde_json::from_str(&value).expect("json");
        let expected = json!({
            "PublicIP": ours.attrs.public_ip.expect("ip").to_string(),
            "BackendType": "vxlan",
            "BackendData": {"VNI": 1, "VtepMAC": ours.attrs.backend_data.get("VtepMAC")},
            "NodeName": "tweed-node",
        });
        assert_eq!(v, expected);
        let (remaining, granted) = lease_ttl(etcd, id);
        assert_eq!(granted, 3600);
        assert!(remaining > 3500);

        // flannel's net-conf lives at <prefix>/config.
        assert_eq!(store.network_config().await.expect("config"), None);
        let conf = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;
        etcd.etcdctl_ok(&["put", &format!("{PREFIX}/config"), conf]);
        assert_eq!(store.network_config().await.expect("config").as_deref(), Some(conf));
        let conf2 = r#"{"Network":"10.245.0.0/16","Backend":{"Type":"vxlan","VNI":2}}"#;
        store.put_network_config(conf2).await.expect("put config");
        let (value, _) = etcdctl_get(etcd, &format!("{PREFIX}/config")).expect("config");
        assert_eq!(value, conf2);
        assert!(matches!(
            store.put_network_config("{not json").await,
            Err(StoreError::Config(_))
        ));

        // Another prefix is another store.
        let other = EtcdStore::connect(
            &url(etcd),
            EtcdOptions {
                prefix: "/tweed/network/".into(),
                ..EtcdOptions::default()
            },
        )
        .await
        .expect("connect");
        assert!(other.list().await.expect("list").leases.is_empty());
        create_ok(&other, &lease("10.244.1.0-24", "x"), Duration::from_secs(60)).await;
        assert!(etcdctl_get(etcd, "/tweed/network/subnets/10.244.1.0-24").is_some());
    });
}

#[test]
fn connect_errors_are_classified() {
    let mut lab = lab("etcd-connect", EtcdOpts::default());
    lab.run(|etcd| async move {
        // Nothing listens on this port: unavailable (retry later), quickly.
        let t = Instant::now();
        let opts = EtcdOptions {
            connect_timeout: Duration::from_secs(2),
            ..EtcdOptions::default()
        };
        match EtcdStore::connect("etcd://127.0.0.1:2399", opts).await {
            Err(StoreError::Unavailable(msg)) => eprintln!("{msg}"),
            other => panic!("{other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        // One dead endpoint among live ones does not fail requests.
        let mixed = format!("etcd://127.0.0.1:2399,{}", etcd.client_addr());
        let store = EtcdStore::connect(&mixed, EtcdOptions::default())
            .await
            .expect("connect with one endpoint down");
        for _ in 0..10 {
            store.list().await.expect("list with one endpoint down");
        }
        // Bad URLs are configuration errors before any network traffic.
        for bad in ["etcd://", "etcd://h:1/x", "zk://h:1", "etcd://user:pw@h:1"] {
            assert!(matches!(
                EtcdStore::connect(bad, EtcdOptions::default()).await,
                Err(StoreError::Config(_))
            ));
        }
    });
}
