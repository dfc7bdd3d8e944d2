//! How connections are made: TLS, client certificates, credentials and
//! keepalive, as the URL and [`EtcdOptions`] ask.

use std::path::Path;
use std::time::Duration;

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use super::EtcdOptions;
use super::errors::config_err;
use super::url::EtcdUrl;
use crate::store::StoreError;

/// HTTP/2 pings on idle connections, so a watch on a silently dead
/// connection (peer gone, no RST) is noticed. etcd refuses pings more often
/// than every 5 s by default.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The client options the URL and [`EtcdOptions`] ask for, refusing
/// combinations that cannot be what the operator meant.
pub(super) fn connect_options(
    target: &EtcdUrl,
    options: &EtcdOptions,
) -> Result<ConnectOptions, StoreError> {
    let mut co = ConnectOptions::new()
        .with_connect_timeout(options.connect_timeout)
        .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
        // A member cut off from its cluster must not serve a watch that
        // silently never fires: with a leader required it cancels it and
        // we reconnect, possibly elsewhere.
        .with_require_leader(true)
        // Simple auth tokens expire (5 min) and die with an etcd restart.
        .with_auto_token_refresh(true);
    match (&options.username, &options.password) {
        (Some(user), Some(password)) => co = co.with_user(user, password),
        (None, None) => {}
        (Some(_), None) => return Err(config_err("etcd username given without a password")),
        (None, Some(_)) => return Err(config_err("etcd password given without a username")),
    }
    let any_tls_file =
        options.ca_file.is_some() || options.cert_file.is_some() || options.key_file.is_some();
    if !target.tls {
        if any_tls_file {
            return Err(config_err(
                "TLS files given for a plain etcd:// (or http://) URL; use etcds:// (or https://)",
            ));
        }
        return Ok(co);
    }
    let ca_file = options.ca_file.as_ref().ok_or_else(|| {
        config_err("etcds:// (TLS) needs the CA file that signed etcd's certificate (ca_file)")
    })?;
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read_pem(ca_file)?));
    match (&options.cert_file, &options.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
        }
        (None, None) => {}
        (Some(_), None) => return Err(config_err("etcd client certificate given without its key")),
        (None, Some(_)) => return Err(config_err("etcd client key given without its certificate")),
    }
    Ok(co.with_tls(tls))
}

/// Reads a PEM file, so a wrong path is reported as such now rather than
/// as a TLS handshake failure later.
pub(super) fn read_pem(path: &Path) -> Result<Vec<u8>, StoreError> {
    let bytes =
        std::fs::read(path).map_err(|e| config_err(format!("reading {}: {e}", path.display())))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(config_err(format!("{} is not a PEM file", path.display())));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_combinations_that_cannot_be_meant_are_refused() {
        let plain = EtcdUrl::parse("etcd://h").unwrap();
        let tls = EtcdUrl::parse("etcds://h").unwrap();
        let with = |f: fn(&mut EtcdOptions)| {
            let mut o = EtcdOptions::default();
            f(&mut o);
            o
        };
        let cases: [(&EtcdUrl, EtcdOptions, &str); 5] = [
            (&plain, with(|o| o.ca_file = Some("/x".into())), "etcds://"),
            (&tls, EtcdOptions::default(), "CA file"),
            (
                &plain,
                with(|o| o.username = Some("u".into())),
                "without a password",
            ),
            (
                &plain,
                with(|o| o.password = Some("p".into())),
                "without a username",
            ),
            (
                &tls,
                with(|o| o.ca_file = Some("/nonexistent/ca.pem".into())),
                "/nonexistent/ca.pem",
            ),
        ];
        for (url, opts, why) in cases {
            match connect_options(url, &opts) {
                Err(StoreError::Config(msg)) => assert!(msg.contains(why), "{msg:?} lacks {why:?}"),
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("accepted {opts:?}"),
            }
        }
    }
}
