//! Retrying a store operation while the store is unreachable: a node agent
//! outlives store outages, at start as later, so an unreachable store is
//! waited for (and each attempt logged) rather than a reason to exit.

use std::future::Future;

use super::StoreError;
use crate::backoff::Backoff;

/// Runs `attempt` until it succeeds or fails with anything but
/// [`StoreError::Unavailable`], waiting between attempts as
/// [`Backoff::STORE`] says.
pub async fn while_unavailable<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Backoff::new(Backoff::STORE);
    loop {
        match attempt().await {
            Err(StoreError::Unavailable(e)) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "store unreachable; retrying");
                tokio::time::sleep(delay).await;
            }
            done => return done,
        }
    }
}
