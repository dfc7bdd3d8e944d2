//! When a node's kernel starts giving a new verdict, seen in packets: a
//! new TCP connect from one pod to another every `interval`, each given
//! `timeout` to complete (refused traffic is dropped, so a refused
//! connect only ever times out). The rules change in one nftables
//! transaction, so the attempts' verdicts flip once; the moment is the
//! start of the first attempt of the final run of wanted verdicts (an
//! upper bound, by at most one interval). Attempts overlap, so a refused
//! one waiting out its timeout does not hold up the next.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tweed_testkit::bridged_pods::in_ns;

/// Consecutive wanted verdicts that make the change "enforced": one lucky
/// or unlucky attempt does not decide.
const RUN: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passes,
    Refused,
}

pub struct Probe {
    pub from_ns: String,
    pub to: SocketAddr,
    pub interval: Duration,
    pub timeout: Duration,
}

/// One attempt: when its connect started, and what it found.
struct Attempt {
    started: Instant,
    verdict: Option<Verdict>,
}

impl Probe {
    /// Probes until `want` has held for [`RUN`] attempts after the last
    /// unwanted one, and returns the start of the first of them; an error
    /// after `deadline`, or when no attempt saw the old verdict (the
    /// probe must start before the change).
    pub async fn until(&self, want: Verdict, deadline: Duration) -> Result<Instant, String> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut tick = tokio::time::interval(self.interval);
        let give_up = Instant::now() + deadline;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if Instant::now() > give_up {
                        return Err(format!("{} -> {}: not {want:?} within {deadline:?}", self.from_ns, self.to));
                    }
                    let socket = in_ns(&self.from_ns, TcpSocket::new_v4)
                        .map_err(|e| format!("socket in {}: {e}", self.from_ns))?;
                    let (i, to, timeout, tx) = (attempts.len(), self.to, self.timeout, tx.clone());
                    attempts.push(Attempt { started: Instant::now(), verdict: None });
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let ok = matches!(tokio::time::timeout(timeout, socket.connect(to)).await, Ok(Ok(_)));
                        let _ = tx.send((i, started, if ok { Verdict::Passes } else { Verdict::Refused }));
                    });
                }
                Some((i, started, verdict)) = rx.recv() => {
                    attempts[i] = Attempt { started, verdict: Some(verdict) };
                    if let Some(at) = settled(&attempts, want)? {
                        return Ok(at);
                    }
                }
            }
        }
    }
}

/// The start of the final run of `want` once it is [`RUN`] long and
/// everything before it has resolved.
fn settled(attempts: &[Attempt], want: Verdict) -> Result<Option<Instant>, String> {
    let resolved = attempts
        .iter()
        .position(|a| a.verdict.is_none())
        .unwrap_or(attempts.len());
    let done = &attempts[..resolved];
    let Some(last_unwanted) = done.iter().rposition(|a| a.verdict != Some(want)) else {
        if done.len() >= RUN {
            return Err(format!(
                "the first {} attempts were all {want:?}: the old verdict was never seen",
                done.len()
            ));
        }
        return Ok(None);
    };
    let run = &done[last_unwanted + 1..];
    Ok((run.len() >= RUN).then(|| run[0].started))
}
