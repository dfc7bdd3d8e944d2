//! etcd's failures sorted into [`StoreError`]'s classes (unavailable,
//! lost, refused), deadlines on every request, and messages that name the
//! cause.

use std::future::Future;
use std::time::Duration;

use crate::store::StoreError;

/// A refusal that retrying will not change.
pub(super) fn config_err(msg: impl Into<String>) -> StoreError {
    StoreError::Config(msg.into())
}

/// gRPC status codes (tonic's `Code` as numbers; tonic is not a direct
/// dependency).
const GRPC_PERMISSION_DENIED: i32 = 7;
const GRPC_UNAVAILABLE: i32 = 14;
const GRPC_UNAUTHENTICATED: i32 = 16;

/// Awaits `fut` for at most `limit`; `None` when time ran out.
pub(super) async fn with_deadline_raw<T>(
    limit: Duration,
    fut: impl Future<Output = T>,
) -> Option<T> {
    tokio::time::timeout(limit, fut).await.ok()
}

pub(super) async fn with_deadline<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match with_deadline_raw(limit, fut).await {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(etcd_error(what, e)),
        None => Err(timeout_error(what, limit)),
    }
}

/// True when a request failed while connecting (tonic reports connection
/// failures as UNAVAILABLE with the cause attached; etcd's own UNAVAILABLE
/// answers carry none), so it never reached etcd and may go elsewhere.
pub(super) fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            i32::from(s.code()) == GRPC_UNAVAILABLE && std::error::Error::source(s).is_some()
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// True when a request failed in the connection rather than with an
/// answer from etcd.
pub(super) fn is_transport(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => std::error::Error::source(s).is_some(),
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// Adds what to check when a connection was accepted and then failed: the
/// TLS layer says little more than "broken pipe" when etcd refuses a
/// client certificate, or when one side speaks TLS and the other does not.
pub(super) fn connect_hint(err: StoreError, tls: bool) -> StoreError {
    match err {
        StoreError::Unavailable(msg)
            if !msg.contains("tcp connect error") && !msg.contains("no answer") =>
        {
            let hint = if tls {
                "the TLS connection failed: check ca_file, cert_file and key_file; \
                 etcd may require a client certificate signed by a CA it trusts"
            } else {
                "the connection failed after it was accepted: if etcd serves TLS, use etcds://"
            };
            StoreError::Unavailable(format!("{msg} -- {hint}"))
        }
        other => other,
    }
}

pub(super) fn timeout_error(what: &str, limit: Duration) -> StoreError {
    StoreError::Unavailable(format!("{what}: no answer from etcd within {limit:?}"))
}

/// Classifies a client error: refused credentials, permissions and
/// certificates are configuration problems (retrying will not fix them),
/// everything else is the store being unavailable for now.
pub(super) fn etcd_error(what: &str, e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    match e {
        // A status etcd itself sent (transport failures carry a source).
        E::GRpcStatus(status) if std::error::Error::source(&status).is_none() => {
            let msg = status.message();
            let code = i32::from(status.code());
            let auth = msg.contains("authentication")
                || msg.contains("user name is empty")
                || msg.contains("invalid auth token");
            if auth || code == GRPC_UNAUTHENTICATED {
                config_err(format!("{what}: etcd refused our credentials: {msg}"))
            } else if code == GRPC_PERMISSION_DENIED {
                config_err(format!(
                    "{what}: etcd denied permission: {msg} (the user needs read/write on the prefix)"
                ))
            } else {
                StoreError::Unavailable(format!("{what}: {msg}"))
            }
        }
        E::InvalidArgs(msg) => config_err(format!("{what}: {msg}")),
        E::InvalidUri(err) => config_err(format!("{what}: {err}")),
        other => {
            let text = describe(&other);
            if text.contains("invalid peer certificate") {
                config_err(format!("{what}: etcd's certificate was rejected: {text}"))
            } else if text.contains("fatal alert") && text.contains("Certificate") {
                // Unavailable, not Config: the same refusal often surfaces
                // only as a closed connection, and both must be handled alike.
                StoreError::Unavailable(format!(
                    "{what}: etcd rejected our client certificate (or its absence): {text}"
                ))
            } else {
                StoreError::Unavailable(format!("{what}: {text}"))
            }
        }
    }
}

/// A client error and all its causes on one line: tonic's own messages
/// ("transport error") say nothing without their causes.
pub(super) fn describe(e: &etcd_client::Error) -> String {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(s) => with_causes(s.message().to_string(), std::error::Error::source(s)),
        E::TransportError(t) => with_causes(String::new(), std::error::Error::source(t)),
        other => other.to_string(),
    }
}

pub(super) fn with_causes(
    first: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut add = |text: String| {
        let empty = text.is_empty() || text == "transport error";
        if !empty && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    };
    add(first);
    while let Some(s) = source {
        add(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        return "transport error".into();
    }
    parts.join(": ")
}
