//! A blocking HTTP/1.1 client for the fake's API and admin endpoints,
//! with nothing but std: tests and the lab call it, the lab from inside a
//! network namespace (it connects there and passes the stream in).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// One request on a fresh connection; returns the status code and the
/// JSON body (`Null` when empty). `content_type` is only sent with a body.
pub fn call_on(
    mut stream: TcpStream,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<&Value>,
) -> io::Result<(u16, Value)> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n");
    if body.is_some() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(payload.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad response: {text:?}"),
        )
    };
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    let json = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).map_err(|_| bad())?
    };
    Ok((code, json))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// [`call_on`] a new connection to `addr`.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> io::Result<(u16, Value)> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    call_on(stream, method, path, "application/json", body)
}

/// Like [`call`], but an answer other than 2xx is an error naming it.
pub fn call_ok(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> io::Result<Value> {
    let (code, v) = call(addr, method, path, body)?;
    if !(200..300).contains(&code) {
        return Err(io::Error::other(format!("{method} {path}: {code} {v}")));
    }
    Ok(v)
}
