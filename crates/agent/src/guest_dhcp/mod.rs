//! DHCP for guests that boot with only an address (urunc's `linux`
//! guests): every record under the directory (written by `tweed
//! urunc-hook`, see `tweed_guest::dhcp`) gets a server on its guest's tap,
//! answering with the pod's DNS servers, search domains and MTU
//! (docs/urunc.md).
//!
//! It runs on its own thread: every [`PASS_INTERVAL`] it reads the records,
//! opens servers for new or changed ones and drops the others; in between
//! it waits on the servers' sockets. A record whose pod namespace is gone
//! is deleted; one whose tap is gone (the guest is restarting) is kept
//! until the hook writes the new guest's record over it.

mod reply;
mod server;

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tweed_guest::DhcpRecord;

pub use server::{ServeError, Server};

/// How often the records are read.
pub const PASS_INTERVAL: Duration = Duration::from_millis(500);

pub struct GuestDhcp {
    pub dir: PathBuf,
}

/// What this node does for one record file.
enum Entry {
    Serving(Server),
    /// Could not serve it; tried again when the record changes.
    Failed(DhcpRecord),
}

impl Entry {
    fn record(&self) -> &DhcpRecord {
        match self {
            Entry::Serving(s) => &s.record,
            Entry::Failed(r) => r,
        }
    }
}

impl GuestDhcp {
    /// Serves until `stop` receives or is dropped.
    pub fn run(self, stop: Receiver<()>) {
        let mut entries: HashMap<PathBuf, Entry> = HashMap::new();
        let mut last_pass: Option<Instant> = None;
        loop {
            match stop.try_recv() {
                Ok(()) | Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {}
            }
            if last_pass.is_none_or(|t| t.elapsed() >= PASS_INTERVAL) {
                self.pass(&mut entries);
                last_pass = Some(Instant::now());
            }
            wait_and_answer(&entries, PASS_INTERVAL / 5);
        }
    }

    /// Brings the servers in line with the records.
    fn pass(&self, entries: &mut HashMap<PathBuf, Entry>) {
        let mut seen = Vec::new();
        for (path, read) in tweed_guest::dhcp::read_all(&self.dir) {
            let record = match read {
                Ok(r) => r,
                Err(e) => {
                    if !entries.contains_key(&path) {
                        tracing::warn!(error = %e, "unreadable guest DHCP record skipped");
                    }
                    continue;
                }
            };
            seen.push(path.clone());
            if entries.get(&path).is_some_and(|e| *e.record() == record) {
                continue;
            }
            if !record.netns.exists() {
                tracing::info!(netns = %record.netns.display(), "the guest's pod is gone; removing its DHCP record");
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a guest DHCP record");
                }
                entries.remove(&path);
                continue;
            }
            let entry = match Server::open(record.clone()) {
                Ok(s) => {
                    tracing::info!(netns = %record.netns.display(), tap = %record.tap, address = %record.address, "serving DHCP to a guest");
                    Entry::Serving(s)
                }
                Err(e) => {
                    tracing::info!(netns = %record.netns.display(), error = %e, "not serving DHCP to a guest");
                    Entry::Failed(record)
                }
            };
            entries.insert(path, entry);
        }
        entries.retain(|path, _| seen.contains(path));
        // A pod deleted while its record was unchanged: its namespace
        // file went with it.
        let gone: Vec<PathBuf> = entries
            .iter()
            .filter(|(_, e)| !e.record().netns.exists())
            .map(|(p, _)| p.clone())
            .collect();
        for path in gone {
            tracing::info!(path = %path.display(), "the guest's pod is gone; removing its DHCP record");
            let _ = std::fs::remove_file(&path);
            entries.remove(&path);
        }
    }
}

/// Waits up to `timeout` for a request on any server, and answers what
/// came.
fn wait_and_answer(entries: &HashMap<PathBuf, Entry>, timeout: Duration) {
    let servers: Vec<&Server> = entries
        .values()
        .filter_map(|e| match e {
            Entry::Serving(s) => Some(s),
            Entry::Failed(_) => None,
        })
        .collect();
    if servers.is_empty() {
        std::thread::sleep(timeout);
        return;
    }
    let mut fds: Vec<PollFd> = servers
        .iter()
        .map(|s| PollFd::new(s.socket().as_fd(), PollFlags::POLLIN))
        .collect();
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(0) => {}
        Ok(_) => {
            for (server, fd) in servers.iter().zip(&fds) {
                if fd.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
                    server.answer_waiting();
                }
            }
        }
        Err(nix::errno::Errno::EINTR) => {}
        Err(e) => {
            tracing::warn!(error = %e, "guest DHCP: poll failed");
            std::thread::sleep(PASS_INTERVAL / 5);
        }
    }
}
