//! The kube store against the fake API server (crates/fakekube), with the
//! agent's real client code: assignment from podCIDRs, annotations and the
//! NetworkUnavailable condition as the server stores them, list, watch with
//! bookmarks, 410 Gone in both of the server's forms, reconnects and 429
//! throttling — and no event lost or repeated on the way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fakekube::FakeApiServer;
use fakekube::client::call_ok;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tweedd::config::NetConfig;
use tweedd::lease::{Lease, LeaseAttrs, LeaseKey};
use tweedd::leasing::{self, AcquireError};
use tweedd::store::kube::node::{BACKEND_DATA, BACKEND_TYPE, Networks, PUBLIC_IP};
use tweedd::store::kube::{KubeOptions, KubeStore};
use tweedd::store::{Assignment, LeaseStore, WatchEvent};

const TTL: Duration = Duration::from_secs(3600);

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
        self.store_with(node, false).await
    }

    async fn store_with(&self, node: &str, flannel_compat: bool) -> KubeStore {
        KubeStore::connect(KubeOptions {
            node_name: node.into(),
            kubeconfig: Some(self.kubeconfig.clone()),
            flannel_compat,
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

    /// What kube-controller-manager's node IPAM does.
    fn set_pod_cidrs(&self, name: &str, cidrs: &[&str]) {
        self.admin(
            "POST",
            &format!("/admin/nodes/{name}/pod-cidrs"),
            Some(json!({"podCIDRs": cidrs})),
        );
    }

    /// Annotates a node the way a peer's agent does.
    fn annotate(&self, name: &str, ip: &str, mac: &str) {
        let record = json!({"metadata": {"annotations": {
            BACKEND_TYPE: "vxlan",
            BACKEND_DATA: json!({"VNI": 1, "VtepMAC": mac}).to_string(),
            PUBLIC_IP: ip,
        }}});
        self.api_patch(name, "", &record);
    }

    /// A PATCH with the bearer token (raw HTTP, as kubectl would send it;
    /// throttled, it waits and tries again, as kubectl does).
    fn api_patch(&self, name: &str, sub: &str, body: &Value) {
        use std::io::{Read, Write};
        let payload = body.to_string();
        loop {
            let mut s = std::net::TcpStream::connect(self.addr()).unwrap();
            write!(
                s,
                "PATCH /api/v1/nodes/{name}{sub} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\nAuthorization: Bearer s3cret\r\nContent-Type: application/strategic-merge-patch+json\r\nContent-Length: {}\r\n\r\n{payload}",
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

    /// A Node as stored, read with the token.
    fn node(&self, name: &str) -> Value {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.addr()).unwrap();
        write!(
            s,
            "GET /api/v1/nodes/{name} HTTP/1.0\r\nAuthorization: Bearer s3cret\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).unwrap_or(Value::Null)
    }

    fn stats(&self) -> Value {
        self.admin("GET", "/admin/stats", None)
    }
}

fn config() -> NetConfig {
    NetConfig::parse(
        r#"{"Network": "10.244.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan"}}"#,
    )
    .unwrap()
}

fn attrs_for(node: &str) -> impl Fn(&LeaseKey) -> LeaseAttrs {
    let node = node.to_string();
    move |_| LeaseAttrs {
        public_ip: Some("198.18.0.1".parse().unwrap()),
        public_ipv6: None,
        backend_type: "vxlan".into(),
        backend_data: json!({"VNI": 1, "VtepMAC": "02:00:00:00:00:01"}).into(),
        backend_v6_data: tweedd::lease::BackendData::null(),
        node_name: node.clone(),
        segment_macs: Default::default(),
        wire_ends: Default::default(),
    }
}

/// Node n1's agent getting its subnet.
async fn acquire(store: &KubeStore) -> Result<Lease, AcquireError> {
    leasing::acquire(store, &config(), attrs_for("n1"), None, TTL).await
}

async fn next(rx: &mut mpsc::Receiver<WatchEvent>, within: Duration) -> Option<WatchEvent> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

/// Nothing more arrives for `d`.
async fn quiet(rx: &mut mpsc::Receiver<WatchEvent>, d: Duration) {
    if let Some(ev) = next(rx, d).await {
        panic!("unexpected event {ev:?}");
    }
}

fn put_of(ev: Option<WatchEvent>) -> Lease {
    match ev {
        Some(WatchEvent::Put(l)) => l,
        other => panic!("expected a Put, got {other:?}"),
    }
}

fn key(s: &str) -> LeaseKey {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnet_is_assigned_by_pod_cidr_and_the_record_is_published() {
    let f = Fixture::new();
    let store = f.store("n1").await;

    // No node yet, then a node without podCIDR: waiting, with the reason.
    match store.assignment().await.unwrap() {
        Assignment::Pending(why) => assert!(why.contains("does not exist"), "{why}"),
        other => panic!("{other:?}"),
    }
    f.add_node("n1", &[]);
    let err = acquire(&store).await.unwrap_err();
    assert!(err.is_waiting(), "{err}");
    assert!(
        err.to_string().contains("--allocate-node-cidrs"),
        "the message must name the fix: {err}"
    );
    // A CIDR outside the network is refused, naming both.
    f.set_pod_cidrs("n1", &["10.99.1.0/24"]);
    let err = acquire(&store).await.unwrap_err();
    assert!(matches!(err, AcquireError::NotAssigned(_)), "{err}");
    assert!(err.to_string().contains("10.99.1.0/24"), "{err}");

    // The controller-manager allocates one: the agent takes it.
    f.set_pod_cidrs("n1", &["10.244.7.0/24"]);
    let lease = acquire(&store).await.unwrap();
    assert_eq!(lease.key, key("10.244.7.0-24"));
    let node = f.node("n1");
    let ann = &node["metadata"]["annotations"];
    assert_eq!(ann[BACKEND_TYPE], "vxlan", "{node}");
    assert_eq!(ann[PUBLIC_IP], "198.18.0.1");
    let data: Value = serde_json::from_str(ann[BACKEND_DATA].as_str().unwrap()).unwrap();
    assert_eq!(data["VtepMAC"], "02:00:00:00:00:01");

    // Renewing writes the same values: no new revision.
    let rv = f.stats()["resourceVersion"].clone();
    store.renew(&lease, TTL).await.unwrap();
    assert_eq!(f.stats()["resourceVersion"], rv);

    // Ready: NetworkUnavailable=False, the other conditions untouched;
    // saying it again writes nothing.
    store.announce_ready(&lease).await.unwrap();
    let conds = f.node("n1")["status"]["conditions"].clone();
    let by_type = |t: &str| {
        conds
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_type("NetworkUnavailable")["status"], "False", "{conds}");
    assert_eq!(by_type("NetworkUnavailable")["reason"], "TweedIsUp");
    assert_eq!(by_type("Ready")["status"], "True", "{conds}");
    let rv = f.stats()["resourceVersion"].clone();
    store.announce_ready(&lease).await.unwrap();
    assert_eq!(f.stats()["resourceVersion"], rv);
    // Two writes of the annotations (create, renew) and one of the
    // condition, all through the status subresource; none the second time.
    assert!(f.stats()["requests"]["patch-status"] == 3, "{}", f.stats());
    assert!(f.stats()["requests"]["patch"].is_null(), "{}", f.stats());

    // The node deleted from the API: the lease is lost.
    f.admin("DELETE", "/admin/nodes/n1", None);
    assert!(store.renew(&lease, TTL).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_watch_report_lease_changes_only() {
    let f = Fixture::with_fast_bookmarks();
    f.add_node("n2", &["10.244.2.0/24"]);
    f.annotate("n2", "198.18.0.2", "02:00:00:00:00:02");
    f.add_node("n3", &["10.244.3.0/24"]);
    f.add_node("n9", &["10.99.9.0/24"]);
    f.annotate("n9", "198.18.0.9", "02:00:00:00:00:09");
    let store = f.store("n1").await;

    // n3 has no record yet, n9's subnet lies outside the network.
    let snap = store.list().await.unwrap();
    let keys: Vec<String> = snap.leases.iter().map(|l| l.key.to_string()).collect();
    assert_eq!(keys, vec!["10.244.2.0-24"]);
    assert_eq!(snap.leases[0].attrs.node_name, "n2");
    assert_eq!(
        snap.leases[0].attrs.public_ip,
        Some("198.18.0.2".parse().unwrap())
    );
    let mut rx = store.watch(snap.revision).await.unwrap();

    // A status change of a peer (kubelet) is no lease change.
    f.api_patch(
        "n2",
        "/status",
        &json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
    );
    quiet(&mut rx, Duration::from_millis(600)).await;

    // n3's agent publishes: a Put; n2's record removed: a Delete; n3
    // deleted from the API: the Delete of its lease.
    f.annotate("n3", "198.18.0.3", "02:00:00:00:00:03");
    let l = put_of(next(&mut rx, Duration::from_secs(5)).await);
    assert_eq!(l.key, key("10.244.3.0-24"));
    assert_eq!(
        l.attrs.backend_data.get_str("VtepMAC").as_deref(),
        Some("02:00:00:00:00:03")
    );
    f.api_patch(
        "n2",
        "",
        &json!({"metadata": {"annotations": {BACKEND_TYPE: null, BACKEND_DATA: null, PUBLIC_IP: null}}}),
    );
    assert_eq!(
        next(&mut rx, Duration::from_secs(5)).await,
        Some(WatchEvent::Delete(key("10.244.2.0-24")))
    );
    f.admin("DELETE", "/admin/nodes/n3", None);
    assert_eq!(
        next(&mut rx, Duration::from_secs(5)).await,
        Some(WatchEvent::Delete(key("10.244.3.0-24")))
    );
    quiet(&mut rx, Duration::from_millis(300)).await;
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

/// The watch asked for a revision that was compacted away: the store
/// relists, sends one Resync, and goes on without replaying what the
/// receiver's list already holds.
async fn gone_then_resync(gone_as: &str) {
    let f = Fixture::new();
    f.admin("POST", "/admin/settings", Some(json!({"goneAs": gone_as})));
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
async fn gone_as_an_error_event_resyncs() {
    gone_then_resync("event").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_as_a_410_response_resyncs() {
    gone_then_resync("status").await;
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

#[test]
fn outside_a_cluster_without_kubeconfig_is_a_config_error_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("net-conf.json");
    std::fs::write(
        &conf,
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tweedd"))
        .args(["--store", "kube", "--node-name", "n1", "--net-conf"])
        .arg(&conf)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("TWEED_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("KUBERNETES_SERVICE_HOST") && err.contains("--kubeconfig"),
        "{err}"
    );
    // A kubeconfig that does not exist is named.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tweedd"))
        .args(["--store", "kube", "--node-name", "n1", "--net-conf"])
        .arg(&conf)
        .arg("--kubeconfig")
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("missing"), "{err}");
}

/// `--flannel-compat` in kube mode: a node that only flannel annotated is a
/// peer, and this node's record is written under flannel's names too, as
/// flannel's kube subnet manager reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flannel_compat_reads_and_writes_flannel_annotations() {
    let f = Fixture::new();
    f.add_node("n1", &["10.244.1.0/24"]);
    f.add_node("f2", &["10.244.2.0/24"]);
    f.api_patch(
        "f2",
        "",
        &json!({"metadata": {"annotations": {
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/backend-data": json!({"VNI": 1, "VtepMAC": "0e:f1:00:00:00:02"}).to_string(),
            "flannel.alpha.coreos.com/public-ip": "198.18.0.2",
            "flannel.alpha.coreos.com/kube-subnet-manager": "true",
        }}}),
    );
    // Without the flag the flannel node is no peer; with it, it is.
    assert!(f.store("n1").await.list().await.unwrap().leases.is_empty());
    let store = f.store_with("n1", true).await;
    let snap = store.list().await.unwrap();
    assert_eq!(snap.leases.len(), 1);
    let peer = &snap.leases[0];
    assert_eq!(peer.key, key("10.244.2.0-24"));
    assert_eq!(peer.attrs.node_name, "f2");
    assert_eq!(
        peer.attrs.backend_data.get_str("VtepMAC").as_deref(),
        Some("0e:f1:00:00:00:02")
    );

    let lease = acquire(&store).await.unwrap();
    assert_eq!(lease.key, key("10.244.1.0-24"));
    let node = f.node("n1");
    let ann = &node["metadata"]["annotations"];
    for prefix in ["tweed.io/", "flannel.alpha.coreos.com/"] {
        assert_eq!(ann[format!("{prefix}backend-type")], "vxlan", "{node}");
        assert_eq!(ann[format!("{prefix}public-ip")], "198.18.0.1", "{node}");
        let data: Value =
            serde_json::from_str(ann[format!("{prefix}backend-data")].as_str().unwrap()).unwrap();
        assert_eq!(data["VNI"], 1);
        assert_eq!(data["VtepMAC"], "02:00:00:00:00:01");
    }
    assert_eq!(ann["flannel.alpha.coreos.com/kube-subnet-manager"], "true");
}
