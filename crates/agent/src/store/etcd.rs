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

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, Event, EventType, GetOptions,
    Identity, KeyValue, PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::mpsc;

use super::{Created, LeaseStore, Snapshot, StoreError, WatchEvent};
use crate::backoff::Backoff;
use crate::lease::{Lease, LeaseAttrs, LeaseKey};

/// flannel's default key prefix (`--etcd-prefix`).
pub const DEFAULT_PREFIX: &str = "/coreos.com/network";
/// etcd's client port, used when a URL names a host without a port.
pub const DEFAULT_PORT: u16 = 2379;

/// Leases read per request by [`LeaseStore::list`]: keeps every response
/// far below gRPC's message size limit however large the cluster.
const LIST_PAGE: i64 = 500;
/// HTTP/2 pings on idle connections, so a watch on a silently dead
/// connection (peer gone, no RST) is noticed. etcd refuses pings more often
/// than every 5 s by default.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd raises TTLs below its minimum (1.5 election timeouts, 2 s by
/// default) to that minimum; a lease granted up to this long is still the
/// lease asked for, not one that needs replacing.
const TTL_TOLERANCE_SECS: i64 = 10;
/// How often renew re-reads a key that changed between read and write
/// before giving up for this round.
const RENEW_ATTEMPTS: usize = 5;

/// gRPC status codes (tonic's `Code` as numbers; tonic is not a direct
/// dependency).
const GRPC_PERMISSION_DENIED: i32 = 7;
const GRPC_UNAVAILABLE: i32 = 14;
const GRPC_UNAUTHENTICATED: i32 = 16;

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

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// Whether the endpoints speak TLS.
    pub tls: bool,
    /// `http://host:port` or `https://host:port`, as the client wants them.
    pub endpoints: Vec<String>,
}

fn config_err(msg: impl Into<String>) -> StoreError {
    StoreError::Config(msg.into())
}

impl EtcdUrl {
    /// Parses any of the forms in the module documentation.
    pub fn parse(url: &str) -> Result<EtcdUrl, StoreError> {
        let bad = |why: &str| {
            config_err(format!(
                "{url:?}: {why} (expected etcd://host:port[,host:port], etcds://... for TLS, \
                 or http(s)://host:port[,http(s)://host:port])"
            ))
        };
        let (tls, hosts): (bool, Vec<&str>) = if let Some(rest) = url.strip_prefix("etcd://") {
            (false, rest.split(',').collect())
        } else if let Some(rest) = url.strip_prefix("etcds://") {
            (true, rest.split(',').collect())
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let tls = url.starts_with("https://");
            let scheme = if tls { "https://" } else { "http://" };
            let mut hosts = Vec::new();
            for item in url.split(',') {
                let host = item
                    .strip_prefix(scheme)
                    .ok_or_else(|| bad("all endpoints must use the same scheme"))?;
                hosts.push(host);
            }
            (tls, hosts)
        } else {
            return Err(bad("unknown scheme"));
        };
        let scheme = if tls { "https" } else { "http" };
        let mut endpoints = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            // One trailing slash is harmless (`etcd://h:2379/`); on the last
            // host only, since that is where a URL's path would begin.
            let host = if i + 1 == hosts.len() {
                host.strip_suffix('/').unwrap_or(host)
            } else {
                host
            };
            let host_port = parse_host_port(host).map_err(|why| bad(&why))?;
            endpoints.push(format!("{scheme}://{host_port}"));
        }
        Ok(EtcdUrl { tls, endpoints })
    }
}

/// Checks one `host[:port]` and returns it with the port filled in.
fn parse_host_port(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("an endpoint is empty".into());
    }
    if s.contains('@') {
        return Err(
            "credentials do not belong in the URL; use the username/password options".into(),
        );
    }
    if s.contains(['/', '?', '#']) {
        return Err(format!(
            "{s:?}: a path or query is not allowed; the key prefix is a separate option"
        ));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: unclosed '['"))?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{s:?}: expected ':' after ']'"))?,
            ),
        };
        (format!("[{ip}]"), port)
    } else {
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if host.contains(':') {
            return Err(format!(
                "{s:?}: put IPv6 addresses in brackets ([fd00::1]:2379)"
            ));
        }
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        if !valid {
            return Err(format!("{host:?} is not a host name or address"));
        }
        (host.to_string(), port)
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{p:?} is not a port")),
        },
    };
    Ok(format!("{host}:{port}"))
}

/// `/coreos.com/network/` → `/coreos.com/network`: one canonical spelling,
/// so keys never get a double slash.
fn normalize_prefix(prefix: &str) -> Result<String, StoreError> {
    let p = prefix.trim_end_matches('/');
    if !p.is_empty() && !p.starts_with('/') {
        return Err(config_err(format!(
            "etcd prefix {prefix:?} must start with '/' (flannel's is {DEFAULT_PREFIX})"
        )));
    }
    Ok(p.to_string())
}

/// One client per endpoint, used one at a time: etcd's own Go client sticks
/// to one endpoint while it works and moves on when it fails. (etcd-client's
/// balanced channel keeps sending requests to a dead endpoint: a cluster
/// with one member down would fail every other request.)
struct Pool {
    endpoints: Vec<String>,
    options: ConnectOptions,
    connect_timeout: Duration,
    /// Connected lazily, kept once connected (each reconnects by itself).
    clients: Mutex<Vec<Option<Client>>>,
    /// The endpoint in use.
    current: AtomicUsize,
}

impl Pool {
    /// The client for endpoint `idx`, connecting it first if needed.
    async fn client(&self, idx: usize) -> Result<Client, StoreError> {
        if let Some(c) = self.lock()[idx].clone() {
            return Ok(c);
        }
        let what = format!("connecting to etcd at {}", self.endpoints[idx]);
        let client = with_deadline(
            self.connect_timeout,
            &what,
            Client::connect([&self.endpoints[idx]], Some(self.options.clone())),
        )
        .await?;
        self.lock()[idx] = Some(client.clone());
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Client>>> {
        // A panic while holding this lock cannot leave the vector invalid.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves on from endpoint `idx` after it failed (unless another request
    /// already did).
    fn rotate_from(&self, idx: usize) {
        let next = (idx + 1) % self.endpoints.len();
        let _ = self
            .current
            .compare_exchange(idx, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The endpoint in use and its client, moving on past endpoints that
    /// cannot be connected to.
    async fn pick(&self) -> Result<(usize, Client), StoreError> {
        let first = self.current.load(Ordering::Relaxed);
        let mut last_err = None;
        for step in 0..self.endpoints.len() {
            let idx = (first + step) % self.endpoints.len();
            match self.client(idx).await {
                Ok(c) => return Ok((idx, c)),
                Err(e @ StoreError::Config(_)) => return Err(e),
                Err(e) => {
                    self.rotate_from(idx);
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| config_err("no etcd endpoints")))
    }

    /// Runs one request on the endpoint in use, within `limit`. A request
    /// that could not even connect goes to the next endpoint; one that
    /// failed on the way (it may have been applied) is reported, and the
    /// next request goes elsewhere.
    async fn call<T, Fut>(
        &self,
        what: &str,
        limit: Duration,
        op: impl Fn(Client) -> Fut,
    ) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last_err = None;
        for _ in 0..self.endpoints.len() {
            let (idx, client) = self.pick().await?;
            match with_deadline_raw(limit, op(client)).await {
                Some(Ok(v)) => return Ok(v),
                Some(Err(e)) if never_sent(&e) => {
                    self.rotate_from(idx);
                    last_err = Some(etcd_error(what, e));
                }
                Some(Err(e)) => {
                    if is_transport(&e) {
                        self.rotate_from(idx);
                    }
                    return Err(etcd_error(what, e));
                }
                None => {
                    self.rotate_from(idx);
                    return Err(timeout_error(what, limit));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| timeout_error(what, limit)))
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

    /// Runs one request (see [`Pool::call`]) with the request timeout; the
    /// error says what was being done.
    async fn call<T, Fut>(&self, what: &str, op: impl Fn(Client) -> Fut) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.pool.call(what, self.request_timeout, op).await
    }

    /// Grants an etcd lease of `ttl` seconds and returns its id.
    async fn grant(&self, ttl: i64) -> Result<i64, StoreError> {
        let resp = self
            .call("granting a lease", |c| async move {
                c.lease_client().grant(ttl, None).await
            })
            .await?;
        Ok(resp.id())
    }

    /// Revokes a lease we granted but did not use; failure only means it
    /// lingers until its TTL runs out.
    async fn revoke_quietly(&self, id: i64) {
        let revoked = self
            .call("revoking a lease", |c| async move {
                c.lease_client().revoke(id).await
            })
            .await;
        if let Err(e) = revoked {
            tracing::debug!(error = %e, lease = id, "etcd: unused lease left to expire");
        }
    }

    /// Extends lease `id` by its TTL when it is alive and was granted for
    /// `want` seconds. `Ok(false)` when it is gone or has another TTL: the
    /// caller then attaches the key to a fresh lease.
    async fn keep_alive(&self, id: i64, want: i64) -> Result<bool, StoreError> {
        let ttl = self
            .call("reading a lease's TTL", |c| async move {
                c.lease_client().time_to_live(id, None).await
            })
            .await?;
        let granted = ttl.granted_ttl();
        if ttl.ttl() <= 0 || granted < want || granted > want.max(TTL_TOLERANCE_SECS) {
            return Ok(false);
        }
        // keep_alive sends one refresh and waits for its answer (an error if
        // the lease is gone); dropping the keeper and stream ends the stream.
        let refreshed = self
            .call("refreshing a lease", |c| async move {
                match c.lease_client().keep_alive(id).await {
                    Ok(_) => Ok(true),
                    Err(etcd_client::Error::LeaseKeepAliveError(_)) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(refreshed)
    }

    /// Reads one key.
    async fn get_one(&self, what: &str, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let mut resp = self
            .call(what, |c| {
                let key = key.to_string();
                async move { c.kv_client().get(key, None).await }
            })
            .await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    /// Runs a transaction; `Ok(true)` when its comparison held.
    async fn txn(&self, what: &str, txn: Txn) -> Result<bool, StoreError> {
        let resp = self
            .call(what, |c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        Ok(resp.succeeded())
    }

    /// The store's current revision (a count-only read).
    async fn current_revision(&self) -> Result<i64, StoreError> {
        let prefix = self.subnets_prefix();
        let resp = self
            .call("reading the revision", |c| {
                let prefix = prefix.clone();
                async move {
                    let opts = GetOptions::new().with_prefix().with_count_only();
                    c.kv_client().get(prefix, Some(opts)).await
                }
            })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Turns a stored key/value into a lease, or says why it is not one.
    fn decode(&self, item: &KeyValue) -> Result<Lease, Skip> {
        let key = self.decode_key(item.key())?;
        let attrs: LeaseAttrs =
            serde_json::from_slice(item.value()).map_err(|e| Skip::BadValue(key, e.to_string()))?;
        Ok(Lease {
            key,
            attrs,
            expires: None,
        })
    }

    fn decode_key(&self, raw: &[u8]) -> Result<LeaseKey, Skip> {
        let text = String::from_utf8_lossy(raw);
        text.strip_prefix(&self.subnets_prefix())
            .and_then(|k| k.parse::<LeaseKey>().ok())
            .ok_or_else(|| Skip::BadKey(text.into_owned()))
    }

    async fn list_leases(&self) -> Result<Snapshot, StoreError> {
        let prefix = self.subnets_prefix();
        let end = prefix_end(prefix.as_bytes());
        let mut from = prefix.clone().into_bytes();
        let mut revision = 0;
        let mut leases = Vec::new();
        loop {
            // Later pages read at the first page's revision: one consistent
            // snapshot however many pages it takes.
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let resp = self
                .call("listing leases", |c| {
                    let (from, opts) = (from.clone(), opts.clone());
                    async move { c.kv_client().get(from, Some(opts)).await }
                })
                .await?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            for item in resp.kvs() {
                match self.decode(item) {
                    Ok(lease) => leases.push(lease),
                    Err(skip) => skip.warn(),
                }
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        leases.sort_by_key(|l| l.key);
        Ok(Snapshot {
            leases,
            revision: u64::try_from(revision).unwrap_or(0),
        })
    }

    async fn create_lease(&self, lease: &Lease, ttl: Duration) -> Result<Created, StoreError> {
        let key = self.lease_key(&lease.key);
        let value = encode(&key, &lease.attrs)?;
        let start = SystemTime::now();
        let id = self.grant(ttl_secs(ttl)).await?;
        // flannel's create: succeeds only if the key does not exist
        // (create_revision 0), so two nodes can never both win.
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(id)),
            )]);
        match self.txn("creating a lease", txn).await {
            Ok(true) => Ok(Created::Yes(Lease {
                expires: Some(start + ttl),
                ..lease.clone()
            })),
            Ok(false) => {
                self.revoke_quietly(id).await;
                Ok(Created::Taken)
            }
            Err(e) => {
                // If the write did land, revoking removes it again, so
                // the store agrees with the error we report.
                self.revoke_quietly(id).await;
                Err(e)
            }
        }
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let key = self.lease_key(&lease.key);
        let value = encode(&key, &lease.attrs)?;
        let want = ttl_secs(ttl);
        for _ in 0..RENEW_ATTEMPTS {
            let start = SystemTime::now();
            let current = self.get_one("reading a lease", &key).await?;
            let Some(current) = current.filter(|c| is_ours(lease, c)) else {
                return Err(StoreError::LeaseLost(lease.key));
            };
            let alive = current.lease() != 0 && self.keep_alive(current.lease(), want).await?;
            let renewed = Lease {
                expires: Some(start + ttl),
                ..lease.clone()
            };
            if alive && current.value() == value.as_slice() {
                return Ok(renewed);
            }
            // The record changed, or its etcd lease is gone or has another
            // TTL: write it again, but only over exactly what we read, so a
            // node that took the key over meanwhile is not overwritten.
            let (id, fresh) = if alive {
                (current.lease(), false)
            } else {
                (self.grant(want).await?, true)
            };
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    current.mod_revision(),
                )])
                .and_then([TxnOp::put(
                    key.clone(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(id)),
                )]);
            match self.txn("renewing a lease", txn).await {
                Ok(true) => return Ok(renewed),
                Ok(false) => {
                    if fresh {
                        self.revoke_quietly(id).await;
                    }
                }
                // Unlike create, keep the fresh lease: if the write did land,
                // revoking it would delete the very key we just renewed.
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(format!(
            "renewing {key}: the key kept changing while we renewed it"
        )))
    }

    async fn delete_lease(&self, key: &LeaseKey) -> Result<(), StoreError> {
        let key = self.lease_key(key);
        // The etcd lease it was attached to simply expires later.
        self.call("deleting a lease", |c| {
            let key = key.clone();
            async move { c.kv_client().delete(key, None).await }
        })
        .await?;
        Ok(())
    }
}

/// True when the stored record at our key describes our node.
fn is_ours(lease: &Lease, stored: &KeyValue) -> bool {
    serde_json::from_slice::<LeaseAttrs>(stored.value())
        .map(|attrs| lease.same_owner(&attrs))
        .unwrap_or(false)
}

fn encode(key: &str, attrs: &LeaseAttrs) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(attrs).map_err(|e| StoreError::BadRecord {
        key: key.to_string(),
        reason: format!("cannot encode: {e}"),
    })
}

/// etcd TTLs are whole seconds: round up, and never 0 (which etcd would
/// replace with its minimum anyway).
fn ttl_secs(ttl: Duration) -> i64 {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX).max(1)
}

/// The end of the key range holding every key that starts with `prefix`
/// (etcd's convention: the prefix with its last byte incremented).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // all keys
}

/// A stored item that is not a lease of ours to report.
enum Skip {
    /// Not `<prefix>/subnets/<lease key>`.
    BadKey(String),
    /// The key is a lease key, but the value is not a flannel record.
    BadValue(LeaseKey, String),
}

impl Skip {
    fn warn(&self) {
        match self {
            Skip::BadKey(key) => {
                tracing::warn!(key = %key, "etcd: ignoring a key that is not a subnet lease")
            }
            Skip::BadValue(key, reason) => {
                tracing::warn!(key = %key, reason = %reason, "etcd: ignoring an unreadable lease record")
            }
        }
    }
}

/// Awaits `fut` for at most `limit`; `None` when time ran out.
async fn with_deadline_raw<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(limit, fut).await.ok()
}

async fn with_deadline<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match with_deadline_raw(limit, fut).await {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(etcd_error(what, e)),
        None => Err(timeout_error(what, limit)),
    }
}

/// True when a request failed while connecting (tonic reports connection
/// failures as UNAVAILABLE with the cause attached; etcd's own UNAVAILABLE
/// answers carry none), so it never reached etcd and may go elsewhere.
fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            i32::from(s.code()) == GRPC_UNAVAILABLE && std::error::Error::source(s).is_some()
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// True when a request failed in the connection rather than with an
/// answer from etcd.
fn is_transport(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => std::error::Error::source(s).is_some(),
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// Adds what to check when a connection was accepted and then failed: the
/// TLS layer says little more than "broken pipe" when etcd refuses a
/// client certificate, or when one side speaks TLS and the other does not.
fn connect_hint(err: StoreError, tls: bool) -> StoreError {
    match err {
        StoreError::Unavailable(msg)
            if !msg.contains("tcp connect error") && !msg.contains("no answer") =>
        {
            let hint = if tls {
                "the TLS connection failed: check ca_file, cert_file and key_file; \
                 etcd may require a client certificate signed by a CA it trusts"
            } else {
                "the connection failed after it was accepted: if etcd serves TLS, use etcds://"
            };
            StoreError::Unavailable(format!("{msg} -- {hint}"))
        }
        other => other,
    }
}

fn timeout_error(what: &str, limit: Duration) -> StoreError {
    StoreError::Unavailable(format!("{what}: no answer from etcd within {limit:?}"))
}

/// Classifies a client error: refused credentials, permissions and
/// certificates are configuration problems (retrying will not fix them),
/// everything else is the store being unavailable for now.
fn etcd_error(what: &str, e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    match e {
        // A status etcd itself sent (transport failures carry a source).
        E::GRpcStatus(status) if std::error::Error::source(&status).is_none() => {
            let msg = status.message();
            let code = i32::from(status.code());
            let auth = msg.contains("authentication")
                || msg.contains("user name is empty")
                || msg.contains("invalid auth token");
            if auth || code == GRPC_UNAUTHENTICATED {
                config_err(format!("{what}: etcd refused our credentials: {msg}"))
            } else if code == GRPC_PERMISSION_DENIED {
                config_err(format!(
                    "{what}: etcd denied permission: {msg} (the user needs read/write on the prefix)"
                ))
            } else {
                StoreError::Unavailable(format!("{what}: {msg}"))
            }
        }
        E::InvalidArgs(msg) => config_err(format!("{what}: {msg}")),
        E::InvalidUri(err) => config_err(format!("{what}: {err}")),
        other => {
            let text = describe(&other);
            if text.contains("invalid peer certificate") {
                config_err(format!("{what}: etcd's certificate was rejected: {text}"))
            } else if text.contains("fatal alert") && text.contains("Certificate") {
                // Unavailable, not Config: the same refusal often surfaces
                // only as a closed connection, and both must be handled alike.
                StoreError::Unavailable(format!(
                    "{what}: etcd rejected our client certificate (or its absence): {text}"
                ))
            } else {
                StoreError::Unavailable(format!("{what}: {text}"))
            }
        }
    }
}

/// A client error and all its causes on one line: tonic's own messages
/// ("transport error") say nothing without their causes.
fn describe(e: &etcd_client::Error) -> String {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(s) => with_causes(s.message().to_string(), std::error::Error::source(s)),
        E::TransportError(t) => with_causes(String::new(), std::error::Error::source(t)),
        other => other.to_string(),
    }
}

fn with_causes(first: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut add = |text: String| {
        let empty = text.is_empty() || text == "transport error";
        if !empty && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    };
    add(first);
    while let Some(s) = source {
        add(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        return "transport error".into();
    }
    parts.join(": ")
}

/// The client options the URL and [`EtcdOptions`] ask for, refusing
/// combinations that cannot be what the operator meant.
fn connect_options(target: &EtcdUrl, options: &EtcdOptions) -> Result<ConnectOptions, StoreError> {
    let mut co = ConnectOptions::new()
        .with_connect_timeout(options.connect_timeout)
        .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
        // A member cut off from its cluster must not serve a watch that
        // silently never fires: with a leader required it cancels it and
        // we reconnect, possibly elsewhere.
        .with_require_leader(true)
        // Simple auth tokens expire (5 min) and die with an etcd restart.
        .with_auto_token_refresh(true);
    match (&options.username, &options.password) {
        (Some(user), Some(password)) => co = co.with_user(user, password),
        (None, None) => {}
        (Some(_), None) => return Err(config_err("etcd username given without a password")),
        (None, Some(_)) => return Err(config_err("etcd password given without a username")),
    }
    let any_tls_file =
        options.ca_file.is_some() || options.cert_file.is_some() || options.key_file.is_some();
    if !target.tls {
        if any_tls_file {
            return Err(config_err(
                "TLS files given for a plain etcd:// (or http://) URL; use etcds:// (or https://)",
            ));
        }
        return Ok(co);
    }
    let ca_file = options.ca_file.as_ref().ok_or_else(|| {
        config_err("etcds:// (TLS) needs the CA file that signed etcd's certificate (ca_file)")
    })?;
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read_pem(ca_file)?));
    match (&options.cert_file, &options.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
        }
        (None, None) => {}
        (Some(_), None) => return Err(config_err("etcd client certificate given without its key")),
        (None, Some(_)) => return Err(config_err("etcd client key given without its certificate")),
    }
    Ok(co.with_tls(tls))
}

/// Reads a PEM file, so a wrong path is reported as such now rather than
/// as a TLS handshake failure later.
fn read_pem(path: &Path) -> Result<Vec<u8>, StoreError> {
    let bytes =
        std::fs::read(path).map_err(|e| config_err(format!("reading {}: {e}", path.display())))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(config_err(format!("{} is not a PEM file", path.display())));
    }
    Ok(bytes)
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
        let (tx, rx) = mpsc::channel(256);
        let task = Watcher {
            store: self.clone(),
            tx,
            last_seen: i64::try_from(revision).unwrap_or(i64::MAX - 1),
        };
        tokio::spawn(task.run());
        Ok(rx)
    }
}

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

/// One watcher's task (see the module documentation).
struct Watcher {
    store: EtcdStore,
    tx: mpsc::Sender<WatchEvent>,
    /// The last revision whose events were all delivered.
    last_seen: i64,
}

impl Watcher {
    async fn run(mut self) {
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
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.tx.closed() => false,
        }
    }

    /// Reads the current revision *before* telling the receiver to list
    /// again, so its list is at least that recent and the watch can go on
    /// from there without a gap. `false` when the receiver is gone.
    async fn resync(&mut self, backoff: &mut Backoff) -> bool {
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
    async fn stream(&mut self, backoff: &mut Backoff) -> StreamEnd {
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

    async fn follow(&mut self, client: &Client, backoff: &mut Backoff) -> StreamEnd {
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
    fn translate(&self, event: &Event) -> Option<WatchEvent> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(url: &str) -> Vec<String> {
        EtcdUrl::parse(url).unwrap().endpoints
    }

    #[test]
    fn urls_in_every_documented_form() {
        assert_eq!(endpoints("etcd://10.0.0.1:2379"), ["http://10.0.0.1:2379"]);
        assert_eq!(
            endpoints("etcd://a:1,b,[fd00::1]:3/"),
            ["http://a:1", "http://b:2379", "http://[fd00::1]:3"]
        );
        let u = EtcdUrl::parse("etcds://etcd-0.example:2379,etcd-1.example").unwrap();
        assert!(u.tls);
        assert_eq!(
            u.endpoints,
            ["https://etcd-0.example:2379", "https://etcd-1.example:2379"]
        );
        assert_eq!(
            endpoints("http://127.0.0.1:4001,http://127.0.0.1:2379"),
            ["http://127.0.0.1:4001", "http://127.0.0.1:2379"]
        );
        assert!(EtcdUrl::parse("https://[::1]").unwrap().tls);
    }

    #[test]
    fn bad_urls_are_config_errors_that_say_why() {
        for (url, why) in [
            ("", "unknown scheme"),
            ("etcd:/h:1", "unknown scheme"),
            ("file:///x", "unknown scheme"),
            ("etcd://", "empty"),
            ("etcd://a:1,,b:2", "empty"),
            ("etcd://a:0", "not a port"),
            ("etcd://a:70000", "not a port"),
            ("etcd://a:x", "not a port"),
            ("etcd://fd00::1", "brackets"),
            ("etcd://[fd00::1", "unclosed"),
            ("etcd://[nope]:1", "not an IPv6"),
            ("etcd://root:pw@h:1", "credentials"),
            ("etcd://h:1/coreos.com", "prefix"),
            ("etcd://h:1?x=1", "query"),
            ("etcd://h a:1", "not a host"),
            ("http://a:1,https://b:1", "same scheme"),
        ] {
            match EtcdUrl::parse(url) {
                Err(StoreError::Config(msg)) => {
                    assert!(msg.contains(why), "{url:?}: {msg:?} lacks {why:?}")
                }
                other => panic!("{url:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn prefixes_are_normalized() {
        assert_eq!(
            normalize_prefix("/coreos.com/network/").unwrap(),
            DEFAULT_PREFIX
        );
        assert_eq!(normalize_prefix("/").unwrap(), "");
        assert!(matches!(
            normalize_prefix("coreos.com"),
            Err(StoreError::Config(_))
        ));
    }

    #[test]
    fn option_combinations_that_cannot_be_meant_are_refused() {
        let plain = EtcdUrl::parse("etcd://h").unwrap();
        let tls = EtcdUrl::parse("etcds://h").unwrap();
        let with = |f: fn(&mut EtcdOptions)| {
            let mut o = EtcdOptions::default();
            f(&mut o);
            o
        };
        let cases: [(&EtcdUrl, EtcdOptions, &str); 5] = [
            (&plain, with(|o| o.ca_file = Some("/x".into())), "etcds://"),
            (&tls, EtcdOptions::default(), "CA file"),
            (
                &plain,
                with(|o| o.username = Some("u".into())),
                "without a password",
            ),
            (
                &plain,
                with(|o| o.password = Some("p".into())),
                "without a username",
            ),
            (
                &tls,
                with(|o| o.ca_file = Some("/nonexistent/ca.pem".into())),
                "/nonexistent/ca.pem",
            ),
        ];
        for (url, opts, why) in cases {
            match connect_options(url, &opts) {
                Err(StoreError::Config(msg)) => assert!(msg.contains(why), "{msg:?} lacks {why:?}"),
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("accepted {opts:?}"),
            }
        }
    }

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::ZERO), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_secs(Duration::from_secs(24 * 3600)), 86400);
    }

    #[test]
    fn prefix_end_covers_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let o = EtcdOptions {
            password: Some("hunter2".into()),
            ..EtcdOptions::default()
        };
        assert!(!format!("{o:?}").contains("hunter2"));
    }
}
