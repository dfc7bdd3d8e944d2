//! SIGTERM and SIGINT, heard everywhere the agent waits.
//!
//! Once tokio handles a signal, its default action (ending the process) is
//! gone for good: a signal that arrives while nothing listens is lost. So
//! the agent listens once, from its very start, and every wait — for the
//! kernel, for the store, for a lease to be re-acquired — races against
//! [`Shutdown::requested`]. A DaemonSet rollout or drain during a store
//! outage then ends the agent within moments instead of waiting out the
//! grace period and a SIGKILL.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown {
    asked: watch::Receiver<bool>,
}

impl Shutdown {
    /// Starts listening for SIGTERM and SIGINT (needs a tokio runtime).
    pub fn listen() -> std::io::Result<Shutdown> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, asked) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
            let _ = tx.send(true);
            // Keep the sender (and so the value) for the receivers.
            std::future::pending::<()>().await;
        });
        Ok(Shutdown { asked })
    }

    /// Completes once the agent has been told to stop.
    pub async fn requested(&self) {
        let mut asked = self.asked.clone();
        let _ = asked.wait_for(|stop| *stop).await;
    }

    /// Runs `work` to its end, or until the agent is told to stop (`None`).
    pub async fn unless<F: Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            _ = self.requested() => None,
            out = work => Some(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn a_wait_in_progress_ends_when_the_signal_comes() {
        let shutdown = Shutdown::listen().unwrap();
        let endless = std::future::pending::<()>();
        let waiter = tokio::spawn({
            let s = shutdown.clone();
            async move { s.unless(endless).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // SAFETY: kill(2) to our own pid with a signal tokio now handles.
        unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
        let out = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("the wait ended")
            .unwrap();
        assert!(out.is_none());
        // Later waits see it too.
        assert!(
            shutdown
                .unless(std::future::pending::<()>())
                .await
                .is_none()
        );
        assert_eq!(
            shutdown.unless(async { 7 }).await,
            None,
            "stop wins once asked"
        );
    }
}
