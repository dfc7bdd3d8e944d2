//! Retrying a store operation while the store is unreachable: a node agent
//! outlives store outages, at start as later, so an unreachable store is
//! waited for (and each attempt logged) rather than a reason to exit.

use std::future::Future;
use std::time::Duration;

use super::StoreError;

/// Runs `attempt` until it succeeds or fails with anything but
/// [`StoreError::Unavailable`], waiting between attempts from 200 ms,
/// doubling up to 10 s.
pub async fn while_unavailable<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match attempt().await {
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "store unreachable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            done => return done,
        }
    }
}
