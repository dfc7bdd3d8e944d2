//! The kube store against faults a real kube-apiserver cannot be made to
//! produce on demand, served by the fake API server (crates/fakekube):
//!
//! - **429 with Retry-After**, as a Status body and as kube-apiserver's
//!   plain-text one (its max-in-flight and priority-and-fairness filters
//!   throttle only under real overload);
//! - **watch connections dropped mid-stream** while bookmarks (every
//!   100 ms here; about a minute on a real server) have moved the watch's
//!   position past a compaction;
//! - **410 Gone as a plain response** to the watch request (the real
//!   server here answers with an ERROR event in the stream, which
//!   kube_store.rs covers against it).
//!
//! Everything else the store does is tested against a real API server in
//! kube_store.rs, kube_tls.rs and kube_rbac.rs.

// Its watch-event helpers (its real API server goes unused here).
#[allow(dead_code)]
mod kube_real;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fakekube::FakeApiServer;
use fakekube::client::call_ok;
use kube_real::{key, next, put_of, quiet};
use serde_json::{Value, json};
use tweedd::store::kube::node::{BACKEND_DATA, BACKEND_TYPE, Networks, PUBLIC_IP};
use tweedd::store::kube::{KubeOptions, KubeStore};
use tweedd::store::{LeaseStore, WatchEvent};

struct Fixture {
    server: FakeApiServer,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let server = FakeApiServer::start("127.0.0.1:0".parse().unwrap(), Some("s3cret".into()))
            .expect("fake API server");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig(Some("s3cret"))).unwrap();
        Fixture {
            server,
            _dir: dir,
            kubeconfig,
        }
    }

    /// Bookmarks every 100 ms instead of every second.
    fn with_fast_bookmarks() -> Fixture {
        let f = Fixture::new();
        f.admin(
            "POST",
            "/admin/settings",
            Some(json!({"bookmarkIntervalMs": 100})),
        );
        f
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    async fn store(&self, node: &str) -> KubeStore {
        KubeStore::connect(KubeOptions {
            node_name: node.into(),
            kubeconfig: Some(self.kubeconfig.clone()),
            flannel_compat: false,
            networks: Networks {
                ipv4: Some("10.244.0.0/16".parse().unwrap()),
                ipv6: None,
            },
        })
        .await
        .expect("kube store")
    }

    fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call_ok(self.addr(), method, path, body.as_ref()).expect("admin call")
    }

    fn add_node(&self, name: &str, cidrs: &[&str]) {
        self.admin(
            "POST",
            "/admin/nodes",
            Some(json!({"name": name, "podCIDRs": cidrs})),
        );
    }

    /// Annotates a node the way a peer's agent does: through its status
    /// subresource, with the bearer token (raw HTTP; throttled, it waits
    /// and tries again, as kubectl does).
    fn annotate(&self, name: &str, ip: &str, mac: &str) {
        use std::io::{Read, Write};
        let payload = json!({"metadata": {"annotations": {
            BACKEND_TYPE: "vxlan",
            BACKEND_DATA: json!({"VNI": 1, "VtepMAC": mac}).to_string(),
            PUBLIC_IP: ip,
        }}})
        .to_string();
        loop {
            let mut s = std::net::TcpStream::connect(self.addr()).unwrap();
            write!(
                s,
                "PATCH /api/v1/nodes/{name}/status HTTP/1.1\r\nHost: fake\r\nConnection: close\r\nAuthorization: Bearer s3cret\r\nContent-Type: application/merge-patch+json\r\nContent-Length: {}\r\n\r\n{payload}",
                payload.len()
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            if out.starts_with("HTTP/1.1 429") {
                std::thread::sleep(Duration::from_millis(1100));
                continue;
            }
            assert!(out.starts_with("HTTP/1.1 200"), "{out}");
            return;
        }
    }

    fn stats(&self) -> Value {
        self.admin("GET", "/admin/stats", None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resumes_after_dropped_connections_without_replay() {
    let f = Fixture::with_fast_bookmarks();
    f.add_node("n2", &["10.244.2.0/24"]);
    let store = f.store("n1").await;
    let snap = store.list().await.unwrap();
    let mut rx = store.watch(snap.revision).await.unwrap();
    f.annotate("n2", "198.18.0.2", "02:00:00:00:00:02");
    put_of(next(&mut rx, Duration::from_secs(5)).await);

    // Other resources are written (the revision moves on, no Node event):
    // only bookmarks move the watch's position there, so that after a
    // compaction and a dropped connection it resumes without a 410 (a
    // watcher ignoring bookmarks would get Gone and ask for a Resync).
    f.admin("POST", "/admin/bump", Some(json!({"by": 10})));
    tokio::time::sleep(Duration::from_millis(400)).await;
    f.admin("POST", "/admin/compact?closeWatches=true", None);
    quiet(&mut rx, Duration::from_millis(500)).await;

    for i in 4..7 {
        f.admin("POST", "/admin/close-watches", None);
        f.add_node(&format!("n{i}"), &[&format!("10.244.{i}.0/24")]);
        f.annotate(
            &format!("n{i}"),
            &format!("198.18.0.{i}"),
            &format!("02:00:00:00:00:0{i}"),
        );
        let l = put_of(next(&mut rx, Duration::from_secs(5)).await);
        assert_eq!(l.attrs.node_name, format!("n{i}"));
        quiet(&mut rx, Duration::from_millis(300)).await;
    }
    let stats = f.stats();
    assert!(stats["requests"]["watch"].as_u64().unwrap() >= 5, "{stats}");
}

/// The watch asked for a revision that was compacted away, and the server
/// says so with a 410 response rather than an ERROR event: the store
/// relists, sends one Resync, and goes on without replaying what the
/// receiver's list already holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_as_a_410_response_resyncs() {
    let f = Fixture::new();
    f.admin("POST", "/admin/settings", Some(json!({"goneAs": "status"})));
    f.add_node("n2", &["10.244.2.0/24"]);
    let store = f.store("n1").await;
    let snap = store.list().await.unwrap();
    // Changes the watcher will never see as events...
    f.annotate("n2", "198.18.0.2", "02:00:00:00:00:02");
    f.add_node("n3", &["10.244.3.0/24"]);
    f.annotate("n3", "198.18.0.3", "02:00:00:00:00:03");
    f.admin("POST", "/admin/compact", None);
    let mut rx = store.watch(snap.revision).await.unwrap();
    assert_eq!(
        next(&mut rx, Duration::from_secs(5)).await,
        Some(WatchEvent::Resync)
    );
    // ...because they are in the list the receiver makes now.
    let again = store.list().await.unwrap();
    assert_eq!(again.leases.len(), 2);
    quiet(&mut rx, Duration::from_millis(500)).await;
    f.add_node("n4", &["10.244.4.0/24"]);
    f.annotate("n4", "198.18.0.4", "02:00:00:00:00:04");
    let l = put_of(next(&mut rx, Duration::from_secs(5)).await);
    assert_eq!(l.key, key("10.244.4.0-24"));
    quiet(&mut rx, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_requests_wait_for_retry_after() {
    let f = Fixture::new();
    f.add_node("n2", &["10.244.2.0/24"]);
    f.annotate("n2", "198.18.0.2", "02:00:00:00:00:02");
    let store = f.store("n1").await;

    // A Status body and kube-apiserver's plain-text one: both are waited
    // out for as long as Retry-After says, then the call succeeds.
    for plain in [false, true] {
        f.admin(
            "POST",
            "/admin/throttle",
            Some(json!({"requests": 2, "retryAfterSeconds": 1, "plainText": plain})),
        );
        let t = Instant::now();
        let snap = store.list().await.expect("list after throttling");
        assert_eq!(snap.leases.len(), 1);
        assert!(
            t.elapsed() >= Duration::from_millis(1900),
            "retried after {:?}, before Retry-After",
            t.elapsed()
        );
    }
    assert_eq!(f.stats()["requests"]["throttled"], 4);

    // A watch reconnecting into throttling catches up without loss.
    let snap = store.list().await.unwrap();
    let mut rx = store.watch(snap.revision).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    f.admin(
        "POST",
        "/admin/throttle",
        Some(json!({"requests": 3, "retryAfterSeconds": 1})),
    );
    f.admin("POST", "/admin/close-watches", None);
    f.add_node("n3", &["10.244.3.0/24"]);
    f.annotate("n3", "198.18.0.3", "02:00:00:00:00:03");
    let l = put_of(next(&mut rx, Duration::from_secs(15)).await);
    assert_eq!(l.key, key("10.244.3.0-24"));
    quiet(&mut rx, Duration::from_millis(300)).await;
}
