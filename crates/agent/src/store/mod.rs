//! Lease stores: where nodes record which subnet each one holds.
//!
//! One trait, one small module per implementation (flannel's shape); the
//! rest of the agent never knows which one runs. Stores are chosen by URL:
//! `file:///dir` (the embedded default, for one machine and the lab) and
//! `etcd://host:port[,host:port]` (etcd v3, flannel's key layout) and
//! `kube` (Node objects in the Kubernetes API).
//!
//! Two models of who picks a node's subnet meet here. In the file and
//! etcd stores the agents pick free subnets and race to create leases; in
//! Kubernetes the controller-manager assigns each node its `podCIDR` and
//! the agent only publishes its record next to it. [`LeaseStore::assignment`]
//! tells the agent which model the store follows, and
//! [`LeaseStore::announce_ready`] lets a store tell its world that the node's
//! network is up; both default to the agent-picks model and to nothing.

pub mod any;
pub mod etcd;
pub mod etcd_tls_dir;
pub mod file;
pub mod kube;
pub mod retry;

use std::future::Future;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;

use crate::lease::{Lease, LeaseKey};

#[derive(Debug, Error)]
pub enum StoreError {
    /// The store cannot be reached or used right now; worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A record in the store could not be understood.
    #[error("store record {key}: {reason}")]
    BadRecord { key: String, reason: String },
    /// Our lease is gone or held by someone else.
    #[error("lease {0} is no longer ours")]
    LeaseLost(LeaseKey),
    /// The URL or options given for the store are wrong.
    #[error("store configuration: {0}")]
    Config(String),
}

/// All leases at one point in time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub leases: Vec<Lease>,
    /// Where a watch started right after this snapshot begins.
    pub revision: u64,
}

/// Something changed in the store.
// Events are few and moved once; boxing the lease would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// A lease was created or its record changed.
    Put(Lease),
    /// A lease was deleted or expired.
    Delete(LeaseKey),
    /// The watch could not continue exactly where it was (compaction,
    /// reconnect): the receiver must list again and diff.
    Resync,
}

/// The result of an attempt to create a lease.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    Yes(Lease),
    /// Someone else holds that key.
    Taken,
}

/// Who decides which subnet this node gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// The agent picks a free subnet and creates the lease (file, etcd).
    AgentPicks,
    /// Someone else assigned this node's subnet (kube: the
    /// controller-manager's `podCIDR`s); the agent publishes its record
    /// for it with [`LeaseStore::create`].
    Assigned(LeaseKey),
    /// Someone else assigns subnets and has not (usably) done so for this
    /// node yet; the text says what is missing and who must act. The agent
    /// logs it, stays not ready and asks again.
    Pending(String),
}

/// A store of subnet leases.
pub trait LeaseStore: Send + Sync + 'static {
    /// Whether this node's subnet is the agent's choice or assigned.
    fn assignment(&self) -> impl Future<Output = Result<Assignment, StoreError>> + Send {
        async { Ok(Assignment::AgentPicks) }
    }

    /// Tells the store's world that the node's network is ready (kube: the
    /// node condition `NetworkUnavailable=False`). Called once the lease
    /// file is written and the backend is up, and again after each renewal.
    fn announce_ready(&self, lease: &Lease) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = lease;
        async { Ok(()) }
    }

    /// Every unexpired lease, and the revision to watch from.
    fn list(&self) -> impl Future<Output = Result<Snapshot, StoreError>> + Send;

    /// Creates `lease` if and only if its key is free, atomically.
    fn create(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = Result<Created, StoreError>> + Send;

    /// Extends our lease (and updates its record); [`StoreError::LeaseLost`]
    /// when the key is gone or now belongs to another node.
    fn renew(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = Result<Lease, StoreError>> + Send;

    /// Removes a lease (operators, tests; the agent keeps its lease on exit
    /// so a restart finds it again).
    fn delete(&self, key: &LeaseKey) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Streams changes after `revision`. The stream ends if the store goes
    /// away; the caller then lists again and re-watches.
    fn watch(
        &self,
        revision: u64,
    ) -> impl Future<Output = Result<mpsc::Receiver<WatchEvent>, StoreError>> + Send;
}
