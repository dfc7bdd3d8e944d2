//! `/healthz`, `/readyz` and `/metrics` over HTTP, for kubelet probes and
//! Prometheus.
//!
//! Liveness is a heartbeat: the agent's main loop calls [`Health::beat`],
//! and `/healthz` fails once the last beat is older than the staleness
//! limit, so a wedged loop gets the pod restarted while a merely slow store
//! does not. Readiness is a flag with a reason, so `/readyz` tells an
//! operator *why* the node is not ready yet.
//!
//! The server is a deliberately tiny HTTP/1.1 responder on tokio rather than
//! hyper: it serves three fixed GET paths, reads only the request head
//! (bounded in size and time), answers with `Connection: close` and a
//! `Content-Length`, and needs no dependency beyond tokio. Probes and
//! Prometheus are well served by one request per connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// How old the last heartbeat may be before `/healthz` fails.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60);

/// Largest request head accepted; probes and scrapers send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// A client that has not sent its request head by then is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 32;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The agent's liveness and readiness, shared with the HTTP server.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Milliseconds after `started` of the last beat, plus one; 0 = never.
    last_beat: AtomicU64,
    /// `None` when ready, else why not.
    not_ready: Mutex<Option<String>>,
    stale_after: Duration,
    startup_grace: Duration,
}

/// Why the agent is not ready (what the agent said when it set it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotReady(pub String);

/// Why the agent's loop counts as stuck.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    #[error("no heartbeat from the agent's loop since it started {:.1}s ago", since_start.as_secs_f64())]
    NoBeat { since_start: Duration },
    #[error("the agent's loop last beat {:.1}s ago (limit {:.1}s)", age.as_secs_f64(), limit.as_secs_f64())]
    Stale { age: Duration, limit: Duration },
}

impl Health {
    /// Not ready ("starting"), alive for [`DEFAULT_STALE_AFTER`] after start
    /// and after each beat.
    pub fn new() -> Health {
        Health::with_limits(DEFAULT_STALE_AFTER, DEFAULT_STALE_AFTER)
    }

    /// `stale_after`: the longest gap between beats that still counts as
    /// alive; `startup_grace`: how long the agent counts as alive before its
    /// first beat (leasing a subnet can take a while).
    pub fn with_limits(stale_after: Duration, startup_grace: Duration) -> Health {
        Health {
            started: Instant::now(),
            last_beat: AtomicU64::new(0),
            not_ready: Mutex::new(Some("starting".to_string())),
            stale_after,
            startup_grace,
        }
    }

    /// Records that the agent's loop is making progress.
    pub fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_beat
            .store(ms.saturating_add(1), Ordering::Relaxed);
    }

    pub fn set_ready(&self) {
        *self.lock_ready() = None;
    }

    /// Marks the agent not ready; `reason` is served on `/readyz`.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.lock_ready() = Some(reason.into());
    }

    /// `Err(reason)` while not ready.
    pub fn readiness(&self) -> Result<(), NotReady> {
        match &*self.lock_ready() {
            None => Ok(()),
            Some(reason) => Err(NotReady(reason.clone())),
        }
    }

    /// `Err(why)` when the heartbeat is stale.
    pub fn liveness(&self) -> Result<(), Unhealthy> {
        let now = self.started.elapsed();
        match self.last_beat.load(Ordering::Relaxed) {
            0 if now <= self.startup_grace => Ok(()),
            0 => Err(Unhealthy::NoBeat { since_start: now }),
            n => {
                let age = now.saturating_sub(Duration::from_millis(n - 1));
                if age <= self.stale_after {
                    Ok(())
                } else {
                    Err(Unhealthy::Stale {
                        age,
                        limit: self.stale_after,
                    })
                }
            }
        }
    }

    /// A panic elsewhere while holding the lock cannot corrupt an
    /// `Option<String>`, so a poisoned lock is used as is.
    fn lock_ready(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.not_ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

/// Serves the three endpoints on exactly `addr` until the process ends.
/// Returns only if the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            // The semaphore is never closed; stay alive regardless.
            continue;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let (h, m) = (health.clone(), metrics.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = respond(stream, &h, &m).await {
                        tracing::debug!(error = %e, "health connection failed");
                    }
                });
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, %addr, "health server cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One response.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    allow: bool,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: false,
        }
    }
}

async fn respond(mut stream: TcpStream, health: &Health, metrics: &Metrics) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => return Ok(()), // closed before sending a request
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()), // too slow: drop it
    };
    let (reply, head_only) = route(&head, health, metrics);
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    );
    if reply.allow {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&reply.body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the blank line ending the request head. `Ok(None)` when the
/// peer closed first; an oversized head is returned truncated (and then
/// refused by [`route`]).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if buf.is_empty() { None } else { Some(buf) });
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > MAX_HEAD {
            return Ok(Some(buf));
        }
    }
}

/// Picks the reply for a request head; the flag is true for `HEAD`.
fn route(head: &[u8], health: &Health, metrics: &Metrics) -> (Reply, bool) {
    if head.len() > MAX_HEAD {
        return (Reply::text(431, "request head too large\n"), false);
    }
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return (Reply::text(400, "malformed request line\n"), false);
    };
    if !version.starts_with("HTTP/1.") {
        return (Reply::text(400, "only HTTP/1.x is served\n"), false);
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut r = Reply::text(405, "only GET and HEAD are served\n");
            r.allow = true;
            return (r, false);
        }
    };
    let path = target.split('?').next().unwrap_or_default();
    let reply = match path {
        "/healthz" => match health.liveness() {
            Ok(()) => Reply::text(200, "ok\n"),
            Err(why) => Reply::text(503, format!("unhealthy: {why}\n")),
        },
        "/readyz" => match health.readiness() {
            Ok(()) => Reply::text(200, "ok\n"),
            Err(why) => Reply::text(503, format!("not ready: {why}\n")),
        },
        "/metrics" => {
            // prometheus-client writes OpenMetrics text, which the 0.0.4
            // parser also reads; say OpenMetrics to those that ask for it.
            let openmetrics = lines.any(|l| {
                l.split_once(':').is_some_and(|(k, v)| {
                    k.eq_ignore_ascii_case("accept") && v.contains("application/openmetrics-text")
                })
            });
            Reply {
                status: 200,
                content_type: if openmetrics {
                    OPENMETRICS_TEXT
                } else {
                    PROMETHEUS_TEXT
                },
                body: metrics.render(),
                allow: false,
            }
        }
        _ => Reply::text(404, "not found: try /healthz, /readyz or /metrics\n"),
    };
    (reply, head_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, h: &Health) -> (u16, String) {
        let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (r, _) = route(head.as_bytes(), h, &Metrics::new());
        (r.status, r.body)
    }

    #[test]
    fn readiness_carries_its_reason() {
        let h = Health::new();
        assert_eq!(get("/readyz", &h), (503, "not ready: starting\n".into()));
        h.set_not_ready("waiting for a subnet lease");
        assert_eq!(
            get("/readyz", &h).1,
            "not ready: waiting for a subnet lease\n"
        );
        h.set_ready();
        assert_eq!(get("/readyz?verbose", &h), (200, "ok\n".into()));
    }

    #[test]
    fn liveness_has_a_startup_grace_then_needs_beats() {
        let h = Health::with_limits(Duration::from_millis(50), Duration::from_millis(50));
        assert!(h.liveness().is_ok());
        std::thread::sleep(Duration::from_millis(80));
        assert!(
            h.liveness()
                .unwrap_err()
                .to_string()
                .contains("no heartbeat")
        );
        h.beat();
        assert!(h.liveness().is_ok());
        std::thread::sleep(Duration::from_millis(80));
        assert!(h.liveness().unwrap_err().to_string().contains("last beat"));
    }

    #[test]
    fn bad_requests_are_refused() {
        let h = Health::new();
        let m = Metrics::new();
        assert_eq!(route(b"garbage\r\n\r\n", &h, &m).0.status, 400);
        assert_eq!(
            route(b"POST /healthz HTTP/1.1\r\n\r\n", &h, &m).0.status,
            405
        );
        assert_eq!(route(&vec![b'a'; MAX_HEAD + 1], &h, &m).0.status, 431);
        let (r, head_only) = route(b"HEAD /healthz HTTP/1.0\r\n\r\n", &h, &m);
        assert!(head_only && r.status == 200);
    }
}
