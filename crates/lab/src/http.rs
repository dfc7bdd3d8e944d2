//! One HTTP GET, as `tweedctl status` and the lab ask a node agent's health
//! server: a plain HTTP/1.0 exchange, because that server is tiny and local
//! and an HTTP client library would be most of these programs' size.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the answer may take once connected.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// GETs `path` from `addr`, connecting within `connect_timeout`: the status
/// code (`None` when the answer has none) and the body.
pub fn get(
    addr: SocketAddr,
    path: &str,
    connect_timeout: Duration,
) -> std::io::Result<(Option<u16>, String)> {
    let mut s = TcpStream::connect_timeout(&addr, connect_timeout)?;
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
