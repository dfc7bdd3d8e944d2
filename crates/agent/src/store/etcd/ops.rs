//! The store's operations on etcd: leases granted and kept alive, records
//! read, written in transactions and decoded, in flannel's layout.

use std::future::Future;
use std::time::{Duration, SystemTime};

use etcd_client::{Client, Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp};

use super::EtcdStore;
use crate::lease::{Lease, LeaseAttrs, LeaseKey};
use crate::store::{Created, Snapshot, StoreError};

/// Leases read per request by [`LeaseStore::list`]: keeps every response
/// far below gRPC's message size limit however large the cluster.
const LIST_PAGE: i64 = 500;
/// etcd raises TTLs below its minimum (1.5 election timeouts, 2 s by
/// default) to that minimum; a lease granted up to this long is still the
/// lease asked for, not one that needs replacing.
const TTL_TOLERANCE_SECS: i64 = 10;
/// How often renew re-reads a key that changed between read and write
/// before giving up for this round.
const RENEW_ATTEMPTS: usize = 5;

impl EtcdStore {
    /// Runs one request (see [`Pool::call`](super::pool::Pool::call)) with
    /// the request timeout; the error says what was being done.
    pub(super) async fn call<T, Fut>(
        &self,
        what: &str,
        op: impl Fn(Client) -> Fut,
    ) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.pool.call(what, self.request_timeout, op).await
    }

    /// Grants an etcd lease of `ttl` seconds and returns its id.
    pub(super) async fn grant(&self, ttl: i64) -> Result<i64, StoreError> {
        let resp = self
            .call("granting a lease", |c| async move {
                c.lease_client().grant(ttl, None).await
            })
            .await?;
        Ok(resp.id())
    }

    /// Revokes a lease we granted but did not use; failure only means it
    /// lingers until its TTL runs out.
    pub(super) async fn revoke_quietly(&self, id: i64) {
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
    pub(super) async fn keep_alive(&self, id: i64, want: i64) -> Result<bool, StoreError> {
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
    pub(super) async fn get_one(
        &self,
        what: &str,
        key: &str,
    ) -> Result<Option<KeyValue>, StoreError> {
        let mut resp = self
            .call(what, |c| {
                let key = key.to_string();
                async move { c.kv_client().get(key, None).await }
            })
            .await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    /// Runs a transaction; `Ok(true)` when its comparison held.
    pub(super) async fn txn(&self, what: &str, txn: Txn) -> Result<bool, StoreError> {
        let resp = self
            .call(what, |c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        Ok(resp.succeeded())
    }

    /// The store's current revision (a count-only read).
    pub(super) async fn current_revision(&self) -> Result<i64, StoreError> {
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
    pub(super) fn decode(&self, item: &KeyValue) -> Result<Lease, Skip> {
        let key = self.decode_key(item.key())?;
        let attrs: LeaseAttrs =
            serde_json::from_slice(item.value()).map_err(|e| Skip::BadValue(key, e.to_string()))?;
        Ok(Lease {
            key,
            attrs,
            expires: None,
        })
    }

    pub(super) fn decode_key(&self, raw: &[u8]) -> Result<LeaseKey, Skip> {
        let text = String::from_utf8_lossy(raw);
        text.strip_prefix(&self.subnets_prefix())
            .and_then(|k| k.parse::<LeaseKey>().ok())
            .ok_or_else(|| Skip::BadKey(text.into_owned()))
    }

    pub(super) async fn list_leases(&self) -> Result<Snapshot, StoreError> {
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

    pub(super) async fn create_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Created, StoreError> {
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

    pub(super) async fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
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

    pub(super) async fn delete_lease(&self, key: &LeaseKey) -> Result<(), StoreError> {
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
pub(super) fn is_ours(lease: &Lease, stored: &KeyValue) -> bool {
    serde_json::from_slice::<LeaseAttrs>(stored.value())
        .map(|attrs| lease.same_owner(&attrs))
        .unwrap_or(false)
}

pub(super) fn encode(key: &str, attrs: &LeaseAttrs) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(attrs).map_err(|e| StoreError::BadRecord {
        key: key.to_string(),
        reason: format!("cannot encode: {e}"),
    })
}

/// etcd TTLs are whole seconds: round up, and never 0 (which etcd would
/// replace with its minimum anyway).
pub(super) fn ttl_secs(ttl: Duration) -> i64 {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX).max(1)
}

/// The end of the key range holding every key that starts with `prefix`
/// (etcd's convention: the prefix with its last byte incremented).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
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
pub(super) enum Skip {
    /// Not `<prefix>/subnets/<lease key>`.
    BadKey(String),
    /// The key is a lease key, but the value is not a flannel record.
    BadValue(LeaseKey, String),
}

impl Skip {
    pub(super) fn warn(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
