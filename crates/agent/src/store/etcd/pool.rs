//! The endpoint pool: one connection per endpoint, used one at a time
//! (see "Endpoints" in the [module documentation](super)).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use super::errors::{
    config_err, etcd_error, is_transport, never_sent, timeout_error, with_deadline,
    with_deadline_raw,
};
use crate::store::StoreError;

/// One client per endpoint, used one at a time: etcd's own Go client sticks
/// to one endpoint while it works and moves on when it fails. (etcd-client's
/// balanced channel keeps sending requests to a dead endpoint: a cluster
/// with one member down would fail every other request.)
pub(super) struct Pool {
    pub(super) endpoints: Vec<String>,
    pub(super) options: ConnectOptions,
    pub(super) connect_timeout: Duration,
    /// Connected lazily, kept once connected (each reconnects by itself).
    pub(super) clients: Mutex<Vec<Option<Client>>>,
    /// The endpoint in use.
    pub(super) current: AtomicUsize,
}

impl Pool {
    /// The client for endpoint `idx`, connecting it first if needed.
    pub(super) async fn client(&self, idx: usize) -> Result<Client, StoreError> {
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

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Client>>> {
        // A panic while holding this lock cannot leave the vector invalid.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves on from endpoint `idx` after it failed (unless another request
    /// already did).
    pub(super) fn rotate_from(&self, idx: usize) {
        let next = (idx + 1) % self.endpoints.len();
        let _ = self
            .current
            .compare_exchange(idx, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The endpoint in use and its client, moving on past endpoints that
    /// cannot be connected to.
    pub(super) async fn pick(&self) -> Result<(usize, Client), StoreError> {
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
    pub(super) async fn call<T, Fut>(
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
