//! The watcher task behind [`LeaseStore::watch`](crate::store::LeaseStore::watch)
//! (see "Watching" in the [module documentation](super)).

use std::time::Duration;

use etcd_client::{Client, Event, EventType, WatchOptions};
use tokio::sync::mpsc;

use super::EtcdStore;
use super::errors::{describe, with_deadline_raw};
use super::ops::Skip;
use crate::backoff::Backoff;
use crate::store::WatchEvent;

/// Why one watch stream ended.
enum StreamEnd {
    /// The receiver is gone: stop.
    ReceiverGone,
    /// The revision to resume from was compacted away.
    Compacted(i64),
    /// etcd is at an older revision than one already delivered: its data
    /// was wiped or restored from a backup, so resuming from `last_seen`
    /// would wait for revisions that may never come.
    Rewound(i64),
    /// Anything else; reconnect after a backoff.
    Broken(String),
}

/// Starts a watcher task from `revision`; the channel closes only when
/// the receiver is dropped.
pub(super) fn spawn(store: EtcdStore, revision: u64) -> mpsc::Receiver<WatchEvent> {
    let (tx, rx) = mpsc::channel(256);
    let task = Watcher {
        store,
        tx,
        last_seen: i64::try_from(revision).unwrap_or(i64::MAX - 1),
    };
    tokio::spawn(task.run());
    rx
}

/// One watcher's task (see the module documentation).
struct Watcher {
    store: EtcdStore,
    tx: mpsc::Sender<WatchEvent>,
    /// The last revision whose events were all delivered.
    last_seen: i64,
}

impl Watcher {
    pub(super) async fn run(mut self) {
        let mut backoff = Backoff::new(Backoff::WATCH);
        let closed = self.tx.clone();
        loop {
            let end = tokio::select! {
                end = self.stream(&mut backoff) => end,
                () = closed.closed() => return,
            };
            match end {
                StreamEnd::ReceiverGone => return,
                StreamEnd::Compacted(compacted) => {
                    tracing::info!(
                        from = self.last_seen + 1,
                        compacted,
                        "etcd: watch history compacted away; asking for a resync"
                    );
                    if !self.resync(&mut backoff).await {
                        return;
                    }
                }
                StreamEnd::Rewound(now) => {
                    tracing::warn!(
                        delivered = self.last_seen,
                        now,
                        "etcd: the store's revision went back (its data was wiped or restored from a backup); asking for a resync"
                    );
                    if !self.resync(&mut backoff).await {
                        return;
                    }
                }
                StreamEnd::Broken(why) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        reason = %why,
                        resume_from = self.last_seen + 1,
                        retry_in = ?delay,
                        "etcd: watch interrupted"
                    );
                    if !self.pause(delay).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sleeps, unless the receiver goes away first (then `false`).
    pub(super) async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.tx.closed() => false,
        }
    }

    /// Reads the current revision *before* telling the receiver to list
    /// again, so its list is at least that recent and the watch can go on
    /// from there without a gap. `false` when the receiver is gone.
    pub(super) async fn resync(&mut self, backoff: &mut Backoff) -> bool {
        loop {
            match self.store.current_revision().await {
                Ok(rev) => {
                    self.last_seen = rev;
                    return self.tx.send(WatchEvent::Resync).await.is_ok();
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "etcd: cannot read the revision to resync from");
                    if !self.pause(delay).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Opens one watch stream from `last_seen + 1` on the endpoint in use
    /// and forwards its events until it ends; the next attempt after a
    /// failure goes to the next endpoint.
    pub(super) async fn stream(&mut self, backoff: &mut Backoff) -> StreamEnd {
        let (idx, client) = match self.store.pool.pick().await {
            Ok(picked) => picked,
            Err(e) => return StreamEnd::Broken(e.to_string()),
        };
        let end = self.follow(&client, backoff).await;
        if let StreamEnd::Broken(_) = end {
            self.store.pool.rotate_from(idx);
        }
        end
    }

    pub(super) async fn follow(&mut self, client: &Client, backoff: &mut Backoff) -> StreamEnd {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.last_seen + 1)
            .with_progress_notify();
        let mut watch = client.watch_client();
        let prefix = self.store.subnets_prefix();
        let opened =
            with_deadline_raw(self.store.request_timeout, watch.watch(prefix, Some(opts))).await;
        let mut stream = match opened {
            Some(Ok(s)) => s,
            Some(Err(e)) => return StreamEnd::Broken(describe(&e)),
            None => return StreamEnd::Broken("no answer to the watch request".into()),
        };
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => return StreamEnd::Broken("etcd closed the watch stream".into()),
                Err(e) => return StreamEnd::Broken(describe(&e)),
            };
            if resp.compact_revision() > 0 {
                return StreamEnd::Compacted(resp.compact_revision());
            }
            if resp.canceled() {
                // e.g. permission denied after an etcd restart invalidated
                // our auth token: a fresh token may be all it takes.
                if self.store.has_credentials {
                    let _ = client.refresh_token().await;
                }
                return StreamEnd::Broken(format!(
                    "etcd cancelled the watch: {}",
                    resp.cancel_reason()
                ));
            }
            if resp.created() {
                if let Some(h) = resp.header()
                    && h.revision() < self.last_seen
                {
                    return StreamEnd::Rewound(h.revision());
                }
                backoff.reset();
                continue;
            }
            if resp.events().is_empty() {
                // A progress notification: everything up to its revision
                // has been delivered.
                if let Some(h) = resp.header() {
                    self.last_seen = self.last_seen.max(h.revision());
                }
                continue;
            }
            for event in resp.events() {
                if let Some(ev) = self.translate(event)
                    && self.tx.send(ev).await.is_err()
                {
                    return StreamEnd::ReceiverGone;
                }
                if let Some(kv) = event.kv() {
                    self.last_seen = self.last_seen.max(kv.mod_revision());
                }
            }
        }
    }

    /// etcd event → lease event. A put whose record does not decode is
    /// reported as a delete: that is how [`LeaseStore::list`] (which skips
    /// it) sees the key, and watch and list must agree.
    pub(super) fn translate(&self, event: &Event) -> Option<WatchEvent> {
        let kv = event.kv()?;
        match event.event_type() {
            EventType::Put => match self.store.decode(kv) {
                Ok(lease) => Some(WatchEvent::Put(lease)),
                Err(skip) => {
                    skip.warn();
                    match skip {
                        Skip::BadValue(key, _) => Some(WatchEvent::Delete(key)),
                        Skip::BadKey(_) => None,
                    }
                }
            },
            EventType::Delete => self.store.decode_key(kv.key()).ok().map(WatchEvent::Delete),
        }
    }
}
