//! Watching the file store: inotify tells which lease files changed, and
//! only those are read again, so a store of thousands of leases costs the
//! same per change as a store of three. A full re-read (and diff) happens
//! only when inotify overflowed, when a lease is due to expire (expiry
//! makes no file event), and every `FULL_RESYNC` as a safety net.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::FileStore;
use crate::lease::{Lease, LeaseKey};
use crate::store::{StoreError, WatchEvent};

/// How often the watcher wakes without an event, to notice expiries.
const TICK: Duration = Duration::from_secs(1);
/// How often it re-reads everything regardless.
const FULL_RESYNC: Duration = Duration::from_secs(30);

/// An inotify instance as tokio's reactor sees it.
struct Watched(Inotify);

impl AsRawFd for Watched {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// What the watcher remembers of a lease it reported: enough to tell a
/// change from a renewal and to notice an expiry, without keeping a copy
/// of every lease (thousands of them, already held by the agent).
#[derive(Clone, Copy)]
struct Seen {
    /// A hash of the attributes' JSON.
    attrs: u64,
    expires: Option<SystemTime>,
}

impl Seen {
    fn of(lease: &Lease) -> Seen {
        let mut h = std::hash::DefaultHasher::new();
        serde_json::to_vec(&lease.attrs)
            .expect("lease attributes serialise")
            .hash(&mut h);
        Seen {
            attrs: h.finish(),
            expires: lease.expires,
        }
    }
}

/// What the watcher has seen, per lease.
type View = BTreeMap<LeaseKey, Seen>;

/// The outcome of a scan: the store's revision, what it holds now, and the
/// events that lead there from the previous view.
struct Rescanned {
    revision: u64,
    view: View,
    events: Vec<WatchEvent>,
}

/// Scans the store, comparing each lease with what was seen as it is
/// read: only changed leases are kept (as events), so a full rescan of
/// thousands of unchanged leases costs one lease at a time. Returns the
/// revision, the new view and the events that lead to it.
fn rescan(store: &FileStore, seen: &View) -> Result<Rescanned, StoreError> {
    let mut next = BTreeMap::new();
    let mut events = Vec::new();
    let revision = store.scan(|lease| {
        let new = Seen::of(&lease);
        next.insert(lease.key, new);
        if seen.get(&lease.key).map(|old| old.attrs) != Some(new.attrs) {
            events.push(WatchEvent::Put(lease));
        }
    })?;
    events.extend(
        seen.keys()
            .filter(|k| !next.contains_key(k))
            .map(|k| WatchEvent::Delete(*k)),
    );
    Ok(Rescanned {
        revision,
        view: next,
        events,
    })
}

/// [`rescan`] on the blocking pool.
async fn rescan_async(
    store: &FileStore,
    seen: View,
) -> (View, Result<(u64, Vec<WatchEvent>), StoreError>) {
    let store = store.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let result = rescan(&store, &seen);
        (seen, result)
    })
    .await;
    match joined {
        Ok((_, Ok(r))) => (r.view, Ok((r.revision, r.events))),
        Ok((seen, Err(e))) => (seen, Err(e)),
        Err(e) => (
            BTreeMap::new(),
            Err(StoreError::Unavailable(format!("file store scan: {e}"))),
        ),
    }
}

/// What a burst of inotify events asks for.
#[derive(Default)]
struct Pending {
    changed: BTreeSet<LeaseKey>,
    full: bool,
}

impl Pending {
    fn note(&mut self, ev: &InotifyEvent) {
        if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            self.full = true;
            return;
        }
        let Some(name) = ev.name.as_ref().and_then(|n| n.to_str()) else {
            return;
        };
        // Hidden names are writes in progress; their rename announces them.
        if name.starts_with('.') {
            return;
        }
        if let Ok(key) = name.parse::<LeaseKey>() {
            self.changed.insert(key);
        }
    }
}

pub(super) async fn watch(
    store: FileStore,
    revision: u64,
) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
    let inotify = open_inotify(&store);
    watch_with(store, revision, inotify).await
}

/// The watch loop, with inotify or (when it could not be had) without.
async fn watch_with(
    store: FileStore,
    revision: u64,
    inotify: Result<AsyncFd<Watched>, StoreError>,
) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
    // Without inotify (the per-user instance limit, 128 by default, is
    // shared by everything the user runs) the store is still watched, by
    // re-reading it every tick: slower to notice, never blind.
    let fd = match inotify {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!(error = %e, dir = %store.subnets().display(), "file store: no inotify; polling the store every second instead");
            None
        }
    };
    let (tx, rx) = mpsc::channel(1024);
    // Registered first, listed second: nothing written in between is lost.
    let (mut seen, start) = rescan_async(&store, BTreeMap::new()).await;
    let (start_revision, _) = start?;
    tokio::spawn(async move {
        // The caller listed at `revision`; if anything changed since, it
        // must list again.
        if start_revision != revision && tx.send(WatchEvent::Resync).await.is_err() {
            return;
        }
        let mut last_full = Instant::now();
        loop {
            let mut pending = Pending::default();
            tokio::select! {
                ready = readable(fd.as_ref()) => {
                    let Ok(mut guard) = ready else { return };
                    // Drain the queue: readiness is edge-triggered, so
                    // events left unread now would wait for the next change
                    // (or the full resync) — a burst of renames once lost
                    // hundreds of leases for 30 s that way.
                    loop {
                        match guard.get_inner().0.read_events() {
                            Ok(events) => events.iter().for_each(|e| pending.note(e)),
                            Err(nix::errno::Errno::EAGAIN) => {
                                guard.clear_ready();
                                break;
                            }
                            Err(_) => {
                                pending.full = true;
                                guard.clear_ready();
                                break;
                            }
                        }
                    }
                }
                _ = tokio::time::sleep(TICK) => {}
                _ = tx.closed() => return,
            }
            let now = SystemTime::now();
            if fd.is_none()
                || last_full.elapsed() >= FULL_RESYNC
                || seen.values().any(|l| l.expires.is_some_and(|e| e <= now))
            {
                pending.full = true;
            }
            let events = if pending.full {
                last_full = Instant::now();
                let (next, result) = rescan_async(&store, std::mem::take(&mut seen)).await;
                seen = next;
                match result {
                    Ok((_, events)) => events,
                    Err(e) => {
                        tracing::warn!(error = %e, "file store: listing for watch failed");
                        continue;
                    }
                }
            } else if pending.changed.is_empty() {
                continue;
            } else {
                let reader = store.clone();
                let keys: Vec<LeaseKey> = pending.changed.into_iter().collect();
                let read = tokio::task::spawn_blocking(move || {
                    keys.into_iter()
                        .map(|k| (k, reader.read(&k)))
                        .collect::<Vec<_>>()
                })
                .await;
                let Ok(read) = read else { continue };
                let mut events = Vec::new();
                for (key, result) in read {
                    match result {
                        Ok(Some(lease)) if !lease.is_expired(now) => {
                            let new = Seen::of(&lease);
                            // A renewal moves only the expiry: no event.
                            if seen.insert(key, new).map(|old| old.attrs) != Some(new.attrs) {
                                events.push(WatchEvent::Put(lease));
                            }
                        }
                        Ok(_) => {
                            if seen.remove(&key).is_some() {
                                events.push(WatchEvent::Delete(key));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "file store: ignoring unreadable lease file")
                        }
                    }
                }
                events
            };
            for event in events {
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// Waits for inotify to have events; never returns when there is none (the
/// tick does the work then).
async fn readable(
    fd: Option<&AsyncFd<Watched>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, Watched>> {
    match fd {
        Some(fd) => fd.readable().await,
        None => std::future::pending().await,
    }
}

fn open_inotify(store: &FileStore) -> Result<AsyncFd<Watched>, StoreError> {
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(|e| StoreError::Unavailable(format!("inotify: {e}")))?;
    inotify
        .add_watch(
            &store.subnets(),
            AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_CLOSE_WRITE,
        )
        .map_err(|e| StoreError::Unavailable(format!("inotify watch: {e}")))?;
    // SAFETY: `Watched` owns the inotify descriptor and returns that same
    // open descriptor from as_raw_fd until it is dropped, which happens only
    // when the AsyncFd itself is dropped.
    unsafe { AsyncFd::register_with_interest(Watched(inotify), Interest::READABLE) }
        .map_err(|e| StoreError::Unavailable(format!("inotify: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{LeaseAttrs, LeaseKey};
    use crate::store::LeaseStore;

    #[tokio::test]
    async fn without_inotify_the_store_is_polled() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let snap = store.list().await.unwrap();
        let mut rx = watch_with(
            store.clone(),
            snap.revision,
            Err(StoreError::Unavailable("inotify: EMFILE".into())),
        )
        .await
        .unwrap();
        let lease = Lease {
            key: "10.244.9.0-24".parse::<LeaseKey>().unwrap(),
            attrs: LeaseAttrs {
                public_ip: Some("198.18.0.9".parse().unwrap()),
                public_ipv6: None,
                backend_type: "vxlan".into(),
                backend_data: serde_json::json!({}).into(),
                backend_v6_data: crate::lease::BackendData::null(),
                node_name: "n9".into(),
                segment_macs: Default::default(),
                wire_ends: Default::default(),
            },
            expires: None,
        };
        store.create(&lease, Duration::from_secs(60)).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the poll saw the new lease within 5 s")
            .unwrap();
        assert!(
            matches!(ev, WatchEvent::Put(ref l) if l.key == lease.key),
            "{ev:?}"
        );
        store.delete(&lease.key).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the poll saw the deletion within 5 s")
            .unwrap();
        assert_eq!(ev, WatchEvent::Delete(lease.key));
    }
}
