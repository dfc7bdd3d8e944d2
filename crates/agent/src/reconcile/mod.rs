//! The reconciler: a thread that owns the node's overlay state in the
//! kernel and keeps it equal to what the leases say.
//!
//! It runs a pass when the set of peers changes, when the kernel reports
//! that someone deleted state it owns (a netlink monitor), and periodically
//! as a safety net. Each pass first lets the backend repair its devices,
//! then applies the desired routes, neighbours and FDB entries as a diff.

pub mod apply;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tweed_netlink::{Event, Monitor, Netlink};

use crate::backend::desired::{self, ROUTE_PROTOCOL};
use crate::backend::{Backend, BackendError, LocalNode};
use crate::backoff::Backoff;
use crate::lease::Lease;
use crate::metrics::Metrics;

/// The newest peer set (every lease but ours) and our own node, waiting
/// for the reconciler.
///
/// A slot, not a queue: the agent replaces what is there, so a reconciler
/// busy with a long pass finds one set, the newest, instead of a backlog of
/// full copies (a burst of 5000 new leases once queued dozens of 5000-lease
/// copies and drove the agent's peak memory past 200 MiB).
pub type PeersMailbox = Mailbox<PeerSet>;

/// Our own node and every other node's lease, shared, not copied.
pub type PeerSet = (Arc<LocalNode>, Arc<Vec<Arc<Lease>>>);

/// A one-value slot: posting replaces what waits there.
pub struct Mailbox<T>(Mutex<Option<T>>);

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox(Mutex::new(None))
    }
}

impl<T> Mailbox<T> {
    /// Leaves the newest value; true when the box was empty, i.e. the
    /// reader has not been told yet.
    pub fn post(&self, value: T) -> bool {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = slot.is_none();
        *slot = Some(value);
        was_empty
    }

    pub fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// What the agent tells the reconciler.
#[derive(Debug)]
pub enum Input {
    /// A new peer set waits in the [`PeersMailbox`].
    Peers,
    /// Something may have drifted: run a pass.
    Kick,
    /// Use another backend from now on (the lease changed under SRv6).
    SetBackend(Box<dyn Backend>),
    Stop,
}

impl std::fmt::Debug for dyn Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "backend {}", self.kind())
    }
}

/// Collects bursts of triggers into one pass.
const SETTLE: Duration = Duration::from_millis(20);
/// The first retry after a pass whose changes did not all land, and the
/// longest wait between retries while they keep failing.
const RETRY: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(10));

pub struct Reconciler {
    nl: Netlink,
    backend: Box<dyn Backend>,
    metrics: Arc<Metrics>,
    resync: Duration,
    managed: Arc<AtomicU32>,
    /// Told once the first pass is done (with its device setup outcome),
    /// so the agent writes the lease file only when the overlay is up.
    first_pass: Option<tokio::sync::oneshot::Sender<Result<(), BackendError>>>,
    /// What the last pass put in the kernel, when it all landed.
    applied: Option<desired::Desired>,
    mailbox: Arc<PeersMailbox>,
}

impl Reconciler {
    pub fn new(
        nl: Netlink,
        backend: Box<dyn Backend>,
        metrics: Arc<Metrics>,
        resync: Duration,
        managed: Arc<AtomicU32>,
        mailbox: Arc<PeersMailbox>,
    ) -> Reconciler {
        Reconciler {
            nl,
            backend,
            metrics,
            resync,
            managed,
            first_pass: None,
            applied: None,
            mailbox,
        }
    }

    pub fn on_first_pass(
        mut self,
        tx: tokio::sync::oneshot::Sender<Result<(), BackendError>>,
    ) -> Reconciler {
        self.first_pass = Some(tx);
        self
    }

    /// Runs until `Stop` or the sender goes away.
    pub fn run(mut self, rx: Receiver<Input>) {
        let mut state: Option<PeerSet> = None;
        let mut next_resync = Instant::now() + self.resync;
        // After a pass where some change did not land, the next full pass
        // comes soon (backing off while it keeps failing), not only at the
        // periodic resync: a transient kernel error must not leave a peer
        // unreachable for a minute.
        let mut retry = Backoff::new(RETRY);
        loop {
            let timeout = next_resync.saturating_duration_since(Instant::now());
            // A timeout is the periodic resync: a full pass.
            let mut trigger = match rx.recv_timeout(timeout) {
                Ok(input) => match self.take(input, &mut state) {
                    Some(t) => t,
                    None => return,
                },
                Err(RecvTimeoutError::Timeout) => Trigger::Full,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // Take everything that arrives within a moment: one pass serves
            // a whole burst.
            let settle_until = Instant::now() + SETTLE;
            loop {
                match rx.recv_timeout(settle_until.saturating_duration_since(Instant::now())) {
                    Ok(input) => match self.take(input, &mut state) {
                        Some(t) => trigger = trigger.max(t),
                        None => return,
                    },
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            // A set posted while we settled arrives with no notice of its
            // own (the box was not empty); pick it up too.
            if let Some(newest) = self.mailbox.take() {
                state = Some(newest);
                trigger = trigger.max(Trigger::Peers);
            }
            if trigger == Trigger::Nothing {
                continue;
            }
            if let Some((local, peers)) = &state {
                let landed = self.pass(local, peers, trigger == Trigger::Full);
                if trigger == Trigger::Full {
                    next_resync = Instant::now() + self.resync;
                }
                if landed {
                    retry.reset();
                } else {
                    let retry_in = retry.next_delay();
                    tracing::warn!(
                        retry_in_ms = retry_in.as_millis() as u64,
                        "reconcile: some changes did not land; trying again"
                    );
                    next_resync = next_resync.min(Instant::now() + retry_in);
                }
            }
        }
    }

    /// Records an input; `None` means stop.
    fn take(&mut self, input: Input, state: &mut Option<PeerSet>) -> Option<Trigger> {
        match input {
            Input::Stop => None,
            Input::Peers => match self.mailbox.take() {
                Some(newest) => {
                    *state = Some(newest);
                    Some(Trigger::Peers)
                }
                // Taken already, with an earlier notice.
                None => Some(Trigger::Nothing),
            },
            // Someone touched the kernel: only reading it tells what.
            Input::Kick => Some(Trigger::Full),
            Input::SetBackend(b) => {
                self.backend = b;
                self.applied = None;
                Some(Trigger::Full)
            }
        }
    }

    /// One pass. `full` reads the kernel to find what to change; otherwise
    /// the last applied state stands in for it (peer changes arrive by the
    /// thousand at scale, and dumping every route each time would dominate).
    /// Returns whether everything landed.
    fn pass(&mut self, local: &LocalNode, peers: &[Arc<Lease>], full: bool) -> bool {
        let started = Instant::now();
        let setup = self.backend.ensure_devices(&mut self.nl, local);
        if let Err(e) = &setup {
            tracing::error!(error = %e, "reconcile: backend devices could not be set up");
            self.metrics.reconcile_errors.inc();
        }
        let mut landed = setup.is_ok();
        if let Err(e) = self.backend.sync_peers(local, peers) {
            tracing::error!(error = %e, "reconcile: backend peers could not be set");
            self.metrics.reconcile_errors.inc();
            landed = false;
        }
        if let Some(tx) = self.first_pass.take() {
            let _ = tx.send(setup);
        }
        let desired = self.backend.desired(local, peers);
        let managed = desired
            .devices
            .first()
            .and_then(|d| self.nl.link_by_name(&d.name).ok().flatten())
            .map(|l| l.index)
            .unwrap_or(0);
        // A device that was recreated lost its entries: trust nothing.
        let device_changed = managed != self.managed.swap(managed, Ordering::Relaxed);
        let outcome = match (&self.applied, full || device_changed) {
            (Some(applied), false) => apply::execute(&mut self.nl, &apply::plan(applied, &desired)),
            _ => apply::apply(&mut self.nl, &desired),
        };
        match outcome {
            Ok(changes) => {
                if changes.added + changes.removed > 0 {
                    tracing::info!(
                        peers = peers.len(),
                        entries = desired.entry_count(),
                        added = changes.added,
                        removed = changes.removed,
                        errors = changes.errors,
                        full,
                        took_ms = started.elapsed().as_secs_f64() * 1e3,
                        "reconciled"
                    );
                }
                if changes.errors > 0 {
                    self.metrics.reconcile_errors.inc_by(changes.errors as u64);
                    // Some change did not land: the next pass looks at the
                    // kernel again.
                    self.applied = None;
                    landed = false;
                } else {
                    self.applied = Some(desired.clone());
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reconcile pass failed");
                self.metrics.reconcile_errors.inc();
                self.applied = None;
                landed = false;
            }
        }
        self.metrics.peers.set(peers.len() as i64);
        self.metrics
            .kernel_entries
            .set(desired.entry_count() as i64);
        self.metrics.reconcile_runs.inc();
        self.metrics.observe_reconcile(started.elapsed());
        landed
    }
}

/// Why a pass runs; a full pass covers a peers pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Trigger {
    /// A notice whose set was already taken.
    Nothing,
    Peers,
    Full,
}

/// Watches the kernel for deletions of state the agent owns and kicks the
/// reconciler. Runs on its own thread until the reconciler is gone.
/// `managed` is the index of the device whose neighbours the agent owns
/// (0 for none): neighbour entries expire on every device all the time, and
/// only those on ours matter.
pub fn watch_kernel(
    mut monitor: Monitor,
    device_prefixes: &'static [&'static str],
    managed: Arc<AtomicU32>,
    tx: Sender<Input>,
) {
    loop {
        let events = match monitor.wait(Duration::from_secs(1)) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "netlink monitor failed; drift is caught by the periodic resync");
                return;
            }
        };
        let ours = |name: &str| device_prefixes.iter().any(|p| name.starts_with(p));
        let relevant = events.iter().any(|e| match e {
            Event::RouteDeleted { protocol } => *protocol == ROUTE_PROTOCOL,
            Event::NeighbourDeleted { index } => {
                let m = managed.load(Ordering::Relaxed);
                m != 0 && *index == m
            }
            Event::LinkDeleted { name, .. } => ours(name),
            Event::LinkChanged { name, up, .. } => ours(name) && !up,
            Event::Overrun => true,
        });
        if relevant && tx.send(Input::Kick).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mailbox;

    #[test]
    fn the_mailbox_keeps_only_the_newest_and_says_when_to_notify() {
        let m = Mailbox::default();
        assert!(m.post(1), "the first post must notify");
        assert!(!m.post(2), "a post onto a waiting value must not");
        assert_eq!(m.take(), Some(2));
        assert_eq!(m.take(), None);
        assert!(m.post(3), "after a take, notify again");
    }
}
