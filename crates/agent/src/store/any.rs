//! The store chosen at start-up by `--store URL`. The trait's async methods
//! make it unusable as a trait object, so this enum forwards to whichever
//! store was picked.

use std::time::Duration;

use tokio::sync::mpsc;

use super::etcd::{EtcdOptions, EtcdStore};
use super::file::FileStore;
use super::kube::blocks::KubeBlockStore;
use super::kube::{KubeOptions, KubeStore};
use super::{Assignment, Created, LeaseStore, Snapshot, StoreError, WatchEvent};
use crate::lease::{Lease, LeaseKey};

#[derive(Debug, Clone)]
pub enum AnyStore {
    File(FileStore),
    Etcd(EtcdStore),
    Kube(Box<KubeStore>),
    /// Segment address blocks in kube mode ([`AnyStore::segment_blocks`]).
    KubeBlocks(Box<KubeBlockStore>),
}

impl AnyStore {
    /// Opens the store a URL names: `file:///dir`, or etcd as
    /// `etcd://host:port[,host:port]`, `etcds://...` (TLS) or flannel's
    /// `http(s)://host:port[,...]` endpoint lists. `kube` needs
    /// [`KubeOptions`]: see [`AnyStore::open_with`].
    pub async fn open(url: &str, etcd: EtcdOptions) -> Result<AnyStore, StoreError> {
        AnyStore::open_with(url, etcd, None).await
    }

    /// [`AnyStore::open`], plus `kube` (the Kubernetes API, in-cluster or
    /// through a kubeconfig) when `kube` options are given.
    pub async fn open_with(
        url: &str,
        etcd: EtcdOptions,
        kube: Option<KubeOptions>,
    ) -> Result<AnyStore, StoreError> {
        if url == "kube" {
            let opts = kube.ok_or_else(|| {
                StoreError::Config("--store kube: no node name or network given".into())
            })?;
            return Ok(AnyStore::Kube(Box::new(KubeStore::connect(opts).await?)));
        }
        if url.starts_with("file://") {
            return Ok(AnyStore::File(FileStore::from_url(url)?));
        }
        if AnyStore::is_etcd_url(url) {
            return Ok(AnyStore::Etcd(EtcdStore::connect(url, etcd).await?));
        }
        Err(StoreError::Config(format!(
            "--store {url:?}: unknown store; use file:///path, etcd://host:port[,host:port] or kube"
        )))
    }

    /// Whether `url` names an etcd store (any of the forms [`AnyStore::open`]
    /// takes for etcd).
    pub fn is_etcd_url(url: &str) -> bool {
        ["etcd://", "etcds://", "http://", "https://"]
            .iter()
            .any(|p| url.starts_with(p))
    }

    /// The store of segment `name`'s address blocks: the same kind of
    /// lease, keyed by block instead of pod subnet, in a space of its own
    /// (file: `<dir>/segments/<name>/`, etcd: `<prefix>/segments/<name>/`),
    /// so that claiming one is the same atomic create as leasing a subnet.
    pub fn segment_blocks(&self, name: &str) -> Result<AnyStore, StoreError> {
        match self {
            AnyStore::File(s) => Ok(AnyStore::File(s.nested(&format!("segments/{name}"))?)),
            AnyStore::Etcd(s) => Ok(AnyStore::Etcd(s.nested(&format!("segments/{name}")))),
            AnyStore::Kube(s) => Ok(AnyStore::KubeBlocks(Box::new(s.segment_blocks(name)))),
            AnyStore::KubeBlocks(_) => Err(StoreError::Config(
                "segment blocks have no segments of their own".into(),
            )),
        }
    }
}

macro_rules! forward {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::File($s) => $call,
            AnyStore::Etcd($s) => $call,
            AnyStore::Kube($s) => $call,
            AnyStore::KubeBlocks($s) => $call,
        }
    };
}

impl LeaseStore for AnyStore {
    async fn assignment(&self) -> Result<Assignment, StoreError> {
        forward!(self, s => s.assignment().await)
    }

    async fn announce_ready(&self, lease: &Lease) -> Result<(), StoreError> {
        forward!(self, s => s.announce_ready(lease).await)
    }

    async fn list(&self) -> Result<Snapshot, StoreError> {
        forward!(self, s => s.list().await)
    }

    async fn create(&self, lease: &Lease, ttl: Duration) -> Result<Created, StoreError> {
        forward!(self, s => s.create(lease, ttl).await)
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        forward!(self, s => s.renew(lease, ttl).await)
    }

    async fn delete(&self, key: &LeaseKey) -> Result<(), StoreError> {
        forward!(self, s => s.delete(key).await)
    }

    async fn watch(&self, revision: u64) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
        forward!(self, s => s.watch(revision).await)
    }
}
