//! The agent's Prometheus metrics, served on `/metrics`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub peers: Gauge,
    pub kernel_entries: Gauge,
    pub reconcile_runs: Counter,
    pub reconcile_errors: Counter,
    reconcile_seconds: Histogram,
    pub lease_renewals: Counter,
    pub lease_losses: Counter,
    pub store_errors: Counter,
    pub ready: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub store_events: Counter<u64, AtomicU64>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tweed");
        let peers = Gauge::default();
        let kernel_entries = Gauge::default();
        let reconcile_runs = Counter::default();
        let reconcile_errors = Counter::default();
        let reconcile_seconds = Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
        let lease_renewals = Counter::default();
        let lease_losses = Counter::default();
        let store_errors = Counter::default();
        let ready = Gauge::default();
        let store_events = Counter::default();
        registry.register("peers", "Peer leases known to this agent", peers.clone());
        registry.register(
            "kernel_entries",
            "Routes, neighbours and FDB entries the agent keeps in the kernel",
            kernel_entries.clone(),
        );
        registry.register(
            "reconcile_runs",
            "Reconcile passes run",
            reconcile_runs.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Kernel changes that failed during reconcile",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile pass took",
            reconcile_seconds.clone(),
        );
        registry.register(
            "lease_renewals",
            "Successful renewals of this node's lease",
            lease_renewals.clone(),
        );
        registry.register(
            "lease_losses",
            "Times this node's lease was found lost or revoked",
            lease_losses.clone(),
        );
        registry.register(
            "store_errors",
            "Failed store operations",
            store_errors.clone(),
        );
        registry.register(
            "store_events",
            "Lease changes received from the store",
            store_events.clone(),
        );
        registry.register(
            "ready",
            "1 once the lease file is written and the backend is up",
            ready.clone(),
        );
        Metrics {
            registry,
            peers,
            kernel_entries,
            reconcile_runs,
            reconcile_errors,
            reconcile_seconds,
            lease_renewals,
            lease_losses,
            store_errors,
            ready,
            store_events,
        }
    }

    pub fn observe_reconcile(&self, took: Duration) {
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
