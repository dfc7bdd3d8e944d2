//! The fake API server as a lab process whose stdout reader has gone: its
//! "listening on" line must not end it (println! would panic); it serves
//! until SIGTERM and then exits 0 without a word on stderr.

use std::process::Command;
use std::time::Duration;

use tweed_testkit::process::{spawn_into_closed_pipe, terminate_within};

#[test]
fn serves_and_stops_cleanly_with_stdout_a_closed_pipe() {
    // A port of its own: bind 0 is not reported back here (stdout is
    // closed), so pick a free one first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = spawn_into_closed_pipe(
        Command::new(env!("CARGO_BIN_EXE_fake-kube-apiserver")).args(["--listen", &addr]),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still serving after its line went nowhere.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        std::net::TcpStream::connect(&addr).is_ok(),
        "the server died after writing into the closed pipe"
    );
    let out = terminate_within(child, Duration::from_secs(10), "fake-kube-apiserver");
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
