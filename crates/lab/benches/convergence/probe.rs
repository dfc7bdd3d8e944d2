//! "Reachable from every other node": from each source pod, one ICMP echo
//! every `interval` to the target pod (the lab's own raw-socket ping,
//! opened in the source pod's namespace) until the first reply. One thread
//! per source, at real-time priority so that a reply is stamped when it
//! arrives, not when a busy CPU gets round to it.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tweed_lab::check;
use tweed_netlink::NetNs;

pub struct Probe {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<Option<Instant>>)>,
}

impl Probe {
    /// Starts probing `dst` from every `(label, namespace)` in `sources`.
    pub fn start(
        sources: &[(String, String)],
        dst: IpAddr,
        interval: Duration,
        deadline: Duration,
    ) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = sources
            .iter()
            .map(|(label, ns)| {
                let ns = NetNs::named(ns).expect("source netns");
                let stop = stop.clone();
                let handle = std::thread::spawn(move || {
                    crate::realtime();
                    let until = Instant::now() + deadline;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        if check::ping(&ns, dst, 1, interval).expect("ping") {
                            return Some(Instant::now());
                        }
                        // An error reply (unreachable) returns early: keep
                        // the pace.
                        std::thread::sleep(interval.saturating_sub(sent.elapsed()));
                    }
                    None
                });
                (label.clone(), handle)
            })
            .collect();
        Probe { stop, threads }
    }

    /// Each source with the moment of its first reply.
    pub fn finish(mut self) -> Vec<(String, Option<Instant>)> {
        std::mem::take(&mut self.threads)
            .into_iter()
            .map(|(label, h)| (label, h.join().expect("probe thread")))
            .collect()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
