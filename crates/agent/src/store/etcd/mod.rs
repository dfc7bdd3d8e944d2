//! `etcd://host:port[,host:port]`: leases in etcd v3, in flannel's key
//! layout, so flannel and tweed nodes can share one store (and operators can
//! move a cluster from one to the other node by node).
//!
//! # URL
//!
//! | form | transport |
//! |---|---|
//! | `etcd://h1:2379,h2:2379` | plain gRPC |
//! | `etcds://h1:2379,h2:2379` | TLS; needs [`EtcdOptions::ca_file`], client certificate optional |
//! | `http://h1:2379,http://h2:2379` | plain; flannel's `--etcd-endpoints` form, pasted as is |
//! | `https://h1:2379,https://h2:2379` | TLS, as `etcds://` |
//!
//! The port defaults to 2379; hosts are names, IPv4 addresses or
//! bracketed IPv6 addresses (`etcd://[fd00::1]:2379`). TLS files given with
//! a plain URL are refused rather than silently ignored or silently turning
//! TLS on, and credentials are never taken from the URL (it shows up in
//! process listings): use [`EtcdOptions::username`]/`password`.
//!
//! # Layout (flannel's)
//!
//! `<prefix>/subnets/<key>` holds one lease, `<key>` being
//! [`LeaseKey`]'s display form (`10.244.1.0-24`, dual stack
//! `10.244.1.0-24&fd00:10:244:1::-64`) and the value exactly the
//! [`LeaseAttrs`] JSON. The expiry is not in the record: the key is attached
//! to an etcd lease with the TTL, so etcd itself deletes it when its node
//! stops renewing. `<prefix>/config` holds flannel's net-conf JSON
//! ([`EtcdStore::network_config`]). Records a foreign writer left that do
//! not parse are skipped with a warning, never fatal (a watch reports a
//! subnet key whose new value does not decode as deleted, which is how a
//! list sees it). Listed and watched leases carry no `expires`: it would
//! cost one request per lease.
//!
//! # Endpoints
//!
//! One connection per endpoint, used one at a time, like etcd's own client:
//! requests stay on the endpoint in use while it works; one that cannot be
//! connected to is skipped at once (the request goes to the next), and
//! after a request fails on the way (it may have been applied, so it is
//! reported, not repeated) or a watch breaks, the next attempt goes to the
//! next endpoint. etcd-client's multi-endpoint balancing is not used:
//! it keeps routing requests to a dead member.
//!
//! # Watching
//!
//! [`LeaseStore::watch`] runs one task per watcher that keeps a prefix
//! watch open and remembers the last revision it has delivered
//! (`last_seen`: the highest event revision, and the revision of etcd's
//! periodic progress notifications, which etcd only sends to watchers that
//! have caught up). When the stream breaks (etcd restarted, connection
//! lost, leader lost, auth token gone) it reconnects with backoff (capped
//! at 5 s) from
//! `last_seen + 1`, so events are neither missed nor repeated. When etcd
//! answers that the revision was compacted away, or opens the watch at a
//! revision older than `last_seen` (its data was wiped or restored from a
//! backup: resuming would wait for revisions that may never come), the
//! task reads the
//! current revision, sends [`WatchEvent::Resync`] (the receiver lists
//! again) and watches on from that revision: everything after it arrives
//! as events, everything before is in the receiver's new list. The
//! channel closes only when the receiver is dropped.
//!
//! Client-requested progress (`WatchProgressRequest`) is deliberately not
//! used: etcd 3.4 (Debian's) answers it with the current revision even
//! while events for that watcher are still in flight, which could move
//! `last_seen` past an event that was never delivered.

mod errors;
mod ops;
mod pool;
mod tls;
mod url;
mod watch;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::GetOptions;
use tokio::sync::mpsc;

use super::{Created, LeaseStore, Snapshot, StoreError, WatchEvent};
use crate::lease::{Lease, LeaseKey};
use errors::{config_err, connect_hint};
use pool::Pool;
use tls::connect_options;
pub use url::EtcdUrl;
use url::normalize_prefix;

/// flannel's default key prefix (`--etcd-prefix`).
pub const DEFAULT_PREFIX: &str = "/coreos.com/network";
/// etcd's client port, used when a URL names a host without a port.
pub const DEFAULT_PORT: u16 = 2379;

/// Everything but the endpoints, which come from the URL.
#[derive(Clone)]
pub struct EtcdOptions {
    /// Key prefix; flannel's default is [`DEFAULT_PREFIX`].
    pub prefix: String,
    /// CA bundle (PEM) that signed etcd's server certificate; required for
    /// TLS (there are no built-in roots: etcd clusters use private CAs).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for `--client-cert-auth` clusters.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// etcd user and password, for clusters with authentication enabled.
    pub username: Option<String>,
    pub password: Option<String>,
    /// How long connecting (and the first request) may take before the
    /// store counts as unavailable.
    pub connect_timeout: Duration,
    /// How long any single request may take.
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            prefix: DEFAULT_PREFIX.to_string(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Like the derived Debug, but never prints the password.
impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("prefix", &self.prefix)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// The store. Cloning is cheap: clones share the connections.
#[derive(Clone)]
pub struct EtcdStore {
    pool: Arc<Pool>,
    /// Normalized prefix, without a trailing slash.
    prefix: String,
    has_credentials: bool,
    request_timeout: Duration,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.pool.endpoints)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the etcd cluster `url` names and checks that it answers
    /// (and accepts our credentials) by reading `<prefix>/config`; with
    /// several endpoints, one answering is enough.
    ///
    /// [`StoreError::Config`] for a bad URL, unreadable TLS files or
    /// refused credentials (retrying will not help);
    /// [`StoreError::Unavailable`] when no endpoint answers in time (the
    /// agent retries with backoff).
    pub async fn connect(url: &str, options: EtcdOptions) -> Result<EtcdStore, StoreError> {
        let target = EtcdUrl::parse(url)?;
        let prefix = normalize_prefix(&options.prefix)?;
        let connect_options = connect_options(&target, &options)?;
        let store = EtcdStore {
            pool: Arc::new(Pool {
                clients: Mutex::new(vec![None; target.endpoints.len()]),
                endpoints: target.endpoints,
                options: connect_options,
                connect_timeout: options.connect_timeout,
                current: AtomicUsize::new(0),
            }),
            prefix,
            has_credentials: options.username.is_some(),
            request_timeout: options.request_timeout,
        };
        let what = format!("connecting to etcd at {}", store.pool.endpoints.join(","));
        let key = store.config_key();
        store
            .pool
            .call(&what, options.connect_timeout, |c| {
                let key = key.clone();
                async move {
                    let opts = GetOptions::new().with_count_only();
                    c.kv_client().get(key, Some(opts)).await
                }
            })
            .await
            .map_err(|e| connect_hint(e, target.tls))?;
        Ok(store)
    }

    /// The same cluster and connections with keys under `<prefix>/<path>`
    /// (segment address blocks: `<prefix>/segments/<name>/subnets/<key>`,
    /// out of the way of flannel's `<prefix>/subnets/`).
    pub fn nested(&self, path: &str) -> EtcdStore {
        EtcdStore {
            prefix: format!("{}/{path}", self.prefix),
            ..self.clone()
        }
    }

    /// The key prefix in use (normalized: no trailing slash).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The endpoints, as URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.pool.endpoints
    }

    /// flannel's net-conf JSON at `<prefix>/config`, if any: lets an
    /// operator migrating from flannel carry the network settings over.
    pub async fn network_config(&self) -> Result<Option<String>, StoreError> {
        let key = self.config_key();
        let Some(item) = self.get_one("reading network config", &key).await? else {
            return Ok(None);
        };
        let text = String::from_utf8(item.value().to_vec()).map_err(|e| StoreError::BadRecord {
            key: key.clone(),
            reason: format!("not UTF-8: {e}"),
        })?;
        Ok(Some(text))
    }

    /// Writes flannel's net-conf JSON to `<prefix>/config`; refuses text that
    /// is not JSON, which flannel would choke on.
    pub async fn put_network_config(&self, json: &str) -> Result<(), StoreError> {
        serde_json::from_str::<serde_json::Value>(json)
            .map_err(|e| config_err(format!("network config is not JSON: {e}")))?;
        let key = self.config_key();
        self.call("writing network config", |c| {
            let (key, json) = (key.clone(), json.to_string());
            async move { c.kv_client().put(key, json, None).await }
        })
        .await?;
        Ok(())
    }

    /// `<prefix>/config`, where flannel keeps its net-conf JSON.
    pub fn config_key(&self) -> String {
        format!("{}/config", self.prefix)
    }

    fn subnets_prefix(&self) -> String {
        format!("{}/subnets/", self.prefix)
    }

    fn lease_key(&self, key: &LeaseKey) -> String {
        format!("{}{key}", self.subnets_prefix())
    }
}

impl LeaseStore for EtcdStore {
    async fn list(&self) -> Result<Snapshot, StoreError> {
        self.list_leases().await
    }

    async fn create(&self, lease: &Lease, ttl: Duration) -> Result<Created, StoreError> {
        self.create_lease(lease, ttl).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        self.renew_lease(lease, ttl).await
    }

    async fn delete(&self, key: &LeaseKey) -> Result<(), StoreError> {
        self.delete_lease(key).await
    }

    async fn watch(&self, revision: u64) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
        Ok(watch::spawn(self.clone(), revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_not_in_debug_output() {
        let o = EtcdOptions {
            password: Some("hunter2".into()),
            ..EtcdOptions::default()
        };
        assert!(!format!("{o:?}").contains("hunter2"));
    }
}
