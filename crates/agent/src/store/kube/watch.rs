//! The kube store's watch: one task per watcher following Nodes from a
//! resourceVersion and turning Node events into lease events.
//!
//! - It remembers `rv`, the last resourceVersion whose events were all
//!   delivered: each event's object carries it, and BOOKMARK events
//!   (asked for with `allowWatchBookmarks`) move it on while nothing of
//!   ours changes. A watch that ends (the server's timeout, a dropped
//!   connection) is reopened from `rv`, so nothing is missed or repeated.
//! - When the server answers 410 Gone (that revision was compacted away,
//!   as an ERROR event or as the response), the task sends
//!   [`WatchEvent::Resync`] and goes on from the list the receiver makes
//!   because of it (the store keeps its last list, numbered): the
//!   receiver's state and the watch then meet at one revision, so no
//!   change is missed and none made between two lists is sent again —
//!   which happened when the task listed by itself first, and the receiver
//!   a moment later, after a node had changed (seen against a real
//!   kube-apiserver restarting). A receiver that has not listed within
//!   [`RESYNC_WAIT`] gets the task's own list and another Resync.
//! - A Node is a lease when it carries tweed's record ([`super::node`]);
//!   the task keeps the lease it last reported per node name, so a Node
//!   update that changes nothing of the lease (kubelet status, labels) is
//!   not reported, one that removes the record is reported as a delete,
//!   and a deleted Node as the delete of the lease it held.
//! - An `ERROR` event other than 410 ends the watch and it is reopened
//!   from `rv` after the backoff; when the server refuses the same `rv`
//!   again, the task relists as for 410 (client-go's reflector relists
//!   after any watch error). A real kube-apiserver does this without its
//!   watch cache when a node changed exactly at the revision etcd was
//!   compacted to: every watch from just before it ends in a 500 ("etcd
//!   event received with PrevKv=nil"), and reopening alone never gets past.
//! - Throttling: kube's client already waited out the server's
//!   `Retry-After` before an error reaches here; the task then waits once
//!   more (the `retryAfterSeconds` of the answer, else its backoff).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::WatchParams;
use kube::core::WatchEvent as KubeEvent;
use tokio::sync::mpsc;

use super::KubeStore;
use crate::backoff::Backoff;
use crate::lease::Lease;
use crate::store::WatchEvent;

/// The server ends each watch after this long; it is reopened at once.
const WATCH_TIMEOUT_SECS: u32 = 290;
/// A watch on which nothing arrives (not even a bookmark, which the real
/// API server sends about once a minute) for this long is taken as a dead
/// connection and reopened.
const IDLE_LIMIT: Duration = Duration::from_secs(WATCH_TIMEOUT_SECS as u64 + 30);
/// How long the task waits for the receiver's list after a Resync.
const RESYNC_WAIT: Duration = Duration::from_secs(30);
/// `ERROR` events in a row, with nothing delivered between, after which
/// the watch's revision is given up and the task resyncs.
const REFUSALS_BEFORE_RELIST: u32 = 2;

/// Starts the task; the channel closes only when the receiver is dropped.
pub(super) fn spawn(
    store: KubeStore,
    revision: u64,
    known: BTreeMap<String, Lease>,
) -> mpsc::Receiver<WatchEvent> {
    let (tx, rx) = mpsc::channel(256);
    let task = Watcher {
        store,
        tx,
        rv: revision.to_string(),
        known,
        backoff: Backoff::new(Backoff::WATCH),
        refusals: 0,
    };
    tokio::spawn(task.run());
    rx
}

/// Why one watch request ended.
enum End {
    /// The receiver is gone: stop.
    ReceiverGone,
    /// The server ended it (timeout): reopen at once.
    Ended,
    /// 410: `rv` is too old.
    Gone,
    /// Still throttled after the client's own retries: wait this long.
    Throttled(Duration),
    /// The server sent an `ERROR` event (not 410): it could not serve the
    /// watch from `rv`.
    Refused(String),
    /// Anything else: reopen after the backoff.
    Broken(String),
}

struct Watcher {
    store: KubeStore,
    tx: mpsc::Sender<WatchEvent>,
    rv: String,
    known: BTreeMap<String, Lease>,
    backoff: Backoff,
    /// [`End::Refused`] in a row since anything was delivered.
    refusals: u32,
}

fn classify(e: kube::Error) -> End {
    match e {
        kube::Error::Api(s) if s.code == 410 => End::Gone,
        kube::Error::Api(s) if s.code == 429 => {
            let secs = s.details.map_or(0, |d| d.retry_after_seconds);
            End::Throttled(Duration::from_secs(u64::from(secs.max(1))))
        }
        other => End::Broken(other.to_string()),
    }
}

impl Watcher {
    async fn run(mut self) {
        loop {
            let closed = self.tx.clone();
            let end = tokio::select! {
                end = self.follow() => end,
                () = closed.closed() => return,
            };
            let delay = match end {
                End::ReceiverGone => return,
                End::Ended => continue,
                End::Gone => {
                    tracing::info!(resource_version = %self.rv, "kube: watch history expired (410 Gone); resyncing");
                    if !self.resync().await {
                        return;
                    }
                    continue;
                }
                End::Refused(why) if self.refusals + 1 >= REFUSALS_BEFORE_RELIST => {
                    tracing::warn!(reason = %why, resource_version = %self.rv, "kube: the API server keeps refusing the node watch from this revision; resyncing");
                    if !self.resync().await {
                        return;
                    }
                    continue;
                }
                End::Refused(why) => {
                    self.refusals += 1;
                    let d = self.backoff.next_delay();
                    tracing::warn!(reason = %why, resume_from = %self.rv, retry_in = ?d, "kube: the API server ended the node watch with an error");
                    d
                }
                End::Throttled(d) => {
                    tracing::warn!(retry_in = ?d, "kube: the API server is throttling the node watch");
                    d
                }
                End::Broken(why) => {
                    let d = self.backoff.next_delay();
                    tracing::warn!(reason = %why, resume_from = %self.rv, retry_in = ?d, "kube: node watch interrupted");
                    d
                }
            };
            if !self.pause(delay).await {
                return;
            }
        }
    }

    /// Sleeps, unless the receiver goes away first (then `false`).
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.tx.closed() => false,
        }
    }

    /// Asks the receiver to list again, and goes on from that list (see
    /// the module's header); `false` when the receiver left.
    async fn resync(&mut self) -> bool {
        let mut lists = self.store.last_list.subscribe();
        let before = lists.borrow_and_update().generation;
        if self.tx.send(WatchEvent::Resync).await.is_err() {
            return false;
        }
        let listed = tokio::select! {
            r = tokio::time::timeout(RESYNC_WAIT, lists.wait_for(|l| l.generation > before)) => {
                match r {
                    Ok(Ok(l)) => Some((l.revision, l.leases.clone())),
                    _ => None,
                }
            }
            () = self.tx.closed() => return false,
        };
        match listed {
            Some((rv, leases)) => {
                self.rv = rv.to_string();
                self.known = leases;
                self.refusals = 0;
                true
            }
            None => {
                tracing::warn!(waited = ?RESYNC_WAIT, "kube: the watch's receiver did not list again; listing for it");
                self.relist().await
            }
        }
    }

    /// Lists, takes its revision and leases as the new starting point,
    /// then asks the receiver to list too. `false` when the receiver left.
    async fn relist(&mut self) -> bool {
        loop {
            match self.store.list_nodes().await {
                Ok((rv, nodes)) => {
                    self.rv = rv.to_string();
                    self.refusals = 0;
                    self.known = self.store.leases_of(&nodes);
                    return self.tx.send(WatchEvent::Resync).await.is_ok();
                }
                Err(e) => {
                    let d = self.backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?d, "kube: cannot list nodes to resync from");
                    if !self.pause(d).await {
                        return false;
                    }
                }
            }
        }
    }

    /// One watch request from `rv`, forwarded until it ends.
    async fn follow(&mut self) -> End {
        let wp = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
        let stream = match self.store.api.watch(&wp, &self.rv).await {
            Ok(s) => s,
            Err(e) => return classify(e),
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = match tokio::time::timeout(IDLE_LIMIT, stream.next()).await {
                Err(_) => return End::Broken("nothing arrived on the watch for too long".into()),
                Ok(None) => return End::Ended,
                Ok(Some(Err(e))) => return classify(e),
                Ok(Some(Ok(item))) => item,
            };
            if !matches!(item, KubeEvent::Error(_)) {
                self.backoff.reset();
                self.refusals = 0;
            }
            let (events, rv) = match item {
                KubeEvent::Added(n) | KubeEvent::Modified(n) => (self.update(&n), rv_of(&n)),
                KubeEvent::Deleted(n) => (self.remove(&n), rv_of(&n)),
                KubeEvent::Bookmark(b) => (Vec::new(), Some(b.metadata.resource_version)),
                KubeEvent::Error(s) if s.code == 410 => return End::Gone,
                KubeEvent::Error(s) => {
                    return End::Refused(format!("{} {}: {}", s.code, s.reason, s.message));
                }
            };
            for ev in events {
                if self.tx.send(ev).await.is_err() {
                    return End::ReceiverGone;
                }
            }
            if let Some(rv) = rv.filter(|r| !r.is_empty()) {
                self.rv = rv;
            }
        }
    }

    /// A Node was added or changed: what that means for its lease.
    fn update(&mut self, node: &Node) -> Vec<WatchEvent> {
        let Some(name) = node.metadata.name.clone() else {
            return Vec::new();
        };
        let now = match self.store.lease_of_node(node) {
            Ok(l) => l,
            Err(e) => {
                super::warn_bad_node(&e);
                None
            }
        };
        let before = self.known.get(&name);
        let events = match (before, &now) {
            (Some(b), Some(n)) if b == n => Vec::new(),
            (Some(b), Some(n)) if b.key != n.key => {
                vec![WatchEvent::Delete(b.key), WatchEvent::Put(n.clone())]
            }
            (_, Some(n)) => vec![WatchEvent::Put(n.clone())],
            (Some(b), None) => vec![WatchEvent::Delete(b.key)],
            (None, None) => Vec::new(),
        };
        match now {
            Some(l) => self.known.insert(name, l),
            None => self.known.remove(&name),
        };
        events
    }

    /// A Node was deleted: the lease it held goes.
    fn remove(&mut self, node: &Node) -> Vec<WatchEvent> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let held = self
            .known
            .remove(&name)
            .map(|l| l.key)
            .or_else(|| self.store.lease_of_node(node).ok().flatten().map(|l| l.key));
        held.map(WatchEvent::Delete).into_iter().collect()
    }
}

fn rv_of(node: &Node) -> Option<String> {
    node.metadata.resource_version.clone()
}
