//! The kube store against a real kube-apiserver and etcd (started per test
//! by `tweed_testkit::kubeapi`, see `kube_real`), with the agent's real
//! client code running as deploy/tweed.yaml's service account: assignment
//! from podCIDRs, the record and the NetworkUnavailable condition as the
//! server stores them (written through nodes/status only), list, watch,
//! node deletion, 410 Gone after an etcd compaction, an API server
//! restart, segment block Leases contended by two agents, and
//! `--flannel-compat`.
//!
//! What a real server cannot be made to do on demand — 429 with
//! Retry-After, a watch connection dropped mid-stream, 410 as a plain
//! response instead of an ERROR event — is tested against
//! `crates/fakekube` in kube_faults.rs.

#[allow(dead_code)] // each test binary uses a part of it
mod kube_real;

use std::collections::BTreeMap;
use std::time::Duration;

use kube_real::{Cluster, TTL, attrs, config, key, next, publish, put_of, quiet};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tweed_testkit::kubeapi::KubeApiOpts;
use tweedd::lease::{Lease, LeaseKey};
use tweedd::leasing::{self, AcquireError};
use tweedd::store::kube::node::{BACKEND_DATA, BACKEND_TYPE, PREFIX, PUBLIC_IP, WIRE_ENDS};
use tweedd::store::kube::{KubeStore, blocks::KubeBlockStore};
use tweedd::store::{Assignment, Created, LeaseStore, StoreError, WatchEvent};

/// Node n1's agent getting its subnet.
async fn acquire(store: &KubeStore) -> Result<Lease, AcquireError> {
    let a = attrs("n1", "198.18.0.1", "02:00:00:00:00:01");
    leasing::acquire(store, &config().pools, move |_| a.clone(), None, TTL).await
}

/// Every `tweed.io/` annotation of a stored node.
fn tweed_annotations(node: &Value) -> BTreeMap<String, Value> {
    node["metadata"]["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with(PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The subresources the field manager `tweedd` wrote through, from the
/// server's managedFields: "status" for every write, or "" (the main
/// resource) for any that went there.
fn tweedd_writes(node: &Value) -> Vec<String> {
    node["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["manager"] == "tweedd")
        .map(|m| m["subresource"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnet_is_assigned_by_pod_cidr_and_the_record_is_published() {
    let c = Cluster::start();
    let store = c.store("n1").await;

    // No node yet, then a node without podCIDR: waiting, with the reason.
    match store.assignment().await.unwrap() {
        Assignment::Pending(why) => assert!(why.contains("does not exist"), "{why}"),
        other => panic!("{other:?}"),
    }
    c.api.create_node("n1", &[]);
    let err = acquire(&store).await.unwrap_err();
    assert!(err.is_waiting(), "{err}");
    assert!(
        err.to_string().contains("--allocate-node-cidrs"),
        "the message must name the fix: {err}"
    );
    // A CIDR outside the network is refused, naming both.
    c.api.create_node("n9", &["10.99.1.0/24"]);
    let a9 = attrs("n9", "198.18.0.9", "02:00:00:00:00:09");
    let err = leasing::acquire(
        &c.store("n9").await,
        &config().pools,
        move |_| a9.clone(),
        None,
        TTL,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AcquireError::NotAssigned(_)), "{err}");
    assert!(
        err.to_string().contains("10.99.1.0/24") && err.to_string().contains("10.244.0.0/16"),
        "{err}"
    );

    // The controller-manager allocates one (the API allows setting it
    // once): the agent takes it and publishes its record.
    c.api.set_pod_cidrs("n1", &["10.244.7.0/24"]);
    let lease = acquire(&store).await.unwrap();
    assert_eq!(lease.key, key("10.244.7.0-24"));
    let node = c.node("n1");
    let ann = &node["metadata"]["annotations"];
    assert_eq!(ann[BACKEND_TYPE], "vxlan", "{node}");
    assert_eq!(ann[PUBLIC_IP], "198.18.0.1");
    let data: Value = serde_json::from_str(ann[BACKEND_DATA].as_str().unwrap()).unwrap();
    assert_eq!(data["VtepMAC"], "02:00:00:00:00:01");

    // Renewing writes the same values: the server stores nothing new.
    let rv = c.resource_version("n1");
    store.renew(&lease, TTL).await.unwrap();
    assert_eq!(c.resource_version("n1"), rv);

    // Ready: NetworkUnavailable=False next to kubelet's conditions, which
    // stay; saying it again writes nothing.
    c.kubelet_status("n1", true);
    store.announce_ready(&lease).await.unwrap();
    let conds = c.node("n1")["status"]["conditions"].clone();
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
    let rv = c.resource_version("n1");
    store.announce_ready(&lease).await.unwrap();
    assert_eq!(c.resource_version("n1"), rv);

    // Every write of tweedd's went through the status subresource (the
    // service account may not patch nodes), and the spec is as the
    // controller-manager left it.
    let node = c.api.get_json(&["node", "n1", "--show-managed-fields"]);
    let writes = tweedd_writes(&node);
    assert!(
        !writes.is_empty() && writes.iter().all(|s| s == "status"),
        "{writes:?}"
    );
    assert_eq!(node["spec"]["podCIDRs"], json!(["10.244.7.0/24"]));

    // The node deleted from the API: the lease is lost.
    c.api.kubectl_ok(&["delete", "node", "n1"]);
    assert!(matches!(
        store.renew(&lease, TTL).await,
        Err(StoreError::LeaseLost(_))
    ));
}

/// `delete` takes every tweed annotation off the node holding the subnet,
/// and leaves everything else on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_record_removes_all_of_its_annotations() {
    let c = Cluster::start();
    c.api.create_node("n2", &["10.244.2.0/24"]);
    c.annotate("n2", json!({"example.com/keep": "me"}));
    let store = c.store("n2").await;
    let mut a = attrs("n2", "198.18.0.2", "02:00:00:00:00:02");
    a.segment_macs
        .insert("lab1".into(), vec!["02:00:00:00:aa:02".into()]);
    a.wire_ends
        .insert("lab/r1:eth1".into(), "lab/r2:eth1".into());
    let lease = leasing::acquire(&store, &config().pools, move |_| a.clone(), None, TTL)
        .await
        .unwrap();
    let before = tweed_annotations(&c.node("n2"));
    assert!(before.contains_key(WIRE_ENDS), "{before:?}");
    store.delete(&lease.key).await.unwrap();
    let node = c.node("n2");
    assert_eq!(tweed_annotations(&node), BTreeMap::new(), "{node}");
    assert_eq!(node["metadata"]["annotations"]["example.com/keep"], "me");
    assert!(store.list().await.unwrap().leases.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_watch_report_lease_changes_only() {
    let c = Cluster::start();
    c.api.create_node("n2", &["10.244.2.0/24"]);
    publish(&c, "n2", 2).await;
    c.api.create_node("n3", &["10.244.3.0/24"]);
    // A record on a node whose subnet lies outside the network.
    c.api.create_node("n9", &["10.99.9.0/24"]);
    c.annotate(
        "n9",
        json!({BACKEND_TYPE: "vxlan", BACKEND_DATA: "{\"VNI\":1}", PUBLIC_IP: "198.18.0.9"}),
    );
    let store = c.store("n1").await;

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

    // A status change of a peer (kubelet) and a label are no lease change.
    c.kubelet_status("n2", false);
    c.api
        .kubectl_ok(&["label", "node", "n2", "example.com/zone=a"]);
    quiet(&mut rx, Duration::from_millis(800)).await;

    // n3's agent publishes: a Put; n2's record removed: a Delete; n3
    // deleted from the API: the Delete of its lease.
    publish(&c, "n3", 3).await;
    let l = put_of(next(&mut rx, Duration::from_secs(10)).await);
    assert_eq!(l.key, key("10.244.3.0-24"));
    assert_eq!(
        l.attrs.backend_data.get_str("VtepMAC").as_deref(),
        Some("02:00:00:00:00:03")
    );
    c.store("n2")
        .await
        .delete(&key("10.244.2.0-24"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut rx, Duration::from_secs(10)).await,
        Some(WatchEvent::Delete(key("10.244.2.0-24")))
    );
    c.api.kubectl_ok(&["delete", "node", "n3"]);
    assert_eq!(
        next(&mut rx, Duration::from_secs(10)).await,
        Some(WatchEvent::Delete(key("10.244.3.0-24")))
    );
    quiet(&mut rx, Duration::from_millis(500)).await;
}

/// Lists, then makes changes the watch will be asked for from before them,
/// then compacts etcd: the history the watch wants may be gone.
async fn changes_then_compaction(c: &Cluster, store: &KubeStore) -> mpsc::Receiver<WatchEvent> {
    c.api.create_node("n2", &["10.244.2.0/24"]);
    let snap = store.list().await.unwrap();
    assert!(snap.leases.is_empty());
    publish(c, "n2", 2).await;
    c.api.create_node("n3", &["10.244.3.0/24"]);
    publish(c, "n3", 3).await;
    let compacted = c.api.compact_etcd();
    assert!(compacted > snap.revision);
    store.watch(snap.revision).await.unwrap()
}

/// kube-apiserver without its watch cache serves a watch straight from
/// etcd, which answers a compacted revision with 410 Gone (an ERROR event):
/// the store relists, sends one Resync, and goes on without replaying what
/// the receiver's own list then holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_a_compacted_revision_resyncs() {
    let c = Cluster::start_with(KubeApiOpts { watch_cache: false });
    let store = c.store("n1").await;
    let mut rx = changes_then_compaction(&c, &store).await;
    assert_eq!(
        next(&mut rx, Duration::from_secs(10)).await,
        Some(WatchEvent::Resync)
    );
    // The changes the watch never sent are in the list the receiver makes.
    let again = store.list().await.unwrap();
    assert_eq!(again.leases.len(), 2);
    quiet(&mut rx, Duration::from_millis(800)).await;
    c.api.create_node("n4", &["10.244.4.0/24"]);
    publish(&c, "n4", 4).await;
    let l = put_of(next(&mut rx, Duration::from_secs(10)).await);
    assert_eq!(l.key, key("10.244.4.0-24"));
    quiet(&mut rx, Duration::from_millis(500)).await;
}

/// The edge of a compaction: a watch resuming from just before the
/// compacted revision, where a node changed. etcd still lets it start, but
/// the event's previous version is gone, and kube-apiserver (watch cache
/// off) answers with a 500 ERROR event ("etcd event received with
/// PrevKv=nil") on every attempt. The store must not retry that watch
/// forever: it relists and resyncs, as client-go's reflector does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_the_server_keeps_refusing_resyncs() {
    let c = Cluster::start_with(KubeApiOpts { watch_cache: false });
    c.api.create_node("n2", &["10.244.2.0/24"]);
    let store = c.store("n1").await;
    let snap = store.list().await.unwrap();
    publish(&c, "n2", 2).await;
    let changed: u64 = c.resource_version("n2").parse().unwrap();
    assert!(changed > snap.revision);
    c.api
        .etcdctl_ok(&["compact", &changed.to_string(), "--physical"]);
    // Nothing of the nodes' changed between the list and `changed - 1`
    // (only the test changes nodes here): a bookmark could have moved the
    // watch there.
    let mut rx = store.watch(changed - 1).await.unwrap();
    assert_eq!(
        next(&mut rx, Duration::from_secs(20)).await,
        Some(WatchEvent::Resync)
    );
    let again = store.list().await.unwrap();
    assert_eq!(again.leases.len(), 1);
    c.api.create_node("n3", &["10.244.3.0/24"]);
    publish(&c, "n3", 3).await;
    let l = put_of(next(&mut rx, Duration::from_secs(10)).await);
    assert_eq!(l.key, key("10.244.3.0-24"));
    quiet(&mut rx, Duration::from_millis(500)).await;
}

/// With the watch cache, as every cluster runs, the API server answers the
/// same watch from its own window of events: the compaction is invisible
/// and every change arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_cache_outlives_an_etcd_compaction() {
    let c = Cluster::start();
    let store = c.store("n1").await;
    let mut rx = changes_then_compaction(&c, &store).await;
    for want in ["10.244.2.0-24", "10.244.3.0-24"] {
        let l = put_of(next(&mut rx, Duration::from_secs(10)).await);
        assert_eq!(l.key, key(want));
    }
    quiet(&mut rx, Duration::from_millis(800)).await;
}

/// A receiver the way the agent uses the store: the last list, kept up to
/// date by the watch's events, listing again on Resync. Counts events that
/// tell it nothing new (a repeated Put, a Delete of what it does not hold).
struct Follower<'a> {
    store: &'a KubeStore,
    rx: mpsc::Receiver<WatchEvent>,
    leases: BTreeMap<LeaseKey, Lease>,
    repeated: Vec<WatchEvent>,
    resyncs: usize,
}

impl<'a> Follower<'a> {
    async fn start(store: &'a KubeStore) -> Follower<'a> {
        let snap = store.list().await.unwrap();
        let rx = store.watch(snap.revision).await.unwrap();
        Follower {
            store,
            rx,
            leases: snap.leases.into_iter().map(|l| (l.key, l)).collect(),
            repeated: Vec::new(),
            resyncs: 0,
        }
    }

    /// Handles events until `done` holds of the leases.
    async fn until(&mut self, within: Duration, done: impl Fn(&BTreeMap<LeaseKey, Lease>) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !done(&self.leases) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(ev) = next(&mut self.rx, left).await else {
                panic!(
                    "not reached within {within:?}; holding {:?}",
                    self.leases.keys()
                );
            };
            match ev {
                WatchEvent::Put(l) => {
                    if self.leases.get(&l.key) == Some(&l) {
                        self.repeated.push(WatchEvent::Put(l.clone()));
                    }
                    self.leases.insert(l.key, l);
                }
                WatchEvent::Delete(k) => {
                    if self.leases.remove(&k).is_none() {
                        self.repeated.push(WatchEvent::Delete(k));
                    }
                }
                WatchEvent::Resync => {
                    self.resyncs += 1;
                    let snap = self.store.list().await.unwrap();
                    self.leases = snap.leases.into_iter().map(|l| (l.key, l)).collect();
                }
            }
        }
    }
}

/// kube-apiserver stopped by its pid and started again (etcd keeps
/// running): the watch, cut off, reconnects by itself. The restarted
/// server's watch cache begins at etcd's current revision and answers the
/// watch's older one with 410, so the store resyncs; changes made after
/// the restart arrive, and nothing is repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_carries_on_across_an_apiserver_restart() {
    let mut c = Cluster::start();
    c.api.create_node("n2", &["10.244.2.0/24"]);
    publish(&c, "n2", 2).await;
    let store = c.store("n1").await;
    let mut f = Follower::start(&store).await;
    assert_eq!(f.leases.len(), 1);

    c.api.stop_apiserver();
    // The watch finds the connection gone and backs off meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.api.start_apiserver();

    c.api.create_node("n3", &["10.244.3.0/24"]);
    publish(&c, "n3", 3).await;
    f.until(Duration::from_secs(30), |l| {
        l.contains_key(&key("10.244.3.0-24"))
    })
    .await;
    // n2's record changes (its underlay address): the new one arrives.
    let n2 = c.store("n2").await;
    let moved = attrs("n2", "198.18.0.22", "02:00:00:00:00:02");
    let l = leasing::acquire(&n2, &config().pools, move |_| moved.clone(), None, TTL)
        .await
        .unwrap();
    f.until(Duration::from_secs(10), |leases| {
        leases.get(&l.key).and_then(|x| x.attrs.public_ip) == l.attrs.public_ip
    })
    .await;
    quiet(&mut f.rx, Duration::from_millis(800)).await;
    assert_eq!(f.leases.len(), 2, "{:?}", f.leases.keys());
    assert!(f.repeated.is_empty(), "repeated events: {:?}", f.repeated);
    assert_eq!(
        f.resyncs, 1,
        "the restarted server's watch cache starts after the watch's revision: one 410, one Resync"
    );
}

/// Segment blocks: two agents (both the DaemonSet's service account, as
/// every tweed pod is) create the same block's Lease at once — the API
/// server lets exactly one create it (the other gets 409 AlreadyExists);
/// two agents taking over a lapsed block both replace it under the same
/// resourceVersion — exactly one succeeds (the other gets 409 Conflict).
/// The 409s are counted from the API server's own metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_contend_for_segment_blocks() {
    let c = Cluster::start();
    let client = c.client().await;
    let ns = c.sa.namespace.as_str();
    // Each agent has its own store; which node it is, its records say.
    let agent = || KubeBlockStore::new(client.clone(), ns, "lab1");
    let (a, b, d) = (agent(), agent(), agent());
    let lease = |node: &str, k: &str| Lease {
        key: key(k),
        attrs: tweedd::lease::LeaseAttrs {
            backend_type: "segment-block".into(),
            ..attrs(node, "198.18.0.1", "02:00:00:00:00:01")
        },
        expires: None,
    };
    let holder = |k: &str| {
        let name = format!("tweed-seg-lab1-{}", k.replace(['.', '-'], "-"));
        c.api.get_json(&["lease", "-n", ns, &name])["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };

    for i in 0..4 {
        let k = format!("192.168.50.{}-28", 16 * i);
        let (la, lb) = (lease("a", &k), lease("b", &k));
        let (ra, rb) = tokio::join!(a.create(&la, TTL), b.create(&lb, TTL));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let winner = match (&ra, &rb) {
            (Created::Yes(_), Created::Taken) => "a",
            (Created::Taken, Created::Yes(_)) => "b",
            other => panic!("block {k}: both or neither got it: {other:?}"),
        };
        assert_eq!(holder(&k), winner, "block {k}");
        let (won, lost, wl, ll) = if winner == "a" {
            (&a, &b, lease("a", &k), lease("b", &k))
        } else {
            (&b, &a, lease("b", &k), lease("a", &k))
        };
        won.renew(&wl, TTL).await.unwrap();
        assert!(matches!(
            lost.renew(&ll, TTL).await,
            Err(StoreError::LeaseLost(_))
        ));
    }

    // Blocks whose holder let them lapse: both others race to take each
    // over.
    let lapsed = [
        "192.168.50.128-28",
        "192.168.50.144-28",
        "192.168.50.160-28",
    ];
    for k in lapsed {
        let created = a.create(&lease("a", k), Duration::from_secs(1)).await;
        assert!(matches!(created.unwrap(), Created::Yes(_)));
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut winners = Vec::new();
    for k in lapsed {
        let (lb, ld) = (lease("b", k), lease("d", k));
        let (rb, rd) = tokio::join!(b.create(&lb, TTL), d.create(&ld, TTL));
        let winner = match (rb.unwrap(), rd.unwrap()) {
            (Created::Yes(_), Created::Taken) => "b",
            (Created::Taken, Created::Yes(_)) => "d",
            other => panic!("lapsed block {k}: both or neither took it over: {other:?}"),
        };
        assert_eq!(holder(k), winner);
        assert!(matches!(
            a.renew(&lease("a", k), TTL).await,
            Err(StoreError::LeaseLost(_))
        ));
        winners.push((k.to_string(), winner.to_string()));
    }
    let held: Vec<(String, String)> = a
        .list()
        .await
        .unwrap()
        .leases
        .iter()
        .map(|l| (l.key.to_string(), l.attrs.node_name.clone()))
        .collect();
    assert_eq!(held.len(), 7, "{held:?}");
    for w in &winners {
        assert!(held.contains(w), "{held:?}");
    }

    // The API server's own count of what it refused: every losing create
    // (4 races, and both takeover attempts of 3 lapsed blocks) was a 409
    // AlreadyExists; a takeover's loser had read the lapsed Lease too and
    // replaced it under the same resourceVersion: 409 Conflict. (It can
    // also find the winner's Lease already renewed when it reads it, and
    // back off without writing; in lockstep, as here, that is rare.)
    let conflicts = |verb: &str| -> u64 {
        c.api
            .kubectl_ok(&["get", "--raw", "/metrics"])
            .lines()
            .filter(|l| {
                l.starts_with("apiserver_request_total{")
                    && l.contains("resource=\"leases\"")
                    && l.contains("code=\"409\"")
                    && l.contains(&format!("verb=\"{verb}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(conflicts("POST"), 4 + 2 * 3);
    let put = conflicts("PUT");
    assert!(
        (1..=3).contains(&put),
        "409s on replacing a lapsed Lease: {put}"
    );
    let k = lapsed[0];
    let winner = winners[0].1.as_str();

    // Claims are never given back while an agent runs, so the Role grants
    // no delete: the store's delete is refused, and the block stays.
    let err = a.delete(&key(k)).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    assert_eq!(holder(k), winner);
}

/// `--flannel-compat` in kube mode: a node that only flannel annotated is a
/// peer, and this node's record is written under flannel's names too, as
/// flannel's kube subnet manager reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flannel_compat_reads_and_writes_flannel_annotations() {
    let c = Cluster::start();
    c.api.create_node("n1", &["10.244.1.0/24"]);
    c.api.create_node("f2", &["10.244.2.0/24"]);
    c.annotate(
        "f2",
        json!({
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/backend-data": json!({"VNI": 1, "VtepMAC": "0e:f1:00:00:00:02"}).to_string(),
            "flannel.alpha.coreos.com/public-ip": "198.18.0.2",
            "flannel.alpha.coreos.com/kube-subnet-manager": "true",
        }),
    );
    // Without the flag the flannel node is no peer; with it, it is.
    assert!(c.store("n1").await.list().await.unwrap().leases.is_empty());
    let store = c.store_with("n1", true).await;
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
    let node = c.node("n1");
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
