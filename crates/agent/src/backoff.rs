//! The one exponential backoff every retry loop of the agent uses: the
//! store's watchers, the lease and list retries, the reconciler's retries
//! of changes that did not land.

use std::time::Duration;

/// Delays that start at `first` and double after each use, up to `cap`.
/// [`reset`](Backoff::reset) after a success starts again from `first`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// Retrying the store while it is unreachable: from 200 ms up to 10 s,
    /// often enough to come back quickly, rarely enough not to flood a store
    /// that is struggling.
    pub const STORE: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(10));
    /// Re-opening a watch that ended: from 200 ms up to 5 s, because the
    /// node does not see its peers change while the watch is down.
    pub const WATCH: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

    pub const fn new((first, cap): (Duration, Duration)) -> Backoff {
        Backoff {
            first,
            cap,
            next: first,
        }
    }

    /// The delay to wait now; the one after is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.cap);
        now
    }

    /// Waits the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// After a success: the next delay is the first one again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new((Duration::from_millis(200), Duration::from_secs(1)));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(200));
    }
}
