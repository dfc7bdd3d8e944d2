//! The reconciler: a thread that owns the node's overlay state in the
//! kernel and keeps it equal to what the leases say.
//!
//! It runs a pass when the set of peers changes, when the kernel reports
//! that someone deleted state it owns (a netlink monitor), and periodically
//! as a safety net. Each pass first lets the backend repair its devices,
//! then applies the desired routes, neighbours and FDB entries as a diff.

pub mod apply;
pub mod desired;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use tweed_netlink::{Event, Monitor, Netlink};

use crate::backend::{Backend, LocalNode};
use crate::lease::Lease;
use crate::metrics::Metrics;
use desired::ROUTE_PROTOCOL;

/// What the agent tells the reconciler.
#[derive(Debug)]
pub enum Input {
    /// The current peers (every lease but ours) and our own node.
    Peers {
        local: Arc<LocalNode>,
        peers: Arc<Vec<Lease>>,
    },
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

pub struct Reconciler {
    nl: Netlink,
    backend: Box<dyn Backend>,
    metrics: Arc<Metrics>,
    resync: Duration,
    managed: Arc<AtomicU32>,
    /// Told once the first pass is done (with its device setup outcome),
    /// so the agent writes the lease file only when the overlay is up.
    first_pass: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    /// What the last pass put in the kernel, when it all landed.
    applied: Option<desired::Desired>,
}

impl Reconciler {
    pub fn new(
        nl: Netlink,
        backend: Box<dyn Backend>,
        metrics: Arc<Metrics>,
        resync: Duration,
        managed: Arc<AtomicU32>,
    ) -> Reconciler {
        Reconciler {
            nl,
            backend,
            metrics,
            resync,
            managed,
            first_pass: None,
            applied: None,
        }
    }

    pub fn on_first_pass(
        mut self,
        tx: tokio::sync::oneshot::Sender<Result<(), String>>,
    ) -> Reconciler {
        self.first_pass = Some(tx);
        self
    }

    /// Runs until `Stop` or the sender goes away.
    pub fn run(mut self, rx: Receiver<Input>) {
        let mut state: Option<(Arc<LocalNode>, Arc<Vec<Lease>>)> = None;
        let mut next_resync = Instant::now() + self.resync;
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
            if let Some((local, peers)) = &state {
                self.pass(local, peers, trigger == Trigger::Full);
                if trigger == Trigger::Full {
                    next_resync = Instant::now() + self.resync;
                }
            }
        }
    }

    /// Records an input; `None` means stop.
    fn take(
        &mut self,
        input: Input,
        state: &mut Option<(Arc<LocalNode>, Arc<Vec<Lease>>)>,
    ) -> Option<Trigger> {
        match input {
            Input::Stop => None,
            Input::Peers { local, peers } => {
                *state = Some((local, peers));
                Some(Trigger::Peers)
            }
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
    fn pass(&mut self, local: &LocalNode, peers: &[Lease], full: bool) {
        let started = Instant::now();
        let setup = self.backend.ensure_devices(&mut self.nl, local);
        if let Err(e) = &setup {
            tracing::error!(error = %e, "reconcile: backend devices could not be set up");
            self.metrics.reconcile_errors.inc();
        }
        if let Some(tx) = self.first_pass.take() {
            let _ = tx.send(setup.map_err(|e| e.to_string()));
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
                } else {
                    self.applied = Some(desired.clone());
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reconcile pass failed");
                self.metrics.reconcile_errors.inc();
                self.applied = None;
            }
        }
        self.metrics.peers.set(peers.len() as i64);
        self.metrics
            .kernel_entries
            .set(desired.entry_count() as i64);
        self.metrics.reconcile_runs.inc();
        self.metrics.observe_reconcile(started.elapsed());
    }
}

/// Why a pass runs; a full pass covers a peers pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Trigger {
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
    device_prefix: &'static str,
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
        let relevant = events.iter().any(|e| match e {
            Event::RouteDeleted { protocol } => *protocol == ROUTE_PROTOCOL,
            Event::NeighbourDeleted { index } => {
                let m = managed.load(Ordering::Relaxed);
                m != 0 && *index == m
            }
            Event::LinkDeleted { name, .. } => name.starts_with(device_prefix),
            Event::LinkChanged { name, up, .. } => name.starts_with(device_prefix) && !up,
            Event::Overrun => true,
        });
        if relevant && tx.send(Input::Kick).is_err() {
            return;
        }
    }
}
