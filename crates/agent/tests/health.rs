//! The health server over real TCP, inside a throwaway namespace: the
//! runtime runs on a thread that entered it, so the listener and the test's
//! client both live there and nothing touches the host's ports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tweed_netlink::NetNs;
use tweed_testkit::TestNs;
use tweedd::health::{self, Health};
use tweedd::metrics::Metrics;

const ADDR: &str = "127.0.0.1:9101";

/// Runs `test` in a single-threaded runtime inside a fresh namespace, with
/// `serve` running on `addr`.
fn with_server<F>(
    tag: &str,
    addr: &str,
    health: Arc<Health>,
    test: impl FnOnce(Arc<Health>) -> F + Send,
) where
    F: Future<Output = ()>,
{
    let ns = TestNs::new(tag);
    let addr: SocketAddr = addr.parse().expect("address");
    if !addr.ip().is_loopback() {
        ns.exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{}/32", addr.ip()),
            "dev",
            "lo",
        ]);
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            NetNs::named(&ns.name)
                .expect("open namespace")
                .run(|| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async {
                        let server = tokio::spawn(health::serve(
                            addr,
                            health.clone(),
                            Arc::new(Metrics::new()),
                        ));
                        wait_listening(addr).await;
                        test(health).await;
                        server.abort();
                    });
                })
                .expect("enter namespace");
        })
        .join()
        .expect("test thread panicked");
    });
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("health server never listened on {addr}");
}

struct Response {
    status: u16,
    head: String,
    body: String,
}

async fn request(addr: &str, method: &str, path: &str, extra: &str) -> Response {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.31\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut raw))
        .await
        .expect("server closes the connection")
        .expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    Response {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

async fn get(path: &str) -> Response {
    request(ADDR, "GET", path, "").await
}

#[test]
fn readyz_follows_readiness_and_says_why() {
    with_server("hl-ready", ADDR, Arc::new(Health::new()), |h| async move {
        h.set_not_ready("waiting for a subnet lease");
        let r = get("/readyz").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (503, "not ready: waiting for a subnet lease\n")
        );
        h.set_ready();
        let r = get("/readyz").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
        assert!(r.head.contains("Content-Length: 3\r\n"), "{}", r.head);
        h.set_not_ready("lease lost");
        assert_eq!(get("/readyz").await.status, 503);
    });
}

#[test]
fn healthz_fails_when_the_heartbeat_goes_stale() {
    let limit = Duration::from_millis(300);
    let health = Arc::new(Health::with_limits(limit, limit));
    with_server("hl-live", ADDR, health, |h| async move {
        // Within the startup grace, before any beat.
        assert_eq!(get("/healthz").await.status, 200);
        h.beat();
        let r = get("/healthz").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
        tokio::time::sleep(limit * 2).await;
        let r = get("/healthz").await;
        assert_eq!(r.status, 503);
        assert!(r.body.contains("last beat"), "{}", r.body);
        h.beat();
        assert_eq!(get("/healthz").await.status, 200);
    });
}

#[test]
fn healthz_fails_without_any_beat_after_the_grace() {
    let limit = Duration::from_millis(200);
    let health = Arc::new(Health::with_limits(limit, limit));
    with_server("hl-grace", ADDR, health, |_h| async move {
        tokio::time::sleep(limit * 2).await;
        let r = get("/healthz").await;
        assert_eq!(r.status, 503);
        assert!(r.body.contains("no heartbeat"), "{}", r.body);
    });
}

#[test]
fn metrics_are_prometheus_text() {
    with_server(
        "hl-metrics",
        ADDR,
        Arc::new(Health::new()),
        |_h| async move {
            let r = get("/metrics").await;
            assert_eq!(r.status, 200);
            assert!(
                r.head.contains("Content-Type: text/plain; version=0.0.4"),
                "{}",
                r.head
            );
            assert!(r.body.contains("# TYPE tweed_"), "{}", r.body);
            assert!(r.body.contains("tweed_peers "), "{}", r.body);
            let r = request(
                ADDR,
                "GET",
                "/metrics",
                "Accept: application/openmetrics-text;version=1.0.0\r\n",
            )
            .await;
            assert!(
                r.head
                    .contains("Content-Type: application/openmetrics-text"),
                "{}",
                r.head
            );
        },
    );
}

#[test]
fn other_paths_and_methods_are_refused() {
    with_server("hl-404", ADDR, Arc::new(Health::new()), |_h| async move {
        assert_eq!(get("/").await.status, 404);
        assert_eq!(get("/healthz/extra").await.status, 404);
        let r = request(ADDR, "POST", "/healthz", "Content-Length: 0\r\n").await;
        assert_eq!(r.status, 405);
        assert!(r.head.contains("Allow: GET, HEAD"), "{}", r.head);
        let r = request(ADDR, "HEAD", "/metrics", "").await;
        assert_eq!((r.status, r.body.as_str()), (200, ""));
    });
}

#[test]
fn binds_exactly_the_address_given() {
    let addr = "198.18.7.7:9101";
    with_server("hl-bind", addr, Arc::new(Health::new()), |_h| async move {
        assert_eq!(request(addr, "GET", "/metrics", "").await.status, 200);
        let other = TcpStream::connect("127.0.0.1:9101").await;
        assert!(other.is_err(), "the server also answers on 127.0.0.1");
    });
}
