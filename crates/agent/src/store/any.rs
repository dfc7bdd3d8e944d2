//! The store chosen at start-up by `--store URL`. The trait's async methods
//! make it unusable as a trait object, so this enum forwards to whichever
//! store was picked.

use std::time::Duration;

use tokio::sync::mpsc;

use super::file::FileStore;
use super::{Created, LeaseStore, Snapshot, StoreError, WatchEvent};
use crate::lease::{Lease, LeaseKey};

#[derive(Debug, Clone)]
pub enum AnyStore {
    File(FileStore),
}

impl AnyStore {
    /// Opens the store a URL names.
    pub async fn open(url: &str) -> Result<AnyStore, StoreError> {
        if url.starts_with("file://") {
            return Ok(AnyStore::File(FileStore::from_url(url)?));
        }
        Err(StoreError::Config(format!(
            "--store {url:?}: unknown store; use file:///path or etcd://host:port[,host:port]"
        )))
    }
}

impl LeaseStore for AnyStore {
    async fn list(&self) -> Result<Snapshot, StoreError> {
        match self {
            AnyStore::File(s) => s.list().await,
        }
    }

    async fn create(&self, lease: &Lease, ttl: Duration) -> Result<Created, StoreError> {
        match self {
            AnyStore::File(s) => s.create(lease, ttl).await,
        }
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        match self {
            AnyStore::File(s) => s.renew(lease, ttl).await,
        }
    }

    async fn delete(&self, key: &LeaseKey) -> Result<(), StoreError> {
        match self {
            AnyStore::File(s) => s.delete(key).await,
        }
    }

    async fn watch(&self, revision: u64) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
        match self {
            AnyStore::File(s) => s.watch(revision).await,
        }
    }
}
